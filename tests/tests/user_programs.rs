//! Four programs a demanding user writes with the public API only (the crates' rustdoc, the
//! README), each driven end to end by real peers: a SOCKS5 relay, a Redis-like server over the
//! codec bridge with a graceful shutdown, a TLS-terminating front that hands the client's
//! address to its backend in a PROXY header, and a UDP service with per-client state and a
//! Unix-socket admin port.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::BytesMut;
use net_io::codec::{Decoder, Encoder};
use net_io::{ByteReadChannel, ByteWriteChannel, LineEnding};
use net_sockets::{
    BoundDatagramSocket, Datagram, ProxyProtocol, SelectorManager, ServerSocket, Socket,
    SocketAddress, UnixSocketAddress, a_socket,
};
use net_tests::{TempDir, payload, within};

/// The bound on one step of a program's exchange (a hang safety net, not a timing assertion).
const STEP: Duration = Duration::from_secs(10);

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// Runs a blocking peer (a child process, a std socket) off the runtime's threads.
async fn blocking<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    within(tokio::task::spawn_blocking(f)).await.unwrap()
}

// ----- (a) a SOCKS5 relay --------------------------------------------------------------------

/// Reads a SOCKS5 greeting and CONNECT request (IPv4 only) with typed reads; answers them;
/// returns where to connect.
async fn socks_handshake(
    input: &mut ByteReadChannel,
    output: &mut ByteWriteChannel,
) -> net_io::Result<SocketAddr> {
    assert_eq!(input.read_u8().await?, 5, "version");
    let methods = input.read_u8().await?;
    let methods = input.read_bytes(usize::from(methods)).await?;
    assert!(methods.contains(&0), "no-auth offered");
    output.write_fully(&[5, 0]).await?;
    output.flush().await?;
    let mut request = [0u8; 4];
    input.read_fully(&mut request).await?;
    assert_eq!(request, [5, 1, 0, 1], "CONNECT to an IPv4 address");
    let ip = Ipv4Addr::from(input.read_u32().await?);
    let port = input.read_u16().await?;
    Ok(SocketAddr::V4(SocketAddrV4::new(ip, port)))
}

/// The reply to a CONNECT: success, bound to `bound`.
async fn socks_reply(output: &mut ByteWriteChannel, bound: SocketAddress) -> net_io::Result<()> {
    let bound = bound.as_inet().unwrap().socket_addr();
    let SocketAddr::V4(bound) = bound else {
        panic!("IPv4")
    };
    output.write_fully(&[5, 0, 0, 1]).await?;
    output.write_fully(&bound.ip().octets()).await?;
    output.write_u16(bound.port()).await?;
    output.flush().await
}

/// How the relay passes bytes on once connected.
#[derive(Clone, Copy, Debug)]
enum Relay {
    /// `copy_and_close` each way, the two copies joined.
    CopyAndClose,
    /// tokio's `copy_bidirectional` between the client's channels (`tokio::io::join`) and the
    /// upstream socket as a tokio stream.
    Bidirectional,
}

/// The relay, for one client (the tests run one each): returns what its session reported.
fn serve_socks(
    selector: SelectorManager,
    server: ServerSocket,
    relay: Relay,
) -> tokio::task::JoinHandle<Vec<Result<(u64, u64), String>>> {
    tokio::spawn(async move {
        let mut client = server.accept().await.unwrap();
        let session = async move {
            let mut input = client.open_read_channel().map_err(|e| e.to_string())?;
            let mut output = client
                .open_write_channel(false)
                .map_err(|e| e.to_string())?;
            let target = socks_handshake(&mut input, &mut output)
                .await
                .map_err(|e| e.to_string())?;
            let upstream = a_socket(&selector)
                .tcp()
                .connect(target)
                .await
                .map_err(|e| e.to_string())?;
            socks_reply(&mut output, upstream.local_address())
                .await
                .map_err(|e| e.to_string())?;
            match relay {
                Relay::CopyAndClose => {
                    let mut up = upstream.connection().map_err(|e| e.to_string())?;
                    // The first failure ends both copies (the sockets close as they drop).
                    let (there, back) = tokio::try_join!(
                        input.copy_and_close(&mut up.output, u64::MAX),
                        up.input.copy_and_close(&mut output, u64::MAX),
                    )
                    .map_err(|e| e.to_string())?;
                    // Both directions ended: both sockets close by themselves.
                    within(up.socket.await_closed()).await;
                    within(client.await_closed()).await;
                    Ok((there, back))
                }
                Relay::Bidirectional => {
                    let mut up = upstream.into_stream().map_err(|e| e.to_string())?;
                    let mut down = tokio::io::join(input, output);
                    let copied = match tokio::io::copy_bidirectional(&mut down, &mut up).await {
                        Ok(copied) => copied,
                        Err(e) => {
                            // One side failed: pass it on as a reset to both (as
                            // `copy_and_close` does), never as a clean end of a stream cut
                            // short. (Best effort: a side already closed needs none.)
                            let reset =
                                |s: socket2::SockRef<'_>| s.set_linger(Some(Duration::ZERO));
                            let _ = client.with_sock_ref(reset);
                            let _ = up.with_sock_ref(reset);
                            client.close();
                            return Err(e.to_string());
                        }
                    };
                    // Both directions ended (the client's FIN read, its output closed): the
                    // socket closes by itself, as with the channels' own methods.
                    within(client.await_closed()).await;
                    drop((down, up));
                    Ok(copied)
                }
            }
        };
        vec![session.await]
    })
}

/// A backend that reads to the end of the stream, then answers with what it read reversed and
/// closes: it only answers once the client's half-close reached it through the relay.
fn reversing_backend() -> (std::net::TcpListener, std::thread::JoinHandle<usize>) {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let backend = listener.try_clone().unwrap();
    let thread = std::thread::spawn(move || {
        let (mut stream, _) = backend.accept().unwrap();
        stream.set_read_timeout(Some(STEP)).unwrap();
        let mut got = Vec::new();
        stream.read_to_end(&mut got).unwrap();
        got.reverse();
        stream.write_all(&got).unwrap();
        got.len()
    });
    (listener, thread)
}

/// A SOCKS5 client in Python (a real peer): greeting, CONNECT and the first bytes of the
/// payload in one write (pipelined past the handshake), the rest after the reply (`late`) or
/// all of it at once (`early`), then a half-close; prints the reply's code, whether what came
/// back is the payload reversed, and its length.
const SOCKS_CLIENT: &str = r#"
import socket, struct, sys
port, target_port, size, early = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "early"
data = bytes((i * 31 % 251) for i in range(size))
s = socket.create_connection(("127.0.0.1", port), timeout=10)
first = data if early else data[:100]
s.sendall(b"\x05\x01\x00" + b"\x05\x01\x00\x01" + socket.inet_aton("127.0.0.1") + struct.pack(">H", target_port) + first)
if early:
    s.shutdown(socket.SHUT_WR)
def exact(n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c: raise SystemExit("short")
        b += c
    return b
assert exact(2) == b"\x05\x00"
reply = exact(10)
if not early:
    s.sendall(data[100:])
    s.shutdown(socket.SHUT_WR)
back = b""
while True:
    c = s.recv(65536)
    if not c: break
    back += c
print(reply[1], back == data[::-1], len(back))
"#;

async fn socks_relay(relay: Relay, early: bool) {
    let selector = SelectorManager::new();
    let server = net_tests::loopback::tcp_listener(&selector).await;
    let port = server.port().unwrap();
    let relay = serve_socks(selector.clone(), server, relay);
    let (backend, backend_thread) = reversing_backend();
    let target = backend.local_addr().unwrap().port();
    let size = 300_000;
    let out = blocking(move || {
        Command::new("python3")
            .args([
                "-c",
                SOCKS_CLIENT,
                &port.to_string(),
                &target.to_string(),
                &size.to_string(),
            ])
            .arg(if early { "early" } else { "late" })
            .output()
            .unwrap()
    })
    .await;
    assert!(
        out.status.success(),
        "client: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("0 True {size}")
    );
    assert_eq!(backend_thread.join().unwrap(), size);
    let results = within(relay).await.unwrap();
    assert_eq!(results, [Ok((size as u64, size as u64))]);
}

/// The relay with `copy_and_close` both ways: the payload pipelined behind the handshake and
/// the half-closes reach each side, both sockets close by themselves.
#[tokio::test]
async fn socks_relay_with_copy_and_close() {
    socks_relay(Relay::CopyAndClose, false).await;
}

/// A client that sends its whole payload and half-closes before it reads the relay's replies
/// (answers held back while its payload waits, a FIN before the relay connected onward).
#[tokio::test]
async fn socks_relay_with_the_payload_and_fin_before_the_replies() {
    socks_relay(Relay::CopyAndClose, true).await;
    socks_relay(Relay::Bidirectional, true).await;
}

/// The relay with tokio's `copy_bidirectional` over the client's channels and the upstream
/// socket's stream.
#[tokio::test]
async fn socks_relay_with_copy_bidirectional() {
    socks_relay(Relay::Bidirectional, false).await;
}

// ----- (b) a Redis-like server over the codec bridge ------------------------------------------

/// RESP: requests are arrays of bulk strings, replies simple strings, errors, integers and
/// bulk strings.
#[derive(Debug, Default)]
struct Resp;

#[derive(Debug)]
enum RespError {
    Io(std::io::Error),
    Protocol(&'static str),
}

impl std::fmt::Display for RespError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RespError::Io(e) => write!(f, "{e}"),
            RespError::Protocol(what) => write!(f, "protocol error: {what}"),
        }
    }
}

impl From<std::io::Error> for RespError {
    fn from(e: std::io::Error) -> Self {
        RespError::Io(e)
    }
}

#[derive(Debug)]
enum Reply {
    Simple(&'static str),
    Error(&'static str),
    Int(i64),
    Bulk(Option<bytes::Bytes>),
}

/// The longest argument the server takes.
const MAX_ARGUMENT: usize = 64 * 1024;

/// The number after a `kind` byte at `at`, up to CRLF: the number and where its line ends.
fn resp_header(src: &[u8], at: usize, kind: u8) -> Result<Option<(usize, usize)>, RespError> {
    let Some(&first) = src.get(at) else {
        return Ok(None);
    };
    if first != kind {
        return Err(RespError::Protocol("unexpected type byte"));
    }
    let Some(end) = src[at..].windows(2).position(|w| w == b"\r\n") else {
        if src.len() - at > 32 {
            return Err(RespError::Protocol("header too long"));
        }
        return Ok(None);
    };
    let digits =
        std::str::from_utf8(&src[at + 1..at + end]).map_err(|_| RespError::Protocol("number"))?;
    let n: usize = digits.parse().map_err(|_| RespError::Protocol("number"))?;
    Ok(Some((n, at + end + 2)))
}

impl Decoder for Resp {
    type Item = Vec<bytes::Bytes>;
    type Error = RespError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, RespError> {
        let Some((count, mut at)) = resp_header(src, 0, b'*')? else {
            return Ok(None);
        };
        if count > 16 {
            return Err(RespError::Protocol("too many arguments"));
        }
        let mut spans = Vec::with_capacity(count);
        for _ in 0..count {
            let Some((len, start)) = resp_header(src, at, b'$')? else {
                return Ok(None);
            };
            if len > MAX_ARGUMENT {
                return Err(RespError::Protocol("argument too long"));
            }
            if src.len() < start + len + 2 {
                src.reserve(start + len + 2 - src.len());
                return Ok(None);
            }
            spans.push(start..start + len);
            at = start + len + 2;
        }
        let frame = src.split_to(at).freeze();
        Ok(Some(
            spans.into_iter().map(|span| frame.slice(span)).collect(),
        ))
    }
}

impl Encoder<Reply> for Resp {
    type Error = RespError;

    fn encode(&mut self, reply: Reply, dst: &mut BytesMut) -> Result<(), RespError> {
        match reply {
            Reply::Simple(s) => dst.extend_from_slice(format!("+{s}\r\n").as_bytes()),
            Reply::Error(s) => dst.extend_from_slice(format!("-{s}\r\n").as_bytes()),
            Reply::Int(n) => dst.extend_from_slice(format!(":{n}\r\n").as_bytes()),
            Reply::Bulk(None) => dst.extend_from_slice(b"$-1\r\n"),
            Reply::Bulk(Some(b)) => {
                dst.extend_from_slice(format!("${}\r\n", b.len()).as_bytes());
                dst.extend_from_slice(&b);
                dst.extend_from_slice(b"\r\n");
            }
        }
        Ok(())
    }
}

type Store = std::sync::Arc<std::sync::Mutex<HashMap<bytes::Bytes, bytes::Bytes>>>;

fn execute(store: &Store, command: &[bytes::Bytes]) -> Reply {
    let mut store = store.lock().unwrap();
    match command {
        [c] if c.eq_ignore_ascii_case(b"PING") => Reply::Simple("PONG"),
        [c, k] if c.eq_ignore_ascii_case(b"GET") => Reply::Bulk(store.get(k).cloned()),
        [c, k, v] if c.eq_ignore_ascii_case(b"SET") => {
            store.insert(k.clone(), v.clone());
            Reply::Simple("OK")
        }
        [c, k] if c.eq_ignore_ascii_case(b"INCR") => {
            let n = store
                .get(k)
                .map(|v| {
                    std::str::from_utf8(v)
                        .ok()
                        .and_then(|s| s.parse::<i64>().ok())
                })
                .unwrap_or(Some(0));
            match n {
                Some(n) => {
                    store.insert(k.clone(), (n + 1).to_string().into());
                    Reply::Int(n + 1)
                }
                None => Reply::Error("ERR value is not an integer"),
            }
        }
        _ => Reply::Error("ERR unknown command"),
    }
}

/// One connection: answers every request (flushing after each; flush coalescing batches a
/// pipeline's answers), until the client leaves or the shutdown begins; says goodbye then.
async fn serve_redis_connection<T: net_sockets::Transport>(
    socket: Socket<T>,
    store: Store,
) -> Result<&'static str, String> {
    let mut conn = socket.connection().map_err(|e| e.to_string())?;
    let mut codec = Resp;
    loop {
        let frame = tokio::select! {
            biased;
            frame = conn.input.read_frame(&mut codec) => frame,
            () = conn.socket.shutdown_requested() => {
                conn.output
                    .write_frame(&mut codec, Reply::Error("SHUTDOWN server is going away"))
                    .await
                    .map_err(|e| e.to_string())?;
                conn.close_gracefully(STEP).await.map_err(|e| e.to_string())?;
                return Ok("shut down");
            }
        };
        match frame {
            Ok(Some(command)) => {
                let reply = execute(&store, &command);
                conn.output
                    .write_frame(&mut codec, reply)
                    .await
                    .map_err(|e| e.to_string())?;
                conn.output.flush().await.map_err(|e| e.to_string())?;
            }
            Ok(None) => {
                conn.close_gracefully(STEP)
                    .await
                    .map_err(|e| e.to_string())?;
                return Ok("client left");
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// [`serve_redis_connection`] with the decoder in a [`net_io::Frames`] stream, as the
/// `read_frame` docs advise for `select!` loops; the channel is taken back out of it for
/// `close_gracefully`.
async fn serve_redis_frames<T: net_sockets::Transport>(
    socket: Socket<T>,
    store: Store,
) -> Result<&'static str, String> {
    let mut conn = socket.connection().map_err(|e| e.to_string())?;
    let mut frames = conn.input.into_frames(Resp);
    let mut codec = Resp;
    let ended = loop {
        let frame = tokio::select! {
            biased;
            frame = frames.next_frame() => frame,
            () = conn.socket.shutdown_requested() => {
                conn.output
                    .write_frame(&mut codec, Reply::Error("SHUTDOWN server is going away"))
                    .await
                    .map_err(|e| e.to_string())?;
                break "shut down";
            }
        };
        match frame {
            Some(Ok(command)) => {
                let reply = execute(&store, &command);
                conn.output
                    .write_frame(&mut codec, reply)
                    .await
                    .map_err(|e| e.to_string())?;
                conn.output.flush().await.map_err(|e| e.to_string())?;
            }
            None => break "client left",
            Some(Err(e)) => return Err(e.to_string()),
        }
    };
    conn.input = frames.into_parts().0;
    conn.close_gracefully(STEP)
        .await
        .map_err(|e| e.to_string())?;
    Ok(ended)
}

/// A Redis client in Python (a real peer): 500 commands pipelined in one write, the replies
/// read and checked, `ready` printed; then it waits for the server's goodbye and end of stream.
const REDIS_CLIENT: &str = r#"
import socket, ssl, sys
if sys.argv[1].isdigit():
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
else:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(sys.argv[1])
if len(sys.argv) > 2:
    # TLS, where an end without close_notify is an error, not an end.
    context = ssl.create_default_context(cafile=sys.argv[2])
    s = context.wrap_socket(s, server_hostname="localhost", suppress_ragged_eofs=False)
f = s.makefile("rb")
def cmd(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out
batch = b""
for i in range(250):
    batch += cmd(b"SET", b"key%d" % i, b"v" * i) + cmd(b"INCR", b"counter")
s.sendall(batch + cmd(b"GET", b"key249") + cmd(b"PING"))
for i in range(250):
    assert f.readline() == b"+OK\r\n"
    assert f.readline() == b":%d\r\n" % (i + 1), i
assert f.readline() == b"$249\r\n"
assert f.readline() == b"v" * 249 + b"\r\n"
assert f.readline() == b"+PONG\r\n"
print("ready", flush=True)
print(f.readline().decode().strip(), repr(f.read()), flush=True)
"#;

/// The server answers a pipeline of 502 requests in order, a client that stopped half-way
/// through a request is told goodbye too, and a graceful shutdown with both clients connected
/// lets every connection finish (none cut), each client reading the goodbye, then a clean end.
#[tokio::test]
async fn redis_like_server_pipelines_and_shuts_down_gracefully() {
    redis_like_server(false, Over::Tcp).await;
}

/// The same server with its decoder in a `Frames` stream.
#[tokio::test]
async fn redis_like_server_over_frames_pipelines_and_shuts_down_gracefully() {
    redis_like_server(true, Over::Tcp).await;
}

/// The same server over TLS: the goodbye, then `close_notify`, reach both clients.
#[tokio::test]
async fn redis_like_server_over_tls_pipelines_and_shuts_down_gracefully() {
    redis_like_server(false, Over::Tls).await;
    redis_like_server(true, Over::Tls).await;
}

/// The same server on a Unix socket.
#[tokio::test]
async fn redis_like_server_over_a_unix_socket_pipelines_and_shuts_down_gracefully() {
    redis_like_server(false, Over::Unix).await;
    redis_like_server(true, Over::Unix).await;
}

/// What the Redis-like server listens on.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Over {
    Tcp,
    Tls,
    Unix,
}

/// The partial client's stream: plain or TLS.
trait ClientStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> ClientStream for S {}

async fn redis_like_server(frames: bool, over: Over) {
    use net_tls::TlsExt;
    let tls = over == Over::Tls;
    let pki = net_tests::pki::Pki::generate();
    let files = pki.temp_files();
    let config = pki.server_config().build().unwrap();
    let selector = SelectorManager::new();
    let dir = TempDir::new("user-programs-redis");
    let path = dir.path().join("redis.sock");
    let server = std::sync::Arc::new(if over == Over::Unix {
        a_socket(&selector)
            .tcp()
            .bind(UnixSocketAddress::new(&path))
            .await
            .unwrap()
    } else {
        net_tests::loopback::tcp_listener(&selector).await
    });
    let port = server.port().unwrap_or(0);
    let address = if over == Over::Unix {
        path.to_str().unwrap().to_owned()
    } else {
        port.to_string()
    };
    let store = Store::default();
    let sessions = tokio::spawn({
        let server = std::sync::Arc::clone(&server);
        async move {
            let mut sessions = tokio::task::JoinSet::new();
            while let Ok(socket) = server.accept().await {
                let (store, config) = (store.clone(), config.clone());
                sessions.spawn(async move {
                    if !tls {
                        return if frames {
                            serve_redis_frames(socket, store).await
                        } else {
                            serve_redis_connection(socket, store).await
                        };
                    }
                    let socket = socket
                        .tls_server(&config)
                        .await
                        .map_err(|e| e.to_string())?;
                    if frames {
                        serve_redis_frames(socket, store).await
                    } else {
                        serve_redis_connection(socket, store).await
                    }
                });
            }
            let mut results = Vec::new();
            while let Some(result) = sessions.join_next().await {
                results.push(result.unwrap());
            }
            results
        }
    });
    let mut python = Command::new("python3")
        .args(["-c", REDIS_CLIENT, &address])
        .args(tls.then_some(&files.ca))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(python.stdout.take().unwrap());
    let (ready, mut stdout) = blocking(move || {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
        (line, stdout)
    })
    .await;
    assert_eq!(ready.trim(), "ready");
    // The second client: two whole requests and half of a third.
    let mut partial: Box<dyn ClientStream> = if tls {
        let client = net_tests::tls::connect(
            &selector,
            "localhost",
            port,
            pki.client_config().build().unwrap(),
        );
        Box::new(within(client).await.unwrap().into_stream().unwrap())
    } else if over == Over::Unix {
        Box::new(tokio::net::UnixStream::connect(&path).await.unwrap())
    } else {
        Box::new(
            tokio::net::TcpStream::connect(loopback(port))
                .await
                .unwrap(),
        )
    };
    let mut replies = Vec::new();
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        partial
            .write_all(b"*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$7\r\ncounter\r\n*2\r\n$3\r\nGET")
            .await
            .unwrap();
        let want = b"+PONG\r\n$3\r\n250\r\n";
        while replies.len() < want.len() {
            let mut chunk = [0u8; 64];
            let n = within(partial.read(&mut chunk)).await.unwrap();
            assert_ne!(n, 0, "the server ended the stream early");
            replies.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(replies, want);
    }
    let shutdown = tokio::spawn({
        let server = std::sync::Arc::clone(&server);
        async move { server.shutdown(STEP).await }
    });
    let goodbye = {
        use tokio::io::AsyncReadExt;
        let mut rest = Vec::new();
        within(partial.read_to_end(&mut rest)).await.unwrap();
        rest
    };
    // The client leaves once it read the server's end: the server's drain ends with it.
    drop(partial);
    assert_eq!(goodbye, b"-SHUTDOWN server is going away\r\n");
    let last = blocking(move || {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
        line
    })
    .await;
    assert_eq!(last.trim(), "-SHUTDOWN server is going away b''");
    assert!(blocking(move || python.wait().unwrap()).await.success());
    let report = within(shutdown).await.unwrap();
    assert_eq!((report.finished, report.cut), (2, 0));
    assert!(
        !path.exists(),
        "the shut down listener left its socket file"
    );
    assert_eq!(
        within(sessions).await.unwrap(),
        [Ok("shut down"), Ok("shut down")]
    );
}

// ----- (c) a TLS-terminating front with PROXY headers ----------------------------------------

/// What the front saw of one client: SNI, ALPN, the client's address, and the address it
/// connected to the backend from.
type FrontSaw = (
    Option<String>,
    Option<Vec<u8>>,
    SocketAddress,
    SocketAddress,
);

/// A front session's end: what it saw, and the bytes it relayed each way.
type FrontOutcome = Result<(FrontSaw, (u64, u64)), String>;

/// The front's one session (the next connection `front` accepts), in a task of its own.
fn spawn_front(
    selector: &SelectorManager,
    front: ServerSocket,
    config: net_tls::TlsServerConfig,
    backend_port: u16,
) -> tokio::task::JoinHandle<FrontOutcome> {
    let selector = selector.clone();
    tokio::spawn(async move {
        let client = front.accept().await.unwrap();
        front_session(selector, client, config, backend_port).await
    })
}

/// A TLS client of the front at `port`.
async fn tls_client(
    selector: &SelectorManager,
    port: u16,
    config: net_tls::TlsConfig,
) -> net_tls::TlsSocket {
    use net_tls::TlsExt;
    a_socket(selector)
        .tcp()
        .connect(loopback(port))
        .await
        .unwrap()
        .tls(config)
        .await
        .unwrap()
}

/// The front: terminates TLS, connects to the backend, writes a PROXY header (v1 for
/// `a.test`, v2 otherwise) naming the client, then relays with `copy_bidirectional`.
async fn front_session(
    selector: SelectorManager,
    client: Socket,
    config: net_tls::TlsServerConfig,
    backend: u16,
) -> FrontOutcome {
    use net_tls::TlsExt;
    use tokio::io::AsyncWriteExt;
    let tls = client
        .tls_server(&config)
        .await
        .map_err(|e| e.to_string())?;
    let sni = tls.server_name().map(str::to_owned);
    let alpn = tls.alpn_protocol().map(<[u8]>::to_vec);
    let (from, to) = (tls.remote_address(), tls.local_address());
    let upstream = a_socket(&selector)
        .tcp()
        .connect(loopback(backend))
        .await
        .map_err(|e| e.to_string())?;
    let via = upstream.local_address();
    let (source, destination) = (
        from.as_inet().unwrap().socket_addr(),
        to.as_inet().unwrap().socket_addr(),
    );
    let mut upstream = upstream.into_stream().map_err(|e| e.to_string())?;
    let header = if sni.as_deref() == Some("a.test") {
        net_sockets::proxy_header::v1(source, destination).into_bytes()
    } else {
        net_sockets::proxy_header::v2(source, destination)
    };
    upstream
        .write_all(&header)
        .await
        .map_err(|e| e.to_string())?;
    let mut tls = tls.into_stream().map_err(|e| e.to_string())?;
    let copied = tokio::io::copy_bidirectional(&mut tls, &mut upstream)
        .await
        .map_err(|e| e.to_string())?;
    Ok(((sni, alpn, from, via), copied))
}

/// The backend: a one-response HTTP server behind the front (PROXY header required) that
/// answers with the client address and the proxy's, as it sees them.
async fn backend_session(socket: Socket) -> net_sockets::Result<()> {
    let body = format!(
        "{} via {}",
        socket.remote_address(),
        socket.proxy_address().unwrap()
    );
    let mut conn = socket.connection()?;
    while let Some(line) = conn.input.read_line(8192, LineEnding::Default).await? {
        if line.is_empty() {
            break;
        }
    }
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.output.write_string_utf8(&response).await?;
    conn.close_gracefully(STEP).await
}

/// curl, a real TLS client, asks the front for `name` (resolved to the front's port), trusting
/// only the test CA; prints the body, then its own address.
fn curl(ca: &std::path::Path, name: &str, port: u16) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(ca)
        .args(["--resolve", &format!("{name}:{port}:127.0.0.1")])
        .args(["-w", "\n%{local_ip}:%{local_port}"])
        .arg(format!("https://{name}:{port}/"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = String::from_utf8(out.stdout).unwrap();
    let (body, client) = out.rsplit_once('\n').unwrap();
    (body.to_owned(), client.to_owned())
}

/// The front serves each of two names its own certificate (curl verifies it against the name),
/// negotiates ALPN, and the backend, reading the PROXY header (v1, then v2), sees curl's own
/// address as the client's and the front's connection as the proxy; both relays end with
/// both directions closed.
#[tokio::test]
async fn tls_front_forwards_the_client_address_with_proxy_headers() {
    let ca = net_tests::pki::TestCa::new("front CA");
    let (a, b) = (ca.server(&["a.test"]), ca.server(&["b.test"]));
    // `b.test` by default, `a.test` by SNI.
    let config = a
        .sni_certificate("a.test", b.server_config())
        .alpn_protocols(["x-unknown", "http/1.1"])
        .build()
        .unwrap();
    let dir = TempDir::new("user-programs-front");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();

    let selector = SelectorManager::new();
    let backend = a_socket(&selector)
        .tcp()
        .proxy_protocol(ProxyProtocol::Required)
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let backend_port = backend.port().unwrap();
    let backend_task = tokio::spawn(async move {
        for _ in 0..2 {
            let socket = backend.accept().await.unwrap();
            // Still the socket's own address, not the one the header says the client reached.
            assert_eq!(socket.local_address(), backend.local_address());
            backend_session(socket).await.unwrap();
        }
        backend.stats()
    });
    let front = net_tests::loopback::tcp_listener(&selector).await;
    let front_port = front.port().unwrap();
    let front_task = tokio::spawn({
        let selector = selector.clone();
        async move {
            let mut saw = Vec::new();
            for _ in 0..2 {
                let client = front.accept().await.unwrap();
                saw.push(
                    front_session(selector.clone(), client, config.clone(), backend_port).await,
                );
            }
            saw
        }
    });
    let mut seen = Vec::new();
    for name in ["a.test", "b.test"] {
        let ca_file = ca_file.clone();
        let (body, client) = blocking(move || curl(&ca_file, name, front_port)).await;
        let (seen_client, seen_proxy) = body.split_once(" via ").unwrap();
        assert_eq!(
            seen_client, client,
            "the backend sees curl's address ({name})"
        );
        seen.push((seen_client.to_owned(), seen_proxy.to_owned()));
    }
    let saw = within(front_task).await.unwrap();
    assert_eq!(saw.len(), 2);
    for ((result, name), (client, proxy)) in saw.into_iter().zip(["a.test", "b.test"]).zip(seen) {
        let ((sni, alpn, from, via), (up, down)) = result.unwrap();
        assert_eq!(sni.as_deref(), Some(name));
        assert_eq!((from.to_string(), via.to_string()), (client, proxy));
        assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
        assert!(up > 0 && down > 0, "{up} {down}");
    }
    let stats = within(backend_task).await.unwrap();
    assert_eq!(
        (stats.accepted, stats.open, stats.proxy_header_failures),
        (2, 0, 0),
        "{stats:?}"
    );
}

// ----- (d) a UDP service with per-client state and a Unix-socket admin port -------------------

/// How long a UDP client's state lives without a request.
const IDLE: Duration = Duration::from_millis(300);

/// A client's state: its counter and when it last sent.
type Clients =
    std::sync::Arc<std::sync::Mutex<HashMap<SocketAddress, (u64, tokio::time::Instant)>>>;

/// The UDP service: `INC` counts per client and answers the count, `GET` answers it; a
/// client silent for [`IDLE`] is forgotten (swept whenever nothing came for a tenth of it).
/// Ends, `Ok`, when the socket is closed.
async fn udp_service(
    socket: std::sync::Arc<BoundDatagramSocket>,
    clients: Clients,
) -> net_sockets::Result<u64> {
    let mut served = 0;
    loop {
        let datagram = match tokio::time::timeout(IDLE / 10, socket.receive()).await {
            Err(_) => {
                let now = tokio::time::Instant::now();
                clients
                    .lock()
                    .unwrap()
                    .retain(|_, (_, seen)| now - *seen < IDLE);
                continue;
            }
            Ok(Err(net_sockets::Error::Closed)) => return Ok(served),
            Ok(received) => received?,
        };
        let count = {
            let mut clients = clients.lock().unwrap();
            let state = clients
                .entry(datagram.address.clone())
                .or_insert((0, tokio::time::Instant::now()));
            state.1 = tokio::time::Instant::now();
            match &datagram.packet[..] {
                b"INC" => {
                    state.0 += 1;
                    state.0.to_string()
                }
                b"GET" => state.0.to_string(),
                _ => "ERR".to_owned(),
            }
        };
        socket.send(Datagram::new(count, datagram.address)?).await?;
        served += 1;
    }
}

/// The admin port: one command a line — `CLIENTS` (how many are known), `COUNT ADDRESS`,
/// `STOP` (closes the UDP socket) — answered a line each, until the admin client leaves.
async fn admin_session(
    socket: Socket,
    clients: Clients,
    udp: std::sync::Arc<BoundDatagramSocket>,
) -> net_sockets::Result<()> {
    let mut conn = socket.connection()?;
    loop {
        let line = match conn.input.read_line(256, LineEnding::Default).await {
            Ok(Some(line)) => line,
            Ok(None) => break,
            // The rest of the over-long line is skipped by the next read.
            Err(net_io::Error::TooLongLine { .. }) => {
                conn.output.write_string_utf8("line too long\n").await?;
                conn.output.flush().await?;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let answer = match line.split_once(' ').unwrap_or((&line, "")) {
            ("CLIENTS", "") => clients.lock().unwrap().len().to_string(),
            ("COUNT", address) => {
                let clients = clients.lock().unwrap();
                let count = clients.iter().find(|(a, _)| a.to_string() == address);
                count.map_or("none".to_owned(), |(_, (n, _))| n.to_string())
            }
            ("STOP", "") => {
                udp.close();
                "stopped".to_owned()
            }
            _ => format!("unknown command {}", net_io::PeerText(&line)),
        };
        conn.output.write_string_utf8(&answer).await?;
        conn.output.write_string_utf8("\n").await?;
        conn.output.flush().await?;
    }
    conn.close_gracefully(STEP).await
}

/// A request over a connected UDP socket, its answer bounded by [`STEP`].
async fn ask(client: &net_sockets::ConnectedDatagramSocket, request: &str) -> String {
    let to = client.remote_address();
    client
        .send(Datagram::new(request.to_owned(), to).unwrap())
        .await
        .unwrap();
    let answer = tokio::time::timeout(STEP, client.receive())
        .await
        .expect("no answer")
        .unwrap();
    String::from_utf8(answer.packet.to_vec()).unwrap()
}

/// An admin command over the Unix socket, from our own client.
async fn admin(selector: &SelectorManager, path: &std::path::Path, command: &str) -> String {
    let socket = a_socket(selector)
        .tcp()
        .connect(UnixSocketAddress::new(path))
        .await
        .unwrap();
    let mut conn = socket.connection().unwrap();
    conn.output
        .write_string_utf8(&format!("{command}\n"))
        .await
        .unwrap();
    conn.output.flush_and_close().await.unwrap();
    let answer = within(conn.input.read_line(256, LineEnding::Default))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        within(conn.input.read_line(256, LineEnding::Default))
            .await
            .unwrap(),
        None
    );
    answer
}

/// Clients keep their own counters; `nc -U` reads them over the admin port, line by line; an
/// idle client is forgotten, then starts again from zero; `STOP` ends the service cleanly.
#[tokio::test]
async fn udp_service_with_state_timeouts_and_a_unix_admin_port() {
    let selector = SelectorManager::new();
    let udp = std::sync::Arc::new(net_tests::loopback::udp_socket(&selector).await);
    let service_address = udp.local_address();
    let clients = Clients::default();
    let service = tokio::spawn(udp_service(std::sync::Arc::clone(&udp), clients.clone()));
    let dir = TempDir::new("user-programs-admin");
    let path = dir.path().join("admin.sock");
    let admin_server = a_socket(&selector)
        .tcp()
        .bind(UnixSocketAddress::new(&path))
        .await
        .unwrap();
    let admin_task = tokio::spawn({
        let (clients, udp) = (clients.clone(), std::sync::Arc::clone(&udp));
        async move {
            while let Ok(socket) = admin_server.accept().await {
                tokio::spawn(admin_session(
                    socket,
                    clients.clone(),
                    std::sync::Arc::clone(&udp),
                ));
            }
        }
    });

    let one = a_socket(&selector)
        .udp()
        .connect(service_address.clone())
        .await
        .unwrap();
    let two = a_socket(&selector)
        .udp()
        .connect(service_address.clone())
        .await
        .unwrap();
    for n in 1..=3 {
        assert_eq!(ask(&one, "INC").await, n.to_string());
    }
    assert_eq!(ask(&two, "INC").await, "1");
    assert_eq!(ask(&one, "GET").await, "3");
    assert_eq!(ask(&two, "BOGUS").await, "ERR");

    // A real admin client: OpenBSD's nc over the Unix socket, two commands and a bad one, then the end.
    let one_address = one.local_address().to_string();
    let nc_path = path.clone();
    let out = blocking(move || {
        let mut nc = Command::new("nc.openbsd")
            .args(["-N", "-U"])
            .arg(&nc_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let commands = format!(
            "CLIENTS\r\n{}\nCOUNT {one_address}\nHELLO\u{1b}[2J\n",
            "x".repeat(100_000)
        );
        nc.stdin
            .take()
            .unwrap()
            .write_all(commands.as_bytes())
            .unwrap();
        nc.wait_with_output().unwrap()
    })
    .await;
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "2\nline too long\n3\nunknown command HELLO\\u{1b}[2J\n"
    );

    // Both clients fall silent: the service forgets them (bounded polling of the admin port).
    let deadline = tokio::time::Instant::now() + STEP;
    while admin(&selector, &path, "CLIENTS").await != "0" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "idle clients never forgotten"
        );
        tokio::time::sleep(IDLE / 4).await;
    }
    assert_eq!(
        ask(&one, "INC").await,
        "1",
        "a forgotten client starts again"
    );
    assert_eq!(admin(&selector, &path, "STOP").await, "stopped");
    assert_eq!(within(service).await.unwrap().unwrap(), 7);
    // The service is gone: the client's next request learns it from the ICMP error, typed.
    let to = one.remote_address();
    one.send(Datagram::new("INC", to).unwrap()).await.unwrap();
    match within(one.receive()).await {
        Err(net_sockets::Error::Io(e)) => {
            assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused)
        }
        other => panic!("{other:?}"),
    }
    // The admin port goes with its task: its socket file with it.
    admin_task.abort();
    assert!(within(admin_task).await.unwrap_err().is_cancelled());
    assert!(!path.exists(), "the admin socket's file was left behind");
}

/// A backend that resets its connection after a first answer: the relay (`copy_and_close`
/// each way) passes the answer on, then the reset, so the client never takes the cut stream
/// for a complete one.
#[tokio::test]
async fn socks_relay_passes_a_backend_reset_on() {
    socks_relay_reset(Relay::CopyAndClose).await;
}

/// The same with `copy_bidirectional`, whose failure the relay passes on with `SO_LINGER`
/// zero set through `with_sock_ref`, then `close`.
#[tokio::test]
async fn socks_relay_with_copy_bidirectional_passes_a_backend_reset_on() {
    socks_relay_reset(Relay::Bidirectional).await;
}

async fn socks_relay_reset(relay: Relay) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let selector = SelectorManager::new();
    let server = net_tests::loopback::tcp_listener(&selector).await;
    let port = server.port().unwrap();
    let relay = serve_socks(selector.clone(), server, relay);
    let backend = tokio::net::TcpListener::bind(loopback(0)).await.unwrap();
    let target = backend.local_addr().unwrap().port();
    let mut client = tokio::net::TcpStream::connect(loopback(port))
        .await
        .unwrap();
    let mut request = vec![5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1];
    request.extend_from_slice(&target.to_be_bytes());
    client.write_all(&request).await.unwrap();
    let mut reply = [0u8; 12];
    within(client.read_exact(&mut reply)).await.unwrap();
    assert_eq!(reply[..4], [5, 0, 5, 0]);
    let (upstream, _) = within(backend.accept()).await.unwrap();
    let mut upstream = upstream;
    upstream.write_all(b"first answer").await.unwrap();
    let mut got = [0u8; 12];
    within(client.read_exact(&mut got)).await.unwrap();
    assert_eq!(&got, b"first answer");
    socket2::SockRef::from(&upstream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(upstream);
    let mut rest = Vec::new();
    let end = within(client.read_to_end(&mut rest)).await;
    assert_eq!(
        end.map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionReset),
        "the relay ended the client's stream cleanly after the backend's reset ({rest:?})"
    );
    let results = within(relay).await.unwrap();
    assert_eq!(results.len(), 1);
    assert!(
        results[0].as_ref().is_err_and(|e| e.contains("reset")),
        "{results:?}"
    );
}

/// A TLS front's configuration (`a.test`, from a fresh CA) and a client's that trusts it, the
/// selector, and a backend that requires a PROXY header, with its port.
async fn front_and_backend() -> (
    net_tls::TlsServerConfig,
    net_tls::TlsConfig,
    SelectorManager,
    ServerSocket,
    u16,
) {
    let ca = net_tests::pki::TestCa::new("front CA");
    let config = ca.server(&["a.test"]).server_config().build().unwrap();
    let client_config = ca.client_config().server_name("a.test").build().unwrap();
    let selector = SelectorManager::new();
    let backend = a_socket(&selector)
        .tcp()
        .proxy_protocol(ProxyProtocol::Required)
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let backend_port = backend.port().unwrap();
    (config, client_config, selector, backend, backend_port)
}

/// A TLS client that sends its request, then `close_notify` (a half-close), then reads the
/// answer: the front passes the half-close on to the backend as a FIN, and the answer back,
/// then the backend's end as `close_notify`.
#[tokio::test]
async fn tls_front_passes_half_closes_on() {
    let (config, client_config, selector, backend, backend_port) = front_and_backend().await;
    let backend_task = tokio::spawn(async move {
        let socket = backend.accept().await.unwrap();
        let client = socket.remote_address();
        let mut conn = socket.connection().unwrap();
        let mut request = conn.input.read_remaining(1 << 20).await.unwrap().to_vec();
        request.reverse();
        conn.output.write_fully(&request).await.unwrap();
        conn.close_gracefully(STEP).await.unwrap();
        client
    });
    let front = net_tests::loopback::tcp_listener(&selector).await;
    let front_port = front.port().unwrap();
    let front_task = spawn_front(&selector, front, config, backend_port);
    let tls = tls_client(&selector, front_port, client_config).await;
    let me = tls.local_address();
    let mut conn = tls.connection().unwrap();
    let data = payload(100_000);
    conn.output.write_fully(&data).await.unwrap();
    within(conn.output.flush_and_close()).await.unwrap();
    let back = within(conn.input.read_remaining(1 << 20)).await.unwrap();
    let mut expected = data.clone();
    expected.reverse();
    assert_eq!(back.len(), expected.len());
    assert!(back == expected);
    assert_eq!(within(backend_task).await.unwrap(), me);
    let ((_, _, _, _), copied) = within(front_task).await.unwrap().unwrap();
    assert_eq!(copied, (100_000, 100_000));
}

/// A TLS front whose backend resets after a first answer: the front drops the client's TLS
/// stream with `SO_LINGER` zero, set with the builder's `linger` (whose docs say that `close`
/// then resets) or through `with_sock_ref` once the relay failed; the client (ours, or
/// Python's `ssl`) sees the session fail, never a clean end (`close_notify`) of the answer
/// cut short.
async fn tls_front_backend_reset(linger_from_the_builder: bool, python_client: bool) {
    use net_tls::TlsExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ca = net_tests::pki::TestCa::new("front CA");
    let leaf = ca.server(&["a.test"]);
    let config = leaf.server_config().build().unwrap();
    let dir = TempDir::new("user-programs-front-reset");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let selector = SelectorManager::new();
    // The backend: takes the PROXY header and a request, answers half, then resets.
    let backend = tokio::net::TcpListener::bind(loopback(0)).await.unwrap();
    let backend_port = backend.local_addr().unwrap().port();
    let front = if linger_from_the_builder {
        a_socket(&selector)
            .tcp()
            .linger(Duration::ZERO)
            .bind(("127.0.0.1", 0))
            .await
            .unwrap()
    } else {
        net_tests::loopback::tcp_listener(&selector).await
    };
    let front_port = front.port().unwrap();
    let front_task = tokio::spawn({
        let selector = selector.clone();
        async move {
            let client = front.accept().await.unwrap();
            let tls = client.tls_server(&config).await.unwrap();
            let upstream = a_socket(&selector)
                .tcp()
                .connect(loopback(backend_port))
                .await
                .unwrap();
            let mut upstream = upstream.into_stream().unwrap();
            upstream.write_all(b"PROXY UNKNOWN\r\n").await.unwrap();
            let mut tls = tls.into_stream().unwrap();
            let copied = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
            if copied.is_err() && !linger_from_the_builder {
                tls.with_sock_ref(|s| s.set_linger(Some(Duration::ZERO)))
                    .unwrap();
            }
            drop(tls);
            copied.map_err(|e| e.kind())
        }
    });
    // The client: ours, or Python's `ssl` (which takes `close_notify` for the end, whatever
    // follows it).
    enum Client {
        Ours(Box<net_tls::TlsStream>),
        Python(
            std::process::Child,
            std::io::BufReader<std::process::ChildStdout>,
        ),
    }
    let mut client = if python_client {
        let mut child = Command::new("python3")
            .args(["-c", TLS_CUT_CLIENT, &front_port.to_string()])
            .arg(&ca_file)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        Client::Python(child, stdout)
    } else {
        let tls = a_socket(&selector)
            .tcp()
            .connect(loopback(front_port))
            .await
            .unwrap()
            .tls(ca.client_config().server_name("a.test").build().unwrap())
            .await
            .unwrap();
        let mut client = tls.into_stream().unwrap();
        client.write_all(b"request").await.unwrap();
        Client::Ours(Box::new(client))
    };
    let (mut upstream, _) = within(backend.accept()).await.unwrap();
    let mut header = [0u8; 15 + 7];
    within(upstream.read_exact(&mut header)).await.unwrap();
    assert_eq!(&header, b"PROXY UNKNOWN\r\nrequest");
    upstream.write_all(b"half an answer").await.unwrap();
    let client_line = |mut stdout: std::io::BufReader<std::process::ChildStdout>| {
        blocking(move || {
            let mut line = String::new();
            std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
            (line, stdout)
        })
    };
    client = match client {
        Client::Ours(mut stream) => {
            let mut half = [0u8; 14];
            within(stream.read_exact(&mut half)).await.unwrap();
            Client::Ours(stream)
        }
        Client::Python(child, stdout) => {
            let (line, stdout) = client_line(stdout).await;
            assert_eq!(line.trim(), "half an answer");
            Client::Python(child, stdout)
        }
    };
    socket2::SockRef::from(&upstream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(upstream);
    assert_eq!(
        within(front_task).await.unwrap(),
        Err(std::io::ErrorKind::ConnectionReset)
    );
    match client {
        Client::Ours(mut stream) => {
            let mut rest = Vec::new();
            let end = within(stream.read_to_end(&mut rest)).await;
            assert!(
                end.is_err(),
                "the client took the cut answer for a whole one: {end:?} after {rest:?}"
            );
        }
        Client::Python(mut child, stdout) => {
            let (line, _) = client_line(stdout).await;
            assert!(
                line.starts_with("error"),
                "the client took the cut answer for a whole one: {line}"
            );
            assert!(blocking(move || child.wait().unwrap()).await.success());
        }
    }
}

/// A TLS client in Python: sends a request, reads the 14 bytes of half an answer, says so,
/// then reads to the end and prints how the session ended (`clean` at `close_notify`).
const TLS_CUT_CLIENT: &str = r#"
import socket, ssl, sys
context = ssl.create_default_context(cafile=sys.argv[2])
s = context.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10), server_hostname="a.test", suppress_ragged_eofs=False)
s.sendall(b"request")
got = b""
while len(got) < 14:
    got += s.recv(14 - len(got))
print(got.decode(), flush=True)
try:
    rest = b""
    while True:
        c = s.recv(100)
        if not c:
            break
        rest += c
    print("clean", rest, flush=True)
except Exception as e:
    print("error", repr(e), flush=True)
"#;

/// [`tls_front_backend_reset`] with the front's listener built with `linger(Duration::ZERO)`.
#[tokio::test]
async fn tls_front_passes_a_backend_reset_on_with_the_builders_linger() {
    tls_front_backend_reset(true, false).await;
    tls_front_backend_reset(true, true).await;
}

/// [`tls_front_backend_reset`] with `SO_LINGER` zero set through `with_sock_ref` on failure.
#[tokio::test]
async fn tls_front_passes_a_backend_reset_on_with_linger_set_after() {
    tls_front_backend_reset(false, false).await;
    tls_front_backend_reset(false, true).await;
}

/// The whole program stops with `SelectorManager::shutdown`: a relay under way with a client
/// that finishes within the grace period counts as finished (its client, the front's
/// connection upstream and the backend's end), an idle one that outlives it is cut, and its TLS
/// client sees the stream truncated, never a clean end.
#[tokio::test]
async fn tls_front_and_backend_stop_with_the_selectors_shutdown() {
    use net_tls::TlsExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (config, client_config, selector, backend, backend_port) = front_and_backend().await;
    // The backend echoes until its client leaves.
    let backend_task = tokio::spawn(async move {
        let mut echoes = tokio::task::JoinSet::new();
        while let Ok(socket) = backend.accept().await {
            echoes.spawn(net_tests::loopback::echo(socket));
        }
        echoes.join_all().await
    });
    let front = net_tests::loopback::tcp_listener(&selector).await;
    let front_port = front.port().unwrap();
    let front_task = tokio::spawn({
        let selector = selector.clone();
        async move {
            let mut sessions = tokio::task::JoinSet::new();
            while let Ok(client) = front.accept().await {
                sessions.spawn(front_session(
                    selector.clone(),
                    client,
                    config.clone(),
                    backend_port,
                ));
            }
            sessions.join_all().await
        }
    });
    // The clients are another program's: on a selector of their own.
    let elsewhere = SelectorManager::new();
    let mut clients = Vec::new();
    for _ in 0..2 {
        let tls = a_socket(&elsewhere)
            .tcp()
            .connect(loopback(front_port))
            .await
            .unwrap()
            .tls(client_config.clone())
            .await
            .unwrap();
        let mut client = tls.into_stream().unwrap();
        client.write_all(b"ping").await.unwrap();
        let mut pong = [0u8; 4];
        within(client.read_exact(&mut pong)).await.unwrap();
        assert_eq!(&pong, b"ping");
        clients.push(client);
    }
    let mut idle = clients.pop().unwrap();
    let mut finishing = clients.pop().unwrap();
    // Two front connections, two upstream ones (outgoing connections count), two at the
    // backend.
    let shutdown = tokio::spawn({
        let selector = selector.clone();
        async move { selector.shutdown(Duration::from_millis(500)).await }
    });
    finishing.write_all(b"last").await.unwrap();
    finishing.shutdown().await.unwrap();
    let mut rest = Vec::new();
    within(finishing.read_to_end(&mut rest)).await.unwrap();
    assert_eq!(rest, b"last");
    drop(finishing);
    let report = within(shutdown).await.unwrap();
    let mut rest = Vec::new();
    let end = within(idle.read_to_end(&mut rest)).await;
    let end = end.expect_err("the idle client saw a clean end");
    assert_eq!(end.kind(), std::io::ErrorKind::UnexpectedEof, "{end:?}");
    assert!(
        end.get_ref().is_some_and(|e| e.is::<net_tls::Truncated>()),
        "{end:?}"
    );
    assert_eq!((report.finished, report.cut), (3, 3), "{report:?}");
    let relays = within(front_task).await.unwrap();
    assert_eq!(relays.len(), 2);
    assert_eq!(relays.iter().filter(|r| r.is_ok()).count(), 1, "{relays:?}");
    let echoes = within(backend_task).await.unwrap();
    assert_eq!(echoes.len(), 2);
}

/// A length-prefixed protocol (tokio-util's `LengthDelimitedCodec` both ways, frames of at most
/// 1 KiB): each request frame is answered with its bytes reversed; a frame announced longer
/// than the limit is a protocol error, answered with an `ERR` frame before a graceful close.
async fn serve_length_prefixed(socket: Socket) -> Result<u32, String> {
    use net_io::codec::LengthDelimitedCodec;
    let mut conn = socket.connection().map_err(|e| e.to_string())?;
    let mut decoder = LengthDelimitedCodec::builder()
        .max_frame_length(1024)
        .new_codec();
    let mut encoder = LengthDelimitedCodec::new();
    let mut answered = 0;
    loop {
        match conn.input.read_frame(&mut decoder).await {
            Ok(Some(frame)) => {
                let mut back = frame.to_vec();
                back.reverse();
                conn.output
                    .write_frame(&mut encoder, bytes::Bytes::from(back))
                    .await
                    .map_err(|e| e.to_string())?;
                conn.output.flush().await.map_err(|e| e.to_string())?;
                answered += 1;
            }
            Ok(None) => break,
            Err(e) => {
                assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e:?}");
                let error = bytes::Bytes::from_static(b"ERR frame too long");
                conn.output
                    .write_frame(&mut encoder, error)
                    .await
                    .map_err(|e| e.to_string())?;
                break;
            }
        }
    }
    conn.close_gracefully(STEP)
        .await
        .map_err(|e| e.to_string())?;
    Ok(answered)
}

/// A client in Python: three frames pipelined with a fourth announced at 1 GiB (a few of its
/// bytes sent), in one write; reads every answer, then the end.
const LENGTH_PREFIXED_CLIENT: &str = r#"
import socket, struct, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
frame = lambda b: struct.pack(">I", len(b)) + b
s.sendall(frame(b"one") + frame(b"two" * 300) + frame(b"") + struct.pack(">I", 1 << 30) + b"xyz")
answers = []
f = s.makefile("rb")
while True:
    head = f.read(4)
    if not head:
        break
    answers.append(f.read(struct.unpack(">I", head)[0]))
print(answers == [b"eno", b"owt" * 300, b"", b"ERR frame too long"], len(answers))
"#;

/// The length-prefixed server answers every frame of a pipeline in order, then the protocol
/// error with a frame of its own that reaches the client before a clean end (not a reset that
/// destroys it, though the client's bytes past the bad length were never read).
#[tokio::test]
async fn length_prefixed_server_answers_a_protocol_error_before_closing() {
    let selector = SelectorManager::new();
    let server = net_tests::loopback::tcp_listener(&selector).await;
    let port = server.port().unwrap();
    let session =
        tokio::spawn(async move { serve_length_prefixed(server.accept().await.unwrap()).await });
    let out = blocking(move || {
        Command::new("python3")
            .args(["-c", LENGTH_PREFIXED_CLIENT, &port.to_string()])
            .output()
            .unwrap()
    })
    .await;
    assert!(
        out.status.success(),
        "client: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "True 4");
    assert_eq!(within(session).await.unwrap(), Ok(3));
}

/// A client that leaves in the middle of its CONNECT request: the relay's typed read fails
/// with a typed early end (how much it needed, how much came), and the client still gets the
/// answer to its greeting, which was written before, then the end of the stream.
#[tokio::test]
async fn socks_relay_reports_a_request_cut_short_with_a_typed_error() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let selector = SelectorManager::new();
    let server = net_tests::loopback::tcp_listener(&selector).await;
    let port = server.port().unwrap();
    let relay = serve_socks(selector.clone(), server, Relay::CopyAndClose);
    let mut client = tokio::net::TcpStream::connect(loopback(port))
        .await
        .unwrap();
    client
        .write_all(&[5, 1, 0, 5, 1, 0, 1, 127, 0])
        .await
        .unwrap();
    client.shutdown().await.unwrap();
    let mut answer = Vec::new();
    within(client.read_to_end(&mut answer)).await.unwrap();
    assert_eq!(answer, [5, 0]);
    let results = within(relay).await.unwrap();
    let expected = net_io::Error::UnexpectedEof {
        needed: 4,
        available: 2,
    }
    .to_string();
    assert_eq!(results, [Err(expected)]);
}

/// An HTTP CONNECT relay: the request line and headers read with line reads, the answer, then
/// `copy_bidirectional` between the client's channels and the upstream socket's stream.
async fn connect_relay_session(
    selector: SelectorManager,
    client: Socket,
) -> Result<(u64, u64), String> {
    let mut conn = client.connection().map_err(|e| e.to_string())?;
    let request = conn
        .input
        .read_line(8192, LineEnding::Default)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no request")?;
    let target = request
        .strip_prefix("CONNECT ")
        .and_then(|r| r.strip_suffix(" HTTP/1.1"))
        .ok_or_else(|| format!("not a CONNECT request: {}", net_io::PeerText(&request)))?
        .to_owned();
    while let Some(header) = conn
        .input
        .read_line(8192, LineEnding::Default)
        .await
        .map_err(|e| e.to_string())?
    {
        if header.is_empty() {
            break;
        }
    }
    // Every name resolves to this host here.
    let port: u16 = target
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .ok_or("no port")?;
    let upstream = a_socket(&selector)
        .tcp()
        .connect(loopback(port))
        .await
        .map_err(|e| e.to_string())?;
    conn.output
        .write_string_utf8("HTTP/1.1 200 Connection established\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    conn.output.flush().await.map_err(|e| e.to_string())?;
    let mut upstream = upstream.into_stream().map_err(|e| e.to_string())?;
    let mut down = tokio::io::join(conn.input, conn.output);
    tokio::io::copy_bidirectional(&mut down, &mut upstream)
        .await
        .map_err(|e| e.to_string())
}

/// curl through the CONNECT relay (`--proxytunnel`) to the TLS front, which hands the
/// connection on to the backend with a PROXY header: the backend sees the relay's upstream
/// connection as the client (the front's client is the relay), and curl verifies the front's
/// certificate for the name it asked for, end to end through both relays.
#[tokio::test]
async fn curl_through_a_connect_relay_and_the_tls_front() {
    let ca = net_tests::pki::TestCa::new("front CA");
    let leaf = ca.server(&["a.test"]);
    let config = leaf
        .server_config()
        .alpn_protocols(["http/1.1"])
        .build()
        .unwrap();
    let dir = TempDir::new("user-programs-connect");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let selector = SelectorManager::new();
    let backend = a_socket(&selector)
        .tcp()
        .proxy_protocol(ProxyProtocol::Required)
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let backend_port = backend.port().unwrap();
    let backend_task = tokio::spawn(async move {
        let socket = backend.accept().await.unwrap();
        backend_session(socket).await.unwrap();
    });
    let front = net_tests::loopback::tcp_listener(&selector).await;
    let front_port = front.port().unwrap();
    let front_task = spawn_front(&selector, front, config, backend_port);
    let relay = net_tests::loopback::tcp_listener(&selector).await;
    let relay_port = relay.port().unwrap();
    let relay_task = tokio::spawn({
        let selector = selector.clone();
        async move {
            let client = relay.accept().await.unwrap();
            connect_relay_session(selector, client).await
        }
    });
    let out = blocking(move || {
        Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "10",
                "--noproxy",
                "",
                "--proxytunnel",
                "--cacert",
            ])
            .arg(&ca_file)
            .args(["--proxy", &format!("http://127.0.0.1:{relay_port}")])
            .args(["--resolve", &format!("a.test:{front_port}:127.0.0.1")])
            .arg(format!("https://a.test:{front_port}/"))
            .output()
            .unwrap()
    })
    .await;
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body = String::from_utf8(out.stdout).unwrap();
    let ((sni, alpn, from, _), _) = within(front_task).await.unwrap().unwrap();
    assert_eq!(
        (sni.as_deref(), alpn.as_deref()),
        (Some("a.test"), Some(&b"http/1.1"[..]))
    );
    assert!(body.starts_with(&format!("{from} via ")), "{body}");
    let (up, down) = within(relay_task).await.unwrap().unwrap();
    assert!(up > 0 && down > 0);
    within(backend_task).await.unwrap();
}

/// A backend that echoes as it reads (full duplex), until its client's end.
fn echoing_backend() -> (std::net::TcpListener, std::thread::JoinHandle<u64>) {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let backend = listener.try_clone().unwrap();
    let thread = std::thread::spawn(move || {
        let (stream, _) = backend.accept().unwrap();
        stream.set_read_timeout(Some(STEP)).unwrap();
        let mut writer = stream.try_clone().unwrap();
        let echoed = std::io::copy(&mut &stream, &mut writer).unwrap();
        writer.shutdown(std::net::Shutdown::Write).unwrap();
        echoed
    });
    (listener, thread)
}

/// Both ways at once: a client writes 8 MiB while it reads the echo, through the relay (both
/// relay kinds, small socket buffers so that every side waits on the others): every byte comes
/// back in order, then the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socks_relay_full_duplex_with_small_buffers() {
    for relay in [Relay::CopyAndClose, Relay::Bidirectional] {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let selector = SelectorManager::new();
        let server = a_socket(&selector)
            .tcp()
            .send_buffer_size(16 * 1024)
            .receive_buffer_size(16 * 1024)
            .bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let port = server.port().unwrap();
        let relay_task = serve_socks(selector.clone(), server, relay);
        let (backend, backend_thread) = echoing_backend();
        let target = backend.local_addr().unwrap().port();
        let client = tokio::net::TcpStream::connect(loopback(port))
            .await
            .unwrap();
        let (mut from, mut to) = client.into_split();
        let mut request = vec![5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1];
        request.extend_from_slice(&target.to_be_bytes());
        to.write_all(&request).await.unwrap();
        let mut reply = [0u8; 12];
        within(from.read_exact(&mut reply)).await.unwrap();
        let size = 8 << 20;
        let data = payload(size);
        let writer = tokio::spawn({
            let data = data.clone();
            async move {
                for chunk in data.chunks(100_000) {
                    to.write_all(chunk).await.unwrap();
                }
                to.shutdown().await.unwrap();
            }
        });
        let mut back = Vec::with_capacity(size);
        within(from.read_to_end(&mut back)).await.unwrap();
        within(writer).await.unwrap();
        assert_eq!(back.len(), size, "{relay:?}");
        assert!(back == data, "{relay:?}: the echo differs");
        assert_eq!(backend_thread.join().unwrap(), size as u64);
        let results = within(relay_task).await.unwrap();
        assert_eq!(results, [Ok((size as u64, size as u64))], "{relay:?}");
    }
}

/// Both ways at once through the TLS front: a TLS client writes 8 MiB while it reads the echo
/// of a backend behind the front's PROXY header; every byte comes back, then `close_notify`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_front_full_duplex() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ca = net_tests::pki::TestCa::new("front CA");
    let leaf = ca.server(&["a.test"]);
    let config = leaf.server_config().build().unwrap();
    let selector = SelectorManager::new();
    let backend = a_socket(&selector)
        .tcp()
        .proxy_protocol(ProxyProtocol::Required)
        .send_buffer_size(16 * 1024)
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let backend_port = backend.port().unwrap();
    let backend_task = tokio::spawn(async move {
        let socket = backend.accept().await.unwrap();
        net_tests::loopback::echo(socket).await.unwrap()
    });
    let front = a_socket(&selector)
        .tcp()
        .send_buffer_size(16 * 1024)
        .receive_buffer_size(16 * 1024)
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let front_port = front.port().unwrap();
    let front_task = spawn_front(&selector, front, config, backend_port);
    let tls = tls_client(
        &selector,
        front_port,
        ca.client_config().server_name("a.test").build().unwrap(),
    )
    .await;
    let (mut from, mut to) = tokio::io::split(tls.into_stream().unwrap());
    let size = 8 << 20;
    let data = payload(size);
    let writer = tokio::spawn({
        let data = data.clone();
        async move {
            for chunk in data.chunks(100_000) {
                to.write_all(chunk).await.unwrap();
            }
            to.shutdown().await.unwrap();
            to
        }
    });
    let mut back = Vec::with_capacity(size);
    within(from.read_to_end(&mut back)).await.unwrap();
    drop(within(writer).await.unwrap());
    assert_eq!(back.len(), size);
    assert!(back == data, "the echo differs");
    assert_eq!(within(backend_task).await.unwrap(), size as u64);
    let (_, copied) = within(front_task).await.unwrap().unwrap();
    assert_eq!(copied, (size as u64, size as u64));
}

/// A front that serves TLS and plain text on one port: it peeks at the first byte (a TLS
/// handshake record starts with 22) and, for TLS, hands the connection, the peeked bytes
/// included, to `tls_server`; then answers one HTTP request either way.
async fn sniffing_session(
    socket: Socket,
    config: net_tls::TlsServerConfig,
) -> Result<&'static str, String> {
    use net_tls::TlsExt;
    let mut conn = socket.connection().map_err(|e| e.to_string())?;
    let first = conn
        .input
        .peek(1)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no request")?;
    if first[0] == 22 {
        let tls = conn.tls_server(&config).await.map_err(|e| e.to_string())?;
        let conn = tls.connection().map_err(|e| e.to_string())?;
        answer_http(conn, "over TLS").await?;
        Ok("tls")
    } else {
        answer_http(conn, "in plain text").await?;
        Ok("plain")
    }
}

async fn answer_http<T: net_sockets::Transport>(
    mut conn: net_sockets::Connection<T>,
    how: &str,
) -> Result<(), String> {
    while let Some(line) = conn
        .input
        .read_line(8192, LineEnding::Default)
        .await
        .map_err(|e| e.to_string())?
    {
        if line.is_empty() {
            break;
        }
    }
    let body = format!("hello {how}\n");
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.output
        .write_string_utf8(&response)
        .await
        .map_err(|e| e.to_string())?;
    conn.close_gracefully(STEP).await.map_err(|e| e.to_string())
}

/// curl over https and over http to the same port: the sniffing front answers each, the TLS
/// one after handing the byte it peeked at (with the rest of the ClientHello) to TLS.
#[tokio::test]
async fn one_port_serves_tls_and_plain_text_by_sniffing() {
    let pki = net_tests::pki::Pki::generate();
    let files = pki.temp_files();
    let config = pki.server_config().build().unwrap();
    let selector = SelectorManager::new();
    let server = net_tests::loopback::tcp_listener(&selector).await;
    let port = server.port().unwrap();
    let sessions = tokio::spawn(async move {
        let mut seen = Vec::new();
        for _ in 0..2 {
            let socket = server.accept().await.unwrap();
            seen.push(sniffing_session(socket, config.clone()).await);
        }
        seen
    });
    let ca = files.ca.clone();
    let out = blocking(move || {
        let https = Command::new("curl")
            .args(["-sS", "--max-time", "10", "--cacert"])
            .arg(&ca)
            .arg(format!("https://localhost:{port}/"))
            .output()
            .unwrap();
        let http = Command::new("curl")
            .args(["-sS", "--max-time", "10"])
            .arg(format!("http://localhost:{port}/"))
            .output()
            .unwrap();
        (https, http)
    })
    .await;
    for (out, want) in [
        (&out.0, "hello over TLS\n"),
        (&out.1, "hello in plain text\n"),
    ] {
        assert!(
            out.status.success(),
            "curl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), want);
    }
    assert_eq!(within(sessions).await.unwrap(), [Ok("tls"), Ok("plain")]);
}

/// The UDP service with a pool of workers sharing one socket (`Arc`): each request is taken
/// by exactly one worker and answered once; closing the socket ends every worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_service_with_a_pool_of_workers() {
    let selector = SelectorManager::new();
    let udp = std::sync::Arc::new(net_tests::loopback::udp_socket(&selector).await);
    let service_address = udp.local_address();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let udp = std::sync::Arc::clone(&udp);
        workers.spawn(async move {
            let mut served = 0u32;
            loop {
                match udp.receive().await {
                    Ok(request) => {
                        udp.send(Datagram::new(request.packet, request.address).unwrap())
                            .await
                            .unwrap();
                        served += 1;
                    }
                    Err(net_sockets::Error::Closed) => return served,
                    Err(e) => panic!("{e:?}"),
                }
            }
        });
    }
    let client = a_socket(&selector)
        .udp()
        .connect(service_address)
        .await
        .unwrap();
    let to = client.remote_address();
    let mut seen = std::collections::HashSet::new();
    // In windows of 32 requests, so that no queue overflows on a loaded machine.
    for window in 0..32u32 {
        for i in 0..32u32 {
            let n = window * 32 + i;
            client
                .send(Datagram::new(n.to_be_bytes().to_vec(), to.clone()).unwrap())
                .await
                .unwrap();
        }
        for _ in 0..32 {
            let answer = within(client.receive()).await.unwrap();
            let n = u32::from_be_bytes(answer.packet[..].try_into().unwrap());
            assert!(seen.insert(n), "{n} answered twice");
        }
    }
    assert_eq!(seen.len(), 1024);
    udp.close();
    let served: u32 = within(workers.join_all()).await.into_iter().sum();
    assert_eq!(served, 1024);
}

/// The half-closes the other way round: the backend answers and ends its sending first, then
/// reads on; the front passes its FIN on to the TLS client as `close_notify`, and the client,
/// having read the answer and the end, still sends, then ends too: the backend gets that last
/// word and the end.
#[tokio::test]
async fn tls_front_passes_the_backends_half_close_on_first() {
    let (config, client_config, selector, backend, backend_port) = front_and_backend().await;
    let backend_task = tokio::spawn(async move {
        let socket = backend.accept().await.unwrap();
        let mut conn = socket.connection().unwrap();
        let request = conn
            .input
            .read_line(100, LineEnding::Default)
            .await
            .unwrap();
        assert_eq!(request.as_deref(), Some("request"));
        conn.output.write_string_utf8("answer\n").await.unwrap();
        conn.output.flush_and_close().await.unwrap();
        let rest = conn.input.read_remaining(1000).await.unwrap();
        within(conn.socket.await_closed()).await;
        rest
    });
    let front = net_tests::loopback::tcp_listener(&selector).await;
    let front_port = front.port().unwrap();
    let front_task = spawn_front(&selector, front, config, backend_port);
    let tls = tls_client(&selector, front_port, client_config).await;
    let mut conn = tls.connection().unwrap();
    conn.output.write_string_utf8("request\n").await.unwrap();
    conn.output.flush().await.unwrap();
    let answer = within(conn.input.read_remaining(1000)).await.unwrap();
    assert_eq!(answer, &b"answer\n"[..]);
    conn.output.write_string_utf8("last word").await.unwrap();
    within(conn.output.flush_and_close()).await.unwrap();
    within(conn.socket.await_closed()).await;
    assert_eq!(within(backend_task).await.unwrap(), &b"last word"[..]);
    let (_, copied) = within(front_task).await.unwrap().unwrap();
    assert_eq!(copied, (17, 7));
}

/// A client that resets in the middle of its request: the relay passes the reset on to the
/// backend (both relay kinds), which never takes the cut request for a whole one.
#[tokio::test]
async fn socks_relay_passes_a_client_reset_on() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    for relay in [Relay::CopyAndClose, Relay::Bidirectional] {
        let selector = SelectorManager::new();
        let server = net_tests::loopback::tcp_listener(&selector).await;
        let port = server.port().unwrap();
        let relay_task = serve_socks(selector.clone(), server, relay);
        let backend = tokio::net::TcpListener::bind(loopback(0)).await.unwrap();
        let target = backend.local_addr().unwrap().port();
        let mut client = tokio::net::TcpStream::connect(loopback(port))
            .await
            .unwrap();
        let mut request = vec![5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1];
        request.extend_from_slice(&target.to_be_bytes());
        client.write_all(&request).await.unwrap();
        let mut reply = [0u8; 12];
        within(client.read_exact(&mut reply)).await.unwrap();
        let (mut upstream, _) = within(backend.accept()).await.unwrap();
        client.write_all(b"half a request").await.unwrap();
        let mut half = [0u8; 14];
        within(upstream.read_exact(&mut half)).await.unwrap();
        socket2::SockRef::from(&client)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(client);
        let mut rest = Vec::new();
        let end = within(upstream.read_to_end(&mut rest)).await;
        assert_eq!(
            end.map_err(|e| e.kind()),
            Err(std::io::ErrorKind::ConnectionReset),
            "{relay:?}: the backend took the cut request for a whole one"
        );
        let results = within(relay_task).await.unwrap();
        assert!(results[0].is_err(), "{relay:?}: {results:?}");
    }
}
