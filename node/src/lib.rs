//! keyward node: a peer-to-peer mesh of mutual key guardians.
//!
//! See docs/design.md for the threat model. The decisions live in
//! `keyward_core` (sans-IO, shared with the simulator); this crate holds
//! the drivers: the daemon, the store, key files, the control socket, the
//! libp2p transport and the boot client.

pub mod addr_book;
pub mod clock;
pub mod config;
pub mod control;
#[cfg(feature = "daemon")]
pub mod daemon;
pub mod dial;
pub mod gate;
#[cfg(feature = "daemon")]
pub mod init;
pub mod keyfile;
pub mod logs;
pub mod luks;
pub mod net;
pub mod peer;
#[cfg(feature = "daemon")]
pub mod store;
// A hostile request client shared by this crate's integration tests and
// netns-tests (see the module's doc); no API for keyward's users.
#[doc(hidden)]
pub mod testing;
pub mod unlock;

// The sans-IO core, re-exported under the paths the drivers always used.
pub use keyward_core::{bind, codec, guardian, identity, log, lookup, proto, roster, shares};
