//! The listeners against real clients (`logger`, `rsyslogd`, files, the
//! pipe client), real sockets and tempdirs. A task here stands in for the
//! spool: it owns the inbox's receiving end and acks (or refuses) batches.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use keyward_core::log::line::{Line, MAX_MSG};
use tokio::sync::mpsc;

use super::*;
use crate::logs::{Batch, Refused};

/// The stand-in spool: every line received, in order.
struct Spool {
    lines: mpsc::UnboundedReceiver<Line>,
}

/// An inbox whose batches are answered with `verdict` (after `delay`).
fn test_spool(verdict: Result<(), Refused>, delay: Duration) -> (Inbox, Spool) {
    let (tx, mut rx) = mpsc::channel::<Batch>(crate::logs::INBOX_BATCHES);
    let (ltx, lrx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(b) = rx.recv().await {
            if verdict.is_ok() {
                for l in b.lines {
                    let _ = ltx.send(l);
                }
            }
            if let Some(ack) = b.ack {
                let v = verdict.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = ack.send(v);
                });
            }
        }
    });
    (tx, Spool { lines: lrx })
}

impl Spool {
    /// The next `n` lines, failing after 20 s.
    async fn take(&mut self, n: usize) -> Vec<Line> {
        let mut v = Vec::new();
        while v.len() < n {
            match tokio::time::timeout(Duration::from_secs(20), self.lines.recv()).await {
                Ok(Some(l)) => v.push(l),
                _ => panic!("got {} of {n} lines: {:?}", v.len(), texts(&v)),
            }
        }
        v
    }

    /// Asserts no further line arrives within `ms`.
    async fn quiet(&mut self, ms: u64) {
        if let Ok(Some(l)) =
            tokio::time::timeout(Duration::from_millis(ms), self.lines.recv()).await
        {
            panic!("unexpected line {:?}", String::from_utf8_lossy(&l.msg));
        }
    }
}

/// Asserts a source's address can be bound again once its task was
/// aborted (the task closed its socket). Within 1 s, not at once: a
/// test running beside this one that starts a process (logger,
/// rsyslogd) forks with every descriptor of this process, ours among
/// them, and the copy lives until the child execs (under load, up to
/// some 10 ms here); `bind` finds the address taken meanwhile.
fn bound_again<T>(bind: impl Fn() -> Result<T, String>) {
    let t = std::time::Instant::now();
    loop {
        match bind() {
            Ok(_) => return,
            Err(e) if t.elapsed() > Duration::from_secs(1) => panic!("{e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn texts(v: &[Line]) -> Vec<String> {
    v.iter()
        .map(|l| String::from_utf8_lossy(&l.msg).into_owned())
        .collect()
}

fn uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

fn is_root() -> bool {
    uid() == 0
}

/// A tempdir others can enter (for a client running as nobody).
fn open_tempdir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

fn run(cmd: &mut Command) -> u32 {
    let child = cmd
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {out:?}");
    pid
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logger_over_the_unix_socket_with_kernel_credentials() {
    let dir = open_tempdir();
    let path = dir.path().join("log");
    let sock = unix::bind(&path).unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o666
    );
    let (inbox, mut spool) = test_spool(Ok(()), Duration::ZERO);
    let task = tokio::spawn(unix::run("syslog".into(), sock, inbox));

    let pid = run(Command::new("logger")
        .args(["-d", "--socket-errors=on", "-u"])
        .arg(&path)
        .args(["-t", "kwtest", "hello from root"]));
    let l = &spool.take(1).await[0];
    let text = String::from_utf8_lossy(&l.msg);
    assert!(
        text.starts_with('<') && text.ends_with("kwtest: hello from root"),
        "{text}"
    );
    let parsed = keyward_core::log::ingest::syslog::parse(&l.msg).unwrap();
    assert_eq!(parsed.app, Some(&b"kwtest"[..]));
    assert_eq!(l.sender.pid, Some(pid));
    assert_eq!(l.sender.uid, Some(uid()));
    assert!(l.time > 1_700_000_000_000);

    if is_root() {
        // another user: the kernel says who, whatever the message claims
        let pid = run(Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "logger",
                "-d",
                "--socket-errors=on",
                "-u",
            ])
            .arg(&path)
            .args(["-t", "root", "I am root, honest"]));
        let l = &spool.take(1).await[0];
        assert!(String::from_utf8_lossy(&l.msg).ends_with("root: I am root, honest"));
        assert_eq!(
            (l.sender.pid, l.sender.uid, l.sender.gid),
            (Some(pid), Some(65534), Some(65534))
        );
    } else {
        eprintln!("not root: the other-user part is skipped");
    }

    // a live socket is not taken over, a non-socket is not replaced
    let e = unix::bind(&path).unwrap_err();
    assert!(
        e.contains("address in use") && e.contains("/run/keyward/log"),
        "{e}"
    );
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    assert!(unix::bind(&file).unwrap_err().contains("not a socket"));
    task.abort();
    let _ = task.await;
    // once its task is gone, the socket file left behind is stale: bound over
    bound_again(|| unix::bind(&path));
}

/// A burst larger than one `recvmmsg` call and than the kernel's queue
/// (the sender blocks while it is full), with empty and oversized
/// datagrams among the lines: every line arrives once, in order, cut at
/// the line limit, each with its sender's credentials; empty ones are
/// dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_datagrams_arrives_whole_and_in_order() {
    const N: usize = 5_000;
    let dir = open_tempdir();
    let path = dir.path().join("log");
    let sock = unix::bind(&path).unwrap();
    let (inbox, mut spool) = test_spool(Ok(()), Duration::ZERO);
    let task = tokio::spawn(unix::run("burst".into(), sock, inbox));
    let to = path.clone();
    let sender = std::thread::spawn(move || {
        let s = std::os::unix::net::UnixDatagram::unbound().unwrap();
        s.connect(&to).unwrap();
        for i in 0..N {
            if i % 1000 == 7 {
                s.send(b"").unwrap();
            }
            if i == 2_500 {
                let mut big = format!("line {i} ").into_bytes();
                big.resize(MAX_MSG + 1000, b'y');
                s.send(&big).unwrap();
            } else {
                s.send(format!("line {i}").as_bytes()).unwrap();
            }
        }
    });
    let got = spool.take(N).await;
    sender.join().unwrap();
    for (i, l) in got.iter().enumerate() {
        assert!(l.msg.starts_with(format!("line {i}").as_bytes()), "{i}");
        assert_eq!(l.sender.pid, Some(std::process::id()), "{i}");
        assert_eq!(l.sender.uid, Some(uid()), "{i}");
    }
    assert_eq!(got[2_500].msg.len(), MAX_MSG, "cut at the line limit");
    assert_eq!(&got[2_501].msg[..], b"line 2501");
    spool.quiet(300).await;
    task.abort();
    let _ = task.await;
    bound_again(|| unix::bind(&path));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logger_over_tcp_and_udp() {
    let (inbox, mut spool) = test_spool(Ok(()), Duration::ZERO);
    let l = tcp::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = l.local_addr().unwrap().port().to_string();
    let t1 = tokio::spawn(tcp::run("tcp".into(), l, inbox.clone()));
    run(Command::new("logger").args([
        "--tcp",
        "--octet-count",
        "-n",
        "127.0.0.1",
        "-P",
        &port,
        "-t",
        "kwtcp",
        "octet counted",
    ]));
    run(Command::new("logger").args([
        "--tcp",
        "-n",
        "127.0.0.1",
        "-P",
        &port,
        "--rfc3164",
        "-t",
        "kwtcp",
        "lf framed",
    ]));
    // two connections, each read by its own task: in either order
    let mut got = texts(&spool.take(2).await);
    got.sort_by_key(|l| !l.starts_with("<13>1 "));
    assert!(
        got[0].starts_with("<13>1 ") && got[0].ends_with("] octet counted"),
        "{got:?}"
    );
    let m = keyward_core::log::ingest::syslog::parse(got[0].as_bytes()).unwrap();
    assert_eq!(m.app, Some(&b"kwtcp"[..]));
    assert!(got[1].ends_with("kwtcp: lf framed"), "{got:?}");

    let u = udp::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = u.local_addr().unwrap().port().to_string();
    let t2 = tokio::spawn(udp::run("udp".into(), u, inbox));
    run(Command::new("logger").args([
        "-d",
        "-n",
        "127.0.0.1",
        "-P",
        &port,
        "-t",
        "kwudp",
        "datagram",
    ]));
    let l = &spool.take(1).await[0];
    assert!(String::from_utf8_lossy(&l.msg).ends_with("datagram"));
    assert_eq!(l.sender, keyward_core::log::line::Sender::default());
    t1.abort();
    t2.abort();
}

/// UDP datagrams in bursts of two `recvmmsg` calls' worth (paced, since
/// UDP drops what the kernel's queue cannot hold), empty ones among
/// them: every line arrives once, in order, with no trusted sender; once
/// the task is aborted its port can be bound again ([`bound_again`]).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_bursts_arrive_whole_and_in_order() {
    const ROUND: usize = 2 * datagram::RECV_AT_ONCE;
    let (inbox, mut spool) = test_spool(Ok(()), Duration::ZERO);
    let u = udp::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = u.local_addr().unwrap();
    let task = tokio::spawn(udp::run("udp".into(), u, inbox));
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for round in 0..20 {
        for i in 0..ROUND {
            if i == 5 {
                s.send_to(b"", addr).unwrap();
            }
            s.send_to(format!("line {round}.{i}").as_bytes(), addr)
                .unwrap();
        }
        let got = spool.take(ROUND).await;
        for (i, l) in got.iter().enumerate() {
            assert_eq!(l.msg, format!("line {round}.{i}").into_bytes());
            assert_eq!(l.sender, keyward_core::log::line::Sender::default());
        }
    }
    spool.quiet(300).await;
    task.abort();
    let _ = task.await;
    bound_again(|| udp::bind(addr));
}

/// rsyslogd killed when the test ends, pass or fail.
struct Rsyslogd(Child);

impl Drop for Rsyslogd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsyslog_omrelp_gets_every_line_acked() {
    if Command::new("rsyslogd").arg("-v").output().is_err()
        || !Path::new("/usr/lib/x86_64-linux-gnu/rsyslog/omrelp.so").exists()
            && !Path::new("/usr/lib/rsyslog/omrelp.so").exists()
    {
        eprintln!("rsyslogd or rsyslog-relp missing: skipped (apt install rsyslog rsyslog-relp)");
        return;
    }
    let dir = open_tempdir();
    // the spool acks each batch after 30 ms, as a group commit would
    let (inbox, mut spool) = test_spool(Ok(()), Duration::from_millis(30));
    let l = tcp::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = l.local_addr().unwrap().port();
    let task = tokio::spawn(relp::run("relp".into(), l, inbox));

    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let insock = dir.path().join("in.sock");
    let conf = dir.path().join("rsyslog.conf");
    std::fs::write(
        &conf,
        format!(
            r#"global(workDirectory="{work}")
module(load="imuxsock" SysSock.Use="off")
module(load="omrelp")
input(type="imuxsock" Socket="{insock}" RateLimit.Interval="0")
if $programname == "kwrelp" then {{
    action(type="omrelp" target="127.0.0.1" port="{port}")
}}
"#,
            work = work.display(),
            insock = insock.display()
        ),
    )
    .unwrap();
    let child = Command::new("rsyslogd")
        .arg("-n")
        .arg("-f")
        .arg(&conf)
        .arg("-i")
        .arg(dir.path().join("rsyslogd.pid"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut rsyslogd = Rsyslogd(child);
    for _ in 0..100 {
        if insock.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        insock.exists(),
        "rsyslogd did not create {}",
        insock.display()
    );

    const N: usize = 300;
    let input: String = (0..N).map(|i| format!("relp line {i:04}\n")).collect();
    let lines_file = dir.path().join("lines");
    std::fs::write(&lines_file, input).unwrap();
    run(Command::new("logger")
        .arg("-u")
        .arg(&insock)
        .args(["-d", "--socket-errors=on", "-t", "kwrelp", "-f"])
        .arg(&lines_file));
    let got = texts(&spool.take(N).await);
    for (i, g) in got.iter().enumerate() {
        assert!(
            g.ends_with(&format!("kwrelp: relp line {i:04}")),
            "line {i}: {g}"
        );
    }
    // every line was acked: rsyslog resends nothing
    spool.quiet(1500).await;
    // rsyslogd ends its session (close) on SIGTERM and exits cleanly
    run(Command::new("kill").args(["-TERM", &rsyslogd.0.id().to_string()]));
    let mut exited = false;
    for _ in 0..100 {
        if rsyslogd.0.try_wait().unwrap().is_some() {
            exited = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(exited, "rsyslogd did not exit on SIGTERM");
    spool.quiet(200).await;
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relp_answers_refusals_with_500() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (inbox, _spool) = test_spool(Err(Refused::Full), Duration::ZERO);
    let l = tcp::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(relp::run("relp".into(), l, inbox));
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.write_all(b"1 open 30 relp_version=0\ncommands=syslog\n2 syslog 5 <1>hi\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&got).contains("2 rsp") {
        let n = tokio::time::timeout(Duration::from_secs(10), c.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("1 rsp ") && text.contains("200 OK\nrelp_version=0"),
        "{text}"
    );
    assert!(
        text.contains("2 rsp ") && text.contains(" 500 the log spool is full"),
        "{text}"
    );
    task.abort();
}

/// Waits until the saved position of `source` is `offset`.
async fn saved_offset(spool_dir: &Path, source: &str, offset: u64) {
    let f = spool_dir.join("tail").join(source);
    for _ in 0..200 {
        if let Ok(b) = std::fs::read(&f) {
            if keyward_core::log::ingest::tail::TailPos::decode(&b)
                .is_ok_and(|p| p.offset == offset)
            {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("position of {source} never reached {offset}");
}

fn append(p: &Path, s: &str) -> u64 {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(p)
        .unwrap();
    f.write_all(s.as_bytes()).unwrap();
    f.metadata().unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_tail_rotation_truncation_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    let log = dir.path().join("app.log");
    let (inbox, mut spool) = test_spool(Ok(()), Duration::from_millis(10));
    append(&log, "old 1\nold 2\n");
    let start =
        |inbox: Inbox| tokio::spawn(tail::Tail::new("app", &log, &spool_dir).unwrap().run(inbox));
    let mut task = start(inbox.clone());
    assert_eq!(texts(&spool.take(2).await), ["old 1", "old 2"]);

    // a partial line waits for its LF
    append(&log, "part");
    spool.quiet(600).await;
    append(&log, "ial\nnext\n");
    assert_eq!(texts(&spool.take(2).await), ["partial", "next"]);

    // logrotate `create`: rename, the writer's last line into the old
    // file, then the new file
    let rotated = dir.path().join("app.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    append(&rotated, "late into the old file\n");
    append(&log, "new 1\n");
    assert_eq!(
        texts(&spool.take(2).await),
        ["late into the old file", "new 1"]
    );

    // copytruncate: the file shrinks, read again from 0
    append(&log, "new 2 with a long tail to be truncated away\n");
    assert_eq!(
        texts(&spool.take(1).await),
        ["new 2 with a long tail to be truncated away"]
    );
    std::fs::File::options()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    let end = append(&log, "after truncate\n");
    assert_eq!(texts(&spool.take(1).await), ["after truncate"]);

    // restart: resumes past the last acked line, no loss, no duplicate
    saved_offset(&spool_dir, "app", end).await;
    task.abort();
    let _ = task.await;
    append(&log, "while down 1\n");
    task = start(inbox.clone());
    assert_eq!(texts(&spool.take(1).await), ["while down 1"]);
    spool.quiet(600).await;

    // rotated while down: the rest of the rotated copy, then the new file
    let end = std::fs::metadata(&log).unwrap().len();
    saved_offset(&spool_dir, "app", end).await;
    task.abort();
    let _ = task.await;
    append(&log, "while down 2\n");
    std::fs::rename(&log, dir.path().join("app.log.2")).unwrap();
    append(&log, "fresh\n");
    task = start(inbox);
    assert_eq!(texts(&spool.take(2).await), ["while down 2", "fresh"]);
    spool.quiet(600).await;
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipe_writes_are_acked_with_the_writers_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("run").join("logs.sock");
    let (inbox, mut spool) = test_spool(Ok(()), Duration::from_millis(20));
    let l = pipe::bind(&sock).unwrap();
    assert_eq!(
        std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let task = tokio::spawn(pipe::run(l, vec!["apache".into(), "app2".into()], inbox));

    let input = b"GET / 200\nGET /x 404\nno newline at the end".to_vec();
    let n = pipe::write(&sock, "apache", &input[..]).await.unwrap();
    assert_eq!(n, 3);
    let got = spool.take(3).await;
    assert_eq!(
        texts(&got),
        ["GET / 200", "GET /x 404", "no newline at the end"]
    );
    assert_eq!(got[0].sender.pid, Some(std::process::id()));
    assert_eq!(got[0].sender.uid, Some(uid()));

    // many lines, several batches
    let big: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
    assert_eq!(
        pipe::write(&sock, "apache", big.as_bytes()).await.unwrap(),
        20_000
    );
    assert_eq!(spool.take(20_000).await.last().unwrap().msg, b"line 19999");

    let e = pipe::write(&sock, "syslog", &b"x\n"[..])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`syslog` is not a pipe source") && e.contains("apache, app2"),
        "{e}"
    );
    assert!(pipe::bind(&sock).unwrap_err().contains("address in use"));
    task.abort();

    // a refusing spool: the writer fails with its reason
    let sock2 = dir.path().join("refuse.sock");
    let (inbox, _spool) = test_spool(Err(Refused::Full), Duration::ZERO);
    let task = tokio::spawn(pipe::run(
        pipe::bind(&sock2).unwrap(),
        vec!["apache".into()],
        inbox,
    ));
    let e = pipe::write(&sock2, "apache", &b"x\n"[..])
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("spool is full"), "{e}");
    let e = pipe::write(&dir.path().join("none.sock"), "apache", &b"x\n"[..])
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("is keywardd running"), "{e}");
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_listeners_names_the_source_that_failed() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let cfg: LogsConfig = toml::from_str(&format!(
        r#"
        pipe_socket = "{pipe}"
        [[source]]
        name = "ok"
        kind = "udp"
        listen = "127.0.0.1:0"
        [[source]]
        name = "busy"
        kind = "relp"
        listen = "{addr}"
        "#,
        pipe = dir.path().join("p.sock").display(),
        addr = taken.local_addr().unwrap()
    ))
    .unwrap();
    let (inbox, _spool) = test_spool(Ok(()), Duration::ZERO);
    let e = spawn_listeners(&cfg, dir.path(), inbox.clone())
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("logs.source `busy`: cannot listen on TCP"),
        "{e}"
    );
    let cfg: LogsConfig = toml::from_str(&format!(
        r#"
        pipe_socket = "{pipe}"
        [[source]]
        name = "web"
        kind = "pipe"
        [[source]]
        name = "f"
        kind = "file"
        path = "{file}"
        "#,
        pipe = dir.path().join("p.sock").display(),
        file = dir.path().join("f.log").display(),
    ))
    .unwrap();
    let tasks = spawn_listeners(&cfg, dir.path(), inbox).unwrap();
    // a misspelt key is still refused
    let typo =
        toml::from_str::<LogsConfig>("[[source]]\nname = \"x\"\nkind = \"file\"\npaht = \"/x\"\n")
            .unwrap_err();
    assert!(typo.to_string().contains("paht"), "{typo}");
    assert_eq!(tasks.len(), 2);
    assert!(dir.path().join("p.sock").exists());
    for t in tasks {
        t.abort();
    }
}
