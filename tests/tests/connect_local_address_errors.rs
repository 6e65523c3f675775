//! A TCP connect whose `local_address` cannot be bound: the error says that the local address
//! failed, and which one, as a Unix path given as `local_address` does, and as Ktor's
//! `BindException` tells a bind apart from a refused connect. The kind and the OS error stay.

use std::net::SocketAddr;

use net_sockets::{Error, SelectorManager, UnixSocketAddress, a_socket};
use net_tests::within;

/// The error's OS error, as the OS reported it: the error itself, or its source.
fn os_error(e: &Error) -> Option<i32> {
    let Error::Io(io) = e else { return None };
    io.raw_os_error().or_else(|| {
        std::error::Error::source(e)
            .and_then(|source| source.downcast_ref::<std::io::Error>())
            .and_then(std::io::Error::raw_os_error)
    })
}

/// A local port another socket holds (here a listener's), and a local address this host does
/// not have (`192.0.2.1`, TEST-NET-1): a connect to a listening server, by address or by name,
/// fails with `Error::Io` of kind `AddrInUse` or `AddrNotAvailable` whose message names the
/// local address and says it is the local one, the OS's error kept as the source. (Before, the
/// bare OS error, "Address already in use (os error 98)" or "Cannot assign requested address
/// (os error 99)": the latter is also what a connect reports when the ephemeral ports towards
/// its server are spent, and neither said it was the local address that failed, nor which.)
/// A refused connect is still the OS's error as it was.
#[tokio::test]
async fn a_local_address_that_cannot_be_bound_is_named_in_the_error() {
    let selector = SelectorManager::new();
    let server = a_socket(&selector)
        .tcp()
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = server.port().unwrap();
    let target = SocketAddr::from(([127, 0, 0, 1], port));
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap();
    let foreign = SocketAddr::from(([192, 0, 2, 1], 0));
    for (local, kind, errno) in [
        (taken, std::io::ErrorKind::AddrInUse, libc::EADDRINUSE),
        (
            foreign,
            std::io::ErrorKind::AddrNotAvailable,
            libc::EADDRNOTAVAIL,
        ),
    ] {
        for by_name in [false, true] {
            let builder = a_socket(&selector).tcp().local_address(local);
            let connect = if by_name {
                within(builder.connect(("localhost", port))).await
            } else {
                within(builder.connect(target)).await
            };
            let e = connect.map(|_| ()).unwrap_err();
            let what = format!("from {local}, by name {by_name}: {e:?}");
            assert!(matches!(&e, Error::Io(_)), "{what}");
            assert_eq!(e.kind(), kind, "{what}");
            let message = e.to_string();
            assert!(message.contains(&local.to_string()), "{what}: {message}");
            assert!(message.contains("local address"), "{what}: {message}");
            assert_eq!(os_error(&e), Some(errno), "{what}");
        }
    }
    // A refused connect: the OS's error, as it was.
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let e = within(a_socket(&selector).tcp().connect(refused))
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(
        matches!(&e, Error::Io(io) if io.raw_os_error() == Some(libc::ECONNREFUSED)),
        "{e:?}"
    );
    drop(holder);
}

/// A Unix `local_address` that cannot be bound for another reason than a file already there
/// (its directory missing): the error names the local path as the one that failed, kind and OS
/// error kept. (Before, the bare "No such file or directory (os error 2)", which is also what
/// a connect to a server path that does not exist reports: it sent the user looking for the
/// server's socket.) A connect to a missing server path is still the OS's error as it was.
#[tokio::test]
async fn a_unix_local_path_that_cannot_be_bound_is_named_in_the_error() {
    let selector = SelectorManager::new();
    let dir = net_tests::TempDir::new("local-bind");
    let server_path = dir.path().join("server.sock");
    let _server = a_socket(&selector)
        .tcp()
        .bind(UnixSocketAddress::new(&server_path))
        .await
        .unwrap();
    let local = dir.path().join("missing").join("client.sock");
    let e = within(
        a_socket(&selector)
            .tcp()
            .local_address(UnixSocketAddress::new(&local))
            .connect(UnixSocketAddress::new(&server_path)),
    )
    .await
    .map(|_| ())
    .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e:?}");
    let message = e.to_string();
    assert!(message.contains(&local.display().to_string()), "{message}");
    assert!(message.contains("local address"), "{message}");
    assert_eq!(os_error(&e), Some(libc::ENOENT), "{e:?}");
    // No local address, a server path that does not exist: the OS's error.
    let e = within(
        a_socket(&selector)
            .tcp()
            .connect(UnixSocketAddress::new(dir.path().join("nobody.sock"))),
    )
    .await
    .map(|_| ())
    .unwrap_err();
    assert!(
        matches!(&e, Error::Io(io) if io.raw_os_error() == Some(libc::ENOENT)),
        "{e:?}"
    );
}
