//! Fixtures for the end-to-end tests of the programs added in round two: a program run with
//! its output read line by line (killed on drop), a temporary directory, a test PKI, and a
//! blocking line client. Each test file uses part of it.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// The hang safety net: no single wait in these tests takes longer.
pub(crate) const HANG_LIMIT: Duration = Duration::from_secs(20);

/// A running program whose stdout and stderr lines arrive on channels; killed when dropped.
pub(crate) struct Program {
    name: String,
    child: Child,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Program {
    /// Starts `program` with `args`, stdin closed.
    pub(crate) fn start<S: AsRef<OsStr>>(
        program: &str,
        args: impl IntoIterator<Item = S>,
    ) -> Program {
        Program::start_with_input(program, args, None)
    }

    /// Starts `program` with `args` and `input` on stdin (then closed); stdin is empty without
    /// `input`.
    pub(crate) fn start_with_input<S: AsRef<OsStr>>(
        program: &str,
        args: impl IntoIterator<Item = S>,
        input: Option<&str>,
    ) -> Program {
        let mut child = Command::new(program)
            .args(args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        if let Some(input) = input {
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(input.as_bytes()).expect("write stdin");
        }
        let stdout = lines(child.stdout.take().unwrap());
        let stderr = lines(child.stderr.take().unwrap());
        Program {
            name: program.rsplit('/').next().unwrap_or(program).to_owned(),
            child,
            stdout,
            stderr,
            seen: Vec::new(),
        }
    }

    /// The next line on stdout; panics at EOF or after [`HANG_LIMIT`].
    pub(crate) fn stdout_line(&mut self) -> String {
        self.stdout_line_where("a line", |_| true)
    }

    /// Reads stdout until a line satisfies `wanted`, and returns it.
    pub(crate) fn stdout_line_where(
        &mut self,
        what: &str,
        wanted: impl Fn(&str) -> bool,
    ) -> String {
        loop {
            match self.stdout.recv_timeout(HANG_LIMIT) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if wanted(&line) {
                        return line;
                    }
                }
                Err(e) => {
                    let stderr: Vec<String> = self.stderr.try_iter().collect();
                    panic!(
                        "{}: no {what} on stdout ({e:?}); stdout so far: {:#?}, stderr: {stderr:#?}",
                        self.name, self.seen
                    )
                }
            }
        }
    }

    /// The next line on stderr; panics at EOF or after [`HANG_LIMIT`].
    pub(crate) fn stderr_line(&mut self) -> String {
        self.stderr
            .recv_timeout(HANG_LIMIT)
            .unwrap_or_else(|e| panic!("{}: no line on stderr ({e:?})", self.name))
    }

    /// Reads stdout up to the `... is listening at HOST:PORT` line and returns the port.
    pub(crate) fn listening_port(&mut self) -> u16 {
        let line = self.stdout_line_where("listening line", |l| l.contains(" is listening at "));
        line.rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port at the end of {line:?}"))
    }

    /// Whether the program is still running.
    pub(crate) fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Sends the program a signal (`"TERM"`, `"INT"`).
    pub(crate) fn signal(&self, name: &str) {
        // The shell's own `kill`: no dependency on procps.
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!("kill -s {name} {}", self.child.id()))
            .status()
            .expect("run sh -c kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the program to exit; returns its status and the rest of stdout and stderr.
    pub(crate) fn finish(&mut self) -> (ExitStatus, Vec<String>, Vec<String>) {
        let rest = |rx: &mpsc::Receiver<String>, name: &str| {
            let mut lines = Vec::new();
            loop {
                match rx.recv_timeout(HANG_LIMIT) {
                    Ok(line) => lines.push(line),
                    Err(mpsc::RecvTimeoutError::Disconnected) => return lines,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        panic!("{name} did not exit; output: {lines:#?}")
                    }
                }
            }
        };
        let stdout = rest(&self.stdout, &self.name);
        let stderr = rest(&self.stderr, &self.name);
        let status = self.child.wait().expect("wait for the program");
        (status, stdout, stderr)
    }

    /// Runs `program args` to its end: (status, stdout lines, stderr lines).
    pub(crate) fn run<S: AsRef<OsStr>>(
        program: &str,
        args: impl IntoIterator<Item = S>,
    ) -> (ExitStatus, Vec<String>, Vec<String>) {
        Program::start(program, args).finish()
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Forwards the lines of `pipe` to a channel from a thread, without their `\n` (a `\r` before
/// it stays); the channel closes at EOF.
fn lines(pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        loop {
            let mut line = Vec::new();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            if tx
                .send(String::from_utf8_lossy(&line).into_owned())
                .is_err()
            {
                return;
            }
        }
    });
    rx
}

/// A directory under the system's temporary directory, removed when dropped.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    /// A fresh, empty directory.
    pub(crate) fn new(prefix: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "{prefix}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `contents` to file `name` in the directory and returns its path as a string.
    pub(crate) fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path.to_str().unwrap().to_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A test CA and a server certificate it issued for `localhost` and `127.0.0.1`, as PEM files
/// in a temporary directory.
pub(crate) struct Pki {
    /// The CA certificate file.
    pub(crate) ca: String,
    /// The server's chain file (leaf, then CA).
    pub(crate) chain: String,
    /// The server's key file.
    pub(crate) key: String,
    /// The CA certificate, PEM.
    pub(crate) ca_pem: String,
    dir: TempDir,
}

impl Pki {
    /// A fresh CA and server certificate.
    pub(crate) fn new() -> Pki {
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name
            .push(DnType::CommonName, "examples test CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();

        let mut leaf =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        leaf.distinguished_name
            .push(DnType::CommonName, "localhost");
        leaf.is_ca = IsCa::ExplicitNoCa;
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().unwrap();
        let cert = leaf.signed_by(&key, &issuer).unwrap();

        let dir = TempDir::new("examples-pki");
        Pki {
            ca: dir.write("ca.pem", issuer.pem()),
            chain: dir.write("server.pem", format!("{}{}", cert.pem(), issuer.pem())),
            key: dir.write("server.key", key.serialize_pem()),
            ca_pem: issuer.pem(),
            dir,
        }
    }

    /// The directory the files are in.
    pub(crate) fn dir(&self) -> &TempDir {
        &self.dir
    }
}

/// A blocking line client on loopback: every read waits at most [`HANG_LIMIT`].
pub(crate) struct LineClient {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl LineClient {
    /// Connects to `127.0.0.1:port`.
    pub(crate) fn connect(port: u16) -> LineClient {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.set_read_timeout(Some(HANG_LIMIT)).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        LineClient { stream, reader }
    }

    /// The underlying stream (to change options, or to leave it unread).
    pub(crate) fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Sends `line` and a newline.
    pub(crate) fn send(&mut self, line: &str) {
        self.stream
            .write_all(format!("{line}\n").as_bytes())
            .expect("send a line");
    }

    /// The next line without its line ending; `None` at EOF. Panics on a timeout or error.
    pub(crate) fn line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => None,
            Ok(_) => {
                let end = line.trim_end_matches(['\n', '\r']).len();
                line.truncate(end);
                Some(line)
            }
            Err(e) => panic!("no line from the server: {e}"),
        }
    }

    /// Reads lines until the connection ends (EOF or an error such as a reset); returns how
    /// many complete lines came.
    pub(crate) fn lines_until_end(&mut self) -> usize {
        let mut count = 0;
        let mut line = Vec::new();
        loop {
            line.clear();
            match self.reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return count,
                Ok(_) if line.ends_with(b"\n") => count += 1,
                Ok(_) => return count,
            }
        }
    }

    /// Reads lines until `expected`, panicking on anything else first.
    pub(crate) fn expect(&mut self, expected: &str) {
        assert_eq!(self.line().as_deref(), Some(expected));
    }

    /// Half-closes: the server sees the end of input.
    pub(crate) fn shutdown_write(&self) {
        self.stream.shutdown(Shutdown::Write).unwrap();
    }

    /// Waits for the server to close: EOF (or a reset) without any further line.
    pub(crate) fn expect_end(&mut self) {
        let mut rest = String::new();
        match self.reader.read_to_string(&mut rest) {
            Ok(_) => assert_eq!(rest, "", "more lines before the end"),
            Err(e) => assert_eq!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset,
                "no end from the server: {e}"
            ),
        }
    }
}
