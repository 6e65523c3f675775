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

/// The same host given apart from its port, `("", 80)` (as `&str` or `String`): refused alike
/// with `InvalidInput` naming the empty host, not handed to the resolver (which failed it as
/// `Error::Resolve`, kind `NotFound`, "could not resolve host \"\"": a lookup that was never
/// one).
#[tokio::test]
async fn an_empty_host_beside_a_port_is_refused_as_the_text_is() {
    let selector = SelectorManager::new();
    let check = |what: &str, e: Error| {
        assert!(
            matches!(&e, Error::Io(io) if io.kind() == io::ErrorKind::InvalidInput),
            "{what}: {e:?}"
        );
        assert!(e.to_string().contains("the host is empty"), "{what}: {e}");
    };
    for port in [80, 0] {
        let e = within(a_socket(&selector).tcp().connect(("", port)))
            .await
            .map(|_| ())
            .unwrap_err();
        check("connect", e);
        let e = within(a_socket(&selector).tcp().bind((String::new(), port)))
            .await
            .map(|_| ())
            .unwrap_err();
        check("bind", e);
        let e = within(a_socket(&selector).udp().bind(("", port)))
            .await
            .map(|_| ())
            .unwrap_err();
        check("udp bind", e);
    }
}
