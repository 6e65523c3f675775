//! The event an `accept` logs when the runtime cannot watch a connection it took
//! (`epoll_ctl(EPOLL_CTL_ADD)` fails with `ENOSPC`: the user has `fs.epoll.max_user_watches`
//! watches) names what ran out, so that an operator raises that limit. (Before, it said "out
//! of descriptors or memory", and sent them to `ulimit -n` and the memory instead.)
//!
//! As in `accept_out_of_epoll_watches`, a child process (this test binary again) runs with an
//! `LD_PRELOAD` shim that fails one watch. Needs a C compiler (`cc`); skipped without one.

use net_sockets::{SelectorManager, a_socket};
use net_tests::TempDir;
use net_tests::fault::{EPOLL_WATCH_SHIM, EPOLL_WATCH_SHIM_PORT_ENV};
use net_tests::harness::{free_port, preload_shim, rerun_self_alone_with, run_if_child};
use net_tests::logs::Every;
use net_tests::within;

const CHILD_ENV: &str = "NET_TESTS_EPOLL_WATCHES_LOGGED_CHILD";

#[test]
fn running_out_of_epoll_watches_is_logged_as_such() {
    let dir = TempDir::new("epoll-watches-logged");
    let Some(shim) = preload_shim(dir.path(), EPOLL_WATCH_SHIM) else {
        eprintln!("skipped: no C compiler (`cc`) to build the LD_PRELOAD shim");
        return;
    };
    let port = free_port().to_string();
    rerun_self_alone_with(
        "out_of_watches_logged_child",
        CHILD_ENV,
        &[
            (EPOLL_WATCH_SHIM_PORT_ENV, port.as_ref()),
            ("LD_PRELOAD", shim.as_os_str()),
        ],
        "out of watches logged child passed",
    );
}

#[test]
fn out_of_watches_logged_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let events = Every::default();
    tracing::subscriber::set_global_default(events.clone()).unwrap();
    run_if_child(CHILD_ENV, async {
        let port: u16 = std::env::var(EPOLL_WATCH_SHIM_PORT_ENV)
            .unwrap()
            .parse()
            .unwrap();
        let selector = SelectorManager::new();
        let server = a_socket(&selector)
            .tcp()
            .bind(("127.0.0.1", port))
            .await
            .unwrap();
        // The first connection's watch fails; the accept logs it, pauses, and takes the next.
        let _first = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _second = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        within(server.accept()).await.unwrap();
        let lines = events.lines();
        let pauses: Vec<_> = lines
            .iter()
            .filter(|line| line.contains("accept pauses"))
            .collect();
        assert_eq!(pauses.len(), 1, "{lines:#?}");
        assert!(
            pauses[0].starts_with(
                "out of epoll watches (fs.epoll.max_user_watches); accept pauses and retries \
                 every 100 ms"
            ),
            "{}",
            pauses[0]
        );
        server.close();
        selector.close();
        println!("out of watches logged child passed");
    });
}
