//! Silence: an origin that is up (it answers pings, or is connected) but
//! whose log has not advanced for longer than the configured time. An
//! intruder who cannot rewrite a log can still try to stop it (kill the
//! spool, turn `[logs]` off, fill the disk); its replicas notice.
//!
//! Each replica watches the origins it keeps: the size it holds or last
//! cosigned, and when that last grew. Time only counts while the origin
//! is up (a machine that is off is down, not silent) and while this node
//! is still one of its replicas (after a roster change the origin pushes
//! elsewhere). Reported once per silence, as an alert; the origin's next
//! growth ends it (and says so in the journal).
//!
//! Why growth and not "checkpoints keep coming": an origin sends its
//! witnesses nothing new while its log does not change, so only a log
//! that grows shows that logging works. A server that logs nothing for
//! the configured time (default an hour) is rare; the admin sets
//! `[logs] silence_secs` to what its servers do, or 0 to not watch.

use std::collections::BTreeMap;

use crate::guardian::Millis;
use crate::identity::NodeId;
use crate::log::replica::placement;

use super::super::machine::Node;
use super::super::notes::Note;

/// Default `[logs] silence_secs`, in ms.
pub const SILENCE_AFTER: Millis = 3_600_000;

/// What a replica knows of one origin's growth.
#[derive(Debug, Clone, Copy)]
struct Watched {
    size: u64,
    /// When `size` last grew, or the origin was last down (the clock
    /// starts again when it comes up).
    since: Millis,
    reported: bool,
}

/// The origins this node watches.
#[derive(Debug, Default)]
pub(crate) struct Silence {
    /// 0: watch nothing.
    after: Millis,
    watched: BTreeMap<NodeId, Watched>,
}

impl Silence {
    pub fn new(after: Millis) -> Self {
        Silence {
            after,
            watched: BTreeMap::new(),
        }
    }

    /// When the next origin may turn silent.
    pub fn next_deadline(&self) -> Millis {
        if self.after == 0 {
            return Millis::MAX;
        }
        self.watched
            .values()
            .filter(|w| !w.reported)
            .map(|w| w.since.saturating_add(self.after))
            .min()
            .unwrap_or(Millis::MAX)
    }

    /// `origin`'s log is `size` long here now. True when it had been
    /// reported silent and grew again.
    fn grew(&mut self, origin: NodeId, size: u64, now: Millis) -> bool {
        if self.after == 0 {
            return false;
        }
        let w = self.watched.entry(origin).or_insert(Watched {
            size,
            since: now,
            reported: false,
        });
        if size <= w.size {
            return false;
        }
        let was = w.reported;
        *w = Watched {
            size,
            since: now,
            reported: false,
        };
        was
    }
}

impl Node {
    /// A replica or witness saw `origin`'s log at `size`.
    pub(in crate::node) fn log_grew(&mut self, origin: NodeId, size: u64, now: Millis) {
        if self.logs.silence.grew(origin, size, now) {
            self.note(Note::LogProblem(format!(
                "logs of {origin}: growing again (size {size})"
            )));
        }
    }

    /// Reports the origins that stayed silent too long while up.
    pub(in crate::node) fn check_silence(&mut self, now: Millis) {
        let after = self.logs.silence.after;
        if after == 0 {
            return;
        }
        let r = self.logs.origin_replicas;
        let due: Vec<NodeId> = self
            .logs
            .silence
            .watched
            .iter()
            .filter(|(_, w)| !w.reported && w.since.saturating_add(after) <= now)
            .map(|(o, _)| *o)
            .collect();
        for o in due {
            let still_mine = self.roster.is_active(&o)
                && placement::replicas_in(&self.roster, &o, r).contains(&self.me.id);
            if !still_mine {
                self.logs.silence.watched.remove(&o);
                continue;
            }
            let up = self.guardian.is_up(&o, now) || self.is_connected(&o);
            let Some(w) = self.logs.silence.watched.get_mut(&o) else {
                continue;
            };
            if !up {
                w.since = now;
                continue;
            }
            w.reported = true;
            let (size, mins) = (w.size, now.saturating_sub(w.since) / 60_000);
            let text = format!(
                "silent: it is up but its log has stayed at {size} leaves for {mins} min (over [logs] silence_secs = {}): is its logging stopped?",
                after / 1000
            );
            self.log_finding(o, text, None, now);
        }
    }
}
