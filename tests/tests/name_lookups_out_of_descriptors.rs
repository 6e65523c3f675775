//! A host name looked up while the process is out of descriptors: the system resolver cannot
//! open `/etc/hosts` nor a socket to a DNS server, and glibc then answers as for a name that
//! does not exist ("Name or service not known"). A `connect`, `bind` or UDP `connect` to
//! `localhost` must fail as the same call to `127.0.0.1` does, with the OS's `EMFILE`, never
//! with `Error::Resolve`, which says the name does not exist (a caller would give up on a
//! good name instead of waiting for descriptors); once descriptors are free, the same calls
//! go through.
//!
//! The check runs in a child process (this test binary again) under `ulimit -n 64`, so that
//! the low limit touches nothing else.

use net_io::LineEnding;
use net_sockets::{Error, SelectorManager, a_socket};
use net_tests::harness::{rerun_self_with_fd_limit, run_if_child};
use net_tests::loopback::{connect, connected_pair, tcp_listener};
use net_tests::probe::{exhaust_descriptors, fd_count};
use net_tests::within;

const CHILD_ENV: &str = "NET_TESTS_NAME_LOOKUPS_OUT_OF_DESCRIPTORS_CHILD";

#[test]
fn a_name_looked_up_out_of_descriptors_fails_with_emfile_not_as_unknown() {
    rerun_self_with_fd_limit("lookups_child", CHILD_ENV, 64, "lookups child passed");
}

/// `EMFILE` as an `Error::Io` carrying the OS error, what `what` failed with.
fn assert_emfile<T>(what: &str, result: Result<T, Error>) {
    match result {
        Err(Error::Io(e)) if e.raw_os_error() == Some(libc::EMFILE) => {}
        Err(e) => panic!("{what}: {e} ({e:?}), not EMFILE"),
        Ok(_) => panic!("{what} succeeded out of descriptors"),
    }
}

#[test]
fn lookups_child() {
    run_if_child(CHILD_ENV, async {
        let selector = SelectorManager::new();
        let listener = tcp_listener(&selector).await;
        let port = listener.port().expect("an inet listener");
        // Everything the failed calls and the connections below hold is released at the end.
        let base = fd_count();
        // A connection made before, which goes on working at the limit.
        let (mut client, mut server) = connected_pair(&selector, &listener).await;
        let mut output = client.open_write_channel(true).expect("a write channel");
        let mut input = server.open_read_channel().expect("a read channel");
        let filler = exhaust_descriptors(|| std::fs::File::open("/dev/null"));

        // The same calls to an IP address fail with EMFILE: so must those to a name.
        assert_emfile(
            "connect to 127.0.0.1",
            within(a_socket(&selector).tcp().connect(("127.0.0.1", port))).await,
        );
        assert_emfile(
            "connect to localhost",
            within(a_socket(&selector).tcp().connect(("localhost", port))).await,
        );
        assert_emfile(
            "bind to localhost",
            within(a_socket(&selector).tcp().bind(("localhost", 0))).await,
        );
        assert_emfile(
            "udp bind to localhost",
            within(a_socket(&selector).udp().bind(("localhost", 0))).await,
        );
        assert_emfile(
            "udp connect to localhost",
            within(a_socket(&selector).udp().connect(("localhost", port))).await,
        );
        within(output.write_string_utf8("at the limit\n"))
            .await
            .expect("write at the limit");
        let line = within(input.read_line(64, LineEnding::Default)).await;
        assert_eq!(
            line.expect("read at the limit").as_deref(),
            Some("at the limit")
        );

        drop(filler);
        let again = connect(&selector, ("localhost", port)).await;
        let accepted = within(listener.accept())
            .await
            .expect("accept after the limit");
        drop((again, accepted));
        let udp = within(a_socket(&selector).udp().bind(("localhost", 0)))
            .await
            .expect("udp bind to localhost once descriptors are free");
        drop(udp);
        drop((output, input, client, server));
        assert_eq!(fd_count(), base, "descriptors left open");
        println!("lookups child passed");
    });
}
