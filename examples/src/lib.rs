//! Shared helpers for the example programs in `src/bin/`.

use std::future::Future;
use std::process::ExitCode;

use anyhow::Context;

/// Parses the optional positional `[HOST] [PORT]` arguments, starting at `args[0]`.
///
/// # Errors
///
/// A port that is not a number from 0 to 65535, or extra arguments.
pub fn host_and_port(
    args: &[String],
    default_host: &str,
    default_port: u16,
) -> anyhow::Result<(String, u16)> {
    if args.len() > 2 {
        anyhow::bail!("unexpected argument {:?} (usage: [HOST] [PORT])", args[2]);
    }
    let host = args
        .first()
        .cloned()
        .unwrap_or_else(|| default_host.to_owned());
    let port = match args.get(1) {
        Some(port) => port
            .parse::<u16>()
            .with_context(|| format!("invalid port {port:?}"))?,
        None => default_port,
    };
    Ok((host, port))
}

/// Runs a program's body: exit status 0 on success, or one line on stderr and status 1.
pub async fn run(name: &str, body: impl Future<Output = anyhow::Result<()>>) -> ExitCode {
    match body.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Command-line arguments split into positional ones and `--name [VALUE]` options.
#[derive(Debug, Default)]
pub struct Flags {
    /// The arguments that are not options, in order.
    pub positional: Vec<String>,
    values: Vec<(String, String)>,
    switches: Vec<String>,
}

impl Flags {
    /// Splits `args`: each name in `with_value` takes the next argument as its value, each name
    /// in `switches` stands alone, and anything else that starts with `--` is an error.
    ///
    /// # Errors
    ///
    /// An unknown option, an option given twice, or an option whose value is missing.
    pub fn parse(args: &[String], with_value: &[&str], switches: &[&str]) -> anyhow::Result<Flags> {
        let mut flags = Flags::default();
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let name = arg.as_str();
            if flags.is_set(name) || flags.value(name).is_some() {
                anyhow::bail!("option {name} given twice");
            }
            if with_value.contains(&name) {
                let value = args
                    .next()
                    .with_context(|| format!("option {name} needs a value"))?;
                flags.values.push((name.to_owned(), value.clone()));
            } else if switches.contains(&name) {
                flags.switches.push(name.to_owned());
            } else if name.starts_with("--") {
                anyhow::bail!("unknown option {name:?}");
            } else {
                flags.positional.push(arg.clone());
            }
        }
        Ok(flags)
    }

    /// The value given with option `name`, if it was given.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether switch `name` was given.
    pub fn is_set(&self, name: &str) -> bool {
        self.switches.iter().any(|s| s == name)
    }
}

/// The SHA-256 fingerprint of a DER certificate, as upper-case hex pairs joined by colons (the
/// form `openssl x509 -fingerprint -sha256` prints).
pub fn sha256_fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    let pairs: Vec<String> = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    pairs.join(":")
}

/// The longest line the greeting servers accept, in bytes.
pub const LINE_LIMIT: usize = 8192;

/// How long a greeting server drains a connection that broke the rules before closing it.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(1);

/// The greeting conversation of `sockets-server` over any pair of channels: sends
/// `Please enter your name`, then answers each line with `Hello, <line>!` until the client
/// closes its side.
///
/// A line over [`LINE_LIMIT`] bytes gets a notice, then the write side is closed and the input
/// drained for a moment (so that the notice is not destroyed by a reset), and the error is
/// returned.
///
/// # Errors
///
/// The channels' errors, and [`net_io::Error::TooLongLine`].
pub async fn greet(
    input: &mut net_io::ByteReadChannel,
    output: &mut net_io::ByteWriteChannel,
) -> net_io::Result<()> {
    output.write_string_utf8("Please enter your name\n").await?;
    loop {
        match input
            .read_line(LINE_LIMIT, net_io::LineEnding::Default)
            .await
        {
            Ok(Some(name)) => {
                output
                    .write_string_utf8(&format!("Hello, {name}!\n"))
                    .await?
            }
            Ok(None) => return Ok(()),
            Err(e @ net_io::Error::TooLongLine { .. }) => {
                let notice =
                    format!("Line too long (limit {LINE_LIMIT} bytes), closing the connection\n");
                output.write_string_utf8(&notice).await?;
                output.flush_and_close().await?;
                let _ = tokio::time::timeout(DRAIN_TIME, input.discard(u64::MAX)).await;
                return Err(e);
            }
            Err(e) => return Err(e),
        }
    }
}

/// What a TLS handshake negotiated, for people: e.g.
/// `TLS 1.3, TLS13_AES_256_GCM_SHA384, ALPN h2`, followed by the peer certificate's SHA-256
/// fingerprint when it presented one.
pub fn describe_session(tls: &net_tls::TlsSocket) -> String {
    let version = match tls.protocol_version() {
        Some(net_tls::TlsVersion::Tls12) => "TLS 1.2",
        Some(net_tls::TlsVersion::Tls13) => "TLS 1.3",
        _ => "TLS (unknown version)",
    };
    let suite = tls
        .cipher_suite()
        .map_or_else(|| "no cipher suite".to_owned(), |s| format!("{s:?}"));
    let alpn = tls.alpn_protocol().map_or_else(
        || "no ALPN".to_owned(),
        |p| format!("ALPN {}", String::from_utf8_lossy(p)),
    );
    match tls.peer_certificates().first() {
        Some(cert) => format!(
            "{version}, {suite}, {alpn}, peer certificate SHA-256 {}",
            sha256_fingerprint(cert)
        ),
        None => format!("{version}, {suite}, {alpn}"),
    }
}
