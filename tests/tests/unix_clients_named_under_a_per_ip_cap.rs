//! `max_connections_per_ip` on a Unix listener: a Unix client has no IP address, and the cap
//! does not apply to it, whether it is unnamed or bound to a path or an abstract name (its
//! `remote_address` is then that name).

use net_sockets::{SelectorManager, SocketAddress, UnixSocketAddress, a_socket};
use net_tests::{TempDir, within};

/// Clients bound to a name (a path, an abstract name, one Linux picked) beside unnamed ones,
/// all on a listener capped at one connection per address: every one is accepted and handed
/// out under the name it bound, none is refused, and all count as open at once. (The
/// builder's docs said every Unix client is unnamed; a client may bind a name, and the cap
/// still does not apply to it.)
#[cfg(any(target_os = "linux", target_os = "android"))]
#[tokio::test]
async fn named_and_unnamed_unix_clients_are_not_capped_per_address() {
    let selector = SelectorManager::new();
    let dir = TempDir::new("per-ip-unix-named");
    let path = dir.path().join("listener.sock");
    let listener = a_socket(&selector)
        .tcp()
        .max_connections_per_ip(1)
        .bind(UnixSocketAddress::new(&path))
        .await
        .unwrap();
    let abstract_name = format!("\0net-sockets-{}-per-ip-client", std::process::id());
    let locals = [
        Some(UnixSocketAddress::new(dir.path().join("client.sock"))),
        Some(UnixSocketAddress::new(abstract_name)),
        Some(UnixSocketAddress::new("")),
        None,
        None,
    ];
    let mut kept = Vec::new();
    for local in locals {
        let mut builder = a_socket(&selector).tcp();
        if let Some(local) = local {
            builder = builder.local_address(local);
        }
        let client = within(builder.connect(UnixSocketAddress::new(&path)))
            .await
            .unwrap();
        let accepted = within(listener.accept()).await.unwrap();
        assert_eq!(accepted.remote_address(), client.local_address());
        kept.push((client, accepted));
    }
    let named = kept
        .iter()
        .filter(|(client, _)| {
            client.local_address() != SocketAddress::Unix(UnixSocketAddress::new(""))
        })
        .count();
    assert_eq!(named, 3, "three clients bound a name");
    let stats = listener.stats();
    assert_eq!(
        (stats.accepted, stats.open, stats.refused_per_ip),
        (5, 5, 0)
    );
    drop(kept);
    listener.close();
}
