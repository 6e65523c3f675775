//! `sockets-server --idle-timeout`: what the option's help says ("close a connection that sends
//! nothing (or takes nothing we write) for this many seconds"), end to end.

use std::io::{BufRead, BufReader, Read, Write};
use std::time::{Duration, Instant};

use net_tests::HANG_LIMIT;
use net_tests::harness::Process;

/// With `--idle-timeout 1`, a client that says nothing after the prompt is closed after about
/// a second (the server says it timed out), while a client that sends a line every 300 ms for
/// 2.1 s, longer than the timeout in all, is answered every time: the timeout is about
/// silence, not the connection's age.
#[test]
fn sockets_server_closes_a_silent_client_after_the_idle_timeout_and_serves_a_talking_one() {
    let mut server = Process::start(
        env!("CARGO_BIN_EXE_sockets-server"),
        ["--idle-timeout", "1", "127.0.0.1", "0"],
    );
    let port = server.listening_port();
    let connect = || {
        let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(HANG_LIMIT)).unwrap();
        let address = stream.local_addr().unwrap().to_string();
        let mut reader = BufReader::new(stream);
        let mut prompt = String::new();
        reader.read_line(&mut prompt).unwrap();
        assert_eq!(prompt, "Please enter your name\n");
        (reader, address)
    };
    let (mut silent, silent_address) = connect();
    // How long until the silent client sees the end of its stream (read with the hang limit).
    let silent = std::thread::spawn(move || {
        let since = Instant::now();
        let mut rest = Vec::new();
        let end = silent.read_to_end(&mut rest).map_err(|e| e.kind());
        (end, rest, since.elapsed())
    });
    let (mut talker, _) = connect();

    // The pace is the behaviour here: never a second silent, 2.1 s in all.
    for i in 0..7 {
        talker
            .get_mut()
            .write_all(format!("round {i}\n").as_bytes())
            .unwrap();
        let mut answer = String::new();
        talker.read_line(&mut answer).unwrap();
        assert_eq!(answer, format!("Hello, round {i}!\n"));
        std::thread::sleep(Duration::from_millis(300));
    }

    // The silent client was closed, a clean end after about the timeout (not before it; the
    // upper bound is a margin for a loaded machine).
    let (end, rest, took) = silent.join().unwrap();
    assert_eq!(end, Ok(0), "{rest:?}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    let ended = server.stdout_line_where("the silent client's end", |l| {
        l.starts_with(&format!("Connection with {silent_address} ended"))
    });
    assert!(ended.ends_with("timed out"), "{ended}");
    // The talker is still served after its pauses.
    talker.get_mut().write_all(b"again\n").unwrap();
    let mut answer = String::new();
    talker.read_line(&mut answer).unwrap();
    assert_eq!(answer, "Hello, again!\n");
}
