//! Adopting a descriptor that is not a socket at all (`/dev/null` wrapped in a `std` socket
//! type, which safe code can do through `From<OwnedFd>`) fails with `Error::Io` of kind
//! `InvalidInput`, as the `from_std` docs say (`ENOTSOCK` has no kind of its own), saying the
//! descriptor is not a socket; and it keeps the operating system's error (`ENOTSOCK`) as the
//! message's source, as the other adoption and bind failures keep theirs.

use std::io;
use std::os::fd::OwnedFd;

use net_sockets::{
    BoundDatagramSocket, ConnectedDatagramSocket, Error, SelectorManager, ServerSocket, Socket,
};

/// `/dev/null`'s descriptor, for a `std` socket type to wrap.
fn not_a_socket() -> OwnedFd {
    OwnedFd::from(std::fs::File::open("/dev/null").unwrap())
}

/// The OS codes along `e`'s source chain.
fn os_codes(e: &(dyn std::error::Error + 'static)) -> Vec<i32> {
    let mut codes = Vec::new();
    let mut next = e.source();
    while let Some(cause) = next {
        if let Some(code) = cause
            .downcast_ref::<io::Error>()
            .and_then(io::Error::raw_os_error)
        {
            codes.push(code);
        }
        next = cause.source();
        assert!(codes.len() < 16, "a cycle in the source chain");
    }
    codes
}

fn assert_not_a_socket<T: std::fmt::Debug>(adopted: net_sockets::Result<T>, what: &str) {
    let e = adopted.unwrap_err();
    assert!(matches!(&e, Error::Io(_)), "{what}: {e:?}");
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{what}: {e:?}");
    assert!(e.to_string().contains("not a socket"), "{what}: {e}");
    assert_eq!(os_codes(&e), [libc::ENOTSOCK], "{what}: {e:?}");
    let io = io::Error::from(e);
    assert_eq!(io.kind(), io::ErrorKind::InvalidInput, "{what}");
    assert_eq!(os_codes(&io), [libc::ENOTSOCK], "{what}: through io::Error");
}

#[tokio::test]
async fn adopting_a_descriptor_that_is_no_socket_keeps_enotsock() {
    let selector = SelectorManager::new();
    assert_not_a_socket(
        Socket::from_std(&selector, std::net::TcpStream::from(not_a_socket())),
        "TCP stream",
    );
    assert_not_a_socket(
        Socket::from_std(
            &selector,
            std::os::unix::net::UnixStream::from(not_a_socket()),
        ),
        "Unix stream",
    );
    assert_not_a_socket(
        ServerSocket::from_std(&selector, std::net::TcpListener::from(not_a_socket())),
        "listener",
    );
    assert_not_a_socket(
        BoundDatagramSocket::from_std(&selector, std::net::UdpSocket::from(not_a_socket())),
        "bound UDP socket",
    );
    assert_not_a_socket(
        ConnectedDatagramSocket::from_std(&selector, std::net::UdpSocket::from(not_a_socket())),
        "connected UDP socket",
    );
}
