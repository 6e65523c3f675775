//! How every example program treats its command line and reports failure, so that each behaves
//! like a tool a user can script:
//!
//! - `--help` prints the usage and exits 0 (`--version` likewise); a stdout that does not take
//!   it is a runtime failure, as below;
//! - a bad argument prints one line, `PROGRAM: what is wrong (see --help)`, on stderr and exits
//!   with status [`USAGE_ERROR`] (2);
//! - a runtime failure prints one line, `PROGRAM: what failed: why`, on stderr and exits 1
//!   ([`run`]); so does a stdout that is gone, such as a closed pipe (`| head -1`): every line
//!   a program prints goes through [`say!`](crate::say);
//! - a stderr that is gone is never a panic (exit status 101): the line that cannot be written
//!   is dropped and the program exits with the status it was about to exit with (2 for a bad
//!   argument, 1 for a failure), or with 1 when it was still running: every line a program
//!   prints on stderr goes through [`say_err!`](crate::say_err).

use std::fmt::Display;
use std::future::Future;
use std::io::Write;
use std::process::ExitCode;
use std::sync::OnceLock;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};

/// The exit status for a bad command line.
pub const USAGE_ERROR: i32 = 2;

/// The program's name for the failure lines of [`print_line`], given to [`run`].
static PROGRAM: OnceLock<String> = OnceLock::new();

/// Prints a line on stdout, as `println!` does (same text, flushed at the newline, so that a
/// reader of a pipe sees each line at once), except when stdout is gone: then, instead of
/// panicking, prints one line on stderr, `PROGRAM: cannot write to stdout: why`, and exits
/// with status 1, as a runtime failure does (see [`print_line`]).
///
/// # Examples
///
/// ```no_run
/// let port = 9002;
/// examples::say!("Server is listening at 127.0.0.1:{port}");
/// ```
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::cli::print_line(::std::format_args!($($arg)*))
    };
}

/// Prints a line on stderr, as `eprintln!` does, except when stderr is gone: then, instead of
/// panicking, exits with status 1, as a runtime failure does, without a word (there is nowhere
/// left to say it).
///
/// # Examples
///
/// ```no_run
/// examples::say_err!("No TLS with 127.0.0.1:50000: handshake timed out");
/// ```
#[macro_export]
macro_rules! say_err {
    ($($arg:tt)*) => {
        $crate::cli::print_error_line(::std::format_args!($($arg)*))
    };
}

/// What [`say_err!`](crate::say_err) does: writes `line` and a newline on stderr, or, if that
/// fails, exits 1.
pub fn print_error_line(line: std::fmt::Arguments<'_>) {
    if write_error_line(line).is_err() {
        std::process::exit(1);
    }
}

/// Writes `line` and a newline on stderr, in one write (stderr is unbuffered).
fn write_error_line(line: std::fmt::Arguments<'_>) -> std::io::Result<()> {
    let line = format!("{line}\n");
    std::io::stderr().lock().write_all(line.as_bytes())
}

/// What [`say!`](crate::say) does: writes `line` and a newline on stdout, or, if that fails,
/// prints one line on stderr, `PROGRAM: cannot write to stdout: why`, and exits 1.
///
/// PROGRAM is the name given to [`run`] (this executable's file name before that).
pub fn print_line(line: std::fmt::Arguments<'_>) {
    // `Stdout` is line buffered whatever it is connected to: the newline flushes the line.
    let written = writeln!(std::io::stdout().lock(), "{line}");
    if let Err(e) = written {
        let name = PROGRAM.get().cloned().unwrap_or_else(executable_name);
        // Ignored: with stderr gone too, the exit status is all that is left to tell.
        let _ = writeln!(std::io::stderr(), "{name}: cannot write to stdout: {e}");
        // Not a panic: in a connection's task it would end only that task, and in `main` it
        // exits 101 with a backtrace.
        std::process::exit(1);
    }
}

/// This executable's file name, for a failure line printed before [`run`] was called.
fn executable_name() -> String {
    let path = std::env::args_os().next().unwrap_or_default();
    std::path::Path::new(&path)
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

/// Parses this process's arguments into `A`.
///
/// Exits 0 after printing the help or version when asked for them (1, after one line on
/// stderr, when stdout does not take them); exits [`USAGE_ERROR`] after printing one line on
/// stderr when the arguments are wrong.
pub fn parse<A: Parser>() -> A {
    // A negative number after an option or in a value's place is that value (`--grace -1`),
    // which its own check then refuses with a message naming it, not an unknown argument.
    negative_numbers_are_values(A::command())
        .try_get_matches()
        .and_then(|mut matches| A::from_arg_matches_mut(&mut matches))
        .unwrap_or_else(|e| exit_on::<A>(e))
}

/// Reports a bad combination of arguments that `A`'s own rules cannot express (one line on
/// stderr, as [`parse`] does) and exits with [`USAGE_ERROR`].
pub fn usage_error<A: CommandFactory>(message: impl Display) -> ! {
    exit_on::<A>(A::command().error(ErrorKind::ArgumentConflict, message))
}

/// Runs a program's body: exit status 0 on success, or one line on stderr, `NAME: error`, and
/// status 1.
///
/// `NAME` also starts the line [`say!`](crate::say) prints when stdout is gone.
pub async fn run(name: &str, body: impl Future<Output = anyhow::Result<()>>) -> ExitCode {
    // Set once: every program calls `run` once, before anything is printed.
    let _ = PROGRAM.set(name.to_owned());
    match body.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Ignored: with stderr gone, the exit status is all that is left to tell.
            let _ = write_error_line(format_args!("{name}: {}", one_line(&format!("{e:#}"))));
            ExitCode::FAILURE
        }
    }
}

/// `command` with every argument that takes a value (in its subcommands too) taking one that
/// looks like a negative number.
fn negative_numbers_are_values(command: clap::Command) -> clap::Command {
    command
        .mut_args(|arg| {
            let takes_values = arg.get_action().takes_values();
            arg.allow_negative_numbers(takes_values)
        })
        .mut_subcommands(negative_numbers_are_values)
}

/// Prints what clap has to say and exits: 0 for help and version (1, with one line on stderr,
/// when stdout does not take them), [`USAGE_ERROR`] with one line on stderr for anything else.
fn exit_on<A: CommandFactory>(error: clap::Error) -> ! {
    match error.kind() {
        // On stdout, then status 0; but a help or version that could not be written is a
        // runtime failure, as any line `say!` cannot write is (clap's own `exit` ignores the
        // error and exits 0, as if the usage had been printed).
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let printed = error.print().and_then(|()| std::io::stdout().flush());
            if let Err(e) = printed {
                let name = A::command().get_name().to_owned();
                // Ignored: with stderr gone too, the exit status is all that is left to tell.
                let _ = write_error_line(format_args!("{name}: cannot write to stdout: {e}"));
                std::process::exit(1)
            }
            std::process::exit(0)
        }
        _ => {
            let name = A::command().get_name().to_owned();
            // Ignored: with stderr gone, the exit status is all that is left to tell.
            let _ = write_error_line(format_args!(
                "{name}: {} (see --help)",
                clap_message(&error)
            ));
            std::process::exit(USAGE_ERROR)
        }
    }
}

/// The first paragraph of clap's message (without `error: `, the usage and the tips), on one
/// line: `the following required arguments were not provided: --key <FILE>`.
fn clap_message(error: &clap::Error) -> String {
    let rendered = error.render().to_string();
    let first = rendered.split("\n\n").next().unwrap_or_default();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    one_line(first)
}

/// `text` with its lines trimmed and joined by a space (`:` then a list stays readable).
fn one_line(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines.join(" ")
}

/// Parses a whole number of seconds for a duration option (`--grace 10`).
///
/// # Errors
///
/// A message for clap when `text` is not a whole number of seconds.
pub fn seconds(text: &str) -> Result<std::time::Duration, String> {
    text.parse::<u64>()
        .map(std::time::Duration::from_secs)
        .map_err(|e| match e.kind() {
            std::num::IntErrorKind::PosOverflow => format!(
                "{text:?} is more seconds than can be counted (at most {})",
                u64::MAX
            ),
            _ => format!("{text:?} is not a whole number of seconds"),
        })
}

/// Parses a whole number of seconds that must be at least 1, for an idle timeout
/// (`--idle-timeout 300`) or a client's timeout (`--timeout 30`): a timeout of 0 would close
/// every connection at once. The message names no option: clap's line names it.
///
/// # Errors
///
/// A message for clap when `text` is not a whole number of seconds, or is 0.
pub fn at_least_one_second(text: &str) -> Result<std::time::Duration, String> {
    match seconds(text)? {
        std::time::Duration::ZERO => Err("must be at least 1 second".to_owned()),
        timeout => Ok(timeout),
    }
}

/// Parses a count that must be at least 1 (`--max-connections 100`). A count too large for a
/// `usize` is `usize::MAX`: a cap beyond what can be open at once is no cap, as a smaller one
/// beyond it is.
///
/// # Errors
///
/// A message for clap when `text` is not a number from 1 up.
pub fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        Err(e) if *e.kind() == std::num::IntErrorKind::PosOverflow => Ok(usize::MAX),
        _ => Err(format!("{text:?} is not a number from 1 up")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Parser, Debug)]
    #[command(name = "demo")]
    struct Demo {
        #[arg(long, requires = "key")]
        cert: Option<String>,
        #[arg(long, requires = "cert")]
        key: Option<String>,
        #[arg(default_value_t = 1)]
        port: u16,
    }

    fn message(args: &[&str]) -> String {
        let error = Demo::try_parse_from(std::iter::once("demo").chain(args.iter().copied()))
            .expect_err("a bad command line");
        clap_message(&error)
    }

    #[test]
    fn clap_errors_become_one_line() {
        assert_eq!(
            message(&["--cert", "c.pem"]),
            "the following required arguments were not provided: --key <KEY>"
        );
        assert_eq!(
            message(&["x"]),
            "invalid value 'x' for '[PORT]': invalid digit found in string"
        );
        let unknown = message(&["--bogus"]);
        assert!(
            unknown.starts_with("unexpected argument '--bogus' found"),
            "{unknown}"
        );
        assert!(!unknown.contains('\n'));
    }

    #[test]
    fn durations_and_counts() {
        assert_eq!(seconds("10"), Ok(std::time::Duration::from_secs(10)));
        assert!(seconds("-1").is_err());
        assert!(seconds("1.5").is_err());
        assert_eq!(
            at_least_one_second("1"),
            Ok(std::time::Duration::from_secs(1))
        );
        assert_eq!(
            at_least_one_second("0").unwrap_err(),
            "must be at least 1 second"
        );
        assert!(at_least_one_second("soon").is_err());
        assert_eq!(at_least_one("3"), Ok(3));
        assert!(at_least_one("0").is_err());
    }

    /// A whole number too large for the type is still a whole number: a count beyond what can
    /// be open at once is no cap (as `tcp-proxy --help` says of `--max-connections`), and a
    /// number of seconds beyond what can be counted is refused as that, not as "not a whole
    /// number".
    #[test]
    fn numbers_too_large_for_the_type_are_not_called_something_else() {
        let beyond = "18446744073709551616999";
        assert_eq!(at_least_one(beyond), Ok(usize::MAX));
        assert_eq!(
            seconds(beyond).unwrap_err(),
            format!(
                "{beyond:?} is more seconds than can be counted (at most {})",
                u64::MAX
            )
        );
        assert_eq!(
            at_least_one_second(beyond).unwrap_err(),
            format!(
                "{beyond:?} is more seconds than can be counted (at most {})",
                u64::MAX
            )
        );
        assert!(at_least_one("-18446744073709551616999").is_err());
        assert!(seconds("+").is_err());
    }
}
