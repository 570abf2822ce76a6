//! A TCP transport that only dials: the unlock client's.
//!
//! libp2p-tcp's transport also listens, and its listeners watch the
//! machine's interfaces (if-watch, which on Linux is rtnetlink and
//! netlink-packet-route). The boot client never listens, but the code is
//! reachable from the transport's `poll`, so it stayed in keyward-unlock:
//! about 270 KB of an initramfs binary. This transport connects with
//! tokio's `TcpStream` (no delay, as the daemon's TCP config), refuses
//! every `listen_on`, and its `poll` has nothing to report.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::future::{BoxFuture, FutureExt, Pending};
use futures::io::{AsyncRead, AsyncWrite};
use libp2p::core::transport::{DialOpts, ListenerId, TransportError, TransportEvent};
use libp2p::core::Transport;
use libp2p::multiaddr::Protocol;
use libp2p::Multiaddr;
use tokio::io::ReadBuf;

/// Dials `/ip4|ip6/ADDR/tcp/PORT` (a trailing `/p2p/ID` is allowed);
/// never listens.
#[derive(Debug, Default, Clone, Copy)]
pub struct DialOnlyTcp;

/// A dialled connection: tokio's stream behind the `futures` IO traits
/// libp2p's upgrades speak.
#[derive(Debug)]
pub struct Stream(tokio::net::TcpStream);

/// The socket address a TCP multiaddr names, as libp2p-tcp reads it: IP
/// then port, optionally a peer id after; nothing else. Port 0 and the
/// unspecified address cannot be dialled.
pub fn socket_addr(addr: &Multiaddr) -> Option<SocketAddr> {
    let mut it = addr.iter();
    let ip: std::net::IpAddr = match it.next()? {
        Protocol::Ip4(ip) => ip.into(),
        Protocol::Ip6(ip) => ip.into(),
        _ => return None,
    };
    let port = match it.next()? {
        Protocol::Tcp(p) => p,
        _ => return None,
    };
    match (it.next(), it.next()) {
        (None, _) | (Some(Protocol::P2p(_)), None) => {}
        _ => return None,
    }
    (port != 0 && !ip.is_unspecified()).then_some(SocketAddr::new(ip, port))
}

impl Transport for DialOnlyTcp {
    type Output = Stream;
    type Error = io::Error;
    /// Never produced: nothing is listened on.
    type ListenerUpgrade = Pending<Result<Stream, io::Error>>;
    type Dial = BoxFuture<'static, Result<Stream, io::Error>>;

    fn listen_on(
        &mut self,
        _: ListenerId,
        addr: Multiaddr,
    ) -> Result<(), TransportError<io::Error>> {
        Err(TransportError::MultiaddrNotSupported(addr))
    }

    fn remove_listener(&mut self, _: ListenerId) -> bool {
        false
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        _: DialOpts,
    ) -> Result<Self::Dial, TransportError<io::Error>> {
        let Some(sa) = socket_addr(&addr) else {
            return Err(TransportError::MultiaddrNotSupported(addr));
        };
        // Nothing happens before the future is polled, as Transport asks.
        Ok(async move {
            let s = tokio::net::TcpStream::connect(sa).await?;
            s.set_nodelay(true)?;
            Ok(Stream(s))
        }
        .boxed())
    }

    fn poll(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, io::Error>> {
        Poll::Pending
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut rb = ReadBuf::new(buf);
        match tokio::io::AsyncRead::poll_read(Pin::new(&mut self.0), cx, &mut rb) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(rb.filled().len())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        tokio::io::AsyncWrite::poll_write(Pin::new(&mut self.0), cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        tokio::io::AsyncWrite::poll_flush(Pin::new(&mut self.0), cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        tokio::io::AsyncWrite::poll_shutdown(Pin::new(&mut self.0), cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::{AsyncReadExt, AsyncWriteExt};
    use libp2p::core::transport::PortUse;
    use libp2p::core::Endpoint;

    fn opts() -> DialOpts {
        DialOpts {
            role: Endpoint::Dialer,
            port_use: PortUse::New,
        }
    }

    #[test]
    fn reads_only_dialable_tcp_addresses() {
        let ok = |s: &str| socket_addr(&s.parse().unwrap());
        assert_eq!(
            ok("/ip4/192.0.2.7/tcp/7300"),
            Some("192.0.2.7:7300".parse().unwrap())
        );
        assert_eq!(
            ok("/ip6/2001:db8::7/tcp/7300/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"),
            Some("[2001:db8::7]:7300".parse().unwrap())
        );
        for bad in [
            "/ip4/192.0.2.7/udp/7300/quic-v1",
            "/ip4/0.0.0.0/tcp/7300",
            "/ip4/192.0.2.7/tcp/0",
            "/dns4/example.org/tcp/7300",
            "/ip4/192.0.2.7/tcp/7300/ws",
            "/ip4/192.0.2.7",
        ] {
            assert_eq!(ok(bad), None, "{bad}");
        }
    }

    #[test]
    fn refuses_to_listen() {
        let mut t = DialOnlyTcp;
        let a: Multiaddr = "/ip4/127.0.0.1/tcp/0".parse().unwrap();
        assert!(matches!(
            t.listen_on(ListenerId::next(), a.clone()),
            Err(TransportError::MultiaddrNotSupported(x)) if x == a
        ));
        assert!(matches!(
            t.dial("/ip4/127.0.0.1/udp/1".parse().unwrap(), opts()),
            Err(TransportError::MultiaddrNotSupported(_))
        ));
    }

    #[test]
    fn dials_and_carries_bytes_both_ways() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = l.local_addr().unwrap().port();
            let server = tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let (mut s, _) = l.accept().await.unwrap();
                let mut b = [0u8; 4];
                s.read_exact(&mut b).await.unwrap();
                s.write_all(&b.map(|x| x + 1)).await.unwrap();
            });
            let a: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap();
            let mut s = DialOnlyTcp.dial(a, opts()).unwrap().await.unwrap();
            s.write_all(&[1, 2, 3, 4]).await.unwrap();
            let mut b = [0u8; 4];
            s.read_exact(&mut b).await.unwrap();
            assert_eq!(b, [2, 3, 4, 5]);
            s.close().await.unwrap();
            server.await.unwrap();
        });
    }

    #[test]
    fn a_closed_port_is_an_os_error() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let a: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap();
        let e = rt
            .block_on(DialOnlyTcp.dial(a, opts()).unwrap())
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
    }
}
