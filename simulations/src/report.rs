//! Failure reports: everything needed to understand and replay a failed
//! invariant.

use std::fmt;

use crate::invariants::Violation;
use crate::trace::clock;

/// A failed invariant.
#[derive(Debug)]
pub struct Failure {
    pub violation: Violation,
    pub seed: u64,
    pub replay: String,
    /// The last trace records touching the nodes the violation names (a
    /// window of the run, not a minimised trace).
    pub trace: Vec<String>,
    pub trace_hash: u64,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = &self.violation;
        writeln!(f, "INVARIANT FAILED: {}", v.name)?;
        writeln!(
            f,
            "  seed {}, event #{} at {}",
            self.seed,
            v.event,
            clock(v.at)
        )?;
        writeln!(f, "  {}", v.detail)?;
        writeln!(f, "  replay: {}", self.replay)?;
        writeln!(f, "          (add --trace to print every event)")?;
        let who: Vec<String> = v.nodes.iter().map(|n| format!("n{n}")).collect();
        writeln!(
            f,
            "  last {} trace records touching {} (not minimised):",
            self.trace.len(),
            who.join(", ")
        )?;
        for l in &self.trace {
            writeln!(f, "    {l}")?;
        }
        Ok(())
    }
}
