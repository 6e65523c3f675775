//! A plain line conversation over a connection's channels, for the tests that play one end of
//! a line protocol against a server or a client of ours (an example program, a STARTTLS peer):
//! the next line ([`line`](fn@line), or [`utf8_line`] under Ktor's `readUTF8Line` rules) and
//! a line sent ([`send`]). Each fails the test on an error, and reads fail it after
//! [`HANG_LIMIT`] rather than hang.

use net_io::{ByteReadChannel, ByteWriteChannel, LineEnding};

use crate::{HANG_LIMIT, within};

/// The next line (of at most 1024 bytes, ended by `\n` or `\r\n`, without its ending); panics
/// on an error, at the end of the stream, and after [`HANG_LIMIT`], naming the peer the
/// client (its users play the server to a client program).
pub async fn line(input: &mut ByteReadChannel) -> String {
    tokio::time::timeout(HANG_LIMIT, input.read_line(1024, LineEnding::Default))
        .await
        .expect("the client's next line")
        .expect("the client's line")
        .expect("a line, not the end")
}

/// The next line with Ktor's `readUTF8Line` rules (of at most 64 bytes, ended by `\n`, `\r\n`
/// or a lone `\r`), `None` at the end of the stream; panics on an error and after
/// [`HANG_LIMIT`].
pub async fn utf8_line(input: &mut ByteReadChannel) -> Option<String> {
    within(input.read_utf8_line(64)).await.unwrap()
}

/// Writes `text` and flushes it; panics on an error.
pub async fn send(output: &mut ByteWriteChannel, text: &str) {
    output.write_string_utf8(text).await.unwrap();
    output.flush().await.unwrap();
}
