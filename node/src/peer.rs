//! The libp2p side of node identities: a node id is the peer id of its
//! ed25519 key, and the node and boot keys are libp2p identities. Kept out
//! of `keyward_core`, which knows nothing of libp2p.

use libp2p::identity::{ed25519, Keypair, PublicKey};
use libp2p::PeerId;
use zeroize::Zeroize;

use crate::identity::{BootKey, BootPublic, NodeId, NodeKey};

/// Node ids and boot keys as libp2p peer ids.
pub trait PeerIds {
    /// The libp2p peer id; None if the bytes are not a curve point.
    fn peer_id(&self) -> Option<PeerId>;
}

impl PeerIds for NodeId {
    fn peer_id(&self) -> Option<PeerId> {
        let pk = ed25519::PublicKey::try_from_bytes(&self.0).ok()?;
        Some(PublicKey::from(pk).to_peer_id())
    }
}

/// A boot-key connection shows up as the peer id of the boot key's
/// signing key.
impl PeerIds for BootPublic {
    fn peer_id(&self) -> Option<PeerId> {
        self.as_node_id().peer_id()
    }
}

/// A node id from a peer id.
pub trait FromPeerId: Sized {
    /// None for a peer id that inlines no ed25519 key.
    fn from_peer_id(p: &PeerId) -> Option<Self>;
}

impl FromPeerId for NodeId {
    fn from_peer_id(p: &PeerId) -> Option<NodeId> {
        let pk = PublicKey::try_decode_protobuf(p.as_ref().digest()).ok()?;
        Some(NodeId(pk.try_into_ed25519().ok()?.to_bytes()))
    }
}

/// Keys as libp2p identities: the node key is the daemon's; the boot key
/// is the unlock client's, so guardians can tell a boot-key connection
/// from a live node's.
pub trait Libp2pKey {
    fn libp2p_keypair(&self) -> Keypair;
}

impl Libp2pKey for NodeKey {
    fn libp2p_keypair(&self) -> Keypair {
        let mut b = *self.secret();
        let kp = Keypair::ed25519_from_bytes(&mut b).expect("32-byte key");
        b.zeroize();
        kp
    }
}

impl Libp2pKey for BootKey {
    fn libp2p_keypair(&self) -> Keypair {
        let mut b = self.signing_key().to_bytes();
        let kp = Keypair::ed25519_from_bytes(&mut b).expect("32-byte key");
        b.zeroize();
        kp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// keyward_core writes peer ids itself; they must be libp2p's.
    #[test]
    fn node_id_text_is_the_libp2p_peer_id() {
        for _ in 0..32 {
            let n = NodeKey::generate();
            let p = n.libp2p_keypair().public().to_peer_id();
            assert_eq!(n.id().peer_id(), Some(p));
            assert_eq!(n.id().to_string(), p.to_string());
            assert_eq!(p.to_string().parse::<NodeId>().unwrap(), n.id());
            assert_eq!(NodeId::from_peer_id(&p), Some(n.id()));
        }
        // a peer id that inlines no ed25519 key is no node id
        let other = PeerId::random();
        assert!(NodeId::from_peer_id(&other).is_none());
        assert!(other.to_string().parse::<NodeId>().is_err());
    }
}
