//! An error `accept(2)` says to retry that does not go away: `EPERM` from a security policy
//! (an LSM hook, a seccomp filter) that forbids the process's accepts. Unlike a firewall's
//! `EPERM` or an aborted connection, it takes no connection off the queue, so every retry
//! meets it again at once. `accept` must neither fail (the error is of the retry list) nor
//! spin on it: it must pause between tries, as it does when out of descriptors, and take the
//! connection once the policy lets it.
//!
//! A lone such error, by contrast (a connection aborted before it was taken), is retried at
//! once: the pause is for a burst of them, not for each.
//!
//! The checks run in a child process (this test binary again) with a small `LD_PRELOAD`
//! library that fails every accept of one port with `EPERM` while a file exists, or one accept
//! when another file exists (removing it). Needs a C compiler (`cc`); skipped without one.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use net_sockets::{SelectorManager, ServerSocket, Socket, a_socket};
use net_tests::TempDir;
use net_tests::harness::{free_port, rerun_self_alone_with, run_if_child};
use net_tests::logs::Every;
use net_tests::probe::CpuClock;
use net_tests::within;

const CHILD_ENV: &str = "NET_TESTS_ACCEPT_EPERM_CHILD";
const PORT_ENV: &str = "NET_TESTS_ACCEPT_EPERM_PORT";
const FLAG_ENV: &str = "NET_TESTS_ACCEPT_EPERM_FLAG";
const ONCE_CHILD_ENV: &str = "NET_TESTS_ACCEPT_EPERM_ONCE_CHILD";
const ONCE_ENV: &str = "NET_TESTS_ACCEPT_EPERM_ONCE";

/// Fails `accept4` and `accept` on the listener of `$NET_TESTS_ACCEPT_EPERM_PORT` with `EPERM`
/// while the file `$NET_TESTS_ACCEPT_EPERM_FLAG` exists, and once when the file
/// `$NET_TESTS_ACCEPT_EPERM_ONCE` exists (removing it), taking nothing off its queue.
const SHIM: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static int denied(int fd) {
    const char *port = getenv("NET_TESTS_ACCEPT_EPERM_PORT");
    const char *flag = getenv("NET_TESTS_ACCEPT_EPERM_FLAG");
    struct sockaddr_in local;
    socklen_t size = sizeof local;
    const char *once = getenv("NET_TESTS_ACCEPT_EPERM_ONCE");
    return port && ((flag && access(flag, F_OK) == 0) || (once && access(once, F_OK) == 0))
        && getsockname(fd, (struct sockaddr *)&local, &size) == 0
        && local.sin_family == AF_INET && ntohs(local.sin_port) == atoi(port)
        && (!once || access(once, F_OK) != 0 || unlink(once) == 0);
}

int accept4(int fd, struct sockaddr *address, socklen_t *size, int flags) {
    static int (*real)(int, struct sockaddr *, socklen_t *, int);
    if (!real) real = (int (*)(int, struct sockaddr *, socklen_t *, int))dlsym(RTLD_NEXT, "accept4");
    if (denied(fd)) {
        errno = EPERM;
        return -1;
    }
    return real(fd, address, size, flags);
}

int accept(int fd, struct sockaddr *address, socklen_t *size) {
    static int (*real)(int, struct sockaddr *, socklen_t *);
    if (!real) real = (int (*)(int, struct sockaddr *, socklen_t *))dlsym(RTLD_NEXT, "accept");
    if (denied(fd)) {
        errno = EPERM;
        return -1;
    }
    return real(fd, address, size);
}
"#;

/// In a child: a listener on the port of `$NET_TESTS_ACCEPT_EPERM_PORT`, the file `deny` made
/// (the shim's cue), and a client connected, waiting in the listener's queue (with the selector,
/// kept open by the caller).
async fn denied_with_a_client(deny: &str) -> (SelectorManager, ServerSocket, TcpStream) {
    let port: u16 = std::env::var(PORT_ENV).unwrap().parse().unwrap();
    let selector = SelectorManager::new();
    let server = a_socket(&selector)
        .tcp()
        .bind(("127.0.0.1", port))
        .await
        .unwrap();
    std::fs::write(deny, b"").unwrap();
    let client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    (selector, server, client)
}

/// Checks that `accepted` is `client`'s connection.
fn assert_accepted(accepted: &Socket, client: &TcpStream) {
    assert_eq!(
        accepted.remote_address().as_inet().map(|a| a.port()),
        Some(client.local_addr().unwrap().port())
    );
}

#[test]
fn an_eperm_that_persists_makes_accept_pause_not_spin_nor_fail() {
    let dir = TempDir::new("accept-eperm");
    let Some(shim) = net_tests::harness::preload_shim(dir.path(), SHIM) else {
        eprintln!("skipped: no C compiler (`cc`) to build the LD_PRELOAD shim");
        return;
    };
    let port = free_port().to_string();
    let flag = dir.join("deny");
    let text = rerun_self_alone_with(
        "eperm_child",
        CHILD_ENV,
        &[
            (PORT_ENV, port.as_ref()),
            (FLAG_ENV, flag.as_os_str()),
            ("LD_PRELOAD", shim.as_os_str()),
        ],
        "eperm child passed",
    );
    for line in text.lines().filter(|l| l.contains("ticks")) {
        eprintln!("child: {line}");
    }
}

#[test]
fn eperm_child() {
    run_if_child(CHILD_ENV, async {
        let flag = std::env::var(FLAG_ENV).unwrap();
        let (_selector, server, client) = denied_with_a_client(&flag).await;
        let cpu = CpuClock::open();
        let before = cpu.ticks();
        let started = Instant::now();
        // Denied for half a second: `accept` waits, and must not spin meanwhile.
        let waited = tokio::time::timeout(Duration::from_millis(500), server.accept()).await;
        let spent = cpu.ticks() - before;
        let elapsed = started.elapsed();
        println!("{spent} ticks of CPU in {elapsed:?} while accepts were denied");
        assert!(
            waited.is_err(),
            "accept ended while denied: {:?}",
            waited.map(|r| r.map(|s| s.remote_address()))
        );
        // A spinning accept loop burns all of it (50 ticks at 100 Hz for 500 ms).
        assert!(
            spent < 15,
            "{spent} ticks of CPU in {elapsed:?} while accepts were denied"
        );
        // Allowed again: the waiting connection is accepted.
        std::fs::remove_file(&flag).unwrap();
        assert_accepted(&within(server.accept()).await.unwrap(), &client);
        println!("eperm child passed");
    });
}

/// One `EPERM` (as a connection aborted before it was taken gives): `accept` retries at once
/// and takes the connection, logging the retry at `debug`; the pause of a burst (64 in a row)
/// neither comes nor is logged.
#[test]
fn a_lone_eperm_is_retried_at_once() {
    let dir = TempDir::new("accept-eperm-once");
    let Some(shim) = net_tests::harness::preload_shim(dir.path(), SHIM) else {
        eprintln!("skipped: no C compiler (`cc`) to build the LD_PRELOAD shim");
        return;
    };
    let port = free_port().to_string();
    let once = dir.join("deny-once");
    rerun_self_alone_with(
        "eperm_once_child",
        ONCE_CHILD_ENV,
        &[
            (PORT_ENV, port.as_ref()),
            (ONCE_ENV, once.as_os_str()),
            ("LD_PRELOAD", shim.as_os_str()),
        ],
        "eperm once child passed",
    );
}

#[test]
fn eperm_once_child() {
    run_if_child(ONCE_CHILD_ENV, async {
        let lines = Every::default();
        tracing::subscriber::set_global_default(lines.clone()).unwrap();
        let once = std::env::var(ONCE_ENV).unwrap();
        let (_selector, server, client) = denied_with_a_client(&once).await;
        assert_accepted(&within(server.accept()).await.unwrap(), &client);
        assert!(
            !std::path::Path::new(&once).exists(),
            "the accept was not denied"
        );
        let lines = lines.lines();
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("accept failed; retrying")),
            "{lines:#?}"
        );
        assert!(
            !lines.iter().any(|l| l.contains("pausing")),
            "a lone retryable error paused the accept: {lines:#?}"
        );
        println!("eperm once child passed");
    });
}
