//! A `"host:port"` string whose host is empty (`":80"`, `":0"`): refused with `InvalidInput`
//! saying what was expected, by `connect` and by `bind` alike, never taken for "every
//! interface" (as Go's `net.Listen` takes `":80"`) nor handed to the resolver. No test gave
//! one (found by a coverage run: the empty-host branch of `parse_host_port` ran 0 times).

use std::io;

use net_sockets::{Error, SelectorManager, a_socket};
use net_tests::within;

/// The refusal of `text`: `Error::Io` of kind `InvalidInput`, naming the text and the form
/// expected.
fn refused(text: &str, e: &Error) {
    assert!(
        matches!(e, Error::Io(io) if io.kind() == io::ErrorKind::InvalidInput),
        "{text}: {e:?}"
    );
    let message = e.to_string();
    assert!(message.contains(&format!("{text:?}")), "{text}: {message}");
    assert!(message.contains("expected host:port"), "{text}: {message}");
}

#[tokio::test]
async fn an_empty_host_before_a_port_is_refused_by_connect_and_bind() {
    let selector = SelectorManager::new();
    for text in [":80", ":0", ":65535"] {
        let e = within(a_socket(&selector).tcp().connect(text))
            .await
            .map(|_| ())
            .unwrap_err();
        refused(text, &e);
        let e = within(a_socket(&selector).tcp().bind(text))
            .await
            .map(|_| ())
            .unwrap_err();
        refused(text, &e);
        let e = within(a_socket(&selector).udp().bind(text))
            .await
            .map(|_| ())
            .unwrap_err();
        refused(text, &e);
    }
}
