//! keyward-sim: a deterministic discrete-event simulator of a keyward mesh.
//!
//! It drives the real `keyward_core::guardian` and `keyward_core::roster`
//! code (and real `shares::split`/`combine`, real signatures) over a virtual
//! clock, a virtual network and one seeded RNG. See `keyward-sim --help`.
//!
//! [`world`] is where the simulator is going (issue 15): real
//! `keyward_core::node::Node`s and `keyward_core::unlock::UnlockClient`s
//! over the same kind of virtual clock, network and disk. The scenarios,
//! oracle and invariants of [`sim`] still run on the older model
//! (`daemon`, `boot`, `node`, `rosters`, parts of `admin`) until they are
//! moved over.

pub mod admin;
pub mod boot;
pub mod daemon;
pub mod hostile;
pub mod invariants;
pub mod net;
pub mod node;
pub mod oracle;
pub mod queue;
pub mod report;
pub mod rosters;
pub mod scenario;
pub mod sim;
pub mod sweep;
pub mod trace;
pub mod watch;
pub mod world;

pub use report::{Failure, Summary};
pub use scenario::{Config, Placement, Scenario};
pub use sim::Sim;

/// Runs one simulation.
pub fn run(cfg: Config) -> Result<Summary, Box<Failure>> {
    Sim::new(cfg).run()
}
