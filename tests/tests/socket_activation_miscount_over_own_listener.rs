//! Socket activation whose `LISTEN_FDS` counts more descriptors than were passed (a
//! hand-written unit, a wrapper script) while the process has a listening socket of its own
//! at one of the counted numbers (a listener it bound before calling `systemd_listeners`).
//! That descriptor crossed no `exec`: it is close-on-exec, as every socket `std` and this
//! crate make, and none systemd passes is (an `exec` closes those). `systemd_listeners` must
//! not take it: two owners of one descriptor, and the first close pulls it from under the
//! other (a debug build aborts on the second close). It fails with `InvalidInput`, as for a
//! counted descriptor that is no listening socket, and takes nothing.

use std::io::ErrorKind;
use std::os::fd::AsRawFd;

use net_sockets::{SelectorManager, a_socket};

/// Set in the child process that plays the miscounted service.
const CHILD: &str = "NET_TESTS_ACTIVATION_OWN_LISTENER";

#[test]
fn a_miscounted_activation_leaves_a_listener_the_process_opened_itself() {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    net_tests::harness::rerun_self_alone_with(
        "own_listener_child",
        CHILD,
        &[],
        "own listener: done",
    );
}

/// The child (does nothing in a normal run): descriptor 3 is a listener as systemd passes one
/// (without close-on-exec), descriptor 4 a `std` listener of its own; `LISTEN_FDS` counts 2.
#[test]
#[allow(unsafe_code)]
fn own_listener_child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let passed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    socket2::SockRef::from(&passed).set_cloexec(false).unwrap();
    let own = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    assert_eq!(
        (passed.as_raw_fd(), own.as_raw_fd()),
        (3, 4),
        "the child's first descriptors are not 3 and 4"
    );
    // Owned by whoever takes it from socket activation.
    let _ = std::os::fd::IntoRawFd::into_raw_fd(passed);
    // SAFETY: this process runs this one test, on one thread, and reads no variable meanwhile.
    unsafe {
        std::env::set_var("LISTEN_PID", std::process::id().to_string());
        std::env::set_var("LISTEN_FDS", "2");
    }
    let own_target = std::fs::read_link("/proc/self/fd/4").unwrap();
    net_tests::harness::run_if_child(CHILD, async {
        let selector = SelectorManager::new();
        match a_socket(&selector).tcp().systemd_listeners() {
            Err(e) => assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e:?}"),
            Ok(taken) => {
                let names: Vec<_> = taken.iter().map(|(_, s)| s.local_address()).collect();
                // Forget them: dropping would close the process's own listener under it.
                std::mem::forget(taken);
                panic!(
                    "took {names:?}, the process's own listener at descriptor 4 ({:?}) among \
                     them",
                    own.local_addr().unwrap()
                );
            }
        }
    });
    // The process's own listener is still its own, and still listening.
    assert_eq!(std::fs::read_link("/proc/self/fd/4").unwrap(), own_target);
    let _client = std::net::TcpStream::connect(own.local_addr().unwrap()).unwrap();
    own.accept().unwrap();
    println!("own listener: done");
}
