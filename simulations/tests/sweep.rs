//! `sweep` runs, and `plot` writes a real SVG with the plotted series.

use keyward_sim::sweep::{self, Param};
use keyward_sim::{Config, Scenario};

#[test]
fn sweep_writes_an_svg_with_the_series() {
    let mut base = Config::new(Scenario::Churn, 8, 2.0, 3);
    base.reboots = 6.0;
    let values = [60, 300, 900];
    let points = sweep::sweep(&base, Param::Timeout, &values, 1).expect("no invariant fails");
    assert_eq!(points.len(), 3);
    for p in &points {
        assert!((0.0..=1.0).contains(&p.availability), "{p:?}");
        assert!((0.0..=1.0).contains(&p.safety), "{p:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sweep.svg");
    sweep::plot(&points, Param::Timeout, &base, &out).unwrap();
    let svg = std::fs::read_to_string(&out).unwrap();
    assert!(svg.len() > 2000, "only {} bytes", svg.len());
    assert!(svg.trim_start().starts_with("<svg"), "{svg}");
    assert!(svg.trim_end().ends_with("</svg>"));
    // the line through the points, one marker per point and its label
    assert!(svg.contains("<polyline"), "no line series");
    assert_eq!(svg.matches("<circle").count(), points.len(), "{svg}");
    for label in ["1 min", "5 min", "15 min"] {
        assert!(svg.contains(label), "no label {label}");
    }
    assert!(svg.contains("availability"));
    assert!(svg.contains("safety"));
}
