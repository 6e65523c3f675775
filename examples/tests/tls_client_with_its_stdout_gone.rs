//! `sockets-client-tls` whose stdout is gone (`sockets-client-tls ... | head -c1`, a reader
//! that left): the program fails with status 1 and `cannot write to stdout`, as every example
//! does, and still ends its TLS session cleanly (`close_notify`), as it does when it gives up
//! on a silent server: the server sees a client that left, not a cut connection.

use std::process::{Command, Stdio};

use net_io::LineEnding;
use net_sockets::SelectorManager;
use net_tests::harness::{path_arg, spawn, without_spawns};
use net_tests::pki::Pki;
use net_tests::tls::TlsTestServer;

const CLIENT: &str = env!("CARGO_BIN_EXE_sockets-client-tls");

#[test]
fn a_tls_client_whose_stdout_is_gone_still_ends_with_close_notify() {
    let pki = Pki::with_server_names(&["localhost"]);
    let files = pki.temp_files();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _guard = runtime.enter();
    let selector = SelectorManager::new();
    // Reads the request, answers it, then reports how the client ended the stream.
    let mut server = runtime.block_on(TlsTestServer::start(
        &selector,
        pki.server_config().build().unwrap(),
        |mut tls, reporter| async move {
            let mut input = tls.open_read_channel().unwrap();
            while let Ok(Some(line)) = input.read_line(1024, LineEnding::Default).await {
                if line.is_empty() {
                    break;
                }
            }
            let mut output = tls.open_write_channel(false).unwrap();
            let response = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhello\n";
            let sent = output.write_string_utf8(response).await;
            let sent = sent.and(output.flush().await);
            reporter.report(sent.map_err(|e| e.to_string()));
            // The client leaves: with close_notify a clean end (`Ok`), without it a truncation.
            let end = input.discard(u64::MAX).await;
            reporter.report(end.map(drop).map_err(|e| e.to_string()));
        },
    ));
    let port = server.port().to_string();

    // A pipe whose reader is gone before the client starts: its first write gets EPIPE. (No
    // child started meanwhile holds a copy of the reader.)
    let writer = without_spawns(|| {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        writer
    });
    let client = spawn(
        Command::new(CLIENT)
            .args(["localhost", &port, "--ca", path_arg(&files.ca)])
            .stdin(Stdio::null())
            .stdout(Stdio::from(writer))
            .stderr(Stdio::piped()),
    )
    .expect("start sockets-client-tls");
    assert_eq!(runtime.block_on(server.next()).unwrap(), Ok(()));
    let ended = runtime.block_on(server.next()).unwrap();
    let output = client.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        ended,
        Ok(()),
        "the client whose stdout is gone did not end with close_notify: {stderr}"
    );
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(lines[0].starts_with("Connected to "), "{stderr}");
    assert!(
        lines[1].starts_with("sockets-client-tls: cannot write to stdout: "),
        "{stderr}"
    );
    selector.close();
}
