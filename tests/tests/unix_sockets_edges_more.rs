//! Unix stream sockets at more edges: a path through a symlinked directory, a path that is
//! not UTF-8, and a real peer (OpenBSD `nc -U`) half-closing both ways.

use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use net_sockets::{SelectorManager, SocketAddress, UnixSocketAddress, a_socket};
use net_tests::{TempDir, payload, within};

/// A listener bound through a symlinked directory makes its file in the directory the link
/// names, is reached by either path, and removes that file at its close.
#[tokio::test]
async fn a_path_through_a_symlinked_directory_binds_and_is_removed() {
    let selector = SelectorManager::new();
    let dir = TempDir::new("unix-through-a-link");
    std::fs::create_dir(dir.join("real")).unwrap();
    std::os::unix::fs::symlink(dir.join("real"), dir.join("link")).unwrap();
    let through_the_link = dir.join("link").join("s.sock");
    let listener = a_socket(&selector)
        .tcp()
        .bind(UnixSocketAddress::new(&through_the_link))
        .await
        .unwrap();
    assert_eq!(
        listener.local_address(),
        SocketAddress::Unix(UnixSocketAddress::new(&through_the_link))
    );
    let real = dir.join("real").join("s.sock");
    let client = a_socket(&selector)
        .tcp()
        .connect(UnixSocketAddress::new(&real))
        .await
        .unwrap();
    within(listener.accept()).await.unwrap();
    drop(client);
    listener.close();
    within(listener.await_closed()).await;
    assert!(
        std::fs::symlink_metadata(&real).is_err(),
        "the file is left"
    );
}

/// A path that is not UTF-8 binds as it is, is reported byte for byte (shown lossily by
/// `Display`), and its file is removed at the close; a client bound to such a path is seen
/// under it.
#[tokio::test]
async fn a_path_that_is_not_utf8_binds_is_reported_and_removed() {
    let selector = SelectorManager::new();
    let dir = TempDir::new("unix-not-utf8");
    let with_name = |name: &[u8]| {
        let mut bytes = dir.path().as_os_str().as_bytes().to_vec();
        bytes.push(b'/');
        bytes.extend_from_slice(name);
        PathBuf::from(std::ffi::OsString::from_vec(bytes))
    };
    let path = with_name(b"\xff\xfe.sock");
    let client_path = with_name(b"c\xff.sock");
    let address = UnixSocketAddress::new(&path);
    let listener = a_socket(&selector)
        .tcp()
        .bind(address.clone())
        .await
        .unwrap();
    assert_eq!(
        listener.local_address(),
        SocketAddress::Unix(address.clone())
    );
    assert!(
        address.to_string().ends_with("/\u{fffd}\u{fffd}.sock"),
        "{address}"
    );
    let client = a_socket(&selector)
        .tcp()
        .local_address(UnixSocketAddress::new(&client_path))
        .connect(address)
        .await
        .unwrap();
    let accepted = within(listener.accept()).await.unwrap();
    assert_eq!(
        accepted.remote_address(),
        SocketAddress::Unix(UnixSocketAddress::new(&client_path))
    );
    drop(accepted);
    client.close();
    within(client.await_closed()).await;
    listener.close();
    within(listener.await_closed()).await;
    assert!(
        std::fs::symlink_metadata(&path).is_err(),
        "the listener's file is left"
    );
    assert!(
        std::fs::symlink_metadata(&client_path).is_err(),
        "the client's file is left"
    );
}

/// OpenBSD's `nc -N -U` as the peer: it sends 3 MB and half-closes (`-N`); the server reads
/// every byte, then the end, sends 3 MB back and half-closes in turn; `nc` writes every byte
/// and ends. Run as `nc.openbsd`, the name Debian's `netcat-openbsd` gives it and the one
/// `.ci/run` checks for (a plain `nc` may be another netcat); skipped where that is missing.
#[tokio::test]
async fn a_real_peer_half_closes_both_ways_over_unix() {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let openbsd_nc = Command::new("nc.openbsd")
        .arg("-h")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stderr).contains("OpenBSD"));
    if !openbsd_nc {
        net_tests::harness::skipped("no OpenBSD nc (Debian: netcat-openbsd)");
        return;
    }
    let selector = SelectorManager::new();
    let dir = TempDir::new("unix-nc");
    let path = dir.join("s.sock");
    let listener = a_socket(&selector)
        .tcp()
        .bind(UnixSocketAddress::new(&path))
        .await
        .unwrap();
    let mut nc = Command::new("nc.openbsd")
        .args(["-N", "-U"])
        .arg(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = nc.stdin.take().unwrap();
    let sent = payload(3_000_000);
    let to_send = sent.clone();
    let writer = std::thread::spawn(move || stdin.write_all(&to_send).unwrap());
    let reader = std::thread::spawn(move || nc.wait_with_output().unwrap());
    let socket = within(listener.accept()).await.unwrap();
    let mut connection = socket.connection().unwrap();
    let received = within(connection.input.read_remaining(4_000_000))
        .await
        .unwrap();
    assert!(
        received == sent,
        "{} bytes of {} came",
        received.len(),
        sent.len()
    );
    writer.join().unwrap();
    within(connection.output.write_fully(&sent)).await.unwrap();
    within(connection.output.flush_and_close()).await.unwrap();
    let output = reader.join().unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(
        output.stdout == sent,
        "{} bytes of {} went",
        output.stdout.len(),
        sent.len()
    );
}
