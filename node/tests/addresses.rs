//! Issue 20 L9 and issue 16 item 8 with real keywardd processes: peer
//! addresses are on disk as soon as a mesh formed, so a power cut right
//! after leaves every node someone to dial; and a node that moved is
//! listed at its new address first.

mod common;

use std::time::Duration;

use keyward_node::control::{MemberStatus, Status};

use common::{free_port, json, Node};

fn member<'a>(v: &'a Status, name: &str) -> &'a MemberStatus {
    v.member_named(name)
        .unwrap_or_else(|| panic!("no member {name}: {}", json(v)))
}

fn addrs(v: &Status, name: &str) -> Vec<String> {
    member(v, name).addrs.clone()
}

fn all_connected(v: &Status) -> bool {
    v.members.iter().all(|m| m.connected)
}

fn join(inviter: &Node, n: &Node) {
    n.join(inviter);
}

fn listen() -> String {
    format!("/ip4/127.0.0.1/tcp/{}", free_port(false))
}

#[test]
fn a_power_cut_right_after_the_mesh_formed_leaves_every_node_addresses_to_dial() {
    let d = tempfile::tempdir().unwrap();
    let mut nodes = vec![
        Node::start(&d.path().join("a"), &listen(), false, Some("m")),
        Node::start(&d.path().join("b"), &listen(), false, None),
        Node::start(&d.path().join("c"), &listen(), false, None),
    ];
    join(&nodes[0], &nodes[1]);
    join(&nodes[0], &nodes[2]);
    for n in &nodes {
        n.wait_for(Duration::from_secs(20), "a connected mesh of 3", |v| {
            v.members.len() == 3 && all_connected(v)
        });
    }
    // power cut: no goodbye, nothing flushed at exit
    for n in &mut nodes {
        n.stop();
    }
    // Each comes back alone (nobody to learn from): what it knows of the
    // others was on disk.
    let names = ["a", "b", "c"];
    for (i, n) in nodes.iter_mut().enumerate() {
        n.restart();
        let v = n.status();
        for other in names.iter().filter(|o| **o != names[i]) {
            assert!(
                !addrs(&v, other).is_empty(),
                "{} restarted with no address for {other}: {}",
                names[i],
                json(&v)
            );
        }
        n.stop();
    }
    // all together: they find each other without bootstrap or mDNS
    for n in &mut nodes {
        n.restart();
    }
    for n in &nodes {
        n.wait_for(
            Duration::from_secs(20),
            "the mesh back together",
            all_connected,
        );
    }
}

#[test]
fn a_node_that_moved_is_listed_at_its_new_address_first() {
    let d = tempfile::tempdir().unwrap();
    let a = Node::start(&d.path().join("a"), &listen(), false, Some("m"));
    let old = listen();
    let mut b = Node::start(&d.path().join("b"), &old, false, None);
    join(&a, &b);
    a.wait_for(Duration::from_secs(20), "b connected", |v| {
        v.members.len() == 2 && all_connected(v)
    });
    assert_eq!(addrs(&a.status(), "b")[0], old);
    // b moves to another port
    b.stop();
    let new = listen();
    let cfg = b.dir.join("k.toml");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(&old, &new);
    std::fs::write(&cfg, text).unwrap();
    b.restart();
    a.wait_for(Duration::from_secs(20), "b back at its new address", |v| {
        member(v, "b").connected && addrs(v, "b").first() == Some(&new)
    });
    // the old one is still known (young), but after the new one
    let list = addrs(&a.status(), "b");
    assert_eq!(list, [new.clone(), old.clone()], "{list:?}");
    // and b's own view of a is unchanged
    assert!(!addrs(&b.status(), "a").is_empty());
}
