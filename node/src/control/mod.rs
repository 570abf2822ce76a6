//! The local control socket the CLI talks to: one JSON request per line,
//! one JSON response per line. The socket is 0600 in a 0700 directory, so
//! only root (the daemon's user) can drive the daemon.
//!
//! The request and reply types live in `keyward_core::control` (the node's
//! decisions take and give them); [`Client`] is the blocking client with
//! one method per request, each returning that request's reply type.

mod client;

pub use client::{parse_response, Client};
pub use keyward_core::control::*;

#[cfg(test)]
mod tests;
