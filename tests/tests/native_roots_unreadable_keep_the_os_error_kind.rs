//! `native_roots()` with an operating-system store that cannot be read fails `build()` with
//! `Error::NativeRoots`, whose kind is that of the I/O error met reading it, as a PEM file that
//! cannot be read gives `Error::ReadFile` the kind of its OS error: here `SSL_CERT_FILE` names
//! a directory (`IsADirectory`, `EISDIR`), and `SSL_CERT_DIR` a plain file (`NotADirectory`,
//! `ENOTDIR`). A store that holds no certificate at all stays `NotFound`
//! (`tls_client_config::native_roots_read_the_os_store_and_an_empty_one_is_an_error`).
//!
//! Each case runs in a child process of its own, with the store's variables set there only.

use std::ffi::OsStr;
use std::io::{self, ErrorKind};

use net_tests::TempDir;
use net_tests::harness::{rerun_self_alone_with, run_if_child};
use net_tls::{Error, TlsConfig};

/// Tells the child test it is the child.
const CHILD: &str = "NATIVE_ROOTS_UNREADABLE_CHILD";
/// The kind and OS code the child expects, as `KIND:CODE`.
const EXPECT: &str = "NATIVE_ROOTS_UNREADABLE_EXPECT";
/// Printed by the child once it checked.
const MARKER: &str = "native roots unreadable child done";

/// The child: builds a client with `native_roots()` and checks the error against `EXPECT`.
#[test]
fn native_roots_unreadable_child() {
    let Some(expected) = std::env::var_os(EXPECT) else {
        return;
    };
    let expected = expected.into_string().expect("a UTF-8 expectation");
    run_if_child(CHILD, async move {
        let (kind, code) = expected.split_once(':').expect("KIND:CODE");
        let code: i32 = code.parse().expect("an OS code");
        let e = TlsConfig::builder().native_roots().build().unwrap_err();
        assert!(matches!(e, Error::NativeRoots(_)), "{e:?}");
        let mut found = None;
        let mut next = std::error::Error::source(&e);
        while let Some(cause) = next {
            if let Some(io) = cause.downcast_ref::<io::Error>() {
                found = io.raw_os_error();
            }
            next = cause.source();
        }
        assert_eq!(found, Some(code), "the OS error in the chain of {e:?}");
        assert_eq!(format!("{:?}", e.kind()), kind, "{e:?}");
        assert_eq!(format!("{:?}", io::Error::from(e).kind()), kind);
        println!("{MARKER}");
    });
}

#[test]
fn an_unreadable_os_store_is_the_kind_of_its_os_error() {
    let dir = TempDir::new("native-roots-unreadable");
    let a_directory = dir.join("a-directory");
    std::fs::create_dir(&a_directory).unwrap();
    let empty = dir.join("empty");
    std::fs::create_dir(&empty).unwrap();
    let no_certificate = dir.write("no-certificate.pem", "no certificate here\n");
    let cases = [
        (
            ("SSL_CERT_FILE", a_directory.as_os_str()),
            ("SSL_CERT_DIR", empty.as_os_str()),
            (ErrorKind::IsADirectory, libc::EISDIR),
        ),
        (
            ("SSL_CERT_FILE", no_certificate.as_os_str()),
            ("SSL_CERT_DIR", no_certificate.as_os_str()),
            (ErrorKind::NotADirectory, libc::ENOTDIR),
        ),
    ];
    for (file, store_dir, (kind, code)) in cases {
        let expect = format!("{kind:?}:{code}");
        let vars: [(&str, &OsStr); 3] = [file, store_dir, (EXPECT, OsStr::new(&expect))];
        rerun_self_alone_with("native_roots_unreadable_child", CHILD, &vars, MARKER);
    }
}
