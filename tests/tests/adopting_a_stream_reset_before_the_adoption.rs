//! A stream handed over already reset by its peer (a supervisor's accepted connection whose
//! client gave up and reset it before the service adopted it): `Socket::from_std` fails with
//! the reset the kernel holds for it, kind `ConnectionReset`, as a `connect` whose connection
//! is reset before its addresses are read does; not with `getpeername`'s `ENOTCONN` (kind
//! `NotConnected`, "Transport endpoint is not connected"), which reads as a socket that was
//! never connected and hides why the connection is gone.

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use net_sockets::{Error, SelectorManager, Socket};

#[tokio::test]
async fn a_stream_reset_before_its_adoption_fails_with_the_reset() {
    let selector = SelectorManager::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (accepted, _) = listener.accept().unwrap();
    // The peer resets (SO_LINGER 0).
    socket2::SockRef::from(&accepted)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(accepted);
    // Bounded: the reset crosses the loopback at once.
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.peer_addr().is_ok() {
        assert!(Instant::now() < deadline, "the reset never arrived");
        std::thread::sleep(Duration::from_millis(1));
    }
    let e = Socket::from_std(&selector, client).unwrap_err();
    assert!(
        matches!(&e, Error::Io(io) if io.kind() == ErrorKind::ConnectionReset),
        "{e:?}"
    );
    // A stream that was never connected is still `NotConnected`.
    let never = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let e = Socket::from_std(&selector, std::net::TcpStream::from(never)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotConnected, "{e:?}");
}
