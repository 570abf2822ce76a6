//! Human-readable views of `keyward status`.

use serde_json::Value;

fn ago(v: &Value) -> String {
    match v.as_u64() {
        None => "never".into(),
        Some(ms) if ms < 2000 => "now".into(),
        Some(ms) => format!("{} ago", keyward_node::guardian::human(ms)),
    }
}

pub fn status(v: &Value) {
    let n = &v["node"];
    println!(
        "node     {} ({})",
        n["name"].as_str().unwrap_or("?"),
        n["id"].as_str().unwrap_or("?")
    );
    match v["mesh"].as_object() {
        Some(m) => println!(
            "mesh     {} ({})",
            m["name"].as_str().unwrap_or("?"),
            m["id"].as_str().unwrap_or("?")
        ),
        None => println!("mesh     none: `keyward join TOKEN` or `keyward init --mesh NAME`"),
    }
    if n["revoked"].as_bool() == Some(true) {
        println!("state    REVOKED: this node gets and holds nothing");
    }
    match v["lockdown"].as_object() {
        Some(l) => println!(
            "lockdown ON since {} (by {}); lift with `keyward lockdown --lift`",
            ago(&l["since_ms_ago"]),
            l["by_name"].as_str().unwrap_or("?")
        ),
        None => println!("lockdown off"),
    }
    for a in v["listen"].as_array().into_iter().flatten() {
        println!("listen   {}", a.as_str().unwrap_or_default());
    }
    println!();
    println!(
        "{:<16} {:<9} {:<10} {:<10} {:<7} {:<52} ADDRESSES",
        "NAME", "ROLE", "CONNECTED", "SEEN", "SHARES", "ID"
    );
    for m in v["members"].as_array().into_iter().flatten() {
        let me = m["me"].as_bool() == Some(true);
        let held: Vec<String> = m["holds_shares_epochs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| e.to_string())
            .collect();
        println!(
            "{:<16} {:<9} {:<10} {:<10} {:<7} {:<52} {}",
            format!(
                "{}{}",
                m["name"].as_str().unwrap_or("?"),
                if me { "*" } else { "" }
            ),
            m["role"].as_str().unwrap_or("?"),
            if me {
                "self"
            } else if m["connected"].as_bool() == Some(true) {
                "yes"
            } else {
                "no"
            },
            if me {
                "-".into()
            } else {
                ago(&m["last_seen_ms_ago"])
            },
            if held.is_empty() {
                "-".into()
            } else {
                format!("e{}", held.join(","))
            },
            m["id"].as_str().unwrap_or("?"),
            m["addrs"]
                .as_array()
                .map(|a| a
                    .iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(" "))
                .unwrap_or_default()
        );
    }
    // Names are not unique in a mesh: say so, since commands then need
    // the id (a name shared by several members resolves to none of them).
    let mut by_name: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for m in v["members"].as_array().into_iter().flatten() {
        if let (Some(n), Some(id)) = (m["name"].as_str(), m["id"].as_str()) {
            by_name.entry(n).or_default().push(id);
        }
    }
    for (n, ids) in by_name.iter().filter(|(_, ids)| ids.len() > 1) {
        println!(
            "\nNOTE: {} members are named {n}; commands about them need the id: {}",
            ids.len(),
            ids.join(", ")
        );
    }
    if let Some(r) = v["revoked"].as_array().filter(|r| !r.is_empty()) {
        println!(
            "\nrevoked: {}",
            r.iter()
                .filter_map(|x| x.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if let Some(a) = v["alerts"].as_array().filter(|a| !a.is_empty()) {
        println!("\nALERTS:");
        for x in a {
            println!("  {}", x["text"].as_str().unwrap_or_default());
        }
    }
    if let Some(d) = v["decisions"].as_array().filter(|d| !d.is_empty()) {
        println!("\nrecent decisions (newest first):");
        for x in d.iter().take(10) {
            println!(
                "  {} {}: {}",
                if x["released"].as_bool() == Some(true) {
                    "released to"
                } else {
                    "refused   "
                },
                x["owner"].as_str().unwrap_or("?"),
                x["reason"].as_str().unwrap_or_default()
            );
        }
    }
}

pub fn peers(v: &Value) {
    for m in v["members"].as_array().into_iter().flatten() {
        let state = if m["me"].as_bool() == Some(true) {
            "self"
        } else if m["connected"].as_bool() == Some(true) {
            "up"
        } else {
            "down"
        };
        println!(
            "{:<16} {:<5} {:<9} {}",
            m["name"].as_str().unwrap_or("?"),
            state,
            m["role"].as_str().unwrap_or("?"),
            m["id"].as_str().unwrap_or("?")
        );
    }
}
