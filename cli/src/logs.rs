//! `keyward logs`: the node's own log spool, read directly (root only: it
//! needs the local admin identity), verified against the Merkle log as it
//! is read. `show` (the default) prints the lines of genuine segments of
//! non-confidential sources; `verify` only checks; `export` copies what an
//! auditor needs. Findings are always reported and make the exit status
//! non-zero.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use keyward_node::config::Config;
use keyward_node::identity::NodeKey;
use keyward_node::keyfile::KeyFile;
use keyward_node::logs::read::{self, Filter, Reading, Shown};
use keyward_node::logs::{admin_key, layout};

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct LogsArgs {
    #[command(subcommand)]
    cmd: Option<LogsCmd>,
    #[command(flatten)]
    show: ShowArgs,
}

#[derive(Subcommand)]
enum LogsCmd {
    /// Show lines of non-confidential sources, in order (the default).
    Show(ShowArgs),
    /// Check the whole spool against its checkpoint; exit 1 on findings.
    Verify,
    /// Copy checkpoint, tiles and segments for the auditor into
    /// `OUT/<node id>/` (an audit directory: `keyward audit verify OUT`);
    /// each segment's body also as `segments/<index>.age` (`age -d -i
    /// auditor.key`).
    Export {
        #[arg(long)]
        out: PathBuf,
        /// Only this source's segments (tiles and checkpoint always).
        #[arg(long)]
        source: Option<String>,
    },
    /// Send stdin's lines to a pipe source (Apache's piped logs); exits 0
    /// only once keywardd has every line on disk.
    Write(crate::logs_write::WriteArgs),
}

#[derive(Args, Clone, Default)]
pub struct ShowArgs {
    /// Only this source.
    #[arg(long)]
    source: Option<String>,
    /// Only lines since: a duration ago (1h, 2d) or a time (2026-12-02T10:00:00Z).
    #[arg(long)]
    since: Option<String>,
    /// Keep showing segments as they are sealed.
    #[arg(long)]
    follow: bool,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

pub fn logs(cfg: &Config, a: &LogsArgs) -> anyhow::Result<()> {
    // A writer is any user (Apache's piped log runs as www-data): it needs
    // keywardd's socket, not the node key.
    if let Some(LogsCmd::Write(w)) = &a.cmd {
        return crate::logs_write::write(cfg, w);
    }
    if !cfg.logs.enabled() {
        bail!("logs are off on this node: [logs] names no auditor in the config");
    }
    let spool = keyward_node::logs::spool::spool_dir(&cfg.logs, &cfg.state_dir);
    let origin = NodeKey::load(&cfg.node_key_path())
        .context("loading the node key (keyward logs runs as root)")?
        .id();
    match &a.cmd {
        None => show(cfg, &spool, &origin, &a.show),
        Some(LogsCmd::Show(s)) => show(cfg, &spool, &origin, s),
        Some(LogsCmd::Verify) => verify(cfg, &spool, &origin),
        Some(LogsCmd::Export { out, source }) => export(&spool, &origin, out, source.as_deref()),
        Some(LogsCmd::Write(w)) => crate::logs_write::write(cfg, w),
    }
}

fn parse_since(s: &str) -> anyhow::Result<u64> {
    let now = SystemTime::now();
    let t = match humantime::parse_duration(s) {
        Ok(d) => now.checked_sub(d).unwrap_or(UNIX_EPOCH),
        Err(_) => humantime::parse_rfc3339_weak(s).map_err(|_| {
            anyhow::anyhow!(
                "--since {s}: give a duration ago (90m, 2d) or a time (2026-12-02T10:00:00Z)"
            )
        })?,
    };
    Ok(t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64)
}

fn show(
    cfg: &Config,
    spool: &Path,
    origin: &keyward_node::identity::NodeId,
    s: &ShowArgs,
) -> anyhow::Result<()> {
    if let Some(src) = &s.source {
        let conf = cfg
            .logs
            .sources
            .iter()
            .find(|x| &x.name == src)
            .map(|x| x.confidential)
            .or((src == &cfg.logs.events_source).then_some(cfg.logs.events_confidential));
        match conf {
            Some(true) => bail!(read::confidential_msg(src)),
            Some(false) => {}
            None => bail!("no source `{src}` in [logs]"),
        }
    }
    let id = admin_key::load(&cfg.state_dir)?;
    let mut filter = Filter {
        source: s.source.clone(),
        since: s.since.as_deref().map(parse_since).transpose()?,
        from_index: 0,
        ..Filter::default()
    };
    let mut reported = 0usize;
    loop {
        let r = read::read(spool, origin, &id, &filter)?;
        for l in &r.lines {
            print_line(l, s.json);
        }
        for f in r.findings.iter().skip(reported) {
            eprintln!("keyward: FINDING: {f}");
        }
        reported = reported.max(r.findings.len());
        if !s.follow {
            return summary(&r);
        }
        filter.from_index = r.size;
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn summary(r: &Reading) -> anyhow::Result<()> {
    if r.confidential > 0 {
        eprintln!(
            "keyward: {} segments of confidential sources not shown (only the auditor's key can read them)",
            r.confidential
        );
    }
    if r.unlogged > 0 {
        eprintln!(
            "keyward: {} segments sealed after the last checkpoint are not shown yet",
            r.unlogged
        );
    }
    if !r.findings.is_empty() {
        bail!(
            "{} findings: the spool was changed on disk; lines of those segments are not shown",
            r.findings.len()
        );
    }
    Ok(())
}

/// One line of `keyward logs --json` and `keyward audit decrypt --format
/// json`: the fields a log shipper or `jq` reads, with the sender's kernel
/// credentials where the source has them.
#[derive(serde::Serialize)]
pub(crate) struct JsonLine<'a> {
    /// The origin's node id (the auditor reads many origins; a node's own
    /// `keyward logs` has one and leaves it out).
    #[serde(skip_serializing_if = "Option::is_none")]
    origin: Option<&'a str>,
    time_ms: u64,
    source: &'a str,
    segment: u64,
    seq: u64,
    pid: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
    msg: &'a str,
}

impl<'a> JsonLine<'a> {
    pub(crate) fn of(origin: Option<&'a str>, l: &'a Shown, msg: &'a str) -> Self {
        let s = &l.line.sender;
        JsonLine {
            origin,
            time_ms: l.line.time,
            source: &l.source,
            segment: l.index,
            seq: l.seq,
            pid: s.pid,
            uid: s.uid,
            gid: s.gid,
            msg,
        }
    }
}

fn print_line(l: &Shown, json: bool) {
    let msg = String::from_utf8_lossy(&l.line.msg);
    let s = &l.line.sender;
    if json {
        let v = JsonLine::of(None, l, &msg);
        match serde_json::to_string(&v) {
            Ok(j) => println!("{j}"),
            Err(e) => eprintln!("keyward: cannot print line as JSON: {e}"),
        }
    } else {
        let t = humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(l.line.time));
        let who = match (s.pid, s.uid) {
            (Some(p), Some(u)) => format!(" [pid {p} uid {u}]"),
            (Some(p), None) => format!(" [pid {p}]"),
            _ => String::new(),
        };
        println!("{t} {}{who} {}", l.source, msg.trim_end());
    }
}

fn verify(
    cfg: &Config,
    spool: &Path,
    origin: &keyward_node::identity::NodeId,
) -> anyhow::Result<()> {
    // Verification needs no identity, but showing readability does not
    // matter here: a confidential segment is checked like any other.
    let id = admin_key::load(&cfg.state_dir).unwrap_or_else(|_| age::x25519::Identity::generate());
    let r = read::read(spool, origin, &id, &Filter::default())?;
    println!(
        "checkpoint: {} segments logged; {} genuine on disk; {} sealed after the checkpoint",
        r.size, r.genuine, r.unlogged
    );
    for f in &r.findings {
        println!("FINDING: {f}");
    }
    if !r.findings.is_empty() {
        bail!("{} findings", r.findings.len());
    }
    println!("ok: every segment on disk is the one the Merkle log holds");
    Ok(())
}

fn export(
    spool: &Path,
    origin: &keyward_node::identity::NodeId,
    out: &Path,
    source: Option<&str>,
) -> anyhow::Result<()> {
    use keyward_node::log::segment::{BodyKind, Segment};
    use keyward_node::log::verify::Finding;
    let r = read::check(spool, origin);
    // Segments sealed after the checkpoint are exported too (the auditor
    // sees them as not yet verifiable); they are no finding on a live node.
    let findings: Vec<String> = match &r {
        Ok(c) => c
            .report
            .findings
            .iter()
            .filter(|f| !matches!(f, Finding::Unlogged { .. }))
            .map(|f| f.to_string())
            .collect(),
        Err(_) => Vec::new(),
    };
    // The per-origin layout of an audit directory, so an export is what
    // `keyward audit verify` reads (docs/design.md, "Audit directory").
    let dest = crate::audit::dir::origin_dir(out, origin);
    std::fs::create_dir_all(dest.join(layout::SEGMENTS))
        .with_context(|| format!("creating {}", dest.display()))?;
    let mut dirs = Default::default();
    if let Some(note) = layout::read_checkpoint(spool)? {
        layout::write_atomic(&dest.join(layout::CHECKPOINT), &note, &mut dirs)?;
    }
    let (tiles, _) = layout::read_tiles(spool)?;
    for (p, b) in &tiles {
        layout::write_atomic(&dest.join(p), b, &mut dirs)?;
    }
    let mut n = 0;
    for i in layout::segment_indexes(spool)? {
        let b = layout::read_bounded(&layout::segment_path(spool, i))?;
        let Ok(seg) = Segment::decode(&b) else {
            eprintln!("keyward: segment {i} does not decode; exported as it is");
            layout::write_atomic(&layout::segment_path(&dest, i), &b, &mut dirs)?;
            continue;
        };
        if source.is_some_and(|s| s != seg.header.source) {
            continue;
        }
        layout::write_atomic(&layout::segment_path(&dest, i), &b, &mut dirs)?;
        let ext = match seg.header.body_kind {
            BodyKind::Age => "age",
            BodyKind::Frames => "frames",
        };
        let body = dest.join(layout::SEGMENTS).join(format!("{i:020}.{ext}"));
        layout::write_atomic(&body, &seg.body, &mut dirs)?;
        n += 1;
    }
    println!(
        "exported {n} segments, {} tiles and the checkpoint to {}",
        tiles.len(),
        dest.display()
    );
    for f in &findings {
        eprintln!("keyward: FINDING: {f}");
    }
    if let Err(e) = r {
        bail!("the spool does not verify: {e:#}");
    }
    if !findings.is_empty() {
        bail!("{} findings", findings.len());
    }
    Ok(())
}
