//! hyper's HTTP/1.1 server (keep-alive on, half-closes honoured, a header timeout) over our
//! accepted sockets as `SocketStream`s (plain) or `TlsStream`s (TLS), flush coalescing on or
//! off, under concurrent, randomly misbehaving clients, with `curl` as a real peer.
//!
//! - Randomised but bounded (a seed per round, printed on failure; `HYPER_SEED` and
//!   `HYPER_ROUNDS` choose the rounds, a round takes about 0.15 s, one in four about 1 s
//!   for its stalled clients; `HYPER_TRACE` prints each round and its slow clients): raw
//!   tokio (or tokio-rustls, TLS 1.3 or 1.2) clients pipeline keep-alive requests, some the
//!   last with `connection: close` — `GET`s of a deterministic body of a requested size
//!   (up to 1 MiB, sent with `Content-Length` or chunked), `POST`s echoed back, their bodies
//!   sent with `Content-Length` or chunked, written in random pieces — or send one at a time;
//!   half-close after their requests; read slowly; reset part-way through a large response;
//!   send half a header and stall (hyper's header timeout ends them); send garbage. Some
//!   rounds `curl` fetches several URLs over one keep-alive connection; some rounds the
//!   listener, or its selector, is shut down gracefully mid-run (each connection then asks
//!   hyper for its `graceful_shutdown`).
//! - Checked: every complete response a client reads is exactly the one its request calls for
//!   (status, `x-id`, body bytes), in request order; a response cut short is never complete
//!   (the `Content-Length` or the chunked end is awaited; over TLS an end without
//!   `close_notify` is an error, never an end); without a shutdown every well-behaved client
//!   is served in full and then sees a clean end, hyper reports an error for each garbage and
//!   stalled client and none for a well-behaved one; a graceful shutdown cuts no connection
//!   (hyper ends each well within the grace period) and, once it returned, the listener
//!   counts none open; the listener counts every connection served and none open at the end; curl gets every body over one connection; no task
//!   hangs or panics; no descriptor is left behind.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use net_sockets::{SelectorManager, ServerSocket, Socket, a_socket};
use net_tests::pki::Pki;
use net_tests::rng::Rng;
use net_tls::{TlsExt, TlsServerConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The largest body a request asks for, or a client echoes.
const MAX_BODY: usize = 1 << 20;

/// How long hyper waits for a request's header.
const HEADER_TIMEOUT: Duration = Duration::from_millis(800);

/// The grace period of the listener's shutdown.
const GRACE: Duration = Duration::from_secs(10);

/// How long a client may take, all in all, before the test calls it hung.
const CLIENT_LIMIT: Duration = Duration::from_secs(30);

/// The body of `GET /size/{n}`: `n` letters, a function of `n` and the offset.
fn sized_body(n: usize) -> Vec<u8> {
    (0..n).map(|i| b'a' + ((i * 7 + n) % 26) as u8).collect()
}

/// A response body of known pieces: its size is announced (`Content-Length`) or not
/// (chunked).
struct Pieces {
    pieces: VecDeque<Bytes>,
    announced: Option<u64>,
}

impl Body for Pieces {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.pieces.pop_front().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.pieces.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        match self.announced {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

/// The server's answer to `request`: `/size/{n}` a sized body, `/echo` the request's body;
/// `chunked` in the query leaves the size unannounced; `x-id` repeats the query's `id`.
async fn answer(request: Request<Incoming>) -> Result<Response<Pieces>, hyper::Error> {
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let id = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("id="))
        .unwrap_or("")
        .to_owned();
    let chunked = query.split('&').any(|kv| kv == "chunked");
    let body = if let Some(n) = path.strip_prefix("/size/") {
        sized_body(n.parse::<usize>().unwrap_or(0).min(MAX_BODY))
    } else {
        let mut incoming = request.into_body();
        let mut got = Vec::new();
        while let Some(frame) =
            std::future::poll_fn(|cx| Pin::new(&mut incoming).poll_frame(cx)).await
        {
            if let Ok(data) = frame?.into_data() {
                got.extend_from_slice(&data);
            }
            assert!(got.len() <= MAX_BODY, "an echo over the largest body");
        }
        got
    };
    let len = body.len() as u64;
    let body = Bytes::from(body);
    let mut pieces = VecDeque::new();
    let mut at = 0;
    while at < body.len() {
        let end = (at + 64 * 1024 + at % 1000).min(body.len());
        pieces.push_back(body.slice(at..end));
        at = end;
    }
    let reply = Pieces {
        pieces,
        announced: (!chunked).then_some(len),
    };
    Ok(Response::builder()
        .header("x-id", id)
        .body(reply)
        .expect("a valid response"))
}

/// What the server's connections reported.
#[derive(Debug, Default)]
struct Served {
    ok: usize,
    errors: Vec<String>,
}

/// Serves one accepted connection with hyper until it ends, or (on the listener's shutdown)
/// gracefully.
async fn serve(socket: Socket, tls: Option<TlsServerConfig>, served: Arc<Mutex<Served>>) {
    let signal = socket.shutdown_signal();
    let mut builder = http1::Builder::new();
    builder
        .keep_alive(true)
        .half_close(true)
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let result = match tls {
        None => {
            let stream = socket.into_stream().expect("the socket as a stream");
            let conn = builder.serve_connection(TokioIo::new(stream), service_fn(answer));
            drive(conn, &signal).await
        }
        Some(config) => match socket.tls_server(&config).await {
            Ok(tls) => {
                let stream = tls.into_stream().expect("the session as a stream");
                let conn = builder.serve_connection(TokioIo::new(stream), service_fn(answer));
                drive(conn, &signal).await
            }
            Err(e) => Err(format!("handshake: {e}")),
        },
    };
    let mut served = served.lock().unwrap();
    match result {
        Ok(()) => served.ok += 1,
        Err(e) => served.errors.push(e),
    }
}

/// Drives `conn` to its end, asking for its graceful shutdown when `signal` fires.
async fn drive<F>(conn: F, signal: &net_sockets::ShutdownSignal) -> Result<(), String>
where
    F: std::future::Future<Output = hyper::Result<()>> + GracefulConn,
{
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = signal.requested() => {
            conn.as_mut().shutdown_gracefully();
            conn.await
        }
    };
    result.map_err(|e| format!("{e:?}"))
}

/// hyper's connection futures' `graceful_shutdown`, one name for the plain and TLS ones.
trait GracefulConn {
    fn shutdown_gracefully(self: Pin<&mut Self>);
}

impl<I, S> GracefulConn for http1::Connection<I, S>
where
    S: hyper::service::HttpService<Incoming>,
    S::ResBody: Body + 'static,
    <S::ResBody as Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
{
    fn shutdown_gracefully(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// A client's connection: plain TCP or tokio-rustls over it.
trait Duplex: AsyncRead + AsyncWrite + Unpin + Send {
    /// The TCP stream underneath, to reset it.
    fn into_tcp(self: Box<Self>) -> TcpStream;
}

impl Duplex for TcpStream {
    fn into_tcp(self: Box<Self>) -> TcpStream {
        *self
    }
}

impl Duplex for tokio_rustls::client::TlsStream<TcpStream> {
    fn into_tcp(self: Box<Self>) -> TcpStream {
        self.into_inner().0
    }
}

/// One request and the body its response must carry.
#[derive(Clone, Debug)]
struct Req {
    bytes: Vec<u8>,
    id: u64,
    expected: Vec<u8>,
}

/// A random request: a sized `GET` or an echoed `POST` (`Content-Length` or chunked).
fn request(rng: &mut Rng, id: u64, max: usize) -> Req {
    let chunked_reply = if rng.chance(2) { "&chunked" } else { "" };
    if rng.chance(2) {
        let n = if rng.chance(8) {
            rng.below(max as u64 + 1) as usize
        } else {
            rng.below(3000) as usize
        };
        let bytes = format!("GET /size/{n}?id={id}{chunked_reply} HTTP/1.1\r\nhost: x\r\n\r\n")
            .into_bytes();
        return Req {
            bytes,
            id,
            expected: sized_body(n),
        };
    }
    let len = if rng.chance(8) {
        rng.below(max as u64 + 1) as usize
    } else {
        rng.below(2000) as usize
    };
    let body: Vec<u8> = (0..len)
        .map(|i| b'A' + ((i as u64 * 13 + id) % 26) as u8)
        .collect();
    let bytes = if rng.chance(2) {
        let mut b = format!(
            "POST /echo?id={id}{chunked_reply} HTTP/1.1\r\nhost: x\r\ncontent-length: {len}\r\n\r\n"
        )
        .into_bytes();
        b.extend_from_slice(&body);
        b
    } else {
        let mut b = format!(
            "POST /echo?id={id}{chunked_reply} HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        .into_bytes();
        let mut at = 0;
        while at < body.len() {
            let end = (at + 1 + rng.below(40_000) as usize).min(body.len());
            b.extend_from_slice(format!("{:x}\r\n", end - at).as_bytes());
            b.extend_from_slice(&body[at..end]);
            b.extend_from_slice(b"\r\n");
            at = end;
        }
        b.extend_from_slice(b"0\r\n\r\n");
        b
    };
    Req {
        bytes,
        id,
        expected: body,
    }
}

/// A response as the client read it.
#[derive(Debug)]
struct Resp {
    status: u16,
    id: Option<String>,
    body: Vec<u8>,
}

/// Reads one response; `Ok(None)` at a clean end before its first byte; an error for
/// anything cut short (the body's announced end is awaited).
async fn read_response<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    slow: Option<&mut Rng>,
) -> std::io::Result<Option<Resp>> {
    let mut head = Vec::new();
    loop {
        let mut byte = [0u8; 1];
        let n = reader.read(&mut byte).await?;
        if n == 0 {
            if head.is_empty() {
                return Ok(None);
            }
            return Err(ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
        if head.ends_with(b"\r\n\r\n") {
            break;
        }
        if head.len() > 16 * 1024 {
            return Err(std::io::Error::other("an over-long head"));
        }
    }
    let text = String::from_utf8(head).map_err(std::io::Error::other)?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("a bad status line {status_line:?}")))?;
    let (mut length, mut chunked, mut id) = (None, false, None);
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        let (name, value) = (name.to_ascii_lowercase(), value.trim());
        match name.as_str() {
            "content-length" => length = value.parse::<usize>().ok(),
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "x-id" => id = Some(value.to_owned()),
            _ => {}
        }
    }
    let mut body = Vec::new();
    let mut slow = slow;
    if chunked {
        loop {
            let mut size_line = Vec::new();
            while !size_line.ends_with(b"\r\n") {
                let mut byte = [0u8; 1];
                if reader.read(&mut byte).await? == 0 {
                    return Err(ErrorKind::UnexpectedEof.into());
                }
                size_line.push(byte[0]);
                if size_line.len() > 64 {
                    return Err(std::io::Error::other("an over-long chunk size"));
                }
            }
            let hex = std::str::from_utf8(&size_line[..size_line.len() - 2])
                .map_err(std::io::Error::other)?;
            let size = usize::from_str_radix(hex.split(';').next().unwrap_or(""), 16)
                .map_err(std::io::Error::other)?;
            if body.len() + size > MAX_BODY {
                return Err(std::io::Error::other("a chunk past the largest body"));
            }
            read_body(reader, &mut body, size, slow.as_deref_mut()).await?;
            let mut crlf = [0u8; 2];
            reader.read_exact(&mut crlf).await?;
            if &crlf != b"\r\n" {
                return Err(std::io::Error::other("no CRLF after a chunk"));
            }
            if size == 0 {
                break;
            }
        }
    } else {
        let len = length.unwrap_or(0);
        if len > MAX_BODY {
            return Err(std::io::Error::other("a length past the largest body"));
        }
        read_body(reader, &mut body, len, slow).await?;
    }
    Ok(Some(Resp { status, id, body }))
}

/// Reads `len` more bytes of a body into `body`, in small pieces with pauses when `slow`.
async fn read_body<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    body: &mut Vec<u8>,
    len: usize,
    slow: Option<&mut Rng>,
) -> std::io::Result<()> {
    let start = body.len();
    body.resize(start + len, 0);
    match slow {
        None => {
            reader.read_exact(&mut body[start..]).await?;
        }
        Some(rng) => {
            let mut at = start;
            while at < body.len() {
                let end = (at + 1 + rng.below(20_000) as usize).min(body.len());
                reader.read_exact(&mut body[at..end]).await?;
                at = end;
                if rng.chance(8) {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    }
    Ok(())
}

/// How a client behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Writes all its requests at once (in random pieces), then reads the answers.
    Pipelined,
    /// One request at a time.
    OneByOne,
    /// Pipelines, half-closes, reads the answers and the clean end.
    HalfClose,
    /// Pipelines and reads slowly.
    Slow,
    /// Asks for a large body, reads part of it and resets the connection.
    Reset,
    /// Sends half a header and stalls.
    Slowloris,
    /// Sends garbage.
    Garbage,
}

impl Kind {
    fn well_behaved(self) -> bool {
        matches!(
            self,
            Kind::Pipelined | Kind::OneByOne | Kind::HalfClose | Kind::Slow
        )
    }
}

/// What a client saw.
#[derive(Debug)]
struct Seen {
    kind: Kind,
    /// Complete, correct responses.
    answered: usize,
    requests: usize,
    /// How it ended: `Ok` a clean end (or its own reset), else the error.
    end: Result<(), String>,
}

/// Connects a client (plain or TLS).
async fn connect(
    port: u16,
    tls: Option<&Arc<tokio_rustls::rustls::ClientConfig>>,
) -> std::io::Result<Box<dyn Duplex>> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    match tls {
        None => Ok(Box::new(tcp)),
        Some(config) => {
            let tls = tokio_rustls::TlsConnector::from(Arc::clone(config))
                .connect(net_tests::tls::localhost(), tcp)
                .await?;
            Ok(Box::new(tls))
        }
    }
}

/// Checks `resp` against `req`.
fn check(resp: &Resp, req: &Req) -> Result<(), String> {
    if resp.status != 200 {
        return Err(format!("status {} for request {}", resp.status, req.id));
    }
    if resp.id.as_deref() != Some(&req.id.to_string()) {
        return Err(format!("x-id {:?} for request {}", resp.id, req.id));
    }
    if resp.body != req.expected {
        return Err(format!(
            "request {}: a body of {} bytes, {} expected",
            req.id,
            resp.body.len(),
            req.expected.len()
        ));
    }
    Ok(())
}

/// Runs one client of `kind`; an `Err` is a broken invariant.
async fn client(
    kind: Kind,
    seed: u64,
    port: u16,
    tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
) -> Result<Seen, String> {
    let mut rng = Rng::new(seed);
    let mut seen = Seen {
        kind,
        answered: 0,
        requests: 0,
        end: Ok(()),
    };
    let io = match connect(port, tls.as_ref()).await {
        Ok(io) => io,
        Err(e) => {
            seen.end = Err(format!("connect: {e}"));
            return Ok(seen);
        }
    };
    let count = 1 + rng.below(6);
    let max = if rng.chance(3) { MAX_BODY } else { 64 * 1024 };
    let mut reqs: Vec<Req> = (0..count)
        .map(|i| request(&mut rng, seed * 100 + i, max))
        .collect();
    seen.requests = reqs.len();
    // `connection: close` on the last request: hyper answers it and ends the connection (its
    // `poll_shutdown`), so the client sees every answer, then the clean end, unasked.
    let close_last = matches!(kind, Kind::Pipelined | Kind::OneByOne | Kind::Slow) && rng.chance(3);
    if close_last {
        let last = reqs.last_mut().expect("a request at least");
        let text = String::from_utf8(std::mem::take(&mut last.bytes)).expect("ASCII requests");
        last.bytes = text
            .replacen("\r\nhost: x\r\n", "\r\nhost: x\r\nconnection: close\r\n", 1)
            .into_bytes();
    }
    let (read_half, mut write_half) = tokio::io::split(io);
    let mut reader = BufReader::new(read_half);
    match kind {
        Kind::Pipelined | Kind::HalfClose | Kind::Slow => {
            let all: Vec<u8> = reqs.iter().flat_map(|r| r.bytes.clone()).collect();
            let mut pieces_rng = Rng::new(seed ^ 0x5eed);
            let writer = async move {
                let mut at = 0;
                while at < all.len() {
                    let end = (at + 1 + pieces_rng.below(100_000) as usize).min(all.len());
                    write_half.write_all(&all[at..end]).await?;
                    at = end;
                }
                if kind == Kind::HalfClose {
                    write_half.shutdown().await?;
                }
                Ok::<_, std::io::Error>(write_half)
            };
            let mut slow_rng = Rng::new(seed ^ 0x510);
            let reading = async {
                for req in &reqs {
                    let slow = (kind == Kind::Slow).then_some(&mut slow_rng);
                    match read_response(&mut reader, slow).await {
                        Ok(Some(resp)) => {
                            check(&resp, req)?;
                            seen.answered += 1;
                        }
                        Ok(None) => {
                            seen.end = Err("a clean end before every answer".into());
                            return Ok(false);
                        }
                        Err(e) => {
                            seen.end = Err(format!("{:?}: {e}", e.kind()));
                            return Ok(false);
                        }
                    }
                }
                Ok::<_, String>(true)
            };
            let (written, all_read) = tokio::join!(writer, reading);
            let all_read = all_read?;
            let mut write_half = match written {
                Ok(w) => w,
                Err(e) => {
                    if seen.end.is_ok() {
                        seen.end = Err(format!("write: {e}"));
                    }
                    return Ok(seen);
                }
            };
            if !all_read {
                return Ok(seen);
            }
            if kind != Kind::HalfClose
                && !close_last
                && let Err(e) = write_half.shutdown().await
            {
                seen.end = Err(format!("shutdown: {e}"));
                return Ok(seen);
            }
            seen.end = finish(&mut reader).await;
        }
        Kind::OneByOne => {
            for req in &reqs {
                if let Err(e) = write_half.write_all(&req.bytes).await {
                    seen.end = Err(format!("write: {e}"));
                    return Ok(seen);
                }
                match read_response(&mut reader, None).await {
                    Ok(Some(resp)) => {
                        check(&resp, req)?;
                        seen.answered += 1;
                    }
                    Ok(None) => {
                        seen.end = Err("a clean end before every answer".into());
                        return Ok(seen);
                    }
                    Err(e) => {
                        seen.end = Err(format!("{:?}: {e}", e.kind()));
                        return Ok(seen);
                    }
                }
            }
            if !close_last && let Err(e) = write_half.shutdown().await {
                seen.end = Err(format!("shutdown: {e}"));
                return Ok(seen);
            }
            seen.end = finish(&mut reader).await;
        }
        Kind::Reset => {
            let n = 256 * 1024 + rng.below(768 * 1024) as usize;
            let head = format!("GET /size/{n}?id=0 HTTP/1.1\r\nhost: x\r\n\r\n");
            if write_half.write_all(head.as_bytes()).await.is_ok() {
                let mut part = vec![0u8; rng.below(200_000) as usize];
                let _ = reader.read_exact(&mut part).await;
            }
            let io = reader.into_inner().unsplit(write_half);
            net_tests::fault::reset(io.into_tcp());
        }
        Kind::Slowloris => {
            let _ = write_half
                .write_all(b"GET /size/10 HTTP/1.1\r\nhost: x\r\n")
                .await;
            let _ = write_half.flush().await;
            let rest = end_of_misbehaving(&mut reader).await?;
            seen.end = rest;
        }
        Kind::Garbage => {
            let garbage: Vec<u8> = (0..1 + rng.below(300))
                .map(|_| match rng.below(4) {
                    0 => b'\r',
                    1 => b'\n',
                    _ => rng.below(256) as u8,
                })
                .chain(*b"\x01 \x02\r\n\r\n")
                .collect();
            let _ = write_half.write_all(&garbage).await;
            let _ = write_half.flush().await;
            let rest = end_of_misbehaving(&mut reader).await?;
            seen.end = rest;
        }
    }
    Ok(seen)
}

/// After its requests: nothing more but the end (clean, or the client's own read error).
async fn finish<R: AsyncRead + Unpin>(reader: &mut BufReader<R>) -> Result<(), String> {
    let mut rest = Vec::new();
    match reader.read_to_end(&mut rest).await {
        Ok(_) if rest.is_empty() => Ok(()),
        Ok(_) => Err(format!("{} bytes past the last answer", rest.len())),
        Err(e) => Err(format!("at the end {:?}: {e}", e.kind())),
    }
}

/// What a misbehaving client reads until its end: no response but hyper's 4xx; `Err` (the
/// invariant) for a 2xx.
async fn end_of_misbehaving<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
) -> Result<Result<(), String>, String> {
    loop {
        match read_response(reader, None).await {
            Ok(Some(resp)) if (400..500).contains(&resp.status) => {}
            Ok(Some(resp)) => {
                return Err(format!("a misbehaving client answered {}", resp.status));
            }
            Ok(None) => return Ok(Ok(())),
            Err(e) => return Ok(Err(format!("{:?}: {e}", e.kind()))),
        }
    }
}

/// The seed's kind of client; slowloris ones only when `stalls` (each keeps its round
/// waiting for hyper's header timeout).
fn kind_of(rng: &mut Rng, stalls: bool) -> Kind {
    match rng.below(if stalls { 13 } else { 12 }) {
        0..=2 => Kind::Pipelined,
        3..=4 => Kind::OneByOne,
        5..=6 => Kind::HalfClose,
        7..=8 => Kind::Slow,
        9 => Kind::Reset,
        10..=11 => Kind::Garbage,
        _ => Kind::Slowloris,
    }
}

/// `curl` fetching `sizes` over one keep-alive connection: `Ok(None)` when there is no curl.
async fn curl(port: u16, tls: Option<String>, sizes: &[usize]) -> Result<Option<()>, String> {
    let mut command = Command::new("curl");
    command.args(["--silent", "--show-error", "--http1.1"]);
    command.args(["--write-out", "<%{num_connects}>"]);
    let scheme = match &tls {
        Some(ca) => {
            command.args(["--cacert", ca]);
            command.args(["--resolve", &format!("localhost:{port}:127.0.0.1")]);
            "https"
        }
        None => "http",
    };
    let host = if tls.is_some() {
        "localhost"
    } else {
        "127.0.0.1"
    };
    for (i, n) in sizes.iter().enumerate() {
        let chunked = if i % 2 == 1 { "&chunked" } else { "" };
        command.arg(format!("{scheme}://{host}:{port}/size/{n}?id={i}{chunked}"));
    }
    command.stdin(Stdio::null());
    let output = tokio::task::spawn_blocking(move || net_tests::harness::output(&mut command))
        .await
        .unwrap();
    let output = match output {
        Ok(output) => output,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("curl: {e}")),
    };
    if !output.status.success() {
        return Err(format!(
            "curl {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let mut expected = Vec::new();
    for (i, n) in sizes.iter().enumerate() {
        expected.extend_from_slice(&sized_body(*n));
        expected.extend_from_slice(if i == 0 { b"<1>" } else { b"<0>" });
    }
    if output.stdout != expected {
        return Err(format!(
            "curl read {} bytes, {} expected (the new connections: {:?})",
            output.stdout.len(),
            expected.len(),
            String::from_utf8_lossy(&output.stdout)
                .matches(|c| c == '<' || c == '>' || char::is_numeric(c))
                .collect::<String>()
        ));
    }
    Ok(Some(()))
}

/// The PEM of the CA for curl, written once.
struct CaFile {
    _dir: net_tests::TempDir,
    path: String,
}

/// One round: a server, its clients, maybe a shutdown part-way and curl; `Ok` the
/// connections the server served and whether curl ran.
async fn round(seed: u64, pki: &Pki, ca: &CaFile) -> Result<(usize, bool), String> {
    let mut rng = Rng::new(seed);
    let selector = SelectorManager::new();
    let coalesce = rng.chance(2);
    let tls = rng.chance(2);
    let listener: ServerSocket = a_socket(&selector)
        .tcp()
        .coalesce_flushes(coalesce)
        .bind(("127.0.0.1", 0))
        .await
        .map_err(|e| format!("bind: {e}"))?;
    let port = listener.port().expect("a TCP listener's port");
    let server_config = tls.then(|| {
        pki.server_config()
            .alpn_protocols(["http/1.1"])
            .build()
            .expect("the server configuration")
    });
    let client_config = tls.then(|| {
        let versions: &[&'static tokio_rustls::rustls::SupportedProtocolVersion] = if rng.chance(3)
        {
            &[&tokio_rustls::rustls::version::TLS12]
        } else {
            &[&tokio_rustls::rustls::version::TLS13]
        };
        net_tests::tls::rustls_client_config(&pki.ca, versions)
    });
    let served = Arc::new(Mutex::new(Served::default()));
    let listener = Arc::new(listener);
    let accepting = {
        let listener = Arc::clone(&listener);
        let served = Arc::clone(&served);
        let config = server_config.clone();
        tokio::spawn(async move {
            let mut tasks = tokio::task::JoinSet::new();
            while let Ok(socket) = listener.accept().await {
                tasks.spawn(serve(socket, config.clone(), Arc::clone(&served)));
            }
            while let Some(done) = tasks.join_next().await {
                done.expect("a connection's task panicked");
            }
        })
    };
    let shutdown = rng.chance(3);
    let clients = 6 + rng.below(14);
    let stalls = rng.chance(4);
    let mut handles = Vec::new();
    for i in 0..clients {
        let client_seed = seed * 1000 + i;
        let kind = kind_of(&mut Rng::new(client_seed), stalls);
        let config = client_config.clone();
        handles.push((
            kind,
            tokio::spawn(async move {
                let t = Instant::now();
                let r = tokio::time::timeout(CLIENT_LIMIT, client(kind, client_seed, port, config))
                    .await;
                if std::env::var_os("HYPER_TRACE").is_some()
                    && t.elapsed() > Duration::from_millis(300)
                {
                    eprintln!("  client {client_seed} {kind:?}: {:?} {r:?}", t.elapsed());
                }
                r
            }),
        ));
    }
    let curl_sizes: Option<Vec<usize>> = rng.chance(4).then(|| {
        (0..2 + rng.below(4))
            .map(|_| rng.below(300_000) as usize)
            .collect()
    });
    let curl_task = curl_sizes.clone().map(|sizes| {
        let ca = tls.then(|| ca.path.clone());
        tokio::spawn(async move { curl(port, ca, &sizes).await })
    });
    let mut report = None;
    let mut failures = Vec::new();
    if shutdown {
        tokio::time::sleep(Duration::from_millis(rng.below(150))).await;
        // hyper ends every connection well within the grace period (a stalled header at its
        // timeout): none is cut.
        // The listener's shutdown or its selector's: either way, once it returned no
        // connection is open (the selector's docs say so of every listener's `stats`).
        let by_selector = rng.chance(2);
        report = Some(if by_selector {
            selector.shutdown(GRACE).await
        } else {
            listener.shutdown(GRACE).await
        });
        let open = listener.stats().open;
        if open > 0 {
            failures.push(format!(
                "{open} connections open after the {} shutdown returned",
                if by_selector {
                    "selector's"
                } else {
                    "listener's"
                }
            ));
        }
    }
    let mut seen_all = Vec::new();
    for (kind, handle) in handles {
        match handle.await {
            Ok(Ok(Ok(seen))) => seen_all.push(seen),
            Ok(Ok(Err(e))) => failures.push(format!("{kind:?}: {e}")),
            Ok(Err(_)) => failures.push(format!("{kind:?}: hung")),
            Err(e) => failures.push(format!("{kind:?}: panicked: {e}")),
        }
    }
    let mut curl_note = "";
    let mut curl_ran = false;
    if let Some(task) = curl_task {
        match tokio::time::timeout(CLIENT_LIMIT, task).await {
            Ok(Ok(Ok(Some(())))) => curl_ran = true,
            Ok(Ok(Ok(None))) => curl_note = " (no curl: skipped)",
            Ok(Ok(Err(e))) if !shutdown => failures.push(e),
            Ok(Ok(Err(_))) => {}
            Ok(Err(e)) => failures.push(format!("curl's task: {e}")),
            Err(_) => failures.push("curl hung".into()),
        }
    }
    if !shutdown {
        listener.close();
    }
    match tokio::time::timeout(CLIENT_LIMIT, accepting).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => failures.push(format!("the server's task: {e}")),
        Err(_) => failures.push("the server's connections hung".into()),
    }
    let served = std::mem::take(&mut *served.lock().unwrap());
    if report.is_some_and(|r| r.cut > 0) {
        failures.push("the graceful shutdown cut connections".into());
    }
    // Every connection accepted was served, and left the listener's count once its task ended.
    let waited = Instant::now();
    while listener.stats().open > 0 && waited.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let stats = listener.stats();
    if stats.open > 0 || stats.accepted != (served.ok + served.errors.len()) as u64 {
        failures.push(format!(
            "the listener's stats {stats:?} after {} connections served",
            served.ok + served.errors.len()
        ));
    }
    if shutdown && std::env::var_os("HYPER_TRACE").is_some() {
        for seen in seen_all
            .iter()
            .filter(|s| s.kind.well_behaved() && s.end.is_err())
        {
            eprintln!("  seed {seed} tls {tls} after the shutdown: {seen:?}");
        }
    }
    // hyper ends a well-behaved client's connection, on a shutdown too, through its
    // `poll_shutdown`: over TLS `close_notify` comes first, never a bare end.
    for seen in &seen_all {
        if seen.kind.well_behaved() && seen.end.as_ref().is_err_and(|e| e.contains("close_notify"))
        {
            failures.push(format!(
                "a well-behaved client's stream truncated: {seen:?}"
            ));
        }
    }
    if !shutdown {
        for seen in &seen_all {
            if seen.kind.well_behaved() && (seen.answered != seen.requests || seen.end.is_err()) {
                failures.push(format!(
                    "a well-behaved client not served in full: {seen:?}"
                ));
            }
        }
        let misbehaving = seen_all
            .iter()
            .filter(|s| matches!(s.kind, Kind::Slowloris | Kind::Garbage))
            .count();
        let resets = seen_all.iter().filter(|s| s.kind == Kind::Reset).count();
        if served.errors.len() < misbehaving || served.errors.len() > misbehaving + resets {
            failures.push(format!(
                "hyper reported {} errors for {misbehaving} misbehaving clients and {resets} \
                 resets: {:?}",
                served.errors.len(),
                served.errors
            ));
        }
    }
    selector.close();
    if failures.is_empty() {
        Ok((served.ok + served.errors.len(), curl_ran))
    } else {
        Err(format!(
            "seed {seed} (tls {tls}, coalescing {coalesce}, shutdown {report:?}{curl_note}): \
             {failures:#?}"
        ))
    }
}

/// hyper over our streams under chaos (`HYPER_SEED`, `HYPER_ROUNDS` choose the rounds).
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn hyper_over_our_streams_answers_every_request_exactly() {
    let pki = Pki::generate();
    let dir = net_tests::TempDir::new("hyper-chaos");
    let path = dir.write("ca.pem", pki.ca.pem());
    let ca = CaFile {
        path: path.to_str().expect("a UTF-8 path").to_owned(),
        _dir: dir,
    };
    let (connections, curls) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
    let (pki, ca, served, curled) = (&pki, &ca, &connections, &curls);
    net_tests::stress::run_rounds("HYPER", 20, Duration::from_secs(30), |seed| async move {
        let round_started = Instant::now();
        let result = round(seed, pki, ca).await;
        if std::env::var_os("HYPER_TRACE").is_some() {
            eprintln!("seed {seed}: {:?} {result:?}", round_started.elapsed());
        }
        let (n, curl_ran) = result?;
        served.set(served.get() + n);
        curled.set(curled.get() + usize::from(curl_ran));
        Ok(())
    })
    .await;
    eprintln!(
        "{} connections served, curl ran {} times",
        connections.get(),
        curls.get()
    );
    if curls.get() == 0 {
        net_tests::harness::skipped("no `curl` on PATH (or no round asked for it): curl's part");
    }
}
