//! A measuring harness (not an example of use): one-line TLS round trips against a tokio-rustls
//! peer in a child process, served by net-tls (`ours`) or by the tokio-rustls idiom (`tokio`);
//! or a bulk echo of 64 KiB chunks (`bulk-ours`, `bulk-tokio`: netbench's `tls-echo` servers,
//! the peer writing its chunks while it reads the echo back; a current-thread runtime).
//!
//! ```sh
//! cargo build --release -p bench --example tls_rt
//! valgrind --tool=cachegrind --cache-sim=no target/release/examples/tls_rt ours 2000
//! taskset -c 1 target/release/examples/tls_rt tokio 50000   # natively
//! target/release/examples/tls_rt bulk-ours 10000             # CPU per 64 KiB chunk
//! ```
//!
//! The peer is this program run again (`peer PORT N`, `bulk-peer PORT N`): valgrind follows no
//! child, so it counts only the server. Instructions per round trip (or chunk): the runs for N
//! and 2N, their difference / N. Natively it prints the server's wall and CPU time (all its
//! threads, from `/proc`) per round trip or chunk; pin it to one core (`taskset`, which the
//! peer inherits): across two cores of a VM the wake-ups between the processes make the times
//! bimodal.

use std::io::Write as _;
use std::sync::Arc;
use std::time::Instant;

use net_io::LineEnding;
use net_sockets::{SelectorManager, a_socket};
use net_tls::{TlsExt, TlsServerConfig};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};

const LINE: &[u8] = b"hello, this is a line\n";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    match args.get(1).map(String::as_str) {
        Some("peer") => rt.block_on(peer(args[2].parse().unwrap(), args[3].parse().unwrap())),
        Some("bulk-peer") => rt.block_on(bulk_peer(
            args[2].parse().unwrap(),
            args[3].parse().unwrap(),
        )),
        Some(which @ ("ours" | "tokio" | "bulk-ours" | "bulk-tokio")) => {
            let n: usize = args[2].parse().unwrap();
            let ours = which.ends_with("ours");
            let bulk_echo = which.starts_with("bulk");
            // In a task of its own, as a server runs each connection (`block_on`'s own waker
            // is not one whose clones `will_wake` recognises).
            let elapsed = rt.block_on(async move {
                if bulk_echo {
                    tokio::spawn(bulk(ours, n)).await.unwrap()
                } else {
                    tokio::spawn(serve(ours, n)).await.unwrap()
                }
            });
            let (what, each) = if bulk_echo {
                (format!("chunks of {CHUNK} bytes"), "chunk")
            } else {
                ("round trips".to_owned(), "round trip")
            };
            println!(
                "{which} {n} {what}: {:.0} ns per {each}, cpu {:.0} ns",
                elapsed.0 / n as f64,
                elapsed.1 / n as f64
            );
        }
        _ => eprintln!(
            "usage: tls_rt ours|tokio|bulk-ours|bulk-tokio N | tls_rt peer|bulk-peer PORT N"
        ),
    }
}

/// CPU time of this process so far (all its threads), in ns.
fn cpu_ns() -> f64 {
    let mut total = 0.0;
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let stat = std::fs::read_to_string(task.unwrap().path().join("schedstat")).unwrap();
        total += stat
            .split_whitespace()
            .next()
            .unwrap()
            .parse::<f64>()
            .unwrap();
    }
    total
}

fn rustls_config() -> (Arc<rustls::ServerConfig>, String) {
    // The test kit's CA and a server leaf for `localhost`; the peer trusts the CA.
    let pki = net_tests::pki::Pki::generate();
    let config = rustls::ServerConfig::builder_with_provider(net_tls::crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(pki.server.chain_der().to_vec(), pki.server.key_der())
        .unwrap();
    (Arc::new(config), pki.ca.pem().to_owned())
}

/// The peer: this program run again as `mode PORT N`, trusting the CA in `pem`.
fn spawn(port: u16, n: usize, pem: &str, mode: &str) -> std::process::Child {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args([mode, &port.to_string(), &n.to_string()])
        .env("TLS_RT_CERT", pem)
        .spawn()
        .unwrap()
}

/// Our side: a listener on `selector`, the peer started against it (`mode`, `n`), and the TLS
/// session of the connection it made.
async fn ours_accept(
    selector: &SelectorManager,
    config: Arc<rustls::ServerConfig>,
    pem: &str,
    mode: &str,
    n: usize,
) -> (std::process::Child, net_tls::TlsSocket) {
    let config = TlsServerConfig::from_rustls(config);
    let listener = a_socket(selector)
        .tcp()
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let peer = spawn(listener.local_address().port().unwrap(), n, pem, mode);
    let socket = listener.accept().await.unwrap();
    (peer, socket.tls_server(&config).await.unwrap())
}

/// tokio-rustls's side, as [`ours_accept`].
async fn tokio_accept(
    config: Arc<rustls::ServerConfig>,
    pem: &str,
    mode: &str,
    n: usize,
) -> (
    std::process::Child,
    tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let peer = spawn(listener.local_addr().unwrap().port(), n, pem, mode);
    let (tcp, _) = listener.accept().await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let tls = tokio_rustls::TlsAcceptor::from(config)
        .accept(tcp)
        .await
        .unwrap();
    (peer, tls)
}

/// Serves one connection of `n` round trips; returns (wall ns, CPU ns) of the round trips.
async fn serve(ours: bool, n: usize) -> (f64, f64) {
    let (config, pem) = rustls_config();
    let mut started = None;
    let mut count = 0;
    let child;
    if ours {
        let selector = SelectorManager::new();
        let (peer, mut tls) = ours_accept(&selector, config, &pem, "peer", n).await;
        child = peer;
        let mut input = tls.open_read_channel().unwrap();
        let mut output = tls.open_write_channel(false).unwrap();
        let mut reply = String::new();
        while let Some(line) = input.read_line(1024, LineEnding::Default).await.unwrap() {
            if started.is_none() {
                started = Some((Instant::now(), cpu_ns()));
            }
            count += 1;
            reply.clear();
            reply.push_str(&line);
            reply.push('\n');
            output.write_string_utf8(&reply).await.unwrap();
            output.flush().await.unwrap();
        }
        drop((input, output));
        tls.close();
        selector.close();
    } else {
        let (peer, tls) = tokio_accept(config, &pem, "peer", n).await;
        child = peer;
        let (read, write) = tokio::io::split(tls);
        let mut read = BufReader::new(read);
        let mut write = BufWriter::new(write);
        let mut line = String::new();
        loop {
            line.clear();
            if read.read_line(&mut line).await.unwrap() == 0 {
                break;
            }
            if started.is_none() {
                started = Some((Instant::now(), cpu_ns()));
            }
            count += 1;
            write.write_all(line.as_bytes()).await.unwrap();
            write.flush().await.unwrap();
        }
        let _ = write.shutdown().await;
    }
    let (wall, cpu) = started.unwrap();
    let result = (wall.elapsed().as_nanos() as f64, cpu_ns() - cpu);
    let mut child = child;
    assert!(child.wait().unwrap().success());
    assert_eq!(count, n);
    result
}

/// The size of one bulk chunk (netbench's `tls-echo` writes 64 KiB chunks).
const CHUNK: usize = 64 * 1024;

/// Echoes one connection's bulk stream of `n` chunks; returns (wall ns, CPU ns) from when its
/// first bytes were read to when its `close_notify` was sent.
async fn bulk(ours: bool, n: usize) -> (f64, f64) {
    let (config, pem) = rustls_config();
    let child;
    let result;
    if ours {
        let selector = SelectorManager::new();
        let (peer, mut tls) = ours_accept(&selector, config, &pem, "bulk-peer", n).await;
        child = peer;
        let mut input = tls.open_read_channel().unwrap();
        let mut output = tls.open_write_channel(false).unwrap();
        input.await_content(1).await.unwrap();
        let (wall, cpu) = (Instant::now(), cpu_ns());
        input.copy_to(&mut output, u64::MAX).await.unwrap();
        output.flush_and_close().await.unwrap();
        result = (wall.elapsed().as_nanos() as f64, cpu_ns() - cpu);
        drop((input, output));
        tls.close();
        selector.close();
    } else {
        let (peer, mut tls) = tokio_accept(config, &pem, "bulk-peer", n).await;
        child = peer;
        let mut buf = vec![0u8; CHUNK];
        let mut first = None;
        loop {
            let n = tls.read(&mut buf).await.unwrap();
            if first.is_none() {
                first = Some((Instant::now(), cpu_ns()));
            }
            if n == 0 {
                break;
            }
            tls.write_all(&buf[..n]).await.unwrap();
            tls.flush().await.unwrap();
        }
        tls.shutdown().await.unwrap();
        let (wall, cpu): (Instant, f64) = first.unwrap();
        result = (wall.elapsed().as_nanos() as f64, cpu_ns() - cpu);
    }
    let mut child = child;
    assert!(child.wait().unwrap().success());
    result
}

/// The bulk client: `n` chunks of [`CHUNK`] bytes written while a second task reads the echo
/// back, then `close_notify`.
async fn bulk_peer(port: u16, n: usize) {
    let tls = connect(port).await;
    let (mut read, mut write) = tokio::io::split(tls);
    let writer = tokio::spawn(async move {
        let chunk = vec![7u8; CHUNK];
        for _ in 0..n {
            write.write_all(&chunk).await.unwrap();
        }
        write.flush().await.unwrap();
        write
    });
    let mut buf = vec![0u8; CHUNK];
    let mut left = n * CHUNK;
    while left > 0 {
        let got = read.read(&mut buf).await.unwrap();
        assert!(got > 0 && buf[..got].iter().all(|&b| b == 7));
        left -= got;
    }
    let mut write = writer.await.unwrap();
    write.shutdown().await.unwrap();
    let mut rest = Vec::new();
    let _ = read.read_to_end(&mut rest).await;
}

/// A tokio-rustls client connection to the server on `port`, trusting the CA the server passed
/// in `TLS_RT_CERT`.
async fn connect(port: u16) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let pem = std::env::var("TLS_RT_CERT").unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pem.as_bytes()).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(net_tls::crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    tcp.set_nodelay(true).unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap()
}

/// The client: `n` round trips of [`LINE`], then `close_notify`.
async fn peer(port: u16, n: usize) {
    let tls = connect(port).await;
    let mut tls = BufReader::new(tls);
    let mut line = Vec::new();
    for _ in 0..n {
        tls.get_mut().write_all(LINE).await.unwrap();
        tls.get_mut().flush().await.unwrap();
        line.clear();
        tls.read_until(b'\n', &mut line).await.unwrap();
        assert_eq!(line, LINE);
    }
    tls.get_mut().shutdown().await.unwrap();
    let mut rest = Vec::new();
    let _ = tls.read_to_end(&mut rest).await;
    std::io::stdout().flush().unwrap();
}
