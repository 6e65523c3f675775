//! A Unix listener's socket file gets the mode `UnixSocketAddress`'s documentation states:
//! `0777` less the process's umask. (The umask is the process's: this file holds one test,
//! so that no other test of its binary binds while it is changed.)

use std::os::unix::fs::PermissionsExt;

use net_sockets::{SelectorManager, UnixSocketAddress, a_socket};
use net_tests::TempDir;

/// Sets the process's umask, returning the one before.
fn set_umask(mask: libc::mode_t) -> libc::mode_t {
    // SAFETY: `umask` only swaps the process's file creation mask.
    #[allow(unsafe_code)]
    unsafe {
        libc::umask(mask)
    }
}

#[tokio::test]
async fn a_unix_listeners_socket_file_has_mode_0777_less_the_umask() {
    let selector = SelectorManager::new();
    let dir = TempDir::new("unix-file-mode");
    let before = set_umask(0o022);
    let mut modes = Vec::new();
    for mask in [0o022, 0o077, 0o007] {
        set_umask(mask);
        let path = dir.join(&format!("{mask:o}.sock"));
        let listener = a_socket(&selector)
            .tcp()
            .bind(UnixSocketAddress::new(&path))
            .await;
        let mode = std::fs::symlink_metadata(&path).map(|m| m.permissions().mode() & 0o777);
        modes.push((mask, mode.ok(), listener.is_ok()));
    }
    set_umask(before);
    for (mask, mode, bound) in modes {
        assert!(bound, "umask {mask:o}");
        assert_eq!(mode, Some(0o777 & !mask), "umask {mask:o}");
    }
}
