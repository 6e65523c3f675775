//! Child processes for tests, and blocking clients of the programs they run:
//!
//! - [`Process`]: a program (an example binary, `openssl`, `curl`, `python3`) run with its output
//!   read line by line, signalled, and killed on drop, or when the thread that started it ends
//!   (so with the test process, even on a signal); [`Process::run`] runs one to its end.
//! - [`Haproxy`]: a real HAProxy relaying to a backend with a PROXY protocol header.
//! - [`LineClient`]: a blocking line client on loopback, optionally from another source
//!   address (`127.0.0.2`), for the tests that drive the example servers from plain threads.
//! - [`rerun_self_with_fd_limit`]: this test binary run again under a descriptor limit.
//! - [`gnutls_present`]: whether the GnuTLS tools are there, for the tests that skip without.
//! - [`java_peer`]: `tests/java/JssePeer.java` run as a JVM peer (java.net, JSSE), compiled once.
//! - [`skipped`]: how a test says it skips a part of itself, so that a CI log shows it.
//! - [`preload_shim`]: a C shim built for `LD_PRELOAD`, to make a system call of a child fail.
//! - [`unshare_netns`]: how to make a network namespace here, as root or in an unprivileged
//!   user namespace; [`path_with_sbin`] and [`system_program`]: `PATH` as root's, so that an
//!   ordinary user's tests find `haproxy`, `ip` and `tc` too.
//! - [`without_spawns`]: a section in which no child process starts (a child holds every
//!   descriptor of the process from its fork to its `exec`); every child here starts through
//!   [`spawn`].
//!
//! [`Process`]'s reads block the calling thread (bounded by [`HANG_LIMIT`]). From an async test,
//! call them on a multi-thread runtime: `#[tokio::test(flavor = "multi_thread")]` runs the test's
//! own future on the test thread, so the runtime's workers keep serving while it waits.

use std::ffi::OsStr;
use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::{PoisonError, RwLock, mpsc};
use std::time::{Duration, Instant};

use crate::{HANG_LIMIT, TempDir};

/// A running program whose stdout and stderr arrive line by line; killed when dropped, and
/// killed when the thread that started it ends (`setpriv --pdeathsig KILL`, where `setpriv`
/// exists): keep a `Process` on the thread that started it.
///
/// Lines come without their `\n` (a `\r` before it stays). Every wait for a line panics after
/// [`HANG_LIMIT`] or at the end of the output, with what the program printed.
#[derive(Debug)]
pub struct Process {
    program: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
    /// The stdout lines taken so far, for failure messages.
    seen: Vec<String>,
}

/// How a [`Process`] ended, and what it printed that had not been taken yet.
#[derive(Debug)]
pub struct Finished {
    /// The program that ran.
    pub program: String,
    /// The exit status.
    pub status: ExitStatus,
    /// The stdout lines not taken before [`Process::finish`].
    pub stdout: Vec<String>,
    /// The stderr lines not taken before [`Process::finish`].
    pub stderr: Vec<String>,
}

impl Process {
    /// Starts `program` with `args`, its stdin a pipe (see [`Process::send`]) and its stdout
    /// and stderr read by threads.
    pub fn start<I, S>(program: &str, args: I) -> Process
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut child = spawn_piped(program, args);
        let stdout = forward_lines(child.stdout.take().expect("stdout"));
        let stderr = forward_lines(child.stderr.take().expect("stderr"));
        Process {
            program: program.to_owned(),
            stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
            seen: Vec::new(),
        }
    }

    /// Runs `program` with `args` to its end, stdin closed at once: its status and every line
    /// it printed.
    pub fn run<I, S>(program: &str, args: I) -> Finished
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Process::start(program, args).finish()
    }

    /// The next line on stdout.
    pub fn stdout_line(&mut self) -> String {
        self.stdout_line_where("a line", |_| true)
    }

    /// Reads stdout until a line satisfies `wanted` (`what` names it in a failure), and returns
    /// that line; the lines before it are passed over.
    pub fn stdout_line_where(&mut self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
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
                        "{}: no {what} on stdout ({e:?}); stdout so far: {:#?}, \
                         stderr: {stderr:#?}",
                        self.program, self.seen
                    )
                }
            }
        }
    }

    /// What the process printed so far, for a failure's message: the stdout lines taken and
    /// those waiting, and the stderr lines waiting (which this takes).
    pub fn printed_so_far(&mut self) -> String {
        self.seen.extend(self.stdout.try_iter());
        let stderr: Vec<String> = self.stderr.try_iter().collect();
        let running = self.is_running();
        format!(
            "{} (running: {running}): stdout {:#?}, stderr {stderr:#?}",
            self.program, self.seen
        )
    }

    /// The next line on stderr.
    pub fn stderr_line(&mut self) -> String {
        match self.stderr.recv_timeout(HANG_LIMIT) {
            Ok(line) => line,
            Err(e) => panic!(
                "{}: no line on stderr ({e:?}); stdout so far: {:#?}",
                self.program, self.seen
            ),
        }
    }

    /// Reads the next stdout line, which must be a server's `... is listening at HOST:PORT`
    /// (how the example servers announce themselves), and returns the port.
    pub fn listening_port(&mut self) -> u16 {
        let line = self.stdout_line();
        assert!(
            line.contains(" is listening at "),
            "not a listening line: {line:?}"
        );
        port_at_end(&line)
    }

    /// Reads stdout up to a server's `... is listening at HOST:PORT` line, passing over the
    /// lines it prints before (`tcp-proxy`'s upstream, a certificate's description), and
    /// returns the port.
    pub fn listening_port_after_banner(&mut self) -> u16 {
        port_at_end(&self.stdout_line_where("listening line", |l| l.contains(" is listening at ")))
    }

    /// Writes `text` to the program's stdin.
    pub fn send(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin.write_all(text.as_bytes()).expect("write to stdin");
        stdin.flush().expect("flush stdin");
    }

    /// Whether the program is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// The program's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Sends the program the signal `name` (`"TERM"`, `"INT"`), as `kill -s NAME PID` does;
    /// panics if it cannot be sent (the program has been reaped).
    pub fn signal(&self, name: &str) {
        // The shell's own `kill`: no dependency on procps, and no `unsafe` for `kill(2)`.
        let status = status(
            Command::new("sh")
                .arg("-c")
                .arg(format!("kill -s {name} {}", self.child.id())),
        )
        .expect("run sh -c kill");
        assert!(status.success(), "{}: kill -s {name} failed", self.program);
    }

    /// Kills the program (a server that would run forever) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Closes stdin, reads stdout and stderr to their end and waits for the program to exit.
    pub fn finish(&mut self) -> Finished {
        self.stdin = None;
        let rest = |lines: &mpsc::Receiver<String>, which: &str| {
            let mut rest = Vec::new();
            loop {
                match lines.recv_timeout(HANG_LIMIT) {
                    Ok(line) => rest.push(line),
                    Err(mpsc::RecvTimeoutError::Disconnected) => return rest,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        panic!("{}: {which} did not end: {rest:#?}", self.program)
                    }
                }
            }
        };
        let stdout = rest(&self.stdout, "stdout");
        let stderr = rest(&self.stderr, "stderr");
        // Both pipes are closed: the program has exited or is about to.
        let status = self.child.wait().expect("wait for the program");
        Finished {
            program: self.program.clone(),
            status,
            stdout,
            stderr,
        }
    }
}

impl Finished {
    /// Asserts that the program failed the way the examples report errors — a non-zero exit
    /// status, nothing on stdout and exactly one line on stderr — and returns that line.
    pub fn failure_line(&self) -> &str {
        let Finished {
            program,
            status,
            stdout,
            stderr,
        } = self;
        assert!(
            !status.success(),
            "{program} succeeded: {stdout:?} {stderr:?}"
        );
        assert!(stdout.is_empty(), "{program}: {stdout:?}");
        assert_eq!(stderr.len(), 1, "{program}: {stderr:?}");
        &stderr[0]
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Held shared by every start of a child process through [`spawn`], and exclusively by
/// [`without_spawns`].
static SPAWNS: RwLock<()> = RwLock::new(());

/// Runs `f` while no child process is being started through [`spawn`] (and the helpers here,
/// which all use it): those wait until `f` returns.
///
/// From its fork to its `exec`, a child holds a copy of every descriptor of the process
/// (close-on-exec closes them only at the `exec`), so a socket closed meanwhile lives on in
/// it: a listener goes on taking connections, a UDP port datagrams. A test that asserts a
/// socket it closed is gone (a connect refused at once) closes it in `f` (a child started
/// after that holds nothing of it).
pub fn without_spawns<R>(f: impl FnOnce() -> R) -> R {
    let _quiet = SPAWNS.write().unwrap_or_else(PoisonError::into_inner);
    f()
}

/// `command.spawn()`, never during a [`without_spawns`] section.
///
/// # Errors
///
/// As `Command::spawn`.
pub fn spawn(command: &mut Command) -> std::io::Result<Child> {
    let _starting = SPAWNS.read().unwrap_or_else(PoisonError::into_inner);
    command.spawn()
}

/// As `command.output()` (stdin empty, stdout and stderr captured), started through [`spawn`].
///
/// # Errors
///
/// As `Command::output`.
pub fn output(command: &mut Command) -> std::io::Result<Output> {
    spawn(
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )?
    .wait_with_output()
}

/// Runs `openssl` with `args` in `dir` (started through [`spawn`]), and panics with its output
/// if it fails: for keys and certificates a test makes with the tool its users have.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = output(Command::new("openssl").args(args).current_dir(dir)).expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// As `command.status()`, started through [`spawn`].
///
/// # Errors
///
/// As `Command::status`.
pub fn status(command: &mut Command) -> std::io::Result<ExitStatus> {
    spawn(command)?.wait()
}

/// Starts `program` with `args` and pipes for stdin, stdout and stderr, killed when the thread
/// that started it ends (the test's thread, or the whole test process on a signal).
///
/// A [`Process`] is killed when dropped, but a test binary ended by a signal (a CI runner's
/// SIGTERM to its PID, a SIGKILL) runs no destructor: its example servers, `haproxy -db` and
/// `openssl s_server` kept running, reparented to init. So the program runs under `setpriv
/// --pdeathsig KILL` (util-linux), which asks the kernel (`PR_SET_PDEATHSIG`) to kill it when
/// its parent thread dies and then `exec`s it (same PID): no `unsafe` here. Where `setpriv` is
/// missing the program runs bare, as before.
fn spawn_piped<I, S>(program: &str, args: I) -> Child
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    static SETPRIV: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let has_setpriv = *SETPRIV.get_or_init(|| {
        status(
            Command::new("setpriv")
                .args(["--pdeathsig", "KILL", "true"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .is_ok_and(|status| status.success())
    });
    let mut command = if has_setpriv {
        let mut c = Command::new("setpriv");
        c.args(["--pdeathsig", "KILL", program]);
        c
    } else {
        Command::new(program)
    };
    spawn(
        command
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
    .unwrap_or_else(|e| panic!("cannot start {program}: {e}"))
}

/// What [`run_with_input`] returns: the exit status and the whole output, as text.
#[derive(Debug)]
pub struct RunOutput {
    /// The exit status.
    pub status: ExitStatus,
    /// Everything the program wrote to stdout.
    pub stdout: String,
    /// Everything the program wrote to stderr.
    pub stderr: String,
}

/// Runs `program` with `args` to its end with `input` on stdin (then closed), and returns its
/// exit status and output (for checks on the exact text, line endings included).
pub fn run_with_input<I, S>(program: &str, args: I, input: &str) -> RunOutput
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut child = spawn_piped(program, args);
    let mut stdin = child.stdin.take().expect("stdin");
    // From a thread: a program that writes much before it reads could otherwise block us both.
    let input = input.to_owned();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child.wait_with_output().expect("wait for the program");
    writer
        .join()
        .expect("the stdin writer")
        .unwrap_or_else(|e| panic!("{program}: writing stdin failed: {e}"));
    RunOutput {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Sends each line of `pipe` (without its `\n`) to a channel from a thread; the channel closes
/// at the end of the output.
fn forward_lines(pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
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

/// Builds `c_source` into `dir/shim.so` with `cc`, for a child's `LD_PRELOAD` (a shim that
/// makes a system call fail as the kernel would only under conditions a test cannot make);
/// `None` without a C compiler (the test then skips).
///
/// # Panics
///
/// When the source does not build.
pub fn preload_shim(dir: &Path, c_source: &str) -> Option<std::path::PathBuf> {
    let source = dir.join("shim.c");
    let library = dir.join("shim.so");
    std::fs::write(&source, c_source).unwrap();
    let built = output(
        Command::new("cc")
            .args(["-shared", "-fPIC", "-O1", "-o"])
            .arg(&library)
            .arg(&source)
            .arg("-ldl"),
    )
    .inspect_err(|e| {
        skipped(&format!(
            "no C compiler (`cc`: {e}) to build an LD_PRELOAD shim"
        ))
    })
    .ok()?;
    assert!(
        built.status.success(),
        "the shim did not build: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    Some(library)
}

/// Whether GnuTLS's `gnutls-cli` and `gnutls-serv` can be run. When they cannot, prints why
/// (for a test that then passes without them: Debian's `gnutls-bin` has both) and returns
/// `false`.
pub fn gnutls_present() -> bool {
    let found = ["gnutls-cli", "gnutls-serv"].iter().all(|tool| {
        status(
            Command::new(tool)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .is_ok_and(|s| s.success())
    });
    if !found {
        skipped(
            "gnutls-cli or gnutls-serv cannot be run (Debian: apt-get install gnutls-bin); the \
             GnuTLS interop tests need them",
        );
    }
    found
}

/// `tests/java/JssePeer.java`, the JVM as a peer (java.net and JSSE), run with the JVM's
/// `options` and the program's `args`: compiled with `javac` on the first call of the test
/// binary, into `classes` (the test's `env!("CARGO_TARGET_TMPDIR")` and a name of its own; later
/// calls use the first call's), then started as a [`Process`]. Where `java` or `javac` cannot
/// be run, says so with [`skipped`] and returns `None` (Debian: `default-jdk-headless`).
///
/// The JVM starts with C1 only and the serial collector, which halves its start-up time.
pub fn java_peer(classes: &Path, options: &[&str], args: &[String]) -> Option<Process> {
    static COMPILED: std::sync::OnceLock<Result<std::path::PathBuf, String>> =
        std::sync::OnceLock::new();
    let compiled = COMPILED.get_or_init(|| {
        let java = output(Command::new("java").arg("-version"));
        if !java.is_ok_and(|o| o.status.success()) {
            return Err("java cannot be run (Debian: apt-get install default-jdk-headless)".into());
        }
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("java/JssePeer.java");
        match output(Command::new("javac").arg("-d").arg(classes).arg(&source)) {
            Ok(o) if o.status.success() => Ok(classes.to_owned()),
            Ok(o) => panic!(
                "javac {}: {}",
                source.display(),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => Err(format!(
                "javac cannot be run ({e}; Debian: apt-get install default-jdk-headless)"
            )),
        }
    });
    let classes = match compiled {
        Ok(classes) => classes,
        Err(why) => {
            skipped(&format!(
                "{why}; the tests with a JVM as the peer need a JDK"
            ));
            return None;
        }
    };
    let mut all: Vec<String> = ["-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-cp"]
        .map(str::to_owned)
        .to_vec();
    all.push(path_arg(classes).to_owned());
    all.extend(options.iter().map(|o| (*o).to_owned()));
    all.push("JssePeer".to_owned());
    all.extend(args.iter().cloned());
    Some(Process::start("java", all))
}

/// The environment variable that names the file where [`skipped`] also appends its line
/// (`cargo xtask ci` sets it, and lists the file's lines in its summary).
pub const SKIP_LOG_ENV: &str = "NET_TESTS_SKIP_LOG";

/// Says that the running test skips a part of itself, `why` (a tool or a permission this
/// machine lacks), in a line `SKIPPED <test binary> <test>: <why>`: on this process's stderr
/// itself, not through `eprintln!`, whose output libtest captures and shows only for a test
/// that fails (a test that skips passes, and its skip went unseen in a CI log); and appended to
/// the file [`SKIP_LOG_ENV`] names, where it is set.
pub fn skipped(why: &str) {
    let binary = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.file_name().map(|n| n.to_string_lossy().into_owned()))
        .map(|name| match name.rsplit_once('-') {
            // Cargo's `NAME-HASH`.
            Some((stem, hash)) if hash.chars().all(|c| c.is_ascii_hexdigit()) => stem.to_owned(),
            _ => name,
        })
        .unwrap_or_else(|| "?".to_owned());
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("?");
    let line = format!("SKIPPED {binary} {test}: {why}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
    if let Some(log) = std::env::var_os(SKIP_LOG_ENV) {
        // One write of one line to a file opened to append: lines of tests that skip at once,
        // in several processes, do not mix.
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .and_then(|mut file| file.write_all(line.as_bytes()));
        if let Err(e) = written {
            let _ = writeln!(
                std::io::stderr(),
                "could not add the skip to {}: {e}",
                Path::new(&log).display()
            );
        }
    }
}

/// `path` as a command-line argument; panics unless it is UTF-8.
pub fn path_arg(path: &Path) -> &str {
    path.to_str()
        .unwrap_or_else(|| panic!("not a UTF-8 path: {}", path.display()))
}

/// The port at the end of `line` (`... 127.0.0.1:PORT`, `... [::1]:PORT`); panics if there is
/// none.
pub fn port_at_end(line: &str) -> u16 {
    line.trim_end()
        .rsplit(':')
        .next()
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no port at the end of {line:?}"))
}

/// A blocking line client on loopback, for tests that drive a server from plain threads: every
/// read waits at most [`HANG_LIMIT`] (then panics), and every failure panics.
#[derive(Debug)]
pub struct LineClient {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl LineClient {
    /// Connects to `127.0.0.1:port`.
    pub fn connect(port: u16) -> LineClient {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"));
        LineClient::over(stream)
    }

    /// Connects to `to` from the address `source` (any port): a client on `127.0.0.2` or
    /// `127.0.0.3`, which `TcpStream::connect` cannot choose.
    pub fn connect_from(source: IpAddr, to: SocketAddr) -> LineClient {
        use socket2::{Domain, Protocol, Socket, Type};
        let socket = Socket::new(Domain::for_address(to), Type::STREAM, Some(Protocol::TCP))
            .expect("a TCP socket");
        socket
            .bind(&SocketAddr::new(source, 0).into())
            .unwrap_or_else(|e| panic!("bind {source}:0: {e}"));
        socket
            .connect(&to.into())
            .unwrap_or_else(|e| panic!("connect to {to} from {source}: {e}"));
        LineClient::over(socket.into())
    }

    fn over(stream: TcpStream) -> LineClient {
        stream
            .set_read_timeout(Some(HANG_LIMIT))
            .expect("set a read timeout");
        let reader = BufReader::new(stream.try_clone().expect("clone the stream"));
        LineClient { stream, reader }
    }

    /// The underlying stream (to change options, or to leave it unread).
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// The client's own address (what the server sees as its peer, unless a proxy is between).
    pub fn local_addr(&self) -> SocketAddr {
        self.stream.local_addr().expect("the client's address")
    }

    /// Sends `line` and a newline.
    #[track_caller]
    pub fn send(&mut self, line: &str) {
        self.stream
            .write_all(format!("{line}\n").as_bytes())
            .expect("send a line");
    }

    /// The next line without its line ending; `None` at the end of stream. Panics on a timeout
    /// or an error.
    #[track_caller]
    pub fn line(&mut self) -> Option<String> {
        match self.try_line() {
            Ok(line) => line,
            Err(e) => panic!("no line from the server: {e}"),
        }
    }

    /// The next line without its line ending; `None` at the end of stream; the error of a
    /// timeout or a failed read.
    pub fn try_line(&mut self) -> std::io::Result<Option<String>> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let end = line.trim_end_matches(['\n', '\r']).len();
        line.truncate(end);
        Ok(Some(line))
    }

    /// Asserts that the next line is `expected`.
    #[track_caller]
    pub fn expect(&mut self, expected: &str) {
        assert_eq!(self.line().as_deref(), Some(expected));
    }

    /// Reads lines until the connection ends (end of stream or an error such as a reset) and
    /// returns how many complete lines came.
    pub fn lines_until_end(&mut self) -> usize {
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

    /// Half-closes: the server sees the end of input.
    pub fn shutdown_write(&self) {
        self.stream
            .shutdown(Shutdown::Write)
            .expect("shut down the write side");
    }

    /// Waits for the server to close: end of stream (or a reset) without any further byte.
    #[track_caller]
    pub fn expect_end(&mut self) {
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

/// The PROXY protocol header that [`Haproxy`] sends its backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendProxy {
    /// `send-proxy`: the text header (version 1).
    V1,
    /// `send-proxy-v2`: the binary header (version 2).
    V2,
}

impl SendProxy {
    /// The keyword of HAProxy's `server` line.
    pub fn keyword(self) -> &'static str {
        match self {
            SendProxy::V1 => "send-proxy",
            SendProxy::V2 => "send-proxy-v2",
        }
    }
}

/// A real HAProxy (`haproxy -db`; Debian's package, which `.ci/run` installs, found in
/// `/usr/sbin` also off `PATH`: see [`system_program`]) in TCP mode on a loopback port,
/// relaying every connection to one backend with a PROXY protocol header; killed when dropped.
#[derive(Debug)]
pub struct Haproxy {
    process: Process,
    front: SocketAddr,
    _dir: TempDir,
}

impl Haproxy {
    /// Starts HAProxy on a free port of `127.0.0.1` in front of `backend`, sending `send`, and
    /// returns once its frontend accepts connections.
    ///
    /// Finding that out takes one connection (from `127.0.0.1`, closed at once), which HAProxy
    /// may relay to the backend like any other: a backend tells the test's clients apart by
    /// their address.
    pub fn start(backend: SocketAddr, send: SendProxy) -> Haproxy {
        // The free port is released before HAProxy binds it: another process can take it in
        // between, so a start that could not bind is tried again on another port. HAProxy
        // binds with `SO_REUSEPORT` unless told `noreuseport`: two tests' HAProxies would then
        // share a port, each taking some of the other's clients, and cut them when it stops.
        const ATTEMPTS: usize = 3;
        for attempt in 1..=ATTEMPTS {
            match Haproxy::try_start(backend, send) {
                Ok(haproxy) => return haproxy,
                Err(stderr) if attempt < ATTEMPTS && stderr.contains("cannot bind") => continue,
                Err(stderr) => panic!("haproxy did not start: {stderr}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// One start on a free port: HAProxy listening there, or what it printed before it exited.
    fn try_start(backend: SocketAddr, send: SendProxy) -> Result<Haproxy, String> {
        let dir = TempDir::new(&format!("haproxy-{}", send.keyword()));
        let front = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let config = format!(
            "global\n    maxconn 64\n    nbthread 1\n    noreuseport\n\
             defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 30s\n    \
             timeout server 30s\n\
             frontend front\n    bind {front}\n    default_backend back\n\
             backend back\n    server app {backend} {}\n",
            send.keyword()
        );
        let path = dir.write("haproxy.cfg", &config);
        let haproxy = system_program("haproxy");
        let mut process = Process::start(&haproxy, ["-db", "-f", path_arg(&path)]);
        let started = Instant::now();
        while TcpStream::connect(front).is_err() {
            if !process.is_running() {
                let finished = process.finish();
                return Err(format!("{}: {:?}", finished.status, finished.stderr));
            }
            assert!(
                started.elapsed() < HANG_LIMIT,
                "haproxy did not listen on {front} within {HANG_LIMIT:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(Haproxy {
            process,
            front,
            _dir: dir,
        })
    }

    /// The frontend's address, where clients connect.
    pub fn front(&self) -> SocketAddr {
        self.front
    }

    /// What HAProxy printed so far, for a failure's message.
    pub fn printed_so_far(&mut self) -> String {
        self.process.printed_so_far()
    }
}

/// A free port of `127.0.0.1`, for a program that binds it itself: one below the kernel's range
/// of ephemeral ports, chosen at random among those free now. Between this check and the
/// program's bind, no `bind` to port 0 and no outgoing connection (of a test running beside
/// this one) can take it, as they could take a port the kernel picked from that range.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    const FIRST: u16 = 10_000;
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    if ephemeral > FIRST + 100 {
        let span = u64::from(ephemeral - FIRST);
        let start = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        for step in 0..span.min(1_000) {
            let port = FIRST + u16::try_from(start.wrapping_add(step * 7_919) % span).unwrap_or(0);
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// Runs the test `child_test` of the current test binary again, in a child process whose
/// descriptor limit is `fd_limit` (`ulimit -n`), with the environment variable `env` set so
/// that the child test knows it is the child (see [`run_if_child`]). Panics unless the child
/// succeeds and prints `marker`; returns its stdout and stderr.
///
/// A low limit in a child touches no other test of the binary.
pub fn rerun_self_with_fd_limit(
    child_test: &str,
    env: &str,
    fd_limit: u32,
    marker: &str,
) -> String {
    let script = format!(
        r#"ulimit -n {fd_limit} && exec "$0" --exact {child_test} --nocapture --test-threads=1"#
    );
    rerun_self(Command::new("sh").arg("-c").arg(script), env, marker)
}

/// Runs the test `child_test` of the current test binary again in a child process of its own,
/// with the environment variable `env` set (see [`run_if_child`]): for a test that changes
/// what the whole process shares (its working directory), which would touch the tests running
/// beside it. Panics unless the child succeeds and prints `marker`; returns its output.
pub fn rerun_self_alone(child_test: &str, env: &str, marker: &str) -> String {
    rerun_self_alone_with(child_test, env, &[], marker)
}

/// As [`rerun_self_alone`], with the variables `vars` set in the child's environment too (a
/// port, a path, `LD_PRELOAD` with a [`preload_shim`]).
pub fn rerun_self_alone_with(
    child_test: &str,
    env: &str,
    vars: &[(&str, &OsStr)],
    marker: &str,
) -> String {
    let script = format!(r#"exec "$0" --exact {child_test} --nocapture --test-threads=1"#);
    let mut command = Command::new("sh");
    command.arg("-c").arg(script);
    for (name, value) in vars {
        command.env(name, value);
    }
    rerun_self(&mut command, env, marker)
}

/// Runs `command` (a shell script that `exec`s `$0`) with the current test binary as `$0` and
/// the environment variable `env` set; panics unless it succeeds and prints `marker`; returns
/// its stdout and stderr.
fn rerun_self(command: &mut Command, env: &str, marker: &str) -> String {
    let exe = std::env::current_exe().expect("the test binary's path");
    let output =
        output(command.arg(exe).env(env, "1")).expect("could not start the child test process");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // The status says how a child that printed nothing ended (killed by a signal).
    assert!(
        output.status.success(),
        "child failed ({}):\n{text}",
        output.status
    );
    assert!(text.contains(marker), "child did not run:\n{text}");
    text
}

/// Runs the test `child_test` of the current test binary again in a network namespace of its
/// own whose loopback is slowed to `rate` (a `tc` token-bucket queue), so that packets wait in
/// a queue and hold their senders' send buffers (the real loopback hands each packet on at
/// once, so a UDP send never waits there). The environment variable `env` tells the child test
/// it is the child (see [`run_if_child`]). Panics unless the child succeeds and prints
/// `marker`; returns its output.
///
/// Returns `None`, after saying so on stderr, where this process may not create a network
/// namespace (`unshare -n` needs root, or else unprivileged user namespaces: see
/// [`unshare_netns`]).
pub fn rerun_self_on_slow_loopback(
    child_test: &str,
    env: &str,
    rate: &str,
    marker: &str,
) -> Option<String> {
    rerun_self_in_namespace(
        "",
        &format!("tbf rate {rate} burst 4kb latency 10s"),
        child_test,
        env,
        marker,
    )
}

/// As [`rerun_self_on_slow_loopback`], for TCP: the loopback also takes Ethernet-sized packets
/// (an MTU of 1,500 bytes; loopback's usual 64 KiB packets would never fit the queue's 4 KiB
/// burst). TCP data a socket sent then waits in the queue for its acknowledgement and fills
/// the sender's send buffer meanwhile, as on a slow path.
pub fn rerun_self_on_slow_tcp_loopback(
    child_test: &str,
    env: &str,
    rate: &str,
    marker: &str,
) -> Option<String> {
    rerun_self_in_namespace(
        "mtu 1500",
        &format!("tbf rate {rate} burst 4kb latency 10s"),
        child_test,
        env,
        marker,
    )
}

/// Runs `child_test` again, as [`rerun_self_on_slow_loopback`] does, in a network namespace of
/// its own whose loopback is as usual: the child may take it down ([`set_loopback`]) to make
/// every peer go silent, without touching the machine's.
pub fn rerun_self_in_own_netns(child_test: &str, env: &str, marker: &str) -> Option<String> {
    rerun_self_in_namespace("", "pfifo", child_test, env, marker)
}

/// Runs `child_test` again, as [`rerun_self_in_own_netns`] does, in a network namespace of its
/// own and also a mount namespace of its own in which `/etc/hosts` reads `hosts`, so that the
/// child controls what the system's resolver answers for a name (`localhost` included) without
/// touching the machine's file. The child and the programs it starts see that file.
///
/// Returns `None`, after saying so on stderr, where this process may not create those
/// namespaces (`unshare -n -m` needs root, or else unprivileged user namespaces: see
/// [`unshare_netns`]) or mount over `/etc/hosts`.
pub fn rerun_self_in_own_netns_with_hosts(
    child_test: &str,
    env: &str,
    hosts: &str,
    marker: &str,
) -> Option<String> {
    rerun_self_in_own_netns_with_files(child_test, env, &[("/etc/hosts", hosts)], marker)
}

/// Runs `child_test` again, as [`rerun_self_in_own_netns_with_hosts`] does, with the system's
/// resolver set up by the child: `/etc/hosts` reads `hosts`, `/etc/resolv.conf` reads
/// `resolv_conf` (a `nameserver 127.0.0.1` line sends queries to a DNS server the child runs
/// on `127.0.0.1:53` of its own namespace), and `/etc/nsswitch.conf` reads `hosts: files dns`
/// (glibc asks the hosts file, then DNS, whatever the machine's file says).
///
/// Returns `None`, after saying so on stderr, where those namespaces cannot be made or the
/// files mounted over (see [`rerun_self_in_own_netns_with_hosts`]).
pub fn rerun_self_in_own_netns_with_resolver(
    child_test: &str,
    env: &str,
    hosts: &str,
    resolv_conf: &str,
    marker: &str,
) -> Option<String> {
    rerun_self_in_own_netns_with_files(
        child_test,
        env,
        &[
            ("/etc/hosts", hosts),
            ("/etc/resolv.conf", resolv_conf),
            ("/etc/nsswitch.conf", "hosts: files dns\n"),
        ],
        marker,
    )
}

/// Runs `child_test` again in a network namespace and a mount namespace of its own in which
/// each file `(path, contents)` of `files` (an existing file: a bind mount goes over it) reads
/// `contents`. The mount namespace's mounts are made private first (`--propagation private`,
/// util-linux's default, asked for by name so that an `unshare` without it skips rather than
/// lets a bind mount reach the machine's `/` where that is shared, as systemd makes it); they
/// end with the namespace, when its last process exits.
fn rerun_self_in_own_netns_with_files(
    child_test: &str,
    env: &str,
    files: &[(&str, &str)],
    marker: &str,
) -> Option<String> {
    let dir = TempDir::new("netns-files");
    let mut mounts = String::new();
    let mut vars = Vec::new();
    for (i, (path, contents)) in files.iter().enumerate() {
        let var = format!("NET_TESTS_NETNS_FILE_{i}");
        mounts.push_str(&format!("mount --bind \"${var}\" {path} && "));
        vars.push((var, dir.write(&format!("file-{i}"), contents)));
    }
    let script = |then: &str| format!("{mounts}ip link set lo up && {then}");
    let netns = unshare_netns().unwrap_or(&["-n"]);
    let allowed = status(
        Command::new("unshare")
            .args(netns)
            .args([
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                &script("true"),
            ])
            .env("PATH", path_with_sbin())
            .envs(vars.iter().map(|(var, file)| (var, file)))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .is_ok_and(|status| status.success());
    if !allowed {
        let paths: Vec<&str> = files.iter().map(|(path, _)| *path).collect();
        skipped(&format!(
            "`unshare -n -m` is not available or not permitted here (needs root or \
             unprivileged user namespaces), or {} cannot be mounted over",
            paths.join(", ")
        ));
        return None;
    }
    let script = script(&format!(
        "exec \"$0\" --exact {child_test} --nocapture --test-threads=1"
    ));
    Some(rerun_self(
        Command::new("unshare")
            .args(netns)
            .args(["-m", "--propagation", "private", "sh", "-c", &script])
            .env("PATH", path_with_sbin())
            .envs(vars.iter().map(|(var, file)| (var, file))),
        env,
        marker,
    ))
}

/// Runs the test `child_test` of the current test binary again under `strace`, which writes a
/// line to `log` for each system call of the child named in `calls` (a list for `strace -e
/// trace=`: `"sendto,sendmsg"` for sends, `"recvfrom"` for socket reads) as the call returns in
/// the kernel, and then holds the call's return to the child back for `delay`: a window, as
/// wide as `delay`, between what the kernel did for the call and what the child's code does
/// with the result, which a test can enter by waiting for the line. The environment
/// variable `env` tells the child test it is the child (see [`run_if_child`]), and
/// [`strace_log`] gives it `log`. Panics unless the child succeeds and prints `marker`; returns
/// its output.
///
/// Returns `None`, after saying so on stderr, where `strace` is missing or may not trace here.
pub fn rerun_self_under_strace(
    child_test: &str,
    env: &str,
    marker: &str,
    log: &Path,
    calls: &str,
    delay: Duration,
) -> Option<String> {
    let traces = status(
        Command::new("strace")
            .args(["-qq", "-o", "/dev/null", "true"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .is_ok_and(|status| status.success());
    if !traces {
        skipped("`strace` is not installed or may not trace here");
        return None;
    }
    let trace = format!("trace={calls}");
    let inject = format!("inject={calls}:delay_exit={}", delay.as_micros().max(1));
    let script = format!(r#"exec "$0" --exact {child_test} --nocapture --test-threads=1"#);
    Some(rerun_self(
        Command::new("strace")
            .args([
                "-f",
                "-qq",
                "-e",
                "signal=none",
                "-e",
                &trace,
                "-e",
                &inject,
                "-o",
            ])
            .arg(log)
            .args(["sh", "-c", &script])
            .env(STRACE_LOG_ENV, log),
        env,
        marker,
    ))
}

const STRACE_LOG_ENV: &str = "NET_TESTS_STRACE_LOG";

/// In a child that [`rerun_self_under_strace`] started, the path of `strace`'s log.
pub fn strace_log() -> Option<std::path::PathBuf> {
    std::env::var_os(STRACE_LOG_ENV).map(Into::into)
}

/// Takes the loopback interface `"up"` or `"down"` (`ip link set lo`): in a child that
/// [`rerun_self_in_own_netns`] started, only its network namespace's.
pub fn set_loopback(state: &str) {
    let done = status(Command::new("ip").args(["link", "set", "lo", state]));
    assert!(
        done.as_ref().is_ok_and(ExitStatus::success),
        "ip link set lo {state}: {done:?}"
    );
}

/// `PATH` with `/usr/sbin` and `/sbin` added at its end where it lacks them: Debian installs
/// `haproxy` and `tc` there, which root's `PATH` holds and an ordinary user's does not. The
/// tests give it to the commands that configure a network namespace and to the test run
/// again in one, so that they find `tc` and `ip` whoever runs them.
pub fn path_with_sbin() -> std::ffi::OsString {
    let mut dirs: Vec<std::path::PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default();
    for dir in ["/usr/sbin", "/sbin"] {
        if !dirs.iter().any(|known| known == Path::new(dir)) {
            dirs.push(dir.into());
        }
    }
    std::env::join_paths(dirs).expect("the directories of PATH joined again")
}

/// The program `name` as found in a directory of [`path_with_sbin`] (a full path), or `name`
/// itself where none holds it (starting it then fails, saying the program is missing).
pub fn system_program(name: &str) -> String {
    std::env::split_paths(&path_with_sbin())
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .map_or_else(
            || name.to_owned(),
            |path| path.to_string_lossy().into_owned(),
        )
}

/// The options that put a command run by `unshare` in a network namespace of its own: `-n`
/// where this process may make one itself (root, as in CI), otherwise `--user
/// --map-root-user -n` where unprivileged user namespaces are enabled (the command is then
/// root in a user namespace of its own, which owns the network namespace and any mount
/// namespace made with it, so it may configure them as root would, and nothing else); `None`
/// where neither works. Asked once per process.
pub fn unshare_netns() -> Option<&'static [&'static str]> {
    static FLAGS: std::sync::OnceLock<Option<&'static [&'static str]>> = std::sync::OnceLock::new();
    *FLAGS.get_or_init(|| {
        let candidates: [&'static [&'static str]; 2] =
            [&["-n"], &["--user", "--map-root-user", "-n"]];
        candidates.into_iter().find(|flags| {
            status(
                Command::new("unshare")
                    .args(*flags)
                    .arg("true")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null()),
            )
            .is_ok_and(|status| status.success())
        })
    })
}

/// Runs `child_test` again in a network namespace whose loopback has the link settings `link`
/// (for `ip link set lo`) and the queueing discipline `qdisc` (see
/// [`rerun_self_on_slow_loopback`]).
fn rerun_self_in_namespace(
    link: &str,
    qdisc: &str,
    child_test: &str,
    env: &str,
    marker: &str,
) -> Option<String> {
    let Some(netns) = unshare_netns() else {
        skipped(
            "`unshare -n` is not available or not permitted here (needs root or unprivileged \
             user namespaces)",
        );
        return None;
    };
    let script = format!(
        "ip link set lo {link} up && tc qdisc add dev lo root {qdisc} \\
         && exec \"$0\" --exact {child_test} --nocapture --test-threads=1"
    );
    Some(rerun_self(
        Command::new("unshare")
            .args(netns)
            .args(["sh", "-c", &script])
            .env("PATH", path_with_sbin()),
        env,
        marker,
    ))
}

/// Waits, at most 10 s, until the kernel routes to the IPv6 `address` that was just added to
/// an interface (`ip addr add`) as to one of this host's: it inserts that local route only
/// once the address's duplicate address detection ends, in a work queue that needs the
/// network's global lock, even where no detection is done (`nodad`, the loopback). So a
/// connect to the address made at once, while other network namespaces come and go, may find
/// no route (`ENETUNREACH`). (IPv4's local route comes with the address.) Panics if the
/// route does not come.
pub fn wait_for_local_route(address: &str) {
    let started = std::time::Instant::now();
    loop {
        let shown = output(
            Command::new("ip")
                .args(["-6", "route", "show", "table", "local", address])
                .env("PATH", path_with_sbin()),
        )
        .expect("ip runs");
        assert!(shown.status.success(), "ip -6 route show: {shown:?}");
        if !shown.stdout.is_empty() {
            return;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "no local route to {address} 10 s after it was added"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// The body of a child test (see [`rerun_self_with_fd_limit`]): runs `body` on a
/// current-thread runtime when the environment variable `env` is set, and does nothing (the
/// test passes) in the ordinary run of the test binary.
pub fn run_if_child(env: &str, body: impl Future<Output = ()>) {
    if std::env::var_os(env).is_none() {
        return;
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(body);
}
