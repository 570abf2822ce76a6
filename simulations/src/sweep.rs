//! Sweeps: vary timeout or threshold over many runs and plot availability
//! (reboots that unlocked by themselves) against safety.

use std::path::Path;

use plotters::prelude::*;
use serde::Serialize;

use crate::report::Failure;
use crate::scenario::{Config, SEC};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Param {
    /// Release timeout, seconds. Safety: stolen servers that stayed locked
    /// (the thief boots them after an exponential delay, mean 20 min).
    Timeout,
    /// Shares needed, T. Safety: owners whose key a boot-key thief could not
    /// open even with a random fifth of the nodes colluding.
    Threshold,
}

#[derive(Clone, Debug, Serialize)]
pub struct Point {
    pub value: u64,
    pub availability: f64,
    pub safety: f64,
    pub legit_boots: u64,
    pub unlocked_by_themselves: u64,
    pub runs: u64,
}

pub fn defaults(param: Param, base: &Config) -> Vec<u64> {
    match param {
        Param::Timeout => vec![60, 120, 180, 300, 600, 900, 1800],
        Param::Threshold => (1..=base.guardians as u64).collect(),
    }
}

/// Runs `seeds` simulations per value. An invariant failure aborts.
pub fn sweep(
    base: &Config,
    param: Param,
    values: &[u64],
    seeds: u64,
) -> Result<Vec<Point>, Box<Failure>> {
    let values = if values.is_empty() {
        defaults(param, base)
    } else {
        values.to_vec()
    };
    let mut out = Vec::new();
    for v in values {
        let (mut boots, mut auto, mut safe, mut tries) = (0u64, 0u64, 0.0f64, 0.0f64);
        for s in 0..seeds.max(1) {
            let mut c = base.clone();
            c.seed = base.seed + s;
            match param {
                Param::Timeout => {
                    c.policy.timeout = v * SEC;
                    if c.thefts == 0.0 {
                        c.thefts = (c.nodes as f64 * 0.1).max(4.0);
                    }
                }
                Param::Threshold => c.threshold = (v as usize).clamp(1, c.guardians),
            }
            let r = crate::run(c)?;
            boots += r.legit_boots;
            auto += r.unlocked_auto;
            match param {
                Param::Timeout => {
                    safe += (r.thefts - r.thefts_unlocked) as f64;
                    tries += r.thefts as f64;
                }
                Param::Threshold => {
                    safe += 1.0 - r.collusion_exposed;
                    tries += 1.0;
                }
            }
        }
        out.push(Point {
            value: v,
            availability: auto as f64 / boots.max(1) as f64,
            safety: if tries > 0.0 { safe / tries } else { 1.0 },
            legit_boots: boots,
            unlocked_by_themselves: auto,
            runs: seeds.max(1),
        });
    }
    Ok(out)
}

fn label(param: Param, v: u64) -> String {
    match param {
        Param::Timeout if v.is_multiple_of(60) => format!("{} min", v / 60),
        Param::Timeout => format!("{v} s"),
        Param::Threshold => format!("T={v}"),
    }
}

pub fn table(points: &[Point], param: Param) -> String {
    let mut s = format!(
        "  {:<10} {:>13} {:>8} {:>12} {:>6}\n",
        match param {
            Param::Timeout => "timeout",
            Param::Threshold => "threshold",
        },
        "availability",
        "safety",
        "legit boots",
        "runs"
    );
    for p in points {
        s += &format!(
            "  {:<10} {:>12.1}% {:>7.1}% {:>12} {:>6}\n",
            label(param, p.value),
            p.availability * 100.0,
            p.safety * 100.0,
            p.legit_boots,
            p.runs
        );
    }
    s
}

/// Writes availability (y) against safety (x) as an SVG line with labels.
pub fn plot(points: &[Point], param: Param, base: &Config, out: &Path) -> anyhow::Result<()> {
    let root = SVGBackend::new(out, (800, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let what = match param {
        Param::Timeout => "timeout",
        Param::Threshold => "threshold",
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "keyward: availability vs safety, varying {what} ({}, {} nodes, {} h)",
                base.scenario.name(),
                base.nodes,
                base.hours
            ),
            ("sans-serif", 18),
        )
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0f64..1.05, 0.0f64..1.05)?;
    chart
        .configure_mesh()
        .x_desc(match param {
            Param::Timeout => "safety: stolen servers that stayed locked",
            Param::Threshold => "safety: owners safe from a colluding fifth of the mesh",
        })
        .y_desc("availability: reboots unlocked without an admin")
        .draw()?;
    let xy: Vec<(f64, f64)> = points.iter().map(|p| (p.safety, p.availability)).collect();
    chart.draw_series(LineSeries::new(xy.clone(), BLUE.stroke_width(2)))?;
    chart.draw_series(points.iter().map(|p| {
        EmptyElement::at((p.safety, p.availability))
            + Circle::new((0, 0), 4, BLUE.filled())
            + Text::new(label(param, p.value), (6, -14), ("sans-serif", 13))
    }))?;
    root.present()?;
    Ok(())
}
