//! A connection the kernel accepted but the runtime cannot watch: `epoll_ctl(EPOLL_CTL_ADD)`
//! fails with `ENOSPC` once the user has `fs.epoll.max_user_watches` watches (a limit of every
//! process of the user, as `ENFILE` is of the system). That is the process running out of a
//! resource, as `EMFILE` is, not the listener breaking: `accept` must pause and go on, not fail
//! (and end `incoming()`) with an error that says the listener is broken.
//!
//! The limit is the whole system's setting, so the check runs in a child process (this test
//! binary again) with a small `LD_PRELOAD` library that fails the watch of the first accepted
//! connection of one port with `ENOSPC`, as the kernel does at the limit. Needs a C compiler
//! (`cc`); skipped without one.

use std::io::Read;
use std::time::Duration;

use net_sockets::{SelectorManager, a_socket};
use net_tests::TempDir;
use net_tests::harness::{free_port, rerun_self_alone_with, run_if_child};
use net_tests::within;

const CHILD_ENV: &str = "NET_TESTS_EPOLL_WATCHES_CHILD";
const PORT_ENV: &str = net_tests::fault::EPOLL_WATCH_SHIM_PORT_ENV;

#[test]
fn an_accepted_connection_the_runtime_cannot_watch_does_not_fail_accept() {
    let dir = TempDir::new("epoll-watches");
    let Some(shim) =
        net_tests::harness::preload_shim(dir.path(), net_tests::fault::EPOLL_WATCH_SHIM)
    else {
        eprintln!("skipped: no C compiler (`cc`) to build the LD_PRELOAD shim");
        return;
    };
    let port = free_port().to_string();
    rerun_self_alone_with(
        "out_of_watches_child",
        CHILD_ENV,
        &[(PORT_ENV, port.as_ref()), ("LD_PRELOAD", shim.as_os_str())],
        "out of watches child passed",
    );
}

#[test]
fn out_of_watches_child() {
    run_if_child(CHILD_ENV, async {
        let port: u16 = std::env::var(PORT_ENV).unwrap().parse().unwrap();
        let selector = SelectorManager::new();
        let server = a_socket(&selector)
            .tcp()
            .bind(("127.0.0.1", port))
            .await
            .unwrap();
        // The first connection's watch fails: that connection is lost (closed), and `accept`
        // goes on to the next.
        let mut first = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        first
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let second = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let accepted = within(server.accept()).await;
        let accepted = match accepted {
            Ok(socket) => socket,
            Err(e) => panic!("accept failed on a connection the runtime could not watch: {e:?}"),
        };
        assert_eq!(
            accepted.remote_address().as_inet().map(|a| a.port()),
            Some(second.local_addr().unwrap().port())
        );
        // The lost one was closed, not left hanging.
        let mut byte = [0u8; 1];
        let read = first.read(&mut byte);
        assert!(
            matches!(read, Ok(0))
                || read.is_err_and(|e| e.kind() != std::io::ErrorKind::WouldBlock),
            "the connection that could not be watched is still open"
        );
        assert!(!server.is_closed());
        println!("out of watches child passed");
    });
}
