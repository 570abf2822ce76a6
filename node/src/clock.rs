//! The daemon's clock: Unix milliseconds that never go back.
//!
//! The guardian judges liveness by comparing times it recorded with "now".
//! If the system clock steps back (an NTP step, an RTC without battery, a
//! VM restored from a snapshot), an owner last seen "in the future" would
//! look alive 0 ms ago. So within a run keywardd counts with the monotonic
//! clock from an anchor in wall time, and follows the wall clock only when
//! it steps *forward* (time sync at boot, a resumed VM): forward steps only
//! make owners look older and approvals expire sooner, which refuses more,
//! never less. Across restarts the guardian core refuses every release
//! while "now" is earlier than the newest time it persisted or than this
//! build's date (`Guardian::set_clock_floor`).

use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::guardian::Millis;

/// A wall clock this far behind ours is reported (once per step).
const REPORT_STEP_BACK: Millis = 1_000;

/// When this keywardd was built (Unix ms; `SOURCE_DATE_EPOCH` when set, for
/// reproducible builds). No correct clock is earlier.
pub fn build_time() -> Millis {
    env!("KEYWARD_BUILD_MS").parse().unwrap_or(0)
}

/// The system's wall clock in Unix ms (0 before 1970).
pub fn wall_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Wall time anchored to the monotonic clock.
#[derive(Clone, Copy, Debug)]
pub struct Anchor {
    /// Our time at `mono`.
    base: Millis,
    mono: Instant,
    /// The wall clock was found behind ours and that was reported.
    reported_back: bool,
}

/// What one reading of the clock found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reading {
    pub now: Millis,
    /// Set on the first reading after the wall clock stepped back by more
    /// than a second: by how much it is behind ours.
    pub stepped_back: Option<Millis>,
}

impl Anchor {
    pub fn new(wall: Millis, mono: Instant) -> Anchor {
        Anchor {
            base: wall,
            mono,
            reported_back: false,
        }
    }

    /// Our time, given a reading of the wall and monotonic clocks: the
    /// monotonic count since the anchor, or the wall clock if that is
    /// ahead (then it becomes the new anchor).
    pub fn read(&mut self, wall: Millis, mono: Instant) -> Reading {
        let counted = self
            .base
            .saturating_add(mono.saturating_duration_since(self.mono).as_millis() as u64);
        if wall >= counted {
            *self = Anchor::new(wall, mono);
            return Reading {
                now: wall,
                stepped_back: None,
            };
        }
        let behind = counted - wall;
        let stepped_back = if behind > REPORT_STEP_BACK && !self.reported_back {
            self.reported_back = true;
            Some(behind)
        } else {
            None
        };
        Reading {
            now: counted,
            stepped_back,
        }
    }
}

static CLOCK: Mutex<Option<Anchor>> = Mutex::new(None);

/// keywardd's "now": see the module doc.
pub fn now() -> Millis {
    let (wall, mono) = (wall_ms(), Instant::now());
    let mut g = CLOCK.lock().unwrap_or_else(|e| e.into_inner());
    let r = g
        .get_or_insert_with(|| Anchor::new(wall, mono))
        .read(wall, mono);
    drop(g);
    if let Some(b) = r.stepped_back {
        tracing::warn!(
            "the system clock stepped back by {}; keywardd keeps counting its own monotonic time (check NTP / timedatectl)",
            crate::guardian::human(b)
        );
    }
    r.now
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_step_back_is_ignored_and_a_step_forward_followed() {
        let t0 = Instant::now();
        let ms = |m: u64| t0 + Duration::from_millis(m);
        let mut a = Anchor::new(10_000_000, t0);
        assert_eq!(a.read(10_000_500, ms(500)).now, 10_000_500);
        // NTP steps the wall clock back an hour: our time goes on
        let r = a.read(10_000_600 - 3_600_000, ms(600));
        assert_eq!(r.now, 10_000_600);
        assert_eq!(r.stepped_back, Some(3_600_000));
        let r = a.read(10_000_700 - 3_600_000, ms(700));
        assert_eq!((r.now, r.stepped_back), (10_000_700, None), "reported once");
        // many readings within one millisecond do not stall the count
        for _ in 0..1000 {
            assert_eq!(a.read(0, ms(700)).now, 10_000_700);
        }
        assert_eq!(a.read(0, ms(10_700)).now, 10_010_700);
        // a forward step (time sync, a resumed VM) is followed
        assert_eq!(a.read(50_000_000, ms(10_800)).now, 50_000_000);
        assert_eq!(a.read(50_000_000, ms(11_800)).now, 50_001_000);
    }

    #[test]
    fn now_never_goes_back() {
        let mut last = now();
        for _ in 0..1000 {
            let n = now();
            assert!(n >= last);
            last = n;
        }
        assert!(build_time() > 1_700_000_000_000, "{}", build_time());
        assert!(build_time() <= wall_ms() + 1000);
    }
}
