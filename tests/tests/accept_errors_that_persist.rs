//! An error `accept(2)` says to retry that does not go away: `EPERM` from a security policy
//! (an LSM hook, a seccomp filter) that forbids the process's accepts. Unlike a firewall's
//! `EPERM` or an aborted connection, it takes no connection off the queue, so every retry
//! meets it again at once. `accept` must neither fail (the error is of the retry list) nor
//! spin on it: it must pause between tries, as it does when out of descriptors, and take the
//! connection once the policy lets it.
//!
//! The check runs in a child process (this test binary again) with a small `LD_PRELOAD`
//! library that fails every accept of one port with `EPERM` while a file exists. Needs a C
//! compiler (`cc`); skipped without one.

use std::time::{Duration, Instant};

use net_sockets::{SelectorManager, a_socket};
use net_tests::TempDir;
use net_tests::harness::{free_port, rerun_self_alone_with, run_if_child};
use net_tests::probe::CpuClock;
use net_tests::within;

const CHILD_ENV: &str = "NET_TESTS_ACCEPT_EPERM_CHILD";
const PORT_ENV: &str = "NET_TESTS_ACCEPT_EPERM_PORT";
const FLAG_ENV: &str = "NET_TESTS_ACCEPT_EPERM_FLAG";

/// Fails `accept4` and `accept` on the listener of `$NET_TESTS_ACCEPT_EPERM_PORT` with `EPERM`
/// while the file `$NET_TESTS_ACCEPT_EPERM_FLAG` exists, taking nothing off its queue.
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
    return port && flag && access(flag, F_OK) == 0
        && getsockname(fd, (struct sockaddr *)&local, &size) == 0
        && local.sin_family == AF_INET && ntohs(local.sin_port) == atoi(port);
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
        let port: u16 = std::env::var(PORT_ENV).unwrap().parse().unwrap();
        let flag = std::env::var(FLAG_ENV).unwrap();
        let selector = SelectorManager::new();
        let server = a_socket(&selector)
            .tcp()
            .bind(("127.0.0.1", port))
            .await
            .unwrap();
        std::fs::write(&flag, b"").unwrap();
        let client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
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
        let accepted = within(server.accept()).await.unwrap();
        assert_eq!(
            accepted.remote_address().as_inet().map(|a| a.port()),
            Some(client.local_addr().unwrap().port())
        );
        println!("eperm child passed");
    });
}
