//! keyward-sim: a deterministic discrete-event simulator of a keyward
//! mesh that runs the production types.
//!
//! [`world`] drives real `keyward_core::node::Node`s (keywardd's
//! decisions) and `keyward_core::unlock::UnlockClient`s (the initramfs's)
//! over a virtual clock, network and disk, from one seeded RNG. Every
//! scenario ([`Scenario`]) runs there; [`invariants`] are checked as the
//! run goes, against the [`oracle`]'s record of what each guardian was
//! told. See `keyward-sim --help`.

pub mod invariants;
pub mod oracle;
pub mod queue;
pub mod report;
pub mod scenario;
pub mod sweep;
pub mod trace;
pub mod world;

pub use report::Failure;
pub use scenario::{Config, Scenario};
pub use world::WorldSummary as Summary;

/// Runs one simulation.
pub fn run(cfg: Config) -> Result<Summary, Box<Failure>> {
    // Signature checks are shared like verified roster operations: the
    // memo answers what the curve would (keyward_core::sig_memo).
    if cfg.memo {
        keyward_core::sig_memo::enable(1 << 16);
    } else {
        keyward_core::sig_memo::disable();
    }
    let r = world::World::new(cfg).run();
    keyward_core::sig_memo::disable();
    r
}
