//! Human-readable views of `keyward status`.

use keyward_node::control::Status;

fn ago(ms: Option<u64>) -> String {
    match ms {
        None => "never".into(),
        Some(ms) if ms < 2000 => "now".into(),
        Some(ms) => format!("{} ago", keyward_node::guardian::human(ms)),
    }
}

pub fn status(v: &Status) {
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
    println!();
    println!(
        "{:<16} {:<9} {:<10} {:<10} {:<7} {:<52} ADDRESSES",
        "NAME", "ROLE", "CONNECTED", "SEEN", "SHARES", "ID"
    );
    for m in &v.members {
        let held: Vec<String> = m
            .holds_shares_epochs
            .iter()
            .map(|e| e.to_string())
            .collect();
        println!(
            "{:<16} {:<9} {:<10} {:<10} {:<7} {:<52} {}",
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
            m.id,
            m.addrs.join(" ")
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
