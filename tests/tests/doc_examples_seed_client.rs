//! `Socket`'s example, a client of the seed's server on a fixed port (so `no_run`), run
//! against that server on `127.0.0.1:0`.

use net_io::LineEnding;
use net_sockets::{SelectorManager, a_socket};
use net_tests::greeting::GREETING;
use net_tests::within;

/// The example reads the greeting (and prints it), says its name and closes; `await_closed`
/// returns, and the server reads the name.
#[tokio::test]
async fn the_socket_example_greets_the_seed_server() {
    let selector = SelectorManager::new();
    let server = a_socket(&selector)
        .tcp()
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = server.local_address().port().unwrap();
    let serving = tokio::spawn(async move {
        let mut socket = server.accept().await.unwrap();
        let mut input = socket.open_read_channel().unwrap();
        let mut output = socket.open_write_channel(true).unwrap();
        output
            .write_string_utf8(&format!("{GREETING}\n"))
            .await
            .unwrap();
        input.read_line(1024, LineEnding::Default).await.unwrap()
    });

    // The example, as written but for the port, its printed line kept to check.
    let mut socket = a_socket(&selector)
        .tcp()
        .connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut input = socket.open_read_channel().unwrap();
    let mut output = socket.open_write_channel(true).unwrap();
    let printed = format!(
        "{:?}",
        input.read_line(1024, LineEnding::Default).await.unwrap()
    );
    output.write_string_utf8("Alice\n").await.unwrap();
    socket.close();
    within(socket.await_closed()).await;

    assert_eq!(printed, format!("{:?}", Some(GREETING)));
    assert!(socket.is_closed());
    assert_eq!(within(serving).await.unwrap().as_deref(), Some("Alice"));
}
