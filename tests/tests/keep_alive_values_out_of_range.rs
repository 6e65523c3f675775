//! The keep-alive parameters take what Linux takes: 1 to 32,767 seconds for the idle time and
//! the interval (after a fraction is rounded up), 1 to 127 probes; another value (zero among
//! them) fails `bind` and `connect` with `Error::InvalidOption` naming the parameter, as the
//! setters' docs say.
#![cfg(target_os = "linux")]

use std::time::Duration;

use net_sockets::{Error, SelectorManager, TcpSocketBuilder, a_socket};
use net_tests::within;

/// Which option a bind and a connect with `configure`'s options failed on (`None`: both
/// succeeded).
async fn refused(
    selector: &SelectorManager,
    configure: impl Fn(TcpSocketBuilder) -> TcpSocketBuilder,
) -> Option<&'static str> {
    let target = a_socket(selector)
        .tcp()
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let option = |r: Result<(), Error>| match r {
        Ok(()) => None,
        Err(Error::InvalidOption { option, .. }) => Some(option),
        Err(e) => panic!("not InvalidOption: {e:?}"),
    };
    let bound = configure(a_socket(selector).tcp())
        .bind(("127.0.0.1", 0))
        .await
        .map(drop);
    let connected = within(configure(a_socket(selector).tcp()).connect(target.local_address()))
        .await
        .map(drop);
    let (bound, connected) = (option(bound), option(connected));
    assert_eq!(bound, connected, "bind and connect disagree");
    bound
}

#[tokio::test]
async fn keep_alive_values_outside_what_linux_takes_are_invalid_options() {
    let selector = SelectorManager::new();
    let s = Duration::from_secs;
    for (idle, expected) in [
        (s(1), None),
        (s(32_767), None),
        (Duration::from_millis(1), None),
        (Duration::ZERO, Some("keep_alive_idle")),
        (s(32_768), Some("keep_alive_idle")),
        (Duration::from_millis(32_767_001), Some("keep_alive_idle")),
    ] {
        let got = refused(&selector, |b| b.keep_alive_idle(idle)).await;
        assert_eq!(got, expected, "idle {idle:?}");
        let got = refused(&selector, |b| b.keep_alive_interval(idle)).await;
        let expected = expected.map(|_| "keep_alive_interval");
        assert_eq!(got, expected, "interval {idle:?}");
    }
    for (count, expected) in [
        (1, None),
        (127, None),
        (0, Some("keep_alive_count")),
        (128, Some("keep_alive_count")),
        (u32::MAX, Some("keep_alive_count")),
    ] {
        let got = refused(&selector, |b| b.keep_alive_count(count)).await;
        assert_eq!(got, expected, "count {count}");
    }
}

/// A listener adopted with the builder is refused the same values, named the same way.
#[tokio::test]
async fn an_adopted_listener_is_refused_the_same_keep_alive_values() {
    let selector = SelectorManager::new();
    for (builder, expected) in [
        (
            a_socket(&selector).tcp().keep_alive_idle(Duration::ZERO),
            "keep_alive_idle",
        ),
        (
            a_socket(&selector)
                .tcp()
                .keep_alive_interval(Duration::from_secs(32_768)),
            "keep_alive_interval",
        ),
        (
            a_socket(&selector).tcp().keep_alive_count(128),
            "keep_alive_count",
        ),
    ] {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        match builder.from_std(std_listener) {
            Err(Error::InvalidOption { option, .. }) => assert_eq!(option, expected),
            other => panic!("{expected}: {:?}", other.map(|l| l.local_address())),
        }
    }
}
