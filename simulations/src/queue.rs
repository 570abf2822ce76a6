//! The virtual clock and the event queue.
//!
//! Events are ordered by (time, sequence number): two events at the same
//! virtual millisecond run in the order they were scheduled, so a run never
//! depends on the heap's internal layout.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use keyward_core::guardian::Millis;

struct Item<E> {
    at: Millis,
    seq: u64,
    ev: E,
}

impl<E> PartialEq for Item<E> {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl<E> Eq for Item<E> {}
impl<E> PartialOrd for Item<E> {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl<E> Ord for Item<E> {
    /// Reversed: `BinaryHeap` is a max-heap and we want the earliest first.
    fn cmp(&self, o: &Self) -> Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

pub struct Queue<E> {
    heap: BinaryHeap<Item<E>>,
    seq: u64,
    now: Millis,
}

impl<E> Default for Queue<E> {
    fn default() -> Self {
        Queue {
            heap: BinaryHeap::new(),
            seq: 0,
            now: 0,
        }
    }
}

impl<E> Queue<E> {
    /// The virtual clock: the time of the event being run.
    pub fn now(&self) -> Millis {
        self.now
    }

    /// Schedules `ev` at `at` (never in the past).
    pub fn at(&mut self, at: Millis, ev: E) {
        self.seq += 1;
        self.heap.push(Item {
            at: at.max(self.now),
            seq: self.seq,
            ev,
        });
    }

    pub fn after(&mut self, delay: Millis, ev: E) {
        self.at(self.now + delay, ev)
    }

    /// Takes the earliest event and advances the clock to it.
    pub fn pop(&mut self) -> Option<(Millis, E)> {
        let it = self.heap.pop()?;
        self.now = it.at;
        Some((it.at, it.ev))
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_first_then_fifo() {
        let mut q = Queue::default();
        q.at(10, "b");
        q.at(5, "a");
        q.at(10, "c");
        assert_eq!(q.pop(), Some((5, "a")));
        q.after(5, "d");
        assert_eq!(q.pop(), Some((10, "b")));
        assert_eq!(q.pop(), Some((10, "c")));
        assert_eq!(q.pop(), Some((10, "d")));
        assert_eq!(q.pop(), None);
    }
}
