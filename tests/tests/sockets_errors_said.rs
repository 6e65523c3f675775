//! What `net_sockets::Error` says for the variants whose messages no test had rendered (found
//! by a coverage run: their `Display` arms ran 0 times): a channel's error taken into
//! `net_sockets::Result` by `?` (`Error::Channel`, the common case of a line too long in a
//! function that returns `net_sockets::Result`), `ChannelAlreadyOpen` and `DatagramTooLarge`.
//! Each is made as a user makes it; its text is the one the crate's docs give, one line.

use std::error::Error as _;
use std::io;

use net_io::LineEnding;
use net_sockets::{Datagram, Error, MAX_DATAGRAM_SIZE, SelectorManager};
use net_tests::loopback::{connected_pair, tcp_listener};
use net_tests::within;

/// A line read in a function that returns `net_sockets::Result`, as a server's handler is.
async fn read_a_line(input: &mut net_io::ByteReadChannel) -> net_sockets::Result<Option<String>> {
    Ok(input.read_line(8, LineEnding::Default).await?)
}

/// A line over the limit, taken by `?`: `Error::Channel`, whose text, kind and source are the
/// channel error's own (transparent), and which still says the limit.
#[tokio::test]
async fn a_channel_error_taken_by_the_question_mark_says_what_the_channel_said() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let (mut client, mut server) = connected_pair(&selector, &listener).await;
    let mut output = client.open_write_channel(true).unwrap();
    output
        .write_string_utf8("much longer than eight bytes\n")
        .await
        .unwrap();
    let mut input = server.open_read_channel().unwrap();
    let e = within(read_a_line(&mut input)).await.unwrap_err();
    let Error::Channel(channel) = &e else {
        panic!("not a channel error: {e:?}");
    };
    assert!(
        matches!(channel, net_io::Error::TooLongLine { limit: 8 }),
        "{channel:?}"
    );
    assert_eq!(e.to_string(), channel.to_string());
    assert!(e.to_string().contains('8'), "{e}");
    assert!(!e.to_string().contains('\n'), "{e}");
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    assert!(e.source().is_none(), "{:?}", e.source());
    assert!(e.inner_error().is_none());
}

/// A second read channel: `ChannelAlreadyOpen`, kind `AlreadyExists`, and the first channel
/// still reads.
#[tokio::test]
async fn a_second_channel_says_it_is_already_open() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let (mut client, mut server) = connected_pair(&selector, &listener).await;
    let mut input = server.open_read_channel().unwrap();
    let e = server.open_read_channel().map(|_| ()).unwrap_err();
    assert!(matches!(e, Error::ChannelAlreadyOpen), "{e:?}");
    assert_eq!(e.to_string(), "channel already open");
    assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
    let mut output = client.open_write_channel(true).unwrap();
    output.write_string_utf8("still\n").await.unwrap();
    let line = within(input.read_line(80, LineEnding::Default)).await;
    assert_eq!(line.unwrap().as_deref(), Some("still"));
}

/// A datagram one byte over what UDP carries over IPv4: its size said, kind `InvalidInput`.
#[test]
fn a_datagram_too_large_says_its_size() {
    let e = Datagram::new(
        vec![0u8; MAX_DATAGRAM_SIZE + 1],
        std::net::SocketAddr::from(([127, 0, 0, 1], 9)),
    )
    .map(|_| ())
    .unwrap_err();
    assert!(
        matches!(e, Error::DatagramTooLarge { size } if size == MAX_DATAGRAM_SIZE + 1),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        format!(
            "datagram of {} bytes exceeds what UDP can carry to its address",
            MAX_DATAGRAM_SIZE + 1
        )
    );
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
}
