//! A peer that sends oversize, malformed or unknown-version messages is
//! warned about by name and disconnected; the daemon keeps serving.

use std::io;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::prelude::*;
use keyward_node::config::Config;
use keyward_node::control::{self, CtlRequest};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use libp2p::{noise, tcp, yamux, Multiaddr, StreamProtocol};

/// The daemon dies with the test, also when an assertion fails.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Writes whatever bytes it is given, as a hostile peer would.
#[derive(Clone, Default)]
struct Raw;

impl request_response::Codec for Raw {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;
    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        let mut v = Vec::new();
        io.take(1 << 20).read_to_end(&mut v).await?;
        Ok(v)
    }
    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        p: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        self.read_request(p, io).await
    }
    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        r: Vec<u8>,
    ) -> io::Result<()> {
        io.write_all(&r).await?;
        io.close().await
    }
    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        p: &StreamProtocol,
        io: &mut T,
        r: Vec<u8>,
    ) -> io::Result<()> {
        self.write_request(p, io, r).await
    }
}

#[tokio::test(flavor = "current_thread")]
async fn misbehaving_peers_are_disconnected_and_the_daemon_survives() {
    let d = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg_path = d.path().join("k.toml");
    std::fs::write(
        &cfg_path,
        format!(
            "state_dir = \"{0}/state\"\nboot_key = \"{0}/boot.key\"\ncontrol_socket = \"{0}/ctl.sock\"\nlisten = [\"/ip4/127.0.0.1/tcp/{port}\"]\nmdns = false\n",
            d.path().display()
        ),
    )
    .unwrap();
    let cfg = Config::load(&cfg_path).unwrap();
    let init = keyward_node::daemon::init(&cfg, Some("m")).unwrap();
    let log = std::fs::File::create(d.path().join("log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_keywardd"))
        .arg("--config")
        .arg(&cfg_path)
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info,keyward_node::daemon=debug")
        .stderr(log)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let t = Instant::now();
    while std::os::unix::net::UnixStream::connect(&cfg.control_socket).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "daemon did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|_| {
            request_response::Behaviour::with_codec(
                Raw,
                [(
                    StreamProtocol::new("/keyward/rpc/1"),
                    ProtocolSupport::Outbound,
                )],
                request_response::Config::default().with_request_timeout(Duration::from_secs(5)),
            )
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    let peer = init.node.peer_id().unwrap();
    let addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap();
    // garbage, a frame from a future version, and an oversize frame
    let future = {
        let mut v = vec![0xa3, 0x61, b'v', 0x09, 0x61, b'k', 0x6b];
        v.extend_from_slice(b"rpc-request");
        v.extend_from_slice(&[0x61, b'b', 0xf6]);
        v
    };
    let payloads = [
        b"\xff\x00garbage".to_vec(),
        future,
        vec![0u8; 20_000],
        b"x".to_vec(),
        vec![0xa0],
        b"\x9f".to_vec(),
    ];
    for p in payloads {
        swarm
            .behaviour_mut()
            .send_request_with_addresses(&peer, p, vec![addr.clone()]);
    }
    let mut closed = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !closed {
        match tokio::time::timeout_at(deadline, swarm.select_next_some()).await {
            Ok(SwarmEvent::ConnectionClosed { peer_id, .. }) if peer_id == peer => closed = true,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    if !closed {
        panic!(
            "the daemon did not disconnect a peer sending garbage; log:\n{}",
            std::fs::read_to_string(d.path().join("log")).unwrap()
        );
    }
    // A banned peer that comes straight back is cut off again at once.
    swarm
        .behaviour_mut()
        .send_request_with_addresses(&peer, vec![0xa0], vec![addr.clone()]);
    let mut cut = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cut {
        match tokio::time::timeout_at(deadline, swarm.select_next_some()).await {
            Ok(SwarmEvent::ConnectionClosed { peer_id, .. }) if peer_id == peer => cut = true,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    assert!(cut, "a banned peer's new connection was kept");
    // it still serves its control socket
    let v = control::call(
        &cfg.control_socket,
        &CtlRequest::Status,
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(v["mesh"]["name"], "m");
    let _ = child.0.kill();
    let _ = child.0.wait();
    let log = std::fs::read_to_string(d.path().join("log")).unwrap();
    let me = swarm.local_peer_id().to_string();
    assert!(
        log.contains("bad message from peer") && log.contains(&me),
        "{log}"
    );
    assert!(log.contains("disconnecting peer"), "{log}");
    assert!(log.contains("refusing a banned peer"), "{log}");
}
