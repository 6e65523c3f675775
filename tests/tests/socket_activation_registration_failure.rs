//! `systemd_listeners` takes the descriptors systemd passed once per process, and documents
//! its errors as leaving them "for a call ... to take". An error in adopting one of them (the
//! runtime cannot watch it: `epoll_ctl` fails with `ENOSPC` once the user has
//! `fs.epoll.max_user_watches` watches, or with `ENOMEM`; or the process is out of descriptors)
//! must not cost the service its listeners either: every inherited descriptor stays open where
//! systemd put it, as systemd passed it, the error is the OS's, and a later call (once the
//! limit is lifted) takes them and serves the connections queued meanwhile. (Before, the
//! listeners adopted before the failing one, that one and those after it were closed, and the
//! later call failed with "taken already".)
//!
//! Each test runs a child process (this test binary again) that places three listening
//! sockets at descriptors 3, 4 and 5 and sets the variables as systemd would. The watch
//! failure comes from an `LD_PRELOAD` shim (needs a C compiler, `cc`; skipped without one).

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{BorrowedFd, IntoRawFd, RawFd};
use std::path::PathBuf;
use std::time::Duration;

use net_sockets::{Error, SelectorManager, ServerSocket, a_socket};
use net_tests::TempDir;
use net_tests::fault::{EPOLL_LISTENER_WATCH_SHIM, EPOLL_LISTENER_WATCH_SHIM_PORT_ENV};
use net_tests::harness::{
    preload_shim, rerun_self_alone_with, rerun_self_with_fd_limit, run_if_child,
};
use net_tests::within;

/// Set in the child whose second listener the runtime cannot watch.
const WATCH_CHILD: &str = "NET_TESTS_ACTIVATION_WATCH_FAILURE_CHILD";
/// Set in the child that runs out of descriptors.
const DESCRIPTORS_CHILD: &str = "NET_TESTS_ACTIVATION_OUT_OF_DESCRIPTORS_CHILD";

/// The listeners passed, at descriptors 3, 4 and 5.
const PASSED: RawFd = 3;
/// Their names (`LISTEN_FDNAMES`).
const NAMES: [&str; PASSED as usize] = ["web", "admin", "metrics"];

#[test]
fn a_listener_the_runtime_cannot_watch_leaves_every_inherited_descriptor_in_place() {
    if std::env::var_os(WATCH_CHILD).is_some() || std::env::var_os(DESCRIPTORS_CHILD).is_some() {
        return;
    }
    let dir = TempDir::new("activation-watch-failure");
    let Some(shim) = preload_shim(dir.path(), EPOLL_LISTENER_WATCH_SHIM) else {
        eprintln!("skipped: no C compiler (`cc`) to build the LD_PRELOAD shim");
        return;
    };
    rerun_self_alone_with(
        "watch_failure_child",
        WATCH_CHILD,
        &[("LD_PRELOAD", shim.as_os_str())],
        "watch failure child passed",
    );
}

/// The child of the test above (does nothing in a normal run).
#[test]
#[allow(unsafe_code)]
fn watch_failure_child() {
    if std::env::var_os(WATCH_CHILD).is_none() {
        return;
    }
    let addresses = pass_listeners();
    // The shim fails the first watch of the second listener (descriptor 4): the first is
    // adopted by then, the third not yet.
    // SAFETY: this process runs this one test, on one thread, and reads no variable meanwhile.
    unsafe {
        std::env::set_var(
            EPOLL_LISTENER_WATCH_SHIM_PORT_ENV,
            addresses[1].port().to_string(),
        );
    }
    let clients = queue_a_connection_on_each(&addresses);
    let before = passed_state();
    run_if_child(WATCH_CHILD, async {
        let selector = SelectorManager::new();
        let e = a_socket(&selector)
            .tcp()
            .systemd_listeners()
            .map(|_| ())
            .unwrap_err();
        assert!(
            matches!(&e, Error::Io(io) if io.raw_os_error() == Some(libc::ENOSPC)),
            "the failed watch: {e:?}"
        );
        assert_eq!(
            passed_state(),
            before,
            "the passed descriptors after the failed call"
        );
        let listeners = a_socket(&selector)
            .tcp()
            .systemd_listeners()
            .expect("a call once the runtime can watch them takes the listeners");
        serve_each(listeners, &addresses, clients).await;
    });
    println!("watch failure child passed");
}

#[test]
fn a_process_out_of_descriptors_leaves_every_inherited_descriptor_in_place() {
    if std::env::var_os(WATCH_CHILD).is_some() || std::env::var_os(DESCRIPTORS_CHILD).is_some() {
        return;
    }
    rerun_self_with_fd_limit(
        "out_of_descriptors_child",
        DESCRIPTORS_CHILD,
        128,
        "out of descriptors child passed",
    );
}

/// The child of the test above (does nothing in a normal run).
#[test]
fn out_of_descriptors_child() {
    if std::env::var_os(DESCRIPTORS_CHILD).is_none() {
        return;
    }
    let addresses = pass_listeners();
    let clients = queue_a_connection_on_each(&addresses);
    let before = passed_state();
    run_if_child(DESCRIPTORS_CHILD, async {
        let selector = SelectorManager::new();
        // Fill the descriptor table (bounded by the child's `ulimit -n 128`), but for one.
        let mut filler = Vec::new();
        while filler.len() < 1024 {
            match std::fs::File::open("/dev/null") {
                Ok(file) => filler.push(file),
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(libc::EMFILE), "{e:?}");
                    break;
                }
            }
        }
        filler.pop();
        let e = a_socket(&selector).tcp().systemd_listeners();
        drop(filler);
        let e = e.map(|_| ()).unwrap_err();
        assert!(
            matches!(&e, Error::Io(io) if io.raw_os_error() == Some(libc::EMFILE)),
            "out of descriptors: {e:?}"
        );
        assert_eq!(
            passed_state(),
            before,
            "the passed descriptors after the failed call"
        );
        let listeners = a_socket(&selector)
            .tcp()
            .systemd_listeners()
            .expect("a call with descriptors to spare takes the listeners");
        serve_each(listeners, &addresses, clients).await;
    });
    println!("out of descriptors child passed");
}

/// Places three listening TCP sockets at descriptors 3, 4 and 5 of this process, without
/// close-on-exec and blocking, and sets the variables as systemd does; returns their addresses.
#[allow(unsafe_code)]
fn pass_listeners() -> Vec<SocketAddr> {
    let listeners: Vec<TcpListener> = NAMES
        .iter()
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let addresses = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    // Out of the way first (10 and above), then to 3, 4, 5: one of them may sit there already,
    // or a descriptor this process inherited (which is replaced).
    let high: Vec<RawFd> = listeners
        .into_iter()
        .map(|listener| {
            let fd = listener.into_raw_fd();
            // SAFETY: `fd` is the listener's, owned here; the duplicate goes to a free number.
            let high = unsafe { libc::fcntl(fd, libc::F_DUPFD, 10) };
            assert!(high >= 10, "{}", std::io::Error::last_os_error());
            // SAFETY: `fd` is owned here, and not used after.
            unsafe { libc::close(fd) };
            high
        })
        .collect();
    for (fd, target) in high.into_iter().zip(PASSED..) {
        // SAFETY: this process runs this one test, which uses no descriptor 3, 4 or 5 of its
        // own (one there was inherited, and is replaced); `fd` is owned here. `dup2` leaves
        // the copy without close-on-exec, as systemd passes it.
        unsafe {
            assert_eq!(
                libc::dup2(fd, target),
                target,
                "{}",
                std::io::Error::last_os_error()
            );
            libc::close(fd);
        }
    }
    // SAFETY: this process runs this one test, on one thread, and reads no variable meanwhile.
    unsafe {
        std::env::set_var("LISTEN_PID", std::process::id().to_string());
        std::env::set_var("LISTEN_FDS", NAMES.len().to_string());
        std::env::set_var("LISTEN_FDNAMES", NAMES.join(":"));
    }
    addresses
}

/// A connection to each listener, queued in it (the kernel completes the handshake): the
/// connections that socket-activate a service.
fn queue_a_connection_on_each(addresses: &[SocketAddr]) -> Vec<TcpStream> {
    addresses
        .iter()
        .map(|address| {
            let client = TcpStream::connect(address).unwrap();
            client
                .set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            client
        })
        .collect()
}

/// What each passed descriptor is: the socket it holds (`socket:[inode]`, `None` when closed),
/// whether it is close-on-exec, listening and non-blocking.
type Passed = Vec<(Option<PathBuf>, bool, bool, bool)>;

/// The state of descriptors 3, 4 and 5.
#[allow(unsafe_code)]
fn passed_state() -> Passed {
    (PASSED..PASSED + NAMES.len() as RawFd)
        .map(|fd| {
            let target = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok();
            // SAFETY: `F_GETFD` only reads the descriptor table.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            if flags == -1 {
                return (target, false, false, false);
            }
            // SAFETY: open (just checked), and borrowed for these calls only, on the one thread
            // of this process that touches descriptors.
            let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
            let socket = socket2::SockRef::from(&borrowed);
            (
                target,
                flags & libc::FD_CLOEXEC != 0,
                socket.is_listener().unwrap(),
                socket.nonblocking().unwrap(),
            )
        })
        .collect()
}

/// Checks the listeners' names and addresses, and answers the connection queued on each.
async fn serve_each(
    listeners: Vec<(String, ServerSocket)>,
    addresses: &[SocketAddr],
    clients: Vec<TcpStream>,
) {
    let names: Vec<&str> = listeners.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, NAMES);
    for (((name, server), address), client) in listeners.iter().zip(addresses).zip(clients) {
        assert_eq!(server.local_address().to_string(), address.to_string());
        let mut socket = within(server.accept()).await.unwrap();
        let mut output = socket.open_write_channel(true).unwrap();
        output
            .write_string_utf8(&format!("hello from {name}\n"))
            .await
            .unwrap();
        output.flush_and_close().await.unwrap();
        let mut line = String::new();
        BufReader::new(client).read_line(&mut line).unwrap();
        assert_eq!(line, format!("hello from {name}\n"));
    }
}
