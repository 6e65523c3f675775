//! `chat-server`'s welcome in a crowded room: the list of who is here comes in lines of at most
//! 8192 bytes (the longest a member may send), so that a client that reads lines of a bounded
//! length can join a room of any size. The list was one line whatever its length: with 1,930
//! members of 32-byte nicks it passed the 64 KiB that `sockets-client`, the README's chat
//! client, takes, and a newcomer with it failed (`line longer than the limit of 65536 bytes`,
//! status 1).

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;

use net_tests::HANG_LIMIT;
use net_tests::harness::Process;

const CHAT: &str = env!("CARGO_BIN_EXE_chat-server");
const CLIENT: &str = env!("CARGO_BIN_EXE_sockets-client");

/// Members enough for a list of 32-byte nicks longer than [`LINE_LIMIT`] (34 bytes a nick
/// with its `, `).
const MEMBERS: usize = 260;

/// The longest line a member may send, which no line of the welcome passes either.
const LINE_LIMIT: usize = 8192;

/// Reads what `stream` has for us now without waiting; panics if the server ended it (the
/// room dropped that member).
fn drain(stream: &mut TcpStream, buffer: &mut [u8]) {
    loop {
        match stream.read(buffer) {
            Ok(0) => panic!("the server ended a member's connection"),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) => panic!("a member's read failed: {e}"),
        }
    }
}

/// Joins as `nick` and waits for the start of the welcome; the stream is left non-blocking.
fn join(port: u16, nick: &str, buffer: &mut [u8]) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to chat-server");
    stream.set_read_timeout(Some(HANG_LIMIT)).unwrap();
    stream
        .write_all(format!("{nick}\n").as_bytes())
        .expect("send the nick");
    let mut seen = Vec::new();
    while !seen.windows(10).any(|w| w == b"\n* Welcome") {
        let n = stream.read(buffer).expect("the welcome");
        assert!(n > 0, "{nick}: the server ended the connection");
        seen.extend_from_slice(&buffer[..n]);
    }
    stream.set_nonblocking(true).unwrap();
    stream
}

/// A newcomer with `sockets-client` in a room of 260 members with 32-byte nicks is welcomed
/// with the list of all of them in lines of at most 8192 bytes (`* Welcome, NICK. Here: ...`,
/// then `* Also here: ...`), and leaves at the end of its input with status 0. (The list was
/// one line of 8,863 bytes.)
#[test]
fn the_welcome_in_a_crowded_room_lists_everyone_in_lines_within_the_limit() {
    let mut server = Process::start(CHAT, ["127.0.0.1", "0"]);
    let port = server.listening_port();
    let mut buffer = vec![0; 64 * 1024];
    let mut members: Vec<TcpStream> = Vec::with_capacity(MEMBERS);
    for i in 0..MEMBERS {
        members.push(join(port, &format!("{i:032}"), &mut buffer));
        // Every member takes the news of the joins now and then, as a client that reads does
        // (the room drops one that falls too far behind).
        if i % 64 == 63 {
            for member in &mut members {
                drain(member, &mut buffer);
            }
        }
    }

    let mut newcomer = Process::start(CLIENT, ["127.0.0.1".to_owned(), port.to_string()]);
    newcomer.send("newbie\n");
    // Its input ends here: it leaves, and the server closes its connection.
    let finished = newcomer.finish();
    for member in &mut members {
        drain(member, &mut buffer);
    }
    assert_eq!(finished.status.code(), Some(0), "{:?}", finished.stderr);
    let lines = &finished.stdout;
    assert_eq!(lines.first().map(String::as_str), Some("Your name?"));
    assert_eq!(
        lines.last().map(String::as_str),
        Some("Server closed a connection")
    );
    let welcome = &lines[1..lines.len() - 1];
    let (first, rest) = welcome.split_first().expect("a welcome");
    let mut listed: Vec<&str> = first
        .strip_prefix("* Welcome, newbie. Here: ")
        .unwrap_or_else(|| panic!("not a welcome: {first:.80}"))
        .split(", ")
        .collect();
    for line in rest {
        let more = line
            .strip_prefix("* Also here: ")
            .unwrap_or_else(|| panic!("not a line of the welcome: {line:.80}"));
        listed.extend(more.split(", "));
    }
    for line in welcome {
        assert!(line.len() <= LINE_LIMIT, "a line of {} bytes", line.len());
    }
    let expected: Vec<String> = (0..MEMBERS).map(|i| format!("{i:032}")).collect();
    assert_eq!(listed, expected);
    drop(members);
    server.kill();
}
