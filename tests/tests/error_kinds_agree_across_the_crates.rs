//! Every error a user can make of the three crates' error types keeps its `io::ErrorKind`
//! through every conversion between them: into `std::io::Error` (as `?` into `io::Result`
//! does) and from there into `net_io::Error`, `net_sockets::Error` and `net_tls::Error`, each
//! of which reports the same kind as the error it came from; an OS error code survives the
//! round trip through `net_tls::Error`, the outermost layer.

use std::io::{self, ErrorKind};
use std::time::Duration;

use net_tls::rustls;

/// An inner error of a transport's own (as a TLS layer's truncation marker is).
#[derive(Debug)]
struct Marker;

impl std::fmt::Display for Marker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("marker")
    }
}

impl std::error::Error for Marker {}

/// Plain I/O errors: an OS error, a bare kind, a message, an inner error, a shared inner error.
fn io_errors() -> Vec<io::Error> {
    vec![
        io::Error::from_raw_os_error(libc::ECONNRESET),
        io::Error::from_raw_os_error(libc::ETIMEDOUT),
        io::Error::from(ErrorKind::UnexpectedEof),
        io::Error::new(ErrorKind::OutOfMemory, "no room for the line"),
        io::Error::new(ErrorKind::InvalidData, Marker),
        io::Error::new(ErrorKind::UnexpectedEof, net_io::SharedError::new(Marker)),
    ]
}

fn net_io_errors() -> Vec<net_io::Error> {
    let mut errors = vec![
        net_io::Error::TooLongLine { limit: 3 },
        net_io::Error::UnexpectedEof {
            needed: 3,
            available: 1,
        },
        net_io::Error::ClosedForWrite,
        net_io::Error::Cancelled,
        net_io::Error::Timeout,
    ];
    errors.extend(io_errors().into_iter().map(net_io::Error::Io));
    errors
}

fn net_sockets_errors() -> Vec<net_sockets::Error> {
    let mut errors = vec![
        net_sockets::Error::ChannelAlreadyOpen,
        net_sockets::Error::Closed,
        net_sockets::Error::SelectorClosed,
        net_sockets::Error::DatagramTooLarge { size: 70_000 },
        net_sockets::Error::Timeout,
    ];
    errors.extend(net_io_errors().into_iter().map(net_sockets::Error::Channel));
    errors.extend(net_io_errors().into_iter().map(net_sockets::Error::from));
    errors.extend(io_errors().into_iter().map(net_sockets::Error::Io));
    errors
}

fn net_tls_errors() -> Vec<net_tls::Error> {
    let mut errors = vec![
        net_tls::Error::Handshake(rustls::Error::DecryptError),
        net_tls::Error::HandshakeTimeout(Duration::from_secs(1)),
        net_tls::Error::Config(rustls::Error::General("refused".into())),
        net_tls::Error::MissingCertificateChain,
        net_tls::Error::MissingPrivateKey,
        net_tls::Error::NativeRoots(Box::new(io::Error::from(ErrorKind::NotFound))),
    ];
    errors.extend(net_sockets_errors().into_iter().map(net_tls::Error::Socket));
    errors.extend(net_io_errors().into_iter().map(net_tls::Error::from));
    errors
}

/// Makes one error anew (errors cannot be cloned), converted into an `io::Error`.
type Make = Box<dyn Fn() -> io::Error>;

/// Each error: what it shows, its own kind, and how to make it.
fn every_error() -> Vec<(String, ErrorKind, Make)> {
    let mut all: Vec<(String, ErrorKind, Make)> = Vec::new();
    for (i, e) in net_io_errors().into_iter().enumerate() {
        let make = move || io::Error::from(net_io_errors().swap_remove(i));
        all.push((format!("{e:?}"), e.kind(), Box::new(make)));
    }
    for (i, e) in net_sockets_errors().into_iter().enumerate() {
        let make = move || io::Error::from(net_sockets_errors().swap_remove(i));
        all.push((format!("{e:?}"), e.kind(), Box::new(make)));
    }
    for (i, e) in net_tls_errors().into_iter().enumerate() {
        let make = move || io::Error::from(net_tls_errors().swap_remove(i));
        all.push((format!("{e:?}"), e.kind(), Box::new(make)));
    }
    all
}

#[test]
fn every_conversion_keeps_the_kind_and_the_os_error() {
    let all = every_error();
    assert!(all.len() > 80, "{} errors", all.len());
    for (shown, kind, make) in &all {
        let io = make();
        assert_eq!(io.kind(), *kind, "into io::Error: {shown}");
        let os = io.raw_os_error();
        let channel = net_io::Error::from(make());
        assert_eq!(
            channel.kind(),
            *kind,
            "net_io::Error of {shown}: {channel:?}"
        );
        let socket = net_sockets::Error::from(make());
        assert_eq!(
            socket.kind(),
            *kind,
            "net_sockets::Error of {shown}: {socket:?}"
        );
        let tls = net_tls::Error::from(make());
        assert_eq!(tls.kind(), *kind, "net_tls::Error of {shown}: {tls:?}");
        let back = io::Error::from(tls);
        assert_eq!(back.kind(), *kind, "back into io::Error: {shown}");
        assert_eq!(back.raw_os_error(), os, "the OS error of {shown}");
    }
}

/// A transport's inner error stays reachable through each crate's `inner_error()`, however
/// the error reached it.
#[test]
fn a_transports_inner_error_stays_reachable_through_every_crate() {
    for (i, _) in io_errors().into_iter().enumerate().skip(4) {
        let io = || io_errors().swap_remove(i);
        let channel = net_io::Error::from(io());
        assert!(
            channel.inner_error().is_some_and(|e| e.is::<Marker>()),
            "{channel:?}"
        );
        let socket = net_sockets::Error::from(io());
        assert!(
            socket.inner_error().is_some_and(|e| e.is::<Marker>()),
            "{socket:?}"
        );
        let tls = net_tls::Error::from(io());
        assert!(
            tls.inner_error().is_some_and(|e| e.is::<Marker>()),
            "{tls:?}"
        );
        let tls = net_tls::Error::from(io::Error::from(net_tls::Error::from(io())));
        assert!(
            tls.inner_error().is_some_and(|e| e.is::<Marker>()),
            "{tls:?}"
        );
    }
}
