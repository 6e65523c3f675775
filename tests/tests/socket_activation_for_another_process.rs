//! Socket activation's variables addressed to another process: a process that inherited
//! `LISTEN_PID` and `LISTEN_FDS` from a socket-activated parent which left them set (they name
//! the parent's id) must not take the descriptor at 3, which is not a listener systemd gave
//! it. `systemd_listeners` documents `NotFound` "when the variables are not set for this
//! process"; no test reached that refusal (found by a coverage run: `adopt.rs`'s branch for
//! another process's `LISTEN_PID` had a count of 0). The descriptor stays as it was, and
//! nothing is marked taken: once the variables name this process, the call takes it.

use std::io::ErrorKind;
use std::os::fd::BorrowedFd;

use net_sockets::{Error, SelectorManager, a_socket};

/// Set in the child process that plays the process given another's variables.
const CHILD: &str = "NET_TESTS_ACTIVATION_FOR_ANOTHER_PROCESS";

#[test]
fn variables_naming_another_process_take_nothing() {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    net_tests::harness::rerun_self_alone_with(
        "another_process_child",
        CHILD,
        &[],
        "another process: done",
    );
}

/// The child (does nothing in a normal run): alone in its process, it puts a listener at
/// descriptor 3, sets `LISTEN_PID` to its parent's id, and asks; then to its own, and asks.
#[test]
#[allow(unsafe_code)]
fn another_process_child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let fd = std::os::fd::IntoRawFd::into_raw_fd(listener);
    // Descriptor 3 may be taken already, by one this process inherited: replaced.
    if fd != 3 {
        // SAFETY: this process runs this one test, which uses no descriptor 3 of its own (one
        // there was inherited, and is replaced); `fd` is the listener's, owned here.
        unsafe {
            assert_eq!(libc::dup2(fd, 3), 3, "{}", std::io::Error::last_os_error());
            libc::close(fd);
        }
    }
    let parent = std::os::unix::process::parent_id();
    assert_ne!(parent, std::process::id());
    // SAFETY: this process runs this one test, on one thread, and reads no variable meanwhile.
    unsafe {
        std::env::set_var("LISTEN_PID", parent.to_string());
        std::env::set_var("LISTEN_FDS", "1");
    }
    net_tests::harness::run_if_child(CHILD, async {
        let selector = SelectorManager::new();
        let e = a_socket(&selector)
            .tcp()
            .systemd_listeners()
            .map(|l| l.len())
            .unwrap_err();
        assert!(
            matches!(&e, Error::Io(io) if io.kind() == ErrorKind::NotFound
                && io.to_string().contains("another process")),
            "variables naming the parent: {e:?}"
        );
        // Descriptor 3 is untouched: open, and still the listener (a connect is taken).
        // SAFETY: descriptor 3 is open (this test put it there) for the borrow's scope.
        let three = unsafe { BorrowedFd::borrow_raw(3) };
        let still = socket2::SockRef::from(&three);
        assert_eq!(
            still.local_addr().unwrap().as_socket(),
            Some(address),
            "descriptor 3 is no longer the listener"
        );
        std::net::TcpStream::connect(address).expect("the listener at 3 takes a connect");

        // SAFETY: as above (the runtime runs on this thread, and has no other).
        unsafe { std::env::set_var("LISTEN_PID", std::process::id().to_string()) };
        let taken = a_socket(&selector).tcp().systemd_listeners().unwrap();
        assert_eq!(
            taken.len(),
            1,
            "nothing was marked taken by the refused call"
        );
        assert_eq!(taken[0].1.local_address().to_string(), address.to_string());
    });
    println!("another process: done");
}
