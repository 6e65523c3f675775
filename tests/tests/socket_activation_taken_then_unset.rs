//! Socket activation's descriptors, once taken, stay taken: `systemd_listeners` documents a
//! later call as failing with `InvalidInput` ("the descriptors were taken already"), and
//! `NotFound` only for a process that was not socket-activated. A service that takes its
//! listeners and then removes the variables (so that the processes it starts do not see them,
//! as `sd_listen_fds(1)` does) must not be told, by a second call, that it was never
//! activated: code that falls back to binding its own listener on `NotFound` would then bind
//! the address its adopted listener holds.

use std::io::ErrorKind;

use net_sockets::{Error, SelectorManager, a_socket};

/// Set in the child process that plays the socket-activated service.
const CHILD: &str = "NET_TESTS_ACTIVATION_TAKEN_THEN_UNSET";

#[test]
fn taken_descriptors_stay_taken_after_the_variables_are_removed() {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    net_tests::harness::rerun_self_alone_with(
        "taken_then_unset_child",
        CHILD,
        &[],
        "taken then unset: done",
    );
}

/// The child (does nothing in a normal run): it alone in its process, it puts a listener at
/// descriptor 3 and sets the variables as systemd would, takes the listener, removes the
/// variables, and calls again.
#[test]
#[allow(unsafe_code)]
fn taken_then_unset_child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let fd = std::os::fd::IntoRawFd::into_raw_fd(listener);
    // Descriptor 3 may be taken already, by one this process inherited (a CI runner's or a
    // shell's, left open across exec): systemd's first listener is at 3 whatever was there.
    if fd != 3 {
        // SAFETY: this process runs this one test, which uses no descriptor 3 of its own (one
        // there was inherited, and is replaced); `fd` is the listener's, owned here.
        unsafe {
            assert_eq!(libc::dup2(fd, 3), 3, "{}", std::io::Error::last_os_error());
            libc::close(fd);
        }
    }
    // SAFETY: this process runs this one test, on one thread, and reads no variable meanwhile.
    unsafe {
        std::env::set_var("LISTEN_PID", std::process::id().to_string());
        std::env::set_var("LISTEN_FDS", "1");
    }
    net_tests::harness::run_if_child(CHILD, async {
        let selector = SelectorManager::new();
        let taken = a_socket(&selector).tcp().systemd_listeners().unwrap();
        assert_eq!(taken.len(), 1);
        let again = a_socket(&selector).tcp().systemd_listeners().unwrap_err();
        assert_eq!(again.kind(), ErrorKind::InvalidInput, "{again:?}");
        // SAFETY: as above (the runtime runs on this thread, and has no other).
        unsafe {
            std::env::remove_var("LISTEN_PID");
            std::env::remove_var("LISTEN_FDS");
        }
        let after = a_socket(&selector).tcp().systemd_listeners().unwrap_err();
        assert!(
            matches!(&after, Error::Io(e) if e.kind() == ErrorKind::InvalidInput
                && e.to_string().contains("taken already")),
            "a call after the variables were removed: {after:?}"
        );
    });
    println!("taken then unset: done");
}
