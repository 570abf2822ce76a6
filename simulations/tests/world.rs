//! The world: real `Node`s and `UnlockClient`s over the virtual network,
//! clock and disk.

use keyward_sim::world::{World, WorldConfig};

fn quiet(nodes: usize, hours: f64, seed: u64) -> WorldConfig {
    let mut c = WorldConfig::new(nodes, hours, seed);
    c.reboots = 0.0;
    c.crashes = 0.0;
    c
}

#[test]
fn a_small_mesh_binds_through_the_control_api_and_converges() {
    let s = World::new(quiet(6, 1.0, 1))
        .run()
        .unwrap_or_else(|v| panic!("{v:?}"));
    println!("{s:#?}");
    assert_eq!(s.binds, 6, "{s:?}");
    assert_eq!(s.bound_at_end, 6);
    assert_eq!(s.binds_failed, 0);
    assert!(s.traffic.pings > 0 && s.traffic.dials > 0);
}
