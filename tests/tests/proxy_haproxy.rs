//! PROXY protocol behind a real HAProxy (`send-proxy` and `send-proxy-v2`): the accepted
//! socket's remote address is the client HAProxy saw, and the proxy's own address stays
//! available.
//!
//! Needs `haproxy` on the PATH (`.ci/run` installs Debian's package when it is missing).

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use net_io::LineEnding;
use net_sockets::{InetSocketAddress, ProxyProtocol, SelectorManager, a_socket};
use net_tests::{TempDir, within};

/// A HAProxy process in the foreground, killed when dropped.
struct Haproxy {
    child: Child,
    _dir: TempDir,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port (bound and released: HAProxy binds it right after).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts HAProxy listening on a free port and relaying to `backend` with `send` (`send-proxy`
/// or `send-proxy-v2`); returns it and its frontend address once it accepts connections.
fn haproxy(backend: SocketAddr, send: &str) -> (Haproxy, SocketAddr) {
    let dir = TempDir::new(&format!("haproxy-{send}"));
    let front = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config = format!(
        "global\n    maxconn 64\n\
         defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n\
         frontend front\n    bind {front}\n    default_backend back\n\
         backend back\n    server app {backend} {send}\n"
    );
    let path = dir.write("haproxy.cfg", &config);
    let child = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("haproxy is installed (apt-get install haproxy)");
    let proxy = Haproxy { child, _dir: dir };
    let started = Instant::now();
    while std::net::TcpStream::connect(front).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "haproxy did not start listening on {front}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (proxy, front)
}

async fn through_haproxy(send: &str) {
    let selector = SelectorManager::new();
    let server = a_socket(&selector)
        .tcp()
        .proxy_protocol(ProxyProtocol::Required)
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let backend = SocketAddr::from(([127, 0, 0, 1], server.port().unwrap()));
    let (_haproxy, front) = haproxy(backend, send);
    // HAProxy's readiness probe above was a connection too; serve until ours arrives.
    let client = within(
        a_socket(&selector)
            .tcp()
            .local_address(InetSocketAddress::new([127, 0, 0, 2], 0))
            .connect(front),
    )
    .await
    .unwrap();
    let client_address = client.local_address();
    let mut client = client.connection().unwrap();
    client
        .output
        .write_string_utf8("hello through haproxy\n")
        .await
        .unwrap();
    client.output.flush().await.unwrap();
    loop {
        let mut accepted = within(server.accept()).await.unwrap();
        if accepted.remote_address() != client_address {
            // The readiness probe: HAProxy relayed it with the probe's own address.
            continue;
        }
        let proxy = accepted.proxy_address().expect("HAProxy's own address");
        assert_eq!(proxy.as_inet().map(|a| a.ip()), Some([127, 0, 0, 1].into()));
        let mut input = accepted.open_read_channel().unwrap();
        let line = within(input.read_line(1024, LineEnding::Default))
            .await
            .unwrap();
        assert_eq!(line.as_deref(), Some("hello through haproxy"));
        break;
    }
    assert_eq!(server.stats().proxy_header_failures, 0);
}

#[tokio::test]
async fn haproxy_send_proxy_v1_names_the_client() {
    through_haproxy("send-proxy").await;
}

#[tokio::test]
async fn haproxy_send_proxy_v2_names_the_client() {
    through_haproxy("send-proxy-v2").await;
}
