//! Logs end to end: a real keywardd with log sources on loopback and unix
//! sockets, real syslog clients (`logger`, a private `rsyslogd` forwarding
//! with omrelp), lines read back from the spool with the auditor's key.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use keyward_netns_tests::journald::Journald;
use keyward_netns_tests::mesh::{free_port, Mesh, MeshOptions};
use keyward_netns_tests::rsyslog::{have_rsyslog_relp, send_datagrams, Rsyslogd};
use keyward_netns_tests::spool::{decrypt_source, Durable};
use keyward_netns_tests::syslog_ng::{SyslogNg, Unpacked};
use keyward_netns_tests::{or_skip, report_skip, Skip};

/// One node with `sources` (TOML `[[logs.source]]` tables) sealing every
/// second to a fresh auditor.
fn logging_node(sources: &str) -> (Mesh, age::x25519::Identity) {
    let auditor = age::x25519::Identity::generate();
    let mut m = Mesh::loopback(1, &MeshOptions::default()).unwrap();
    m.append_config(
        0,
        &format!(
            "[logs]\nauditors = [\"{}\"]\nsegment_secs = 1\n\n{sources}",
            auditor.to_public()
        ),
    )
    .unwrap();
    m.init(0, Some("logs")).unwrap();
    m.start(0).unwrap();
    (m, auditor)
}

fn spool(m: &Mesh) -> std::path::PathBuf {
    m.dir(0).join("state/logs")
}

/// Waits until `want` holds of the decrypted lines of `source`.
fn wait_lines(
    m: &Mesh,
    id: &age::x25519::Identity,
    source: &str,
    timeout: Duration,
    want: impl Fn(&[keyward_core::log::line::Line]) -> bool,
) -> Vec<keyward_core::log::line::Line> {
    let mut last = Vec::new();
    let ok = m.wait_for(timeout, || {
        last = decrypt_source(&spool(m), source, id).unwrap_or_default();
        Ok(want(&last))
    });
    if ok.is_err() {
        let shown: Vec<String> = last
            .iter()
            .map(|l| String::from_utf8_lossy(&l.msg).into_owned())
            .collect();
        panic!(
            "source {source}: lines never as expected; have {shown:?}\nkeywardd log:\n{}",
            m.log(0)
        );
    }
    last
}

/// Whether rsyslogd with RELP is here; reports the skip when not.
fn rsyslog_relp_or_skip() -> bool {
    let have = have_rsyslog_relp();
    if !have {
        report_skip(&Skip(
            "rsyslogd with omrelp is not installed (apt install rsyslog rsyslog-relp)".into(),
        ));
    }
    have
}

fn has(lines: &[keyward_core::log::line::Line], text: &str) -> bool {
    lines
        .iter()
        .any(|l| String::from_utf8_lossy(&l.msg).contains(text))
}

/// `logger(1)` over the unix socket, from another user, and over TCP with
/// octet counting; the unix line carries the kernel's pid and uid.
#[test]
fn logger_lines_arrive_with_the_senders_trusted_pid_and_uid() {
    if unsafe { libc::geteuid() } != 0 {
        report_skip(&Skip("needs root to send as another user".into()));
        return;
    }
    let tcp = free_port().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("log");
    let (mut m, auditor) = logging_node(&format!(
        "[[logs.source]]\nname = \"syslog\"\nkind = \"unix\"\npath = \"{}\"\n\n[[logs.source]]\nname = \"tcp\"\nkind = \"tcp\"\nlisten = \"127.0.0.1:{tcp}\"\n",
        sock.display()
    ));
    m.wait_for(Duration::from_secs(10), || Ok(sock.exists()))
        .unwrap();

    // As nobody (65534): the uid in the line is the kernel's, not a claim.
    let child = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "logger",
            "-u",
        ])
        .arg(&sock)
        .args(["-t", "probe", "from nobody over the unix socket"])
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let st = Command::new("logger")
        .args(["--tcp", "--octet-count", "-n", "127.0.0.1", "-P"])
        .arg(tcp.to_string())
        .args(["-t", "probe", "over tcp with octet counting"])
        .status()
        .unwrap();
    assert!(st.success());

    let lines = wait_lines(&m, &auditor, "syslog", Duration::from_secs(20), |l| {
        has(l, "from nobody over the unix socket")
    });
    let l = lines
        .iter()
        .find(|l| String::from_utf8_lossy(&l.msg).contains("from nobody"))
        .unwrap();
    assert_eq!(l.sender.uid, Some(65534), "{l:?}");
    assert_eq!(l.sender.gid, Some(65534), "{l:?}");
    // setpriv execs logger: the kernel's pid is the child's.
    assert_eq!(l.sender.pid, Some(pid), "{l:?}");
    wait_lines(&m, &auditor, "tcp", Duration::from_secs(20), |l| {
        has(l, "over tcp with octet counting")
    });
    m.stop(0).unwrap();
}

fn numbered(i: u64) -> Vec<u8> {
    format!("<13>Dec  2 18:00:00 relpprobe[77]: relp line #{i:09}").into_bytes()
}

fn number_of(msg: &[u8]) -> Option<u64> {
    let s = String::from_utf8_lossy(msg);
    let at = s.find("relp line #")? + 11;
    s.get(at..at + 9)?.parse().ok()
}

/// rsyslogd forwards with omrelp; keywardd is killed with SIGKILL in the
/// middle and restarted. RELP resends what was not acknowledged, so every
/// line must be in the spool afterwards: a line keyward acknowledged but
/// lost would be missing, since rsyslog dropped it from its queue.
#[test]
fn rsyslog_relp_lines_all_survive_a_kill_9_of_keywardd() {
    if !rsyslog_relp_or_skip() {
        return;
    }
    const N: u64 = 20_000;
    let relp = free_port().unwrap();
    let (mut m, auditor) = logging_node(&format!(
        "[[logs.source]]\nname = \"relp\"\nkind = \"relp\"\nlisten = \"127.0.0.1:{relp}\"\n"
    ));
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("client.sock");
    let _client = Rsyslogd::start(
        dir.path(),
        "client",
        &format!(
            "module(load=\"omrelp\")\ninput(type=\"imuxsock\" Socket=\"{s}\" RateLimit.Interval=\"0\")\naction(type=\"omrelp\" target=\"127.0.0.1\" port=\"{relp}\" queue.type=\"LinkedList\" queue.size=\"100000\" action.resumeRetryCount=\"-1\" action.resumeInterval=\"1\")\n",
            s = sock.display()
        ),
    )
    .unwrap();
    let sender = std::thread::spawn({
        let sock = sock.clone();
        move || send_datagrams(&sock, 0..N, numbered)
    });
    // Kill it once some lines are durable and more are in flight.
    let sp = spool(&m);
    let mut durable = Durable::default();
    m.wait_for(Duration::from_secs(60), || {
        Ok(durable.lines(&sp, "relp")? >= N / 4)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", m.log(0)));
    m.kill(0);
    std::thread::sleep(Duration::from_millis(500));
    m.start(0).unwrap();
    sender.join().unwrap().unwrap();

    let lines = wait_lines(&m, &auditor, "relp", Duration::from_secs(120), |l| {
        let got: std::collections::BTreeSet<u64> =
            l.iter().filter_map(|l| number_of(&l.msg)).collect();
        got.len() as u64 == N
    });
    let mut count: BTreeMap<u64, u32> = BTreeMap::new();
    for l in &lines {
        if let Some(i) = number_of(&l.msg) {
            *count.entry(i).or_default() += 1;
        }
    }
    assert_eq!(count.len() as u64, N, "every line is there");
    // RELP is at-least-once: only lines in flight at the kill may repeat.
    let dup: u32 = count.values().map(|c| c - 1).sum();
    assert!(u64::from(dup) <= N / 4, "{dup} duplicates");
    check_spool_verifies(&m, &sp);
    m.stop(0).unwrap();
}

/// `keyward logs verify` finds nothing wrong with a spool that survived a
/// crash.
fn check_spool_verifies(m: &Mesh, _spool: &Path) {
    let o = m.cli(0, &["logs", "verify"]).unwrap();
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The admin's view through the real CLI: `keyward logs` shows a
/// non-confidential source (also as JSON), refuses a confidential one, and
/// once a segment is edited on disk reports it, exits non-zero and no
/// longer shows that segment's lines.
#[test]
fn keyward_logs_shows_open_sources_refuses_confidential_ones_and_reports_edits() {
    let open = free_port().unwrap();
    let secret = free_port().unwrap();
    let (mut m, _auditor) = logging_node(&format!(
        "[[logs.source]]\nname = \"open\"\nkind = \"tcp\"\nlisten = \"127.0.0.1:{open}\"\nconfidential = false\n\n[[logs.source]]\nname = \"secret\"\nkind = \"tcp\"\nlisten = \"127.0.0.1:{secret}\"\n"
    ));
    let send = |port: u16, msg: &str| {
        m.wait_for(Duration::from_secs(10), || {
            Ok(Command::new("logger")
                .args(["--tcp", "--octet-count", "-n", "127.0.0.1", "-P"])
                .arg(port.to_string())
                .args(["-t", "probe", msg])
                .status()?
                .success())
        })
        .unwrap();
    };
    send(open, "an open line for the admin");
    send(secret, "a secret line for the auditor only");
    let shown = |m: &Mesh, args: &[&str]| {
        let o = m.cli(0, args).unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    m.wait_for(Duration::from_secs(30), || {
        let (ok, out, _) = shown(&m, &["logs", "--source", "open"]);
        Ok(ok && out.contains("an open line for the admin"))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", m.log(0)));

    let (ok, out, err) = shown(&m, &["logs", "--source", "open", "--json"]);
    assert!(ok, "{err}");
    let line: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert!(line.is_object(), "{out}");
    assert!(out.contains("an open line for the admin"), "{out}");

    let (ok, out, err) = shown(&m, &["logs", "--source", "secret"]);
    assert!(!ok, "a confidential source was shown: {out}");
    assert!(!out.contains("a secret line"), "{out}");
    assert!(err.contains("confidential"), "{err}");
    let (_, out, _) = shown(&m, &["logs"]);
    assert!(!out.contains("a secret line"), "{out}");

    // Edit one byte near the end (the encrypted body) of the open
    // source's segment.
    m.stop(0).unwrap();
    let segs = spool(&m).join("segments");
    let mut edited = None;
    for e in std::fs::read_dir(&segs).unwrap() {
        let p = e.unwrap().path();
        let bytes = std::fs::read(&p).unwrap();
        let seg = keyward_core::log::segment::Segment::decode(&bytes).unwrap();
        if seg.header.source == "open" {
            let mut b = bytes;
            let n = b.len();
            b[n - 20] ^= 1;
            std::fs::write(&p, &b).unwrap();
            edited = Some(p);
            break;
        }
    }
    let edited = edited.expect("a sealed segment of the open source");
    let index: u64 = edited
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let (ok, out, err) = shown(&m, &["logs", "--source", "open"]);
    assert!(!ok, "an edited spool was shown as fine:\n{out}{err}");
    assert!(
        err.contains(&format!("segment {index} was edited")),
        "{err}"
    );
    assert!(!out.contains("an open line for the admin"), "{out}");
    let (ok, out, _) = shown(&m, &["logs", "verify"]);
    assert!(!ok);
    assert!(
        out.contains(&format!("segment {index} was edited")),
        "{out}"
    );
}

/// The fenced block of docs/logs.md that contains `needle`.
fn doc_block(needle: &str) -> String {
    let doc = include_str!("../../docs/logs.md");
    let mut blocks = doc.split("```").skip(1).step_by(2);
    blocks
        .find(|b| b.contains(needle))
        .unwrap_or_else(|| panic!("docs/logs.md has no block with {needle}"))
        .split_once('\n')
        .map(|(_lang, body)| body.to_string())
        .unwrap()
}

/// The rsyslog snippets of docs/logs.md, as written there (only the port
/// and socket path point at this test's node), forward lines into keyward:
/// omrelp with acknowledgements, omuxsock without.
#[test]
fn the_rsyslog_snippets_of_the_docs_forward_to_keyward() {
    if !rsyslog_relp_or_skip() {
        return;
    }
    let relp = free_port().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ux = dir.path().join("keyward.sock");
    let (m, auditor) = logging_node(&format!(
        "[[logs.source]]\nname = \"relp\"\nkind = \"relp\"\nlisten = \"127.0.0.1:{relp}\"\n\n[[logs.source]]\nname = \"ux\"\nkind = \"unix\"\npath = \"{}\"\n",
        ux.display()
    ));
    m.wait_for(Duration::from_secs(10), || Ok(ux.exists()))
        .unwrap();
    for (name, needle, from, to) in [
        (
            "relp",
            "omrelp",
            "port=\"2514\"",
            format!("port=\"{relp}\""),
        ),
        (
            "ux",
            "omuxsock",
            "/run/keyward/log",
            ux.display().to_string(),
        ),
    ] {
        let snippet = doc_block(needle);
        assert!(snippet.contains(from), "{snippet}");
        let input = dir.path().join(format!("{name}.in"));
        let _r = Rsyslogd::start(
            dir.path(),
            name,
            &format!(
                "input(type=\"imuxsock\" Socket=\"{}\")\n{}",
                input.display(),
                snippet.replace(from, &to)
            ),
        )
        .unwrap();
        let text = format!("through the {needle} snippet of docs/logs.md");
        send_datagrams(&input, 0..1, |_| format!("<13>probe: {text}").into_bytes()).unwrap();
        wait_lines(&m, &auditor, name, Duration::from_secs(30), |l| {
            has(l, &text)
        });
    }
}

/// The syslog-ng snippet of docs/logs.md, as written there (only the socket
/// path points at this test's node, and a `s_src` source is defined),
/// forwards lines into keyward through a real syslog-ng.
#[test]
fn the_syslog_ng_snippet_of_the_docs_forwards_to_keyward() {
    let ng = or_skip!(Unpacked::find());
    let dir = tempfile::tempdir().unwrap();
    let ux = dir.path().join("keyward.sock");
    let (m, auditor) = logging_node(&format!(
        "[[logs.source]]\nname = \"ux\"\nkind = \"unix\"\npath = \"{}\"\n",
        ux.display()
    ));
    m.wait_for(Duration::from_secs(10), || Ok(ux.exists()))
        .unwrap();
    let snippet = doc_block("unix-dgram");
    let from = "/run/keyward/log";
    assert!(snippet.contains(from), "{snippet}");
    let input = dir.path().join("ng.in");
    let _ng = SyslogNg::start(
        &ng,
        dir.path(),
        "ng",
        &format!(
            "source s_src {{ unix-dgram(\"{}\"); }};\n{}",
            input.display(),
            snippet.replace(from, &ux.display().to_string())
        ),
    )
    .unwrap();
    let text = "through the syslog-ng snippet of docs/logs.md";
    if let Err(e) = send_datagrams(&input, 0..1, |_| format!("<13>probe: {text}").into_bytes()) {
        panic!("{e:#}\nsyslog-ng: {}", SyslogNg::stderr(dir.path(), "ng"));
    }
    wait_lines(&m, &auditor, "ux", Duration::from_secs(30), |l| {
        has(l, text)
    });
}

/// journald with `ForwardToSyslog=yes` (section 5 of docs/logs.md) and the
/// doc's `[[logs.source]]` on journald's syslog socket: a line a process of
/// another user logs to journald reaches keyward with that process's uid,
/// which journald passes on from the kernel.
#[test]
fn journald_forwards_to_the_socket_of_the_docs() {
    let doc = include_str!("../../docs/logs.md");
    assert!(
        doc.contains("`ForwardToSyslog=yes`"),
        "docs/logs.md changed"
    );
    let dir = tempfile::tempdir().unwrap();
    let jdir = dir.path().join("journal");
    std::fs::create_dir(&jdir).unwrap();
    let from = "/run/systemd/journal/syslog";
    let snippet = doc_block(from);
    let (m, auditor) =
        logging_node(&snippet.replace(from, &jdir.join("syslog").display().to_string()));
    m.wait_for(Duration::from_secs(10), || Ok(jdir.join("syslog").exists()))
        .unwrap();
    let j = or_skip!(Journald::start(
        &jdir,
        "[Journal]\nStorage=volatile\nForwardToSyslog=yes\nReadKMSG=no\nAudit=no\n",
    ));
    if m.wait_for(Duration::from_secs(10), || Ok(j.dev_log().exists()))
        .is_err()
    {
        panic!("journald never made its sockets: {}", j.stderr());
    }
    let child = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "logger",
            "-u",
        ])
        .arg(j.dev_log())
        .args(["-t", "probe", "through journald from nobody"])
        .spawn()
        .unwrap();
    let pid = child.id();
    assert!(child.wait_with_output().unwrap().status.success());
    let lines = wait_lines(&m, &auditor, "journal", Duration::from_secs(30), |l| {
        has(l, "through journald from nobody")
    });
    let l = lines
        .iter()
        .find(|l| String::from_utf8_lossy(&l.msg).contains("through journald"))
        .unwrap();
    assert_eq!(l.sender.uid, Some(65534), "{l:?}");
    // When logger has exited before journald forwards, the kernel will not
    // let journald claim its pid, and journald sends its own instead.
    assert!(
        l.sender.pid == Some(pid) || l.sender.pid == Some(j.pid()),
        "{l:?}: neither logger ({pid}) nor journald ({})",
        j.pid()
    );
}

/// Logs part 2 on real daemons: three nodes form a mesh; lines sent with
/// `logger` to one origin end up in both other nodes' replicas of its log
/// (`replicas/<origin>/`, the spool's layout), decrypted there with the
/// auditor's key, and both witnesses cosigned its checkpoint.
/// Node 0 logs a unix socket source at `sock` for `auditor`, sealing and
/// checkpointing every second, witnessed every `witness_secs`.
fn log_to_unix_socket(m: &Mesh, auditor: &age::x25519::Identity, sock: &Path, witness_secs: u64) {
    m.append_config(
        0,
        &format!(
            "[logs]\nauditors = [\"{}\"]\nsegment_secs = 1\ncheckpoint_secs = 1\nwitness_secs = {witness_secs}\n\n[[logs.source]]\nname = \"syslog\"\nkind = \"unix\"\npath = \"{}\"\n",
            auditor.to_public(),
            sock.display()
        ),
    )
    .unwrap();
}

#[test]
fn lines_sent_to_one_origin_end_up_on_two_replicas_disks() {
    let auditor = age::x25519::Identity::generate();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("log");
    let mut m = Mesh::loopback(3, &MeshOptions::default()).unwrap();
    log_to_unix_socket(&m, &auditor, &sock, 2);
    m.form().unwrap();
    m.wait_for(Duration::from_secs(10), || Ok(sock.exists()))
        .unwrap();
    let origin = m.status(0).unwrap().node.id;
    for i in 0..5 {
        let st = Command::new("logger")
            .arg("-u")
            .arg(&sock)
            .args(["-t", "probe", &format!("replicated line {i}")])
            .status()
            .unwrap();
        assert!(st.success());
    }
    for j in [1, 2] {
        let replica = m.dir(j).join("state/logs/replicas").join(&origin);
        let ok = m.wait_for(Duration::from_secs(60), || {
            let lines = decrypt_source(&replica, "syslog", &auditor).unwrap_or_default();
            Ok((0..5).all(|i| has(&lines, &format!("replicated line {i}"))))
        });
        if ok.is_err() {
            panic!(
                "node {j} never held the lines in {}\norigin's log:\n{}\nnode {j}'s log:\n{}",
                replica.display(),
                m.log(0),
                m.log(j)
            );
        }
        assert!(replica.join("checkpoint").exists());
    }
    // both replicas witnessed the origin's checkpoint
    let cosigned = spool(&m).join("cosigned");
    m.wait_for(Duration::from_secs(30), || {
        Ok(std::fs::read_dir(&cosigned).map_or(0, |d| d.count()) == 2)
    })
    .unwrap_or_else(|_| panic!("no cosignatures in {}:\n{}", cosigned.display(), m.log(0)));
    for j in [1, 2] {
        assert!(
            m.dir(j).join("state/logs/witness/index").exists(),
            "node {j} kept its witness state"
        );
    }
    // `keyward status` says the same: at the origin, both replicas hold
    // the whole log and cosigned it; at each replica, the origin's log
    m.wait_for(Duration::from_secs(30), || {
        let r = m
            .status(0)?
            .replication
            .ok_or_else(|| anyhow::anyhow!("no replication status"))?;
        Ok(r.size > 0
            && r.replicated == r.size
            && r.replicas.len() == 2
            && r.replicas
                .iter()
                .all(|p| p.cosigned.is_some() && p.cosigned_ms_ago.is_some()))
    })
    .unwrap_or_else(|_| panic!("origin's status: {:?}", m.status(0).map(|s| s.replication)));
    for j in [1, 2] {
        let r = m.status(j).unwrap().replication.unwrap();
        let k = r
            .kept
            .iter()
            .find(|k| k.origin == origin)
            .unwrap_or_else(|| panic!("node {j}: {r:?}"));
        assert!(k.held > 0 && k.witnessed.is_some(), "node {j}: {k:?}");
    }
    for i in 0..3 {
        m.stop(i).unwrap();
    }
}

/// The headline of logs part 2: five real keywardd (four guardians, one
/// auditor member). Lines stream into the origin over RELP with `ack =
/// "replicated"`; the origin is killed with SIGKILL mid-stream and its
/// whole state directory deleted, as if the host were destroyed. The
/// auditor's `keyward audit fetch` takes the origin's log from the
/// survivors, `keyward audit verify` finds it clean, and `keyward audit
/// decrypt` with the auditor's key shows every line keyward acknowledged,
/// exactly once.
#[test]
fn a_destroyed_origins_acknowledged_lines_are_fetched_from_its_replicas_exactly_once() {
    use keyward_netns_tests::relp::RelpClient;
    const AUD: usize = 4;
    let dir = tempfile::tempdir().unwrap();
    let mut m = Mesh::loopback(5, &MeshOptions::default()).unwrap();
    let key = dir.path().join("auditor.key");
    let recipient = m.auditor_keygen(AUD, &key).unwrap();
    let relp = free_port().unwrap();
    m.append_config(
        0,
        &format!(
            "[logs]\nauditors = [\"{recipient}\"]\nsegment_secs = 1\ncheckpoint_secs = 1\nwitness_secs = 2\nack = \"replicated\"\n\n[[logs.source]]\nname = \"relp\"\nkind = \"relp\"\nlisten = \"127.0.0.1:{relp}\"\n"
        ),
    )
    .unwrap();
    m.init(0, Some("test")).unwrap();
    for i in 1..5 {
        m.init(i, None).unwrap();
    }
    for i in 0..5 {
        m.start(i).unwrap();
    }
    for i in 1..4 {
        m.join(i, 0).unwrap();
    }
    m.join_as_auditor(AUD, 0).unwrap();
    m.converge(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}\n{}", m.log(0)));
    let origin = m.status(0).unwrap().node.id;

    // stream until a good part is acknowledged, then destroy the origin
    // while lines are still in flight
    let mut client = None;
    m.wait_for(Duration::from_secs(20), || {
        client = RelpClient::connect(&format!("127.0.0.1:{relp}")).ok();
        Ok(client.is_some())
    })
    .unwrap_or_else(|_| panic!("RELP source never listened:\n{}", m.log(0)));
    let mut client = client.unwrap();
    let mut killed = false;
    let mut sent = 0u64;
    for i in 0..20_000u64 {
        if client.send(i, &numbered(i)).is_err() {
            break;
        }
        sent += 1;
        if i % 50 == 49 {
            std::thread::sleep(Duration::from_millis(20));
        }
        if !killed && client.acked_count() >= 1500 {
            m.kill(0);
            killed = true;
        }
    }
    assert!(
        killed,
        "only {} of {sent} lines were acknowledged as replicated:\n{}",
        client.acked_count(),
        m.log(0)
    );
    let acked = client.finish(Duration::from_secs(2));
    assert!(acked.len() >= 1500, "{} acked", acked.len());
    std::fs::remove_dir_all(m.dir(0).join("state")).unwrap();

    // the auditor fetches from the survivors, verifies, decrypts
    let audit = dir.path().join("audit");
    let a = audit.to_str().unwrap();
    let o = m.cli(AUD, &["audit", "fetch", "--out", a]).unwrap();
    let fetched = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "fetch: {fetched}");
    assert!(fetched.contains(&origin), "{fetched}");
    let v = m.cli(AUD, &["audit", "verify", a]).unwrap();
    let verified = String::from_utf8_lossy(&v.stdout).into_owned();
    assert!(
        v.status.success(),
        "verify: {verified}{}",
        String::from_utf8_lossy(&v.stderr)
    );
    assert!(verified.contains("ok: every origin verifies"), "{verified}");
    // the survivors witnessed the log: their cosignatures came with it,
    // on its last checkpoint or on an earlier one it extends
    #[derive(serde::Deserialize)]
    struct Report {
        origins: Vec<OriginReport>,
    }
    #[derive(serde::Deserialize)]
    struct OriginReport {
        cosigned_by: Vec<String>,
        cosigned_earlier: Vec<String>,
    }
    let j = m.cli(AUD, &["audit", "verify", a, "--json"]).unwrap();
    let r: Report = serde_json::from_slice(&j.stdout).unwrap();
    assert!(
        r.origins
            .iter()
            .all(|o| !o.cosigned_by.is_empty() || !o.cosigned_earlier.is_empty()),
        "no cosignature came with the log: {verified}"
    );
    let d = m
        .cli(
            AUD,
            &[
                "audit",
                "decrypt",
                a,
                "-i",
                key.to_str().unwrap(),
                "--origin",
                &origin,
            ],
        )
        .unwrap();
    assert!(
        d.status.success(),
        "decrypt: {}",
        String::from_utf8_lossy(&d.stderr)
    );
    let mut count: BTreeMap<u64, u32> = BTreeMap::new();
    for l in String::from_utf8_lossy(&d.stdout).lines() {
        if let Some(n) = number_of(l.as_bytes()) {
            *count.entry(n).or_default() += 1;
        }
    }
    let lost: Vec<u64> = acked
        .iter()
        .filter(|n| !count.contains_key(n))
        .copied()
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged lines are not in the replicas' copy: {:?}...",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(10)]
    );
    let twice: Vec<_> = count.iter().filter(|(_, c)| **c > 1).collect();
    assert!(twice.is_empty(), "lines more than once: {twice:?}");
    println!(
        "  {} lines sent, {} acknowledged, {} in the fetched log",
        sent,
        acked.len(),
        count.len()
    );
    for i in 1..5 {
        m.stop(i).unwrap();
    }
}

/// An origin whose logging stopped while it stays up (an intruder cut
/// its syslog feed) is reported silent by its replicas in `keyward
/// status`; it grows again, and no new alert comes.
#[test]
fn an_origin_that_stops_logging_while_up_is_reported_silent_by_its_replicas() {
    let auditor = age::x25519::Identity::generate();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("log");
    let mut m = Mesh::loopback(3, &MeshOptions::default()).unwrap();
    log_to_unix_socket(&m, &auditor, &sock, 1);
    for j in [1, 2] {
        m.append_config(j, "[logs]\nsilence_secs = 6\n").unwrap();
    }
    m.form().unwrap();
    m.wait_for(Duration::from_secs(10), || Ok(sock.exists()))
        .unwrap();
    let origin = m.status(0).unwrap().node.id;
    let log = |text: &str| {
        let st = Command::new("logger")
            .arg("-u")
            .arg(&sock)
            .args(["-t", "probe", text])
            .status()
            .unwrap();
        assert!(st.success());
    };
    let silent = |j: usize| -> usize {
        m.status(j)
            .map(|s| {
                s.alerts
                    .iter()
                    .filter(|a| a.text.contains(&origin) && a.text.contains("silent"))
                    .count()
            })
            .unwrap_or(0)
    };
    // lines keep coming: not silent
    for i in 0..8 {
        log(&format!("busy line {i}"));
        std::thread::sleep(Duration::from_millis(700));
    }
    assert_eq!((silent(1), silent(2)), (0, 0), "it was logging");
    // the feed stops; the origin stays up
    m.wait_for(Duration::from_secs(40), || {
        Ok(silent(1) == 1 && silent(2) == 1)
    })
    .unwrap_or_else(|_| {
        panic!(
            "no silence alert:\nnode 1:\n{}\nnode 2:\n{}",
            m.log(1),
            m.log(2)
        )
    });
    assert!(m.status(0).unwrap().node.active);
    // logging again ends it; no second alert for the same silence
    log("back");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!((silent(1), silent(2)), (1, 1));
    for i in 0..3 {
        m.stop(i).unwrap();
    }
}
