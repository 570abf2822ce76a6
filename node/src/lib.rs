//! keyward node: a peer-to-peer mesh of mutual key guardians.
//!
//! See docs/design.md for the threat model. The protocol cores (`guardian`,
//! `roster`) are sans-IO so the daemon and the simulator run the same code.

pub mod addr_book;
pub mod clock;
pub mod codec;
pub mod config;
pub mod control;
#[cfg(feature = "daemon")]
pub mod daemon;
pub mod gate;
pub mod guardian;
pub mod identity;
pub mod lookup;
pub mod luks;
pub mod net;
pub mod proto;
pub mod roster;
pub mod shares;
#[cfg(feature = "daemon")]
pub mod store;
pub mod unlock;
