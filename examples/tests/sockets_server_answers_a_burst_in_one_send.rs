//! SPEC §4.4: "the seed's `sockets-server` gets the benefit as shipped": a burst of pipelined
//! requests is answered with one send, not one per answer, while a lone request's answer
//! leaves at once. The library's coalescing is counted in sends by `net-tests`' `coalescing`;
//! this counts, for the program itself, the data segments the client's kernel received
//! (`ss -ti`'s `data_segs_in`): on loopback each send of a few hundred bytes is one segment.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::Command;

use net_tests::harness::Process;

const SERVER: &str = env!("CARGO_BIN_EXE_sockets-server");

/// The data segments the connection from `client` has received so far, by `ss`; `None` where
/// `ss` cannot be run or does not report them (a kernel before 4.6).
fn data_segments_in(client: &TcpStream) -> Option<u64> {
    let port = client.local_addr().ok()?.port();
    let out = net_tests::harness::output(Command::new("ss").args([
        "-tinH",
        "src",
        "127.0.0.1",
        "and",
        "sport",
        "=",
        &format!(":{port}"),
    ]))
    .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let at = text.find("data_segs_in:")? + "data_segs_in:".len();
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

fn read_line(reader: &mut BufReader<TcpStream>) -> String {
    let mut line = String::new();
    reader.read_line(&mut line).expect("a line from the server");
    line
}

#[test]
fn a_burst_of_sixteen_requests_is_answered_with_one_segment_and_a_lone_one_at_once() {
    let mut server = Process::start(SERVER, ["127.0.0.1", "0"]);
    let port = server.listening_port();
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    client
        .set_read_timeout(Some(net_tests::HANG_LIMIT))
        .unwrap();
    let mut reader = BufReader::new(client.try_clone().unwrap());
    assert_eq!(read_line(&mut reader), "Please enter your name\n");
    let Some(before) = data_segments_in(&client) else {
        net_tests::harness::skipped("`ss` reports no data_segs_in here");
        return;
    };

    // Sixteen requests in one write: one segment, all in the server's first read.
    let burst: String = (0..16).map(|i| format!("name{i}\n")).collect();
    client.write_all(burst.as_bytes()).unwrap();
    for i in 0..16 {
        assert_eq!(read_line(&mut reader), format!("Hello, name{i}!\n"));
    }
    let after_burst = data_segments_in(&client).expect("ss again");
    assert_eq!(
        after_burst - before,
        1,
        "sixteen pipelined answers should leave in one send"
    );

    // A lone request is answered without waiting for more (each reply read before the next
    // request is sent): one segment each.
    for i in 0..3 {
        client.write_all(format!("lone{i}\n").as_bytes()).unwrap();
        assert_eq!(read_line(&mut reader), format!("Hello, lone{i}!\n"));
    }
    assert_eq!(
        data_segments_in(&client).expect("ss again") - after_burst,
        3
    );

    drop((reader, client));
    server.signal("TERM");
    let finished = server.finish();
    assert_eq!(finished.status.code(), Some(0), "{:?}", finished.stderr);
}
