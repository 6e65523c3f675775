//! A Unix socket address in use (a socket file left behind, a directory or a plain file at the
//! path, an abstract name taken), for a listener's `bind` or a connect's `local_address`,
//! fails with `AddrInUse` and a message that names the path and what is there, as the
//! guarantees say, and keeps the operating system's error as every other bind and connect
//! failure does: its OS code (`EADDRINUSE`), reachable through `source()` and in the
//! `io::Error` the error converts into, each message printed once in the chain.

use std::io;

use net_sockets::{Error, SelectorManager, UnixSocketAddress, a_socket};
use net_tests::{TempDir, within};

/// The OS codes found along `e`'s source chain, and the chain's messages joined.
fn chain(e: &(dyn std::error::Error + 'static)) -> (Vec<i32>, String) {
    let mut codes = Vec::new();
    let mut shown = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        if let Some(code) = cause
            .downcast_ref::<io::Error>()
            .and_then(io::Error::raw_os_error)
        {
            codes.push(code);
        }
        shown.push_str(": ");
        shown.push_str(&cause.to_string());
        next = cause.source();
        assert!(codes.len() < 16, "a cycle in the source chain");
    }
    (codes, shown)
}

/// Asserts that `e`, an `AddrInUse` naming `named`, keeps `EADDRINUSE`.
fn assert_keeps_the_os_error(e: Error, named: &str, what: &str) {
    assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{what}: {e:?}");
    assert!(e.to_string().contains(named), "{what}: {e}");
    let (codes, shown) = chain(&e);
    assert_eq!(
        codes,
        [libc::EADDRINUSE],
        "{what}: the OS error in {shown:?}"
    );
    let os = io::Error::from_raw_os_error(libc::EADDRINUSE).to_string();
    assert_eq!(shown.matches(&os).count(), 1, "{what}: {shown:?}");
    let io = io::Error::from(e);
    assert_eq!(io.kind(), io::ErrorKind::AddrInUse, "{what}");
    let (codes, _) = chain(&io);
    assert_eq!(codes, [libc::EADDRINUSE], "{what}: through io::Error");
}

#[tokio::test]
async fn a_unix_address_in_use_keeps_the_os_error() {
    let selector = SelectorManager::new();
    let dir = TempDir::new("unix-in-use-os");
    let target = dir.join("server.sock");
    let listener = a_socket(&selector)
        .tcp()
        .bind(UnixSocketAddress::new(&target))
        .await
        .unwrap();
    let stale = dir.join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let directory = dir.join("a-directory");
    std::fs::create_dir(&directory).unwrap();
    let file = dir.write("a-plain-file", b"kept");
    for path in [&stale, &directory, &file] {
        let named = path.to_string_lossy().into_owned();
        let e = a_socket(&selector)
            .tcp()
            .bind(UnixSocketAddress::new(path))
            .await
            .unwrap_err();
        assert_keeps_the_os_error(e, &named, "bind");
        let e = within(
            a_socket(&selector)
                .tcp()
                .local_address(UnixSocketAddress::new(path))
                .connect(UnixSocketAddress::new(&target)),
        )
        .await
        .unwrap_err();
        assert_keeps_the_os_error(e, &named, "connect's local_address");
    }

    // Linux's abstract namespace: a name taken has no file, and says so.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let name = format!("\0net-tests-{}-in-use", std::process::id());
        let taken = a_socket(&selector)
            .tcp()
            .bind(UnixSocketAddress::new(&name))
            .await
            .unwrap();
        let e = a_socket(&selector)
            .tcp()
            .bind(UnixSocketAddress::new(&name))
            .await
            .unwrap_err();
        assert_keeps_the_os_error(e, "in-use", "an abstract name");
        taken.close();
    }
    listener.close();
}
