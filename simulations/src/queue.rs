//! The virtual clock and the event queue.
//!
//! Events are ordered by (time, sequence number): two events at the same
//! virtual millisecond run in the order they were scheduled, so a run never
//! depends on the queue's internal layout.
//!
//! Why a timing wheel and not a binary heap: at 5,000 nodes the queue holds
//! hundreds of thousands of events, nearly all of them network deliveries
//! and timers a few milliseconds to a minute ahead, and the heap's
//! `O(log n)` sift (a cache miss per level) was the largest single cost of
//! the run. The wheel keeps one FIFO per millisecond of the next
//! [`WINDOW`] ms, so scheduling and taking an event cost `O(1)`, and a
//! bitmap of non-empty slots finds the next one without walking empty
//! milliseconds. Events further ahead (churn hours away) wait in an ordered
//! map and move into their slot when it enters the window.
//!
//! The order is exactly the heap's: an event far ahead was scheduled before
//! any event that reached its slot directly (the slot was outside the
//! window until then), and it moves into the slot the moment the window
//! reaches it, before anything else can be scheduled there.

use std::collections::BTreeMap;

use keyward_core::guardian::Millis;

/// Milliseconds the wheel covers from now (a power of two).
const WINDOW: Millis = 1 << 16;
const WORDS: usize = (WINDOW / 64) as usize;
/// No cell: the end of a slot's list or of the free list.
const NIL: u32 = u32::MAX;

/// An event in a slot's list, or a free cell.
struct Cell<E> {
    ev: Option<E>,
    next: u32,
}

pub struct Queue<E> {
    /// `slots[t % WINDOW]`: the first and last cell of the events at time
    /// `t`, for `now <= t < now + WINDOW`. The lists live in `cells`, so
    /// memory follows the events queued, not the largest burst each
    /// millisecond ever saw (a `VecDeque` per slot kept 130 MB of
    /// capacity at 1,000 nodes).
    slots: Vec<(u32, u32)>,
    cells: Vec<Cell<E>>,
    /// The first free cell.
    free: u32,
    /// Bit `t % WINDOW` is set when that slot holds an event.
    busy: Vec<u64>,
    /// Events in the slots.
    in_wheel: usize,
    /// Events at `now + WINDOW` or later, by (time, sequence).
    far: BTreeMap<(Millis, u64), E>,
    seq: u64,
    now: Millis,
}

impl<E> Default for Queue<E> {
    fn default() -> Self {
        Queue {
            slots: vec![(NIL, NIL); WINDOW as usize],
            cells: Vec::new(),
            free: NIL,
            busy: vec![0; WORDS],
            in_wheel: 0,
            far: BTreeMap::new(),
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
        let at = at.max(self.now);
        if at - self.now < WINDOW {
            self.put(at, ev);
        } else {
            self.far.insert((at, self.seq), ev);
        }
    }

    pub fn after(&mut self, delay: Millis, ev: E) {
        self.at(self.now + delay, ev)
    }

    /// Takes the earliest event and advances the clock to it.
    pub fn pop(&mut self) -> Option<(Millis, E)> {
        if self.in_wheel == 0 {
            // Nothing within the window: jump to the first far event.
            let (&(at, _), _) = self.far.first_key_value()?;
            self.advance(at);
        }
        let at = self.next_busy();
        if at != self.now {
            self.advance(at);
        }
        let i = (at % WINDOW) as usize;
        let c = self.slots[i].0;
        let cell = &mut self.cells[c as usize];
        let ev = cell.ev.take().expect("a listed cell holds an event");
        self.slots[i].0 = cell.next;
        cell.next = self.free;
        self.free = c;
        if self.slots[i].0 == NIL {
            self.slots[i].1 = NIL;
            self.busy[i / 64] &= !(1 << (i % 64));
        }
        self.in_wheel -= 1;
        Some((at, ev))
    }

    pub fn len(&self) -> usize {
        self.in_wheel + self.far.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `ev` to the list of `at`'s slot.
    fn put(&mut self, at: Millis, ev: E) {
        let c = if self.free == NIL {
            self.cells.push(Cell {
                ev: Some(ev),
                next: NIL,
            });
            (self.cells.len() - 1) as u32
        } else {
            let c = self.free;
            let cell = &mut self.cells[c as usize];
            self.free = cell.next;
            *cell = Cell {
                ev: Some(ev),
                next: NIL,
            };
            c
        };
        let i = (at % WINDOW) as usize;
        match self.slots[i] {
            (NIL, _) => self.slots[i] = (c, c),
            (_, last) => {
                self.cells[last as usize].next = c;
                self.slots[i].1 = c;
            }
        }
        self.busy[i / 64] |= 1 << (i % 64);
        self.in_wheel += 1;
    }

    /// Moves the clock to `to` and the far events that entered the window
    /// into their slots, in their order.
    fn advance(&mut self, to: Millis) {
        self.now = to;
        while let Some(entry) = self.far.first_entry() {
            let at = entry.key().0;
            if at - to >= WINDOW {
                break;
            }
            let ev = entry.remove();
            self.put(at, ev);
        }
    }

    /// The time of the earliest event in the wheel (which is not empty).
    fn next_busy(&self) -> Millis {
        let start = (self.now % WINDOW) as usize;
        // Walk the bitmap from `now`'s slot, wrapping once.
        let (w0, b0) = (start / 64, start % 64);
        let first = self.busy[w0] >> b0;
        if first != 0 {
            return self.now + first.trailing_zeros() as Millis;
        }
        for k in 1..=WORDS {
            let w = (w0 + k) % WORDS;
            let mut bits = self.busy[w];
            if k == WORDS {
                // Back at the first word: only the bits before `now`.
                bits &= (1u64 << b0).wrapping_sub(1);
            }
            if bits != 0 {
                let slot = w * 64 + bits.trailing_zeros() as usize;
                let ahead = (slot + WINDOW as usize - start) % WINDOW as usize;
                return self.now + ahead as Millis;
            }
        }
        unreachable!("next_busy on an empty wheel")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BinaryHeap;

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

    #[test]
    fn far_events_keep_their_place_among_near_ones() {
        let mut q = Queue::default();
        let t = 3 * WINDOW + 7;
        q.at(t, "far, first");
        q.at(t - WINDOW / 2, "step");
        assert_eq!(q.pop(), Some((t - WINDOW / 2, "step")));
        // Now t is within the window: this one comes after the far one.
        q.at(t, "near, second");
        assert_eq!(q.pop(), Some((t, "far, first")));
        assert_eq!(q.pop(), Some((t, "near, second")));
        assert!(q.is_empty());
    }

    /// What the wheel must equal: a heap ordered by (time, sequence).
    #[derive(Default)]
    struct Reference {
        heap: BinaryHeap<std::cmp::Reverse<(Millis, u64, u32)>>,
        seq: u64,
        now: Millis,
    }

    impl Reference {
        fn at(&mut self, at: Millis, ev: u32) {
            self.seq += 1;
            self.heap
                .push(std::cmp::Reverse((at.max(self.now), self.seq, ev)));
        }
        fn pop(&mut self) -> Option<(Millis, u32)> {
            let std::cmp::Reverse((at, _, ev)) = self.heap.pop()?;
            self.now = at;
            Some((at, ev))
        }
    }

    proptest! {
        /// Any interleaving of scheduling (near, far, in the past, at the
        /// window's edge) and taking gives the heap's order and clock.
        #[test]
        fn same_order_as_a_heap(
            ops in proptest::collection::vec(
                prop_oneof![
                    (0u64..50).prop_map(Some),
                    (WINDOW - 3..WINDOW + 3).prop_map(Some),
                    (0u64..5 * WINDOW).prop_map(Some),
                    Just(None),
                ],
                1..400,
            )
        ) {
            let (mut q, mut r) = (Queue::default(), Reference::default());
            for (i, op) in ops.into_iter().enumerate() {
                match op {
                    Some(d) => {
                        // Some in the past: both clamp to now.
                        let at = (r.now + d).saturating_sub(if i % 7 == 0 { 60 } else { 0 });
                        q.at(at, i as u32);
                        r.at(at, i as u32);
                    }
                    None => prop_assert_eq!(q.pop(), r.pop()),
                }
                prop_assert_eq!(q.now(), r.now);
                prop_assert_eq!(q.len(), r.heap.len());
            }
            while let Some(e) = r.pop() {
                prop_assert_eq!(q.pop(), Some(e));
            }
            prop_assert_eq!(q.pop(), None);
        }
    }
}
