//! `starttls-client`, after the server's `221` answer to `QUIT`, waits for the server's end
//! (its `close_notify` and FIN) as long as `--timeout` says, not a fixed 5 s: a server that
//! answers and never closes holds it `--timeout` (here 1 s), then it closes and exits 0.
//! (Before, it waited 5 s whatever `--timeout` said.)

use std::time::{Duration, Instant};

use net_sockets::{SelectorManager, a_socket};
use net_tests::HANG_LIMIT;
use net_tests::conversation::{line, send};
use net_tests::harness::{Process, path_arg};
use net_tests::pki::Pki;
use net_tls::TlsExt;

#[test]
fn after_the_answer_to_quit_the_client_waits_for_the_servers_end_its_timeout() {
    let pki = Pki::generate();
    let files = pki.temp_files();
    let config = pki.server_config().build().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _guard = runtime.enter();
    let selector = SelectorManager::new();
    let listener = runtime.block_on(async {
        a_socket(&selector)
            .tcp()
            .bind(("127.0.0.1", 0))
            .await
            .unwrap()
    });
    let port = listener.port().unwrap().to_string();
    // Returns how long the client took to end the connection after the answer to QUIT.
    let server = runtime.spawn(async move {
        let mut plain = listener.accept().await.unwrap().connection().unwrap();
        let (input, output) = (&mut plain.input, &mut plain.output);
        send(output, "220 ready\r\n").await;
        assert!(line(input).await.starts_with("EHLO "));
        send(output, "250-x\r\n250 STARTTLS\r\n").await;
        assert_eq!(line(input).await, "STARTTLS");
        send(output, "220 Go ahead\r\n").await;
        let mut secure = plain
            .tls_server(&config)
            .await
            .unwrap()
            .connection()
            .unwrap();
        let (input, output) = (&mut secure.input, &mut secure.output);
        assert!(line(input).await.starts_with("EHLO "));
        send(output, "250 x\r\n").await;
        assert_eq!(line(input).await, "NOOP");
        send(output, "250 OK\r\n").await;
        assert_eq!(line(input).await, "QUIT");
        // Taken before the answer goes out: the client reads it, and starts its wait, later.
        // (Taken after the send, a thread of this server's that the client's wake-up kept off
        // the CPU took it after the client's wait had begun, and a wait of the full second
        // read as less.)
        let answered = Instant::now();
        send(output, "221 Bye\r\n").await;
        // The client's `close_notify` and FIN; the server's end never comes (the connection is
        // held open until the client has exited).
        let end = tokio::time::timeout(HANG_LIMIT, secure.input.discard(u64::MAX)).await;
        assert!(end.is_ok(), "the client never ended its side");
        (answered, secure)
    });
    let client = Process::run(
        env!("CARGO_BIN_EXE_starttls-client"),
        [
            "localhost",
            &port,
            "--ca",
            path_arg(&files.ca),
            "--timeout",
            "1",
        ],
    );
    let exited = Instant::now();
    let (answered, secure) = runtime.block_on(server).unwrap();
    let waited = exited - answered;
    assert!(client.status.success(), "{:?}", client.stderr);
    assert_eq!(client.stdout.last().map(String::as_str), Some("221 Bye"));
    // It waited for the server's end (from its read of the answer: at least 1 s after the
    // answer was about to be sent), then gave up after its --timeout, well before 5 s.
    assert!(waited >= Duration::from_secs(1), "exited after {waited:?}");
    assert!(
        waited < Duration::from_millis(3500),
        "exited {waited:?} after the answer to QUIT, with --timeout 1"
    );
    drop(secure);
    selector.close();
}
