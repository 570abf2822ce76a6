//! Human-readable views of `keyward status`.

use keyward_node::control::{MemberStatus, ReplicationStatus, Status};
use keyward_node::roster::Role;

fn ago(ms: Option<u64>) -> String {
    match ms {
        None => "never".into(),
        Some(ms) if ms < 2000 => "now".into(),
        Some(ms) => format!("{} ago", keyward_node::guardian::human(ms)),
    }
}

/// Meshes up to this size list every member by default.
const WHOLE_TABLE: usize = 30;

/// Whether a member matters to this node: itself, a guardian of it, a
/// ward, a gossip neighbour, connected now, or unreachable.
fn matters(m: &MemberStatus) -> bool {
    m.me || m.connected
        || m.guards_me
        || m.gossip
        || m.unreachable
        || !m.holds_shares_epochs.is_empty()
}

/// Why this node keeps a connection to `m`.
fn link(m: &MemberStatus) -> String {
    let mut v = vec![];
    if m.guards_me {
        v.push("guardian");
    }
    if !m.holds_shares_epochs.is_empty() {
        v.push("ward");
    }
    if m.gossip {
        v.push("gossip");
    }
    if m.unreachable {
        v.push("UNREACHABLE");
    }
    if v.is_empty() {
        "-".into()
    } else {
        v.join(",")
    }
}

/// One line about the whole mesh, whatever its size.
fn summary(v: &Status) {
    let n = v.members.len();
    let guardians = v
        .members
        .iter()
        .filter(|m| m.role == Role::Guardian)
        .count();
    let connected = v.members.iter().filter(|m| !m.me && m.connected).count();
    let guards_me = v.members.iter().filter(|m| m.guards_me).count();
    let wards = v
        .members
        .iter()
        .filter(|m| !m.holds_shares_epochs.is_empty())
        .count();
    let unreachable = v.members.iter().filter(|m| m.unreachable).count();
    println!(
        "members  {n} ({guardians} guardians); connected to {connected}; {guards_me} hold shares of this node, it holds shares of {wards}{}",
        if unreachable > 0 {
            format!("; {unreachable} UNREACHABLE")
        } else {
            String::new()
        }
    );
}

/// Logs part 2: who holds and witnesses this node's log, and whose logs
/// this node keeps.
fn replication(r: &ReplicationStatus) {
    if r.size > 0 || !r.replicas.is_empty() {
        let behind = r.size.saturating_sub(r.replicated);
        println!(
            "log      {} segments, {} held by the replicas{}",
            r.size,
            r.replicated,
            if behind > 0 {
                format!(" ({behind} not yet)")
            } else {
                String::new()
            }
        );
        if r.replicas.is_empty() {
            println!("log      NO REPLICA: no other guardian to hold this node's log");
        }
        for p in &r.replicas {
            let who = p.name.clone().unwrap_or_else(|| p.id.clone());
            let held = p
                .held
                .map_or("not heard from".into(), |h| format!("holds {h}"));
            let cosigned = match p.cosigned {
                Some(s) => format!("cosigned {s} {}", ago(p.cosigned_ms_ago)),
                None => "cosigned nothing yet".into(),
            };
            println!("replica  {who}: {held}, {cosigned}");
        }
    }
    for k in &r.kept {
        let who = k.name.clone().unwrap_or_else(|| k.origin.clone());
        let witnessed = k
            .witnessed
            .map_or("not witnessed".into(), |s| format!("witnessed at {s}"));
        println!("keeps    {who}'s log: {} segments, {witnessed}", k.held);
    }
}

pub fn status(v: &Status, all: bool) {
    let n = &v.node;
    println!("node     {} ({})", n.name, n.id);
    match &v.mesh {
        Some(m) => println!("mesh     {} ({})", m.name.as_deref().unwrap_or("?"), m.id),
        None => println!("mesh     none: `keyward join TOKEN` or `keyward init --mesh NAME`"),
    }
    if n.revoked {
        println!("state    REVOKED: this node gets and holds nothing");
    }
    match &v.lockdown {
        Some(l) => println!(
            "lockdown ON since {} (by {}); lift with `keyward lockdown --lift`",
            ago(Some(l.since_ms_ago)),
            l.by_name.as_deref().unwrap_or("?")
        ),
        None => println!("lockdown off"),
    }
    for a in &v.listen {
        println!("listen   {a}");
    }
    if let Some(l) = &v.logs {
        println!(
            "logs     {} of {} MiB ({}%), {} segments logged{}",
            l.used_bytes >> 20,
            l.quota_bytes >> 20,
            (l.used_bytes as u128 * 100 / (l.quota_bytes.max(1)) as u128),
            l.logged,
            if l.refused_lines > 0 {
                format!(", {} lines REFUSED (spool full)", l.refused_lines)
            } else {
                String::new()
            }
        );
        if let Some(w) = &l.warning {
            println!("logs     WARNING: {w}");
        }
    }
    if let Some(r) = &v.replication {
        replication(r);
    }
    println!();
    summary(v);
    // A rack of ten reads best whole; a data center's status shows the
    // members that matter to this node unless asked for all.
    let shown: Vec<&MemberStatus> = v
        .members
        .iter()
        .filter(|m| all || v.members.len() <= WHOLE_TABLE || matters(m))
        .collect();
    println!(
        "{:<16} {:<9} {:<10} {:<10} {:<7} {:<14} {:<52} ADDRESSES",
        "NAME", "ROLE", "CONNECTED", "SEEN", "SHARES", "LINK", "ID"
    );
    for m in &shown {
        let held: Vec<String> = m
            .holds_shares_epochs
            .iter()
            .map(|e| e.to_string())
            .collect();
        println!(
            "{:<16} {:<9} {:<10} {:<10} {:<7} {:<14} {:<52} {}",
            format!("{}{}", m.name, if m.me { "*" } else { "" }),
            m.role.to_string(),
            if m.me {
                "self"
            } else if m.connected {
                "yes"
            } else {
                "no"
            },
            if m.me {
                "-".into()
            } else {
                ago(m.last_seen_ms_ago)
            },
            if held.is_empty() {
                "-".into()
            } else {
                format!("e{}", held.join(","))
            },
            link(m),
            m.id,
            m.addrs.join(" ")
        );
    }
    if shown.len() < v.members.len() {
        println!(
            "... and {} more members (`keyward status --all` lists every one)",
            v.members.len() - shown.len()
        );
    }
    // Names are not unique in a mesh: say so, since commands then need
    // the id (a name shared by several members resolves to none of them).
    let mut by_name: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for m in &v.members {
        by_name.entry(&m.name).or_default().push(&m.id);
    }
    for (n, ids) in by_name.iter().filter(|(_, ids)| ids.len() > 1) {
        println!(
            "\nNOTE: {} members are named {n}; commands about them need the id: {}",
            ids.len(),
            ids.join(", ")
        );
    }
    if !v.revoked.is_empty() {
        println!("\nrevoked: {}", v.revoked.join(", "));
    }
    if !v.alerts.is_empty() {
        println!("\nALERTS:");
        for x in &v.alerts {
            println!("  {}", x.text);
        }
    }
    if !v.decisions.is_empty() {
        println!("\nrecent decisions (newest first):");
        for x in v.decisions.iter().take(10) {
            println!(
                "  {} {}: {}",
                if x.released {
                    "released to"
                } else {
                    "refused   "
                },
                x.owner,
                x.reason
            );
        }
    }
}

pub fn peers(v: &Status) {
    for m in &v.members {
        let state = if m.me {
            "self"
        } else if m.connected {
            "up"
        } else {
            "down"
        };
        println!(
            "{:<16} {:<5} {:<9} {}",
            m.name,
            state,
            m.role.to_string(),
            m.id
        );
    }
}
