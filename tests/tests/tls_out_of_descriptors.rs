//! TLS while the process is out of descriptors: a handshake (direct or STARTTLS, either side)
//! needs none, so one on a connection made before completes and carries data; a new
//! connection fails at its `connect` with the OS's `EMFILE`, typed, never a panic; once
//! descriptors are free, a new TLS connection goes through, and nothing is left open.
//!
//! The check runs in a child process (this test binary again) under `ulimit -n 64`, so that
//! the low limit touches nothing else.

use net_io::LineEnding;
use net_sockets::{Error, SelectorManager, Socket, a_socket};
use net_tests::harness::{rerun_self_with_fd_limit, run_if_child};
use net_tests::loopback::{connected_pair, tcp_listener};
use net_tests::pki::Pki;
use net_tests::probe::{exhaust_descriptors, fd_count};
use net_tests::within;
use net_tls::{TlsConfig, TlsExt, TlsServerConfig, TlsSocket};

const CHILD_ENV: &str = "NET_TESTS_TLS_OUT_OF_DESCRIPTORS_CHILD";

#[test]
fn tls_handshakes_out_of_descriptors_complete_and_new_connects_fail_typed() {
    rerun_self_with_fd_limit("tls_child", CHILD_ENV, 64, "tls child passed");
}

/// A line from `from` to `to`, both sides over TLS.
async fn line_through(from: &mut TlsSocket, to: &mut TlsSocket, line: &str) {
    let mut output = from.open_write_channel(true).expect("a write channel");
    let mut input = to.open_read_channel().expect("a read channel");
    within(output.write_string_utf8(&format!("{line}\n")))
        .await
        .expect("write");
    let got = within(input.read_line(64, LineEnding::Default)).await;
    assert_eq!(got.expect("read").as_deref(), Some(line));
}

/// Handshakes on `client` and `server` (connected before), directly or as STARTTLS.
async fn handshake(
    client: Socket,
    server: Socket,
    client_config: &TlsConfig,
    server_config: &TlsServerConfig,
    starttls: bool,
) -> (TlsSocket, TlsSocket) {
    let (client, server) = if starttls {
        let (client, server) = (client.connection(), server.connection());
        within(async {
            tokio::join!(
                client.expect("a connection").tls(client_config.clone()),
                server.expect("a connection").tls_server(server_config)
            )
        })
        .await
    } else {
        within(async {
            tokio::join!(
                client.tls(client_config.clone()),
                server.tls_server(server_config)
            )
        })
        .await
    };
    (
        client.expect("the client's handshake at the limit"),
        server.expect("the server's handshake at the limit"),
    )
}

#[test]
fn tls_child() {
    run_if_child(CHILD_ENV, async {
        let selector = SelectorManager::new();
        let listener = tcp_listener(&selector).await;
        let port = listener.port().expect("an inet listener");
        let pki = Pki::generate();
        let server_config = pki.server_config().build().expect("a server config");
        let client_config = pki
            .client_config()
            .server_name("localhost")
            .build()
            .expect("a client config");
        let base = fd_count();
        let (direct_client, direct_server) = connected_pair(&selector, &listener).await;
        let (plain_client, plain_server) = connected_pair(&selector, &listener).await;
        let filler = exhaust_descriptors(|| std::fs::File::open("/dev/null"));
        // (Checked first: the closes below free descriptors.)
        let connect = within(a_socket(&selector).tcp().connect(("127.0.0.1", port))).await;
        match connect {
            Err(Error::Io(e)) if e.raw_os_error() == Some(libc::EMFILE) => {}
            other => panic!("a connect out of descriptors: {other:?}, not EMFILE"),
        }

        let mut sessions = Vec::new();
        for (starttls, client, server) in [
            (false, direct_client, direct_server),
            (true, plain_client, plain_server),
        ] {
            let (mut client, mut server) =
                handshake(client, server, &client_config, &server_config, starttls).await;
            line_through(&mut client, &mut server, "request").await;
            line_through(&mut server, &mut client, "answer").await;
            // Kept open until both are done: a close frees descriptors.
            sessions.push((client, server));
        }
        for (client, server) in sessions {
            client.close();
            server.close();
        }

        drop(filler);
        let (client, server) = connected_pair(&selector, &listener).await;
        let (mut client, mut server) =
            handshake(client, server, &client_config, &server_config, false).await;
        line_through(&mut client, &mut server, "after").await;
        client.close();
        server.close();
        assert_eq!(fd_count(), base, "descriptors left open");
        println!("tls child passed");
    });
}
