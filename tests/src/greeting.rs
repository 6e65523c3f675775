//! The seed's protocol, both ends: the server greets with [`GREETING`], answers every line
//! with `Hello, <line>!` and stops at the client's end of stream; the client reads the
//! greeting, says names and checks each answer.
//!
//! Both ends work over a plain [`Socket`] and over a
//! [`TlsSocket`](net_tls::TlsSocket) (anything that is [`Channels`]).

use net_io::{ByteReadChannel, ByteWriteChannel, LineEnding};
use net_sockets::{SelectorManager, Socket, Transport};

use crate::loopback::{Channels, connect};
use crate::within;

/// The greeting the server sends first.
pub const GREETING: &str = "Please enter your name";

/// The longest line a [`GreetingClient`] reads.
const CLIENT_LINE_LIMIT: usize = 64 * 1024;

/// The server's side of a conversation: greets, then answers every line of at most `limit`
/// bytes until the client's end of stream, pushing each line read to `lines`. Closes nothing.
///
/// # Errors
///
/// The first error of either channel, [`net_io::Error::TooLongLine`] included.
pub async fn serve_greetings(
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

/// The seed's server loop on `socket`: opens its channels (the write channel auto-flushed, as
/// the seed's is), then [`serve_greetings`] with lines of at most 1 KiB, until the client's end
/// of stream or the first error. Closes nothing: the channels and the socket are dropped.
pub async fn serve_seed<T: Transport>(mut socket: Socket<T>) {
    let mut input = socket.open_read_channel().unwrap();
    let mut output = socket.open_write_channel(true).unwrap();
    let _ = serve_greetings(&mut input, &mut output, 1024, &mut Vec::new()).await;
}

/// How one connection served by [`serve_lines`] ended, as the server saw it.
#[derive(Debug)]
pub struct Outcome {
    /// The lines the server read, in order.
    pub lines: Vec<String>,
    /// `Ok` at the client's end of stream (and a clean half-close of the server's side), or
    /// the error that ended the conversation.
    pub end: Result<(), net_io::Error>,
    /// After [`net_io::Error::TooLongLine`]: how many bytes the server drained until the
    /// client's FIN (the unconsumed line included), or the error that stopped the drain.
    pub drained: Option<Result<u64, net_io::Error>>,
}

/// Serves one connection (plain or TLS) with the seed's protocol until it ends, then
/// half-closes and closes it; returns how it ended.
pub async fn serve_lines(mut connection: impl Channels, limit: usize) -> Outcome {
    let mut outcome = Outcome {
        lines: Vec::new(),
        end: Ok(()),
        drained: None,
    };
    let (mut input, mut output) = match connection.open_channels(true) {
        Ok(channels) => channels,
        Err(e) => {
            outcome.end = Err(e.into());
            return outcome;
        }
    };
    outcome.end = serve_greetings(&mut input, &mut output, limit, &mut outcome.lines).await;
    if matches!(outcome.end, Err(net_io::Error::TooLongLine { .. })) {
        outcome.drained = Some(input.discard(u64::MAX).await);
    }
    let closed = output.flush_and_close().await;
    if outcome.end.is_ok() {
        outcome.end = closed;
    }
    connection.close_connection();
    outcome
}

/// A client of a greeting server, over a connection `C` that it owns and closes.
///
/// Every read is bounded by [`within`]; every failure panics.
#[derive(Debug)]
pub struct GreetingClient<C> {
    connection: C,
    input: ByteReadChannel,
    output: ByteWriteChannel,
    sent: Vec<String>,
}

impl GreetingClient<Socket> {
    /// Connects to `127.0.0.1:port` and reads the greeting.
    pub async fn connect(selector: &SelectorManager, port: u16) -> GreetingClient<Socket> {
        GreetingClient::start(connect(selector, ("127.0.0.1", port)).await).await
    }
}

impl<C: Channels> GreetingClient<C> {
    /// Opens the channels of `connection` (auto-flush on) and reads the greeting.
    pub async fn start(mut connection: C) -> GreetingClient<C> {
        let (input, output) = connection.open_channels(true).expect("open channels");
        let mut client = GreetingClient {
            connection,
            input,
            output,
            sent: Vec::new(),
        };
        assert_eq!(client.line().await.as_deref(), Some(GREETING));
        client
    }

    /// Writes `bytes` as they are (no line ending added).
    pub async fn say(&mut self, bytes: &[u8]) {
        self.output.write_fully(bytes).await.expect("client writes");
    }

    /// Reads the next line from the server; `None` at its end of stream.
    pub async fn line(&mut self) -> Option<String> {
        within(self.input.read_line(CLIENT_LINE_LIMIT, LineEnding::Default))
            .await
            .expect("client reads a line")
    }

    /// Says `name` and checks that the answer is `Hello, <name>!`.
    pub async fn round_trip(&mut self, name: &str) {
        self.say(format!("{name}\n").as_bytes()).await;
        assert_eq!(self.line().await, Some(format!("Hello, {name}!")));
        self.sent.push(name.to_owned());
    }

    /// The connection (to close or reset it, or to look at its session).
    pub fn connection(&self) -> &C {
        &self.connection
    }

    /// Half-closes, checks that the server ends the conversation cleanly (end of stream, for
    /// TLS after `close_notify`), closes the connection, and returns the names that
    /// [`round_trip`](Self::round_trip) sent (to compare with what the server read).
    pub async fn finish(mut self) -> Vec<String> {
        self.output
            .flush_and_close()
            .await
            .expect("client half-closes");
        assert_eq!(self.line().await, None, "a clean end of the conversation");
        self.connection.close_connection();
        self.sent
    }
}
