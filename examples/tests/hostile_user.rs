//! The example programs run as a hostile user would run them: a server that takes nothing, and
//! short forms of an IPv4 address that mean every address.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CLIENT: &str = env!("CARGO_BIN_EXE_sockets-client");

/// `sockets-client --timeout SECS`: "a server that sends nothing, or takes nothing, for SECS
/// seconds (connecting included) ends the program with status 1". A server that keeps talking
/// but never reads makes the client's writes time out; the client must then fail with status 1,
/// not stop sending its input without a word and exit 0 once the server closes (the rest of
/// its stdin never delivered).
#[test]
fn sockets_client_gives_up_on_a_server_that_takes_nothing_for_its_timeout() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    // The server: a line every 200 ms for at most 6 s, never reading; then it closes.
    let server = std::thread::spawn(move || {
        let (mut peer, _) = listener.accept().unwrap();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(6) {
            if peer.write_all(b"tick\n").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = peer.shutdown(std::net::Shutdown::Write);
        // Give the client time to see the end before the socket (and its unread input) goes.
        std::thread::sleep(Duration::from_secs(1));
    });

    let started = Instant::now();
    let mut child = Command::new(CLIENT)
        .args(["127.0.0.1", &port, "--timeout", "1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // 32 MB of lines: far more than the kernel's buffers on both sides hold.
    let writer = std::thread::spawn(move || {
        let line = "x".repeat(1023) + "\n";
        for _ in 0..32 * 1024 {
            if stdin.write_all(line.as_bytes()).is_err() {
                return;
            }
        }
    });
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    let elapsed = started.elapsed();
    let _ = writer.join();
    let _ = server.join();
    assert_eq!(
        status.code(),
        Some(1),
        "the server took nothing for 5 s of a 1 s --timeout; stderr: {stderr:?} (after {elapsed:?})"
    );
    assert!(stderr.contains("timed out"), "{stderr}");
}

/// "A lone number is refused as a host (`sockets-server 0` would otherwise listen on 0.0.0.0,
/// every address of the machine, since the system's resolver reads `0` as that address)". The
/// resolver reads the other short forms of an IPv4 address the same way (inet_aton's): `0.0`,
/// `0.0.0` and `0x0` are 0.0.0.0 too, and `sockets-server 0.0 9002` listened on every address of
/// the machine. Each must be refused as a bad command line (status 2), as `0` is.
#[test]
fn servers_refuse_short_forms_of_an_ipv4_address_that_mean_every_address() {
    use net_tests::harness::Process;
    const SERVER: &str = env!("CARGO_BIN_EXE_sockets-server");
    for host in ["0.0", "0.0.0", "0x0", "0x0.0"] {
        let mut process = Process::start(SERVER, [host, "0"]);
        let started = Instant::now();
        while process.is_running() && started.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if process.is_running() {
            let printed = process.printed_so_far();
            process.kill();
            panic!("sockets-server {host} 0: still running after 5 s: {printed}");
        }
        let finished = process.finish();
        assert_eq!(finished.status.code(), Some(2), "{host}: {finished:#?}");
    }
}
