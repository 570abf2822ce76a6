//! `keyward init`: the node key and boot key (unless present) and, with a
//! mesh name, a new mesh with this node as its founder.

use std::os::unix::fs::PermissionsExt;

use anyhow::bail;

use crate::config::Config;
use crate::identity::{BootKey, NodeId, NodeKey};
use crate::keyfile::KeyFile;
use crate::roster::{Member, MeshId, Role, Roster, SignedOp};
use crate::store::{Store, TreeName};

/// What `keyward init` made.
pub struct InitReport {
    pub node: NodeId,
    pub mesh: Option<(MeshId, String)>,
    pub created_keys: bool,
}

/// Makes the node key and boot key (unless present) and, with `mesh`, a
/// new mesh with this node as founder.
pub fn init(cfg: &Config, mesh: Option<&str>) -> anyhow::Result<InitReport> {
    let nk_path = cfg.node_key_path();
    let mut created = false;
    let node = if nk_path.exists() {
        NodeKey::load(&nk_path)?
    } else {
        let k = NodeKey::generate();
        k.save(&nk_path)?;
        created = true;
        k
    };
    let boot = if cfg.boot_key.exists() {
        BootKey::load(&cfg.boot_key)?
    } else {
        let b = BootKey::generate();
        b.save(&cfg.boot_key)?;
        created = true;
        b
    };
    let _ = std::fs::set_permissions(&cfg.state_dir, std::fs::Permissions::from_mode(0o700));
    let store = Store::open(&cfg.db_path())?;
    let ops = store.tree::<SignedOp>(TreeName::Roster)?;
    let mut roster = Roster::default();
    roster.merge_all(ops.all()?.into_iter().map(|(_, o)| o).collect());
    let mut out = InitReport {
        node: node.id(),
        mesh: roster
            .mesh()
            .map(|m| (m, roster.mesh_name().unwrap_or_default().to_string())),
        created_keys: created,
    };
    if let Some(name) = mesh {
        crate::roster::check_name(name).map_err(|e| anyhow::anyhow!("mesh {e}"))?;
        if let Some((m, n)) = &out.mesh {
            bail!("this node is already in mesh `{n}` ({m}); a node belongs to one mesh");
        }
        let mut id = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut id);
        let me = Member {
            id: node.id(),
            boot: boot.public(),
            name: cfg.node_name(),
            role: Role::Guardian,
        };
        let (r, op) = Roster::found(name, MeshId(id), me, &node);
        ops.put(&op.id(), &op)?;
        store.flush()?;
        out.mesh = Some((r.mesh().expect("founded"), name.to_string()));
    }
    Ok(out)
}
