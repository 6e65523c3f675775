//! The guide's step 5 (`net_sockets::guide`, *Graceful shutdown*; `no_run`: a server), its
//! `serve` as written, against the claim beside it: "Keep the `wait` of `close_gracefully`
//! below the shutdown's grace period, so that a connection that waits in vain for its client
//! still counts as finished."

use std::time::Duration;

use net_io::LineEnding;
use net_sockets::{SelectorManager, Socket};
use net_tests::loopback::{connect, tcp_listener};
use net_tests::within;

/// The guide's `serve`.
async fn serve(socket: Socket) -> net_sockets::Result<()> {
    let mut connection = socket.connection()?;
    connection
        .output
        .write_string_utf8("Please enter your name\n")
        .await?;
    connection.output.flush().await?;
    loop {
        let line = tokio::select! {
            // A line that has already arrived is answered before the goodbye.
            biased;
            line = connection.input.read_line(8192, LineEnding::Default) => line?,
            () = connection.socket.shutdown_requested() => {
                connection.output.write_string_utf8("Server is shutting down\n").await?;
                break;
            }
        };
        let Some(name) = line else { break };
        connection
            .output
            .write_string_utf8(&format!("Hello, {name}!\n"))
            .await?;
        connection.output.flush().await?;
    }
    connection.close_gracefully(Duration::from_secs(2)).await
}

/// A client that never closes: `close_gracefully` waits its 2 s in vain, returns `Ok`, and
/// the shutdown, whose grace period is 10 s, counts the connection as finished. The client
/// got the greeting, the goodbye and the end of the stream. (On a paused clock: the runtime
/// jumps to the end of the wait.)
#[tokio::test]
async fn a_client_that_never_closes_still_counts_as_finished() {
    let selector = SelectorManager::new();
    let server = tcp_listener(&selector).await;
    let client = connect(&selector, server.local_address()).await;
    let mut client = client.connection().unwrap();
    let serving = tokio::spawn(serve(within(server.accept()).await.unwrap()));
    let greeting = within(client.input.read_line(1024, LineEnding::Default)).await;
    assert_eq!(greeting.unwrap().as_deref(), Some("Please enter your name"));

    tokio::time::pause();
    let report = server.shutdown(Duration::from_secs(10)).await;
    assert_eq!((report.finished, report.cut), (1, 0), "{report:?}");
    serving
        .await
        .unwrap()
        .expect("close_gracefully returns Ok once its wait passed");

    tokio::time::resume();
    let goodbye = within(client.input.read_line(1024, LineEnding::Default)).await;
    assert_eq!(goodbye.unwrap().as_deref(), Some("Server is shutting down"));
    let end = within(client.input.read_line(1024, LineEnding::Default)).await;
    assert_eq!(end.unwrap(), None);
}
