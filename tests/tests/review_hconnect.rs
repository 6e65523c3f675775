//! Stream-socket set-up under unusual inputs: adopting descriptors that are not sockets at all.

use std::io::ErrorKind;
use std::os::fd::OwnedFd;

use net_sockets::{
    BoundDatagramSocket, ConnectedDatagramSocket, Error, SelectorManager, ServerSocket, Socket,
};
use net_tests::probe::fd_count;

/// A `std` wrapper holds whatever descriptor it was made from (`From<OwnedFd>` is safe code),
/// also one that is no socket at all (a device, a file). Adopting it is the documented
/// `InvalidInput` error of a descriptor of the wrong kind, as for a socket of the wrong type,
/// and the descriptor is closed (one owner, no leak). (Before, it was the raw `ENOTSOCK`, of
/// kind `Uncategorized`, which no caller can match on.)
#[tokio::test]
async fn a_descriptor_that_is_not_a_socket_is_refused_as_invalid_input() {
    let selector = SelectorManager::new();
    let refused = |what: &str, e: Error| {
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{what}: {e:?}");
        assert!(e.to_string().contains("not a socket"), "{what}: {e}");
    };
    let dir = net_tests::TempDir::new("adopt-not-a-socket");
    let file = dir.write("plain", "x");
    // Each wrapper of each adoption, over a character device and a regular file.
    for round in 0..2 {
        let not_a_socket = || -> OwnedFd {
            if round == 0 {
                OwnedFd::from(std::fs::File::open("/dev/null").unwrap())
            } else {
                OwnedFd::from(std::fs::File::open(&file).unwrap())
            }
        };
        let before = fd_count();
        refused(
            "TcpStream",
            Socket::from_std(&selector, std::net::TcpStream::from(not_a_socket())).unwrap_err(),
        );
        refused(
            "UnixStream",
            Socket::from_std(
                &selector,
                std::os::unix::net::UnixStream::from(not_a_socket()),
            )
            .unwrap_err(),
        );
        refused(
            "TcpListener",
            ServerSocket::from_std(&selector, std::net::TcpListener::from(not_a_socket()))
                .unwrap_err(),
        );
        refused(
            "UnixListener",
            ServerSocket::from_std(
                &selector,
                std::os::unix::net::UnixListener::from(not_a_socket()),
            )
            .unwrap_err(),
        );
        refused(
            "bound UdpSocket",
            BoundDatagramSocket::from_std(&selector, std::net::UdpSocket::from(not_a_socket()))
                .unwrap_err(),
        );
        refused(
            "connected UdpSocket",
            ConnectedDatagramSocket::from_std(&selector, std::net::UdpSocket::from(not_a_socket()))
                .unwrap_err(),
        );
        assert_eq!(
            fd_count(),
            before,
            "round {round}: a descriptor was left open"
        );
    }
}
