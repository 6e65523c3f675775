//! The example programs as a user runs them: what they say when a file given on the command
//! line cannot be used.

use net_tests::TempDir;
use net_tests::harness::{Process, path_arg};
use net_tests::pki::Pki;

const SERVER: &str = env!("CARGO_BIN_EXE_sockets-server-tls");

/// `sockets-server-tls --client-ca FILE` with a FILE that holds no usable CA certificate fails
/// with one line, status 1, that names FILE as the place of the fault, as `--cert`, `--key` and
/// `sockets-client-tls --ca` do, and not `PEM bytes`, a source the user never gave.
#[test]
fn an_unusable_client_ca_file_is_named_as_the_source_of_the_fault() {
    let dir = TempDir::new("user-runs");
    let pki = Pki::with_server_names(&["localhost"]);
    let files = pki.temp_files();
    // A key where the CA certificate should be (a file mixed up on the command line), and a
    // file with no PEM at all.
    let key_file = path_arg(&files.server_key).to_owned();
    let empty = dir.write("empty.pem", "");
    let empty = path_arg(&empty).to_owned();
    for client_ca in [key_file, empty] {
        let args = [
            "--cert",
            path_arg(&files.server_chain),
            "--key",
            path_arg(&files.server_key),
            "--client-ca",
            &client_ca,
            "127.0.0.1",
            "0",
        ];
        let finished = Process::start(SERVER, args).finish();
        let failure = finished.failure_line();
        assert_eq!(finished.status.code(), Some(1), "{failure}");
        assert!(failure.contains(&client_ca), "{failure}");
        assert!(
            !failure.contains("PEM bytes"),
            "the line names a source that is not the file given: {failure}"
        );
    }
}
