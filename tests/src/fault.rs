//! Fixtures for the fault suite (`tests/tests/fault_*.rs`): a line server that reports how
//! each of its connections ended, a well-behaved client that keeps talking to it while another
//! connection misbehaves, hostile raw peers, and process measurements (memory, CPU time).
//!
//! The server speaks the seed's protocol: it greets with `Please enter your name`, answers
//! every line with `Hello, <line>!`, and stops at the client's FIN. A line over its limit ends
//! the conversation; the server then drains the rest of the connection (counting the bytes) so
//! that a test can check that nothing was lost and memory stayed bounded.

use std::sync::Arc;
use std::time::Duration;

use net_io::{ByteReadChannel, ByteWriteChannel, LineEnding};
use net_sockets::{SelectorManager, ServerSocket, Socket, TcpSocketBuilder, a_socket};
use tokio::sync::mpsc;

use crate::within;

/// The greeting the line server sends first.
pub const GREETING: &str = "Please enter your name";

/// How one connection of a [`LineServer`] ended, as the server saw it.
#[derive(Debug)]
pub struct Outcome {
    /// The lines the server read, in order.
    pub lines: Vec<String>,
    /// `Ok` at the client's FIN, or the error that ended the conversation.
    pub end: Result<(), net_io::Error>,
    /// After [`net_io::Error::TooLongLine`]: how many bytes the server drained until the
    /// client's FIN (the unconsumed line included), or the error that stopped the drain.
    pub drained: Option<Result<u64, net_io::Error>>,
}

/// A TCP line server on `127.0.0.1:0` that reports each connection's [`Outcome`].
#[derive(Debug)]
pub struct LineServer {
    /// The listener (closed when the test drops the server).
    pub listener: Arc<ServerSocket>,
    outcomes: mpsc::UnboundedReceiver<Outcome>,
}

impl LineServer {
    /// Starts a server whose lines may have at most `limit` bytes; `configure` sets listener
    /// options (they carry into accepted sockets, e.g. `socket_timeout`).
    pub async fn start(
        selector: &SelectorManager,
        limit: usize,
        configure: impl FnOnce(TcpSocketBuilder) -> TcpSocketBuilder,
    ) -> LineServer {
        let listener = configure(a_socket(selector).tcp())
            .bind(("127.0.0.1", 0))
            .await
            .expect("bind line server");
        let listener = Arc::new(listener);
        let (tx, outcomes) = mpsc::unbounded_channel();
        let accepting = Arc::clone(&listener);
        tokio::spawn(async move {
            while let Ok(socket) = accepting.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let _ = tx.send(serve_lines(socket, limit).await);
                });
            }
        });
        LineServer { listener, outcomes }
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.listener.port().expect("an inet listener")
    }

    /// The outcome of the next connection to end (hang safety net: [`within`]).
    pub async fn next_outcome(&mut self) -> Outcome {
        within(self.outcomes.recv())
            .await
            .expect("the server stopped reporting")
    }
}

/// Serves one connection with the line protocol until it ends; returns how it ended.
pub async fn serve_lines(mut socket: Socket, limit: usize) -> Outcome {
    let mut outcome = Outcome {
        lines: Vec::new(),
        end: Ok(()),
        drained: None,
    };
    let (mut input, mut output) =
        match (socket.open_read_channel(), socket.open_write_channel(true)) {
            (Ok(input), Ok(output)) => (input, output),
            (Err(e), _) | (_, Err(e)) => {
                outcome.end = Err(std::io::Error::from(e).into());
                return outcome;
            }
        };
    outcome.end = talk(&mut input, &mut output, limit, &mut outcome.lines).await;
    if matches!(outcome.end, Err(net_io::Error::TooLongLine { .. })) {
        outcome.drained = Some(input.discard(u64::MAX).await);
    }
    let _ = output.flush_and_close().await;
    socket.close();
    outcome
}

async fn talk(
    input: &mut ByteReadChannel,
    output: &mut ByteWriteChannel,
    limit: usize,
    lines: &mut Vec<String>,
) -> Result<(), net_io::Error> {
    output.write_string_utf8(&format!("{GREETING}\n")).await?;
    while let Some(line) = input.read_line(limit, LineEnding::Default).await? {
        output
            .write_string_utf8(&format!("Hello, {line}!\n"))
            .await?;
        lines.push(line);
    }
    Ok(())
}

/// A well-behaved client of a [`LineServer`] (or of [`serve_lines`]): it is
/// connected before a test misbehaves and proves, round trip by round trip, that it is served.
#[derive(Debug)]
pub struct GoodClient {
    socket: Socket,
    input: ByteReadChannel,
    output: ByteWriteChannel,
    sent: Vec<String>,
}

impl GoodClient {
    /// Connects to `127.0.0.1:port` and reads the greeting.
    pub async fn connect(selector: &SelectorManager, port: u16) -> GoodClient {
        let socket = a_socket(selector)
            .tcp()
            .connect(("127.0.0.1", port))
            .await
            .expect("good client connects");
        GoodClient::greeted(socket).await
    }

    /// Opens the channels of a connected socket and reads the greeting.
    async fn greeted(mut socket: Socket) -> GoodClient {
        let mut input = socket.open_read_channel().unwrap();
        let output = socket.open_write_channel(true).unwrap();
        let greeting = within(input.read_line(1024, LineEnding::Default))
            .await
            .expect("good client reads the greeting");
        assert_eq!(greeting.as_deref(), Some(GREETING));
        GoodClient {
            socket,
            input,
            output,
            sent: Vec::new(),
        }
    }

    /// Says `name` and checks that the answer is `Hello, <name>!`.
    pub async fn round_trip(&mut self, name: &str) {
        self.output
            .write_string_utf8(&format!("{name}\n"))
            .await
            .expect("good client writes");
        let answer = within(self.input.read_line(64 * 1024, LineEnding::Default))
            .await
            .expect("good client reads");
        assert_eq!(answer, Some(format!("Hello, {name}!")));
        self.sent.push(name.to_owned());
    }

    /// Half-closes, checks that the server ends the conversation cleanly, and returns the
    /// names this client sent (to compare with the server's [`Outcome::lines`]).
    pub async fn finish(mut self) -> Vec<String> {
        self.output.flush_and_close().await.unwrap();
        let end = within(self.input.read_line(1024, LineEnding::Default))
            .await
            .expect("good client reads the end");
        assert_eq!(end, None);
        self.socket.close();
        self.sent
    }
}

/// Connects a [`GoodClient`] to `listener` and serves it there with [`serve_lines`] (for tests
/// that play the server's part for the misbehaving connection themselves). The task's result
/// is the good connection's [`Outcome`].
pub async fn good_client_of(
    selector: &SelectorManager,
    listener: &ServerSocket,
) -> (GoodClient, tokio::task::JoinHandle<Outcome>) {
    let port = listener.port().expect("an inet listener");
    let (connected, accepted) = tokio::join!(
        a_socket(selector).tcp().connect(("127.0.0.1", port)),
        within(listener.accept())
    );
    let served = tokio::spawn(serve_lines(accepted.expect("accept the good client"), 1024));
    let client = GoodClient::greeted(connected.expect("good client connects")).await;
    (client, served)
}

/// Makes `stream` reset its connection when it is dropped (`SO_LINGER` 0), then drops it.
pub fn reset(stream: tokio::net::TcpStream) {
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .expect("set SO_LINGER 0");
    drop(stream);
}

/// A field of `/proc/self/status` in KiB (`VmRSS`, `VmHWM`, ...).
pub fn proc_status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix(field)?.strip_prefix(':')?;
            rest.trim().trim_end_matches("kB").trim().parse().ok()
        })
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// Resets this process's peak resident set size (`VmHWM`) to its current size; false when the
/// kernel does not allow it (then `VmHWM` keeps the older peak, which only makes a growth check
/// stricter).
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// CPU time (user + system) of this process in clock ticks, from `/proc/self/stat`, read
/// through an already open file (a process out of descriptors cannot open it).
pub fn cpu_ticks(stat: &std::fs::File) -> u64 {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 4096];
    let n = stat.read_at(&mut buf, 0).expect("read /proc/self/stat");
    let stat = String::from_utf8_lossy(&buf[..n]).into_owned();
    let after_name = &stat[stat.rfind(')').expect("a stat line") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of proc_pid_stat(5) are utime and stime; `after_name` starts at field 3.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}
