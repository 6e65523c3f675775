//! Plain TCP with a JVM program as the peer (`tests/java/JssePeer.java`, java.net's `Socket`
//! and `ServerSocket` with `BufferedReader.readLine` and `PrintWriter`): the seed's line
//! protocol served by the kit's server to a Java client, and our client against a Java
//! server. Checked: CRLF, LF and a lone CR as each side splits them (our `LineEnding::Default`
//! keeps a lone CR in the line, Java's `readLine` ends a line there; `Lenient` agrees with
//! Java), a last line without an end, and half-closes both ways: what each side reads after
//! the other's `shutdownOutput` / `flush_and_close`, and that data written after a half-close
//! still arrives.
//!
//! Needs a JDK (`java`, `javac`); without one each test says why (the kit's `skipped`) and
//! passes.

use net_io::LineEnding;
use net_sockets::{SelectorManager, a_socket};
use net_tests::conversation::send;
use net_tests::greeting::{GREETING, serve_lines};
use net_tests::harness::{Process, java_peer};
use net_tests::within;

fn start_jvm(args: &[&str]) -> Option<Process> {
    let classes = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("jvm-plain-peer");
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    java_peer(&classes, &[], &args)
}

/// A Java client of the kit's line server (the seed's protocol): it reads the greeting,
/// sends `crlf\r\n`, `lf\n` and `lone\rcr\n` in one write, then a `println` line, then
/// `unterminated` without an end and `shutdownOutput`. Our server reads `crlf`, `lf`,
/// `lone\rcr` (a lone CR is part of a line for `LineEnding::Default`), `println`, and the
/// unterminated line at the end of the stream, and ends cleanly; Java's `readLine` splits our
/// answer to `lone\rcr` at the CR, and after its half-close reads our last answer, then the
/// end of the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_java_client_of_our_line_server() {
    let selector = SelectorManager::new();
    let listener = a_socket(&selector)
        .tcp()
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = listener.port().unwrap().to_string();
    let Some(mut jvm) = start_jvm(&["plain-client", &port]) else {
        return;
    };
    let socket = within(listener.accept()).await.unwrap();
    let outcome = within(serve_lines(socket, 1024)).await;
    assert_eq!(
        outcome.lines,
        ["crlf", "lf", "lone\rcr", "println", "unterminated"]
    );
    assert!(outcome.end.is_ok(), "{:?}", outcome.end);
    let exit = jvm.finish();
    assert!(exit.status.success(), "{exit:#?}");
    assert_eq!(
        exit.stdout,
        [
            format!("GREETING {GREETING}"),
            "LINE Hello, crlf!".to_owned(),
            "LINE Hello, lf!".to_owned(),
            // Java's readLine ends a line at a lone CR: our one answer is two lines to it.
            "LINE Hello, lone".to_owned(),
            "LINE cr!".to_owned(),
            "LINE Hello, println!".to_owned(),
            "HALF-CLOSED".to_owned(),
            "AFTER Hello, unterminated!".to_owned(),
            "EOF".to_owned(),
            "FINISHED".to_owned(),
        ]
    );
}

/// Our client against a Java `ServerSocket` that answers each line with `Hello, LINE!`
/// (`println`: LF) until our half-close, then writes `Bye after N lines\r\n` and closes: Java
/// reads our CRLF and LF lines alike, and splits `three\rfour` at the CR; our half-close
/// (`flush_and_close`) is the end of Java's reads, and what Java writes after it still reaches
/// us, followed by a clean end of the stream. Read with `LineEnding::Lenient`, as Java's
/// `readLine` does, and with `Default` for the CRLF line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_of_a_java_line_server() {
    let Some(mut jvm) = start_jvm(&["plain-server"]) else {
        return;
    };
    let line = jvm.stdout_line();
    let port: u16 = line
        .strip_prefix("LISTENING ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("not JssePeer's port: {line:?}"));
    let selector = SelectorManager::new();
    let socket = within(a_socket(&selector).tcp().connect(("127.0.0.1", port)))
        .await
        .unwrap();
    let mut connection = socket.connection().unwrap();
    send(&mut connection.output, "one\r\ntwo\nthree\rfour\n").await;
    let mut answers = Vec::new();
    for _ in 0..4 {
        let answer = within(connection.input.read_line(1024, LineEnding::Lenient))
            .await
            .unwrap();
        answers.push(answer.expect("an answer"));
    }
    assert_eq!(
        answers,
        [
            "Hello, one!",
            "Hello, two!",
            "Hello, three!",
            "Hello, four!"
        ]
    );
    within(connection.output.flush_and_close()).await.unwrap();
    let bye = within(connection.input.read_line(1024, LineEnding::Default))
        .await
        .unwrap();
    assert_eq!(bye.as_deref(), Some("Bye after 4 lines"));
    let end = within(connection.input.read_line(1024, LineEnding::Default))
        .await
        .unwrap();
    assert_eq!(end, None);
    drop(connection);
    let exit = jvm.finish();
    assert!(exit.status.success(), "{exit:#?}");
    assert_eq!(
        exit.stdout,
        [
            "GOT one",
            "GOT two",
            "GOT three",
            "GOT four",
            "CLIENT-ENDED",
            "CLOSED",
            "FINISHED"
        ]
    );
}
