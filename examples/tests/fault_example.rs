//! The fault suite through the `sockets-server` example binary, as a user runs it: a line over
//! its limit, invalid UTF-8 and a reset in the middle of a line, while another client keeps
//! getting `Hello, X!` answers and the server keeps running and says what happened.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use net_io::{ByteReadChannel, ByteWriteChannel, LineEnding};
use net_sockets::{SelectorManager, Socket, a_socket};

/// How long any single step may take before the test calls it a hang.
const HANG_LIMIT: Duration = Duration::from_secs(20);

/// `sockets-server 127.0.0.1 0`, with its standard output collected line by line.
struct Server {
    child: Child,
    port: u16,
    stdout: mpsc::Receiver<String>,
}

impl Server {
    fn start() -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sockets-server"))
            .args(["127.0.0.1", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start sockets-server");
        let (tx, stdout) = mpsc::channel();
        let pipe = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let first = stdout
            .recv_timeout(HANG_LIMIT)
            .expect("the server's first line");
        let port = first
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {first:?}"));
        Server {
            child,
            port,
            stdout,
        }
    }

    /// Waits for a line of the server's output that contains every one of `parts`.
    fn expect_output(&self, parts: &[&str]) -> String {
        loop {
            let line = self
                .stdout
                .recv_timeout(HANG_LIMIT)
                .unwrap_or_else(|e| panic!("no output line with {parts:?}: {e}"));
            if parts.iter().all(|p| line.contains(p)) {
                return line;
            }
        }
    }

    fn assert_running(&mut self) {
        assert!(
            self.child.try_wait().unwrap().is_none(),
            "the server exited"
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Client {
    socket: Socket,
    input: ByteReadChannel,
    output: ByteWriteChannel,
}

impl Client {
    async fn connect(selector: &SelectorManager, port: u16, reset_on_close: bool) -> Client {
        let mut builder = a_socket(selector).tcp();
        if reset_on_close {
            builder = builder.linger(Duration::ZERO);
        }
        let mut socket = builder.connect(("127.0.0.1", port)).await.unwrap();
        let input = socket.open_read_channel().unwrap();
        let output = socket.open_write_channel(true).unwrap();
        let mut client = Client {
            socket,
            input,
            output,
        };
        assert_eq!(
            client.line().await.as_deref(),
            Some("Please enter your name")
        );
        client
    }

    async fn line(&mut self) -> Option<String> {
        tokio::time::timeout(
            HANG_LIMIT,
            self.input.read_line(64 * 1024, LineEnding::Default),
        )
        .await
        .expect("the server answers")
        .expect("a line")
    }

    async fn say(&mut self, bytes: &[u8]) {
        self.output.write_fully(bytes).await.unwrap();
    }

    async fn round_trip(&mut self, name: &str) {
        self.say(format!("{name}\n").as_bytes()).await;
        assert_eq!(self.line().await, Some(format!("Hello, {name}!")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_do_not_disturb_a_well_behaved_one() {
    let mut server = Server::start();
    let selector = SelectorManager::new();
    let mut good = Client::connect(&selector, server.port, false).await;
    good.round_trip("Alice").await;

    // A line over the 8192-byte limit: a notice, then that connection ends.
    let mut long = Client::connect(&selector, server.port, false).await;
    let mut line = vec![b'a'; 100_000];
    line.push(b'\n');
    long.say(&line).await;
    assert_eq!(
        long.line().await.as_deref(),
        Some("Line too long (limit 8192 bytes), closing the connection")
    );
    assert_eq!(long.line().await, None);
    server.expect_output(&["ended:", "line longer than the limit of 8192 bytes"]);
    good.round_trip("Bob").await;

    // Invalid UTF-8 is answered with U+FFFD in its place; the connection goes on.
    let mut latin1 = Client::connect(&selector, server.port, false).await;
    latin1.say(b"Jos\xe9\n").await;
    assert_eq!(latin1.line().await.as_deref(), Some("Hello, Jos\u{FFFD}!"));
    latin1.round_trip("Jose").await;
    good.round_trip("Carol").await;

    // A reset in the middle of a line: the server reports it and drops only that connection.
    let mut resetter = Client::connect(&selector, server.port, true).await;
    resetter.say(b"half a li").await;
    good.round_trip("Dave").await;
    resetter.socket.close(); // SO_LINGER 0: RST
    server.expect_output(&["ended:", "reset"]);
    good.round_trip("Eve").await;

    server.assert_running();
    good.output.flush_and_close().await.unwrap();
    assert_eq!(good.line().await, None);
}
