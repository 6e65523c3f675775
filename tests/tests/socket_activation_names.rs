//! Socket activation's names (`LISTEN_FDNAMES`): a colon-separated list with one name for each
//! descriptor `LISTEN_FDS` counts, in order, as systemd sets it and as
//! `sd_listen_fds_with_names(3)` reads it (without the variable, each is `unknown`).
//!
//! A list that names more or fewer descriptors than were passed cannot be matched to them:
//! taken by position, a name may be another socket's (`admin:web` with only the public
//! listener passed would hand `admin` to it). systemd's own function fails then (`EINVAL`);
//! `systemd_listeners` fails with `InvalidInput` ("the variables are malformed"), before it
//! takes anything: every descriptor stays where systemd put it, as it was.

use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::process::Command;

use net_sockets::{SelectorManager, a_socket};

/// Set in the child that plays the socket-activated service: what it must find, `malformed`
/// or the names it must be given (`,` between them).
const EXPECT: &str = "NET_TESTS_FDNAMES_EXPECT";

/// Passes `count` TCP listeners to a child as systemd does (descriptors 3, 4, ...,
/// `LISTEN_PID`, `LISTEN_FDS`, and `LISTEN_FDNAMES` when `names` is given) and runs
/// [`activated_with_names_child`] there, which must find what `expect` says.
fn activate(count: usize, names: Option<&str>, expect: &str) {
    let listeners: Vec<std::net::TcpListener> = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let mut script = String::new();
    // Out of the way first (a listener may be at 3 or 4 already), then into place.
    for (i, listener) in listeners.iter().enumerate() {
        socket2::SockRef::from(listener).set_cloexec(false).unwrap();
        let fd = listener.as_raw_fd();
        script += &format!("exec {}<&{fd} {fd}<&-; ", 100 + i);
    }
    for i in 0..count {
        script += &format!("exec {}<&{} {}<&-; ", 3 + i, 100 + i, 100 + i);
    }
    let names = names.map_or(String::new(), |names| format!("LISTEN_FDNAMES='{names}' "));
    script += &format!(
        "LISTEN_PID=$$ LISTEN_FDS={count} {names}exec \"$0\" --exact activated_with_names_child \
         --nocapture"
    );
    let output = net_tests::harness::output(
        Command::new("bash")
            .arg("-c")
            .arg(&script)
            .arg(std::env::current_exe().unwrap())
            .env(EXPECT, expect),
    )
    .unwrap();
    drop(listeners);
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && printed.contains("names child done"),
        "`{script}` (expecting {expect}) failed: {printed}"
    );
}

#[test]
fn names_that_do_not_match_the_descriptors_are_malformed_and_nothing_is_taken() {
    if std::env::var_os(EXPECT).is_some() {
        return;
    }
    // More names than descriptors, fewer, and an empty list (no name at all, as systemd
    // splits it) for one descriptor.
    activate(1, Some("admin:web"), "malformed");
    activate(2, Some("web"), "malformed");
    activate(1, Some(""), "malformed");
    // As systemd sets them: one name each, in order; without the variable, `unknown` each.
    activate(2, Some("admin:web"), "admin,web");
    activate(2, None, "unknown,unknown");
}

/// What the process holds at each descriptor systemd passed: the socket, and the flags
/// (close-on-exec among them) of that descriptor.
fn passed(count: usize) -> Vec<(String, String)> {
    (3..3 + count)
        .map(|fd| {
            let target = std::fs::read_link(format!("/proc/self/fd/{fd}"))
                .map(|target| target.display().to_string())
                .unwrap_or_else(|e| format!("not open: {e}"));
            let flags = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))
                .ok()
                .and_then(|info| {
                    info.lines()
                        .find(|l| l.starts_with("flags:"))
                        .map(str::to_owned)
                })
                .unwrap_or_default();
            (target, flags)
        })
        .collect()
}

/// The socket-activated side of the test above (does nothing in a normal run).
#[test]
fn activated_with_names_child() {
    let Ok(expect) = std::env::var(EXPECT) else {
        return;
    };
    let count: usize = std::env::var("LISTEN_FDS").unwrap().parse().unwrap();
    let before = passed(count);
    assert!(
        before
            .iter()
            .all(|(target, _)| target.starts_with("socket:")),
        "the listeners are not at 3..: {before:?}"
    );
    net_tests::harness::run_if_child(EXPECT, async move {
        let selector = SelectorManager::new();
        let taken = a_socket(&selector).tcp().systemd_listeners();
        if expect == "malformed" {
            let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
            match taken {
                Err(net_sockets::Error::Io(e)) if e.kind() == ErrorKind::InvalidInput => {
                    // Naming both counts.
                    let named = if names.is_empty() {
                        0
                    } else {
                        names.split(':').count()
                    };
                    let message = e.to_string();
                    assert!(
                        message.contains(&format!("names {named} descriptors"))
                            && message.contains(&format!("LISTEN_FDS counts {count}")),
                        "{message}"
                    );
                }
                Ok(taken) => panic!(
                    "LISTEN_FDNAMES={names:?} for {count} descriptors was taken: names {:?}",
                    taken.iter().map(|(name, _)| name).collect::<Vec<_>>()
                ),
                Err(e) => panic!("LISTEN_FDNAMES={names:?}: {e:?}, not InvalidInput"),
            }
            assert_eq!(
                passed(count),
                before,
                "the descriptors systemd passed changed"
            );
        } else {
            let names: Vec<String> = taken.unwrap().into_iter().map(|(name, _)| name).collect();
            assert_eq!(names.join(","), expect);
        }
    });
    println!("names child done");
}
