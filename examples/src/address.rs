//! How every example program reads an address from its command line, so that all read it
//! alike, and as the library reads a `"host:port"` string:
//!
//! - `HOST PORT`, or `HOST:PORT` in the HOST argument (`127.0.0.1:9002`, `[::1]:9002`,
//!   `localhost:9002`), as the servers print where they listen; `tcp-proxy` takes only
//!   `HOST:PORT`;
//! - HOST is a name, an IPv4 address, or an IPv6 address with or without brackets (`::1`,
//!   `[::1]`, with a scope: `fe80::1%eth0`); brackets go only around an IPv6 address;
//! - an IPv6 address before its port takes brackets: `::1:9002` is itself an IPv6 address,
//!   and refused as ambiguous unless PORT is given on its own (then it is the address);
//! - a port is digits only, 0 to 65535;
//! - refused, as a bad command line (exit status 2): an empty host, a lone number (the
//!   system's resolver would read `0` as 0.0.0.0, every address of the host, and `9002` as
//!   0.0.35.42, far from this host) and the other short forms of an IPv4 address that the
//!   resolver reads the same way (`0.0`, `0x0`: 0.0.0.0; `127.1`: 127.0.0.1), a path (no
//!   program takes a Unix socket), a port given twice, and port 0 where a client connects or
//!   sends (it means "any free port" only where a server listens).

use std::net::Ipv6Addr;

use clap::CommandFactory;

/// What a HOST argument says: a host, and a port when it was `HOST:PORT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostArg {
    /// The argument as typed, for messages.
    text: String,
    /// The host, without brackets.
    host: String,
    /// The port of `HOST:PORT`.
    port: Option<u16>,
    /// For an IPv6 address whose last group could be a port (`::1:9002`), that other reading:
    /// the address before it and the port.
    other_reading: Option<(String, u16)>,
}

/// Parses a HOST argument (clap's value parser): a host, or `HOST:PORT`.
///
/// # Errors
///
/// A message for clap when `text` is no host (see the [module](self) for what is refused).
///
/// # Examples
///
/// ```
/// use examples::address::host;
/// assert_eq!(host("[::1]:9002")?.with_port(None, Some(1))?, ("::1".to_owned(), 9002));
/// assert_eq!(host("::1")?.with_port(None, Some(1))?, ("::1".to_owned(), 1));
/// assert!(host("::1:9002")?.with_port(None, Some(1)).is_err()); // which is the port?
/// assert!(host("0").is_err()); // a port, not a host
/// # Ok::<(), String>(())
/// ```
pub fn host(text: &str) -> Result<HostArg, String> {
    let arg = |host: &str, port, other_reading| HostArg {
        text: text.to_owned(),
        host: host.to_owned(),
        port,
        other_reading,
    };
    if text.contains('/') {
        return Err(format!(
            "{text:?} is a path: Unix sockets are not supported here (give a HOST and PORT)"
        ));
    }
    if let Some(rest) = text.strip_prefix('[') {
        let (inner, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{text:?} has no closing bracket"))?;
        if !is_ipv6(inner) {
            return Err(format!(
                "{inner:?} is not an IPv6 address: brackets go only around one, as in [::1]:9002"
            ));
        }
        let port = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(port) => Some(port_number(port, text)?),
                None => return Err(format!("{text:?} is not HOST:PORT")),
            },
        };
        return Ok(arg(inner, port, None));
    }
    match text.split_once(':') {
        None => Ok(arg(check_name(text)?, None, None)),
        // One colon: HOST:PORT.
        Some((name, port)) if !port.contains(':') => {
            let port = port_number(port, text)?;
            Ok(arg(check_name(name)?, Some(port), None))
        }
        // More: an IPv6 address.
        Some(_) => {
            let split = text
                .rsplit_once(':')
                .filter(|(address, port)| is_ipv6(address) && is_digits(port))
                .and_then(|(address, port)| Some((address.to_owned(), port.parse().ok()?)));
            if is_ipv6(text) {
                Ok(arg(text, None, split))
            } else if let Some((address, port)) = split {
                Err(format!(
                    "{text:?}: an IPv6 address takes brackets before its port, as in \
                     [{address}]:{port}"
                ))
            } else {
                Err(format!("{text:?} is neither a host nor HOST:PORT"))
            }
        }
    }
}

/// Parses a `HOST:PORT` argument (clap's value parser, for `tcp-proxy`): as [`host`], with a
/// port that must be there.
///
/// # Errors
///
/// A message for clap when `text` is not `HOST:PORT`.
pub fn host_port(text: &str) -> Result<(String, u16), String> {
    let arg = host(text)?;
    match (arg.port, &arg.other_reading) {
        (Some(port), _) => Ok((arg.host, port)),
        (None, Some(_)) => Err(arg.ambiguity()),
        (None, None) => Err(format!("{text:?} is not HOST:PORT: it has no port")),
    }
}

impl HostArg {
    /// The host and port to use, with `port` the PORT argument (if given) and `default` the
    /// port when neither argument gives one (`None`: PORT is required).
    ///
    /// # Errors
    ///
    /// A message when the port is given twice, missing, or ambiguous (`::1:9002` alone).
    pub fn with_port(
        &self,
        port: Option<u16>,
        default: Option<u16>,
    ) -> Result<(String, u16), String> {
        match (self.port, port) {
            (Some(_), Some(port)) => Err(format!(
                "port given twice: {:?} has one, and {port} follows (give HOST:PORT, or HOST PORT)",
                self.text
            )),
            // Given on its own, the port makes the whole text the host, even `::1:9002`.
            (Some(port), None) | (None, Some(port)) => Ok((self.host.clone(), port)),
            (None, None) if self.other_reading.is_some() => Err(self.ambiguity()),
            (None, None) => match default {
                Some(port) => Ok((self.host.clone(), port)),
                None => Err(format!(
                    "{:?} has no port: give <PORT> after it, or HOST:PORT",
                    self.text
                )),
            },
        }
    }

    /// The message for an IPv6 address that could end in a port.
    fn ambiguity(&self) -> String {
        let (address, port) = self
            .other_reading
            .as_ref()
            .map_or(("", 0), |(a, p)| (a, *p));
        format!(
            "{:?} is ambiguous: an IPv6 address takes brackets before its port, as in \
             [{address}]:{port}",
            self.text
        )
    }
}

/// The host and port of a program's `[HOST] [PORT]` arguments (see [`HostArg::with_port`]);
/// exits as a bad command line of `A` (one line, status 2) when they do not make one.
pub fn endpoint<A: CommandFactory>(
    host: &HostArg,
    port: Option<u16>,
    default: Option<u16>,
) -> (String, u16) {
    host.with_port(port, default)
        .unwrap_or_else(|message| crate::cli::usage_error::<A>(message))
}

/// As [`endpoint`], for where a client connects or sends: port 0 is also a bad command line
/// (it means "any free port" only where a server listens).
pub fn destination<A: CommandFactory>(
    host: &HostArg,
    port: Option<u16>,
    default: Option<u16>,
) -> (String, u16) {
    let (host, port) = endpoint::<A>(host, port, default);
    if port == 0 {
        crate::cli::usage_error::<A>(NO_PORT_0);
    }
    (host, port)
}

/// As [`host_port`] (clap's value parser), for where a client connects: port 0 is refused.
///
/// # Errors
///
/// A message for clap when `text` is not `HOST:PORT`, or its port is 0.
pub fn destination_host_port(text: &str) -> Result<(String, u16), String> {
    match host_port(text)? {
        (_, 0) => Err(format!("{text:?}: {NO_PORT_0}")),
        destination => Ok(destination),
    }
}

/// Why a client refuses port 0.
const NO_PORT_0: &str = "port 0 is no destination: give the server's port (0 means any free port only where a server listens)";

/// `name` if it can be a host: not empty, not a lone number.
fn check_name(name: &str) -> Result<&str, String> {
    if name.is_empty() {
        Err("no host: give a name or an address, such as 127.0.0.1 or ::1".to_owned())
    } else if is_digits(name) {
        Err(format!(
            "{name:?} is not a host (a port goes after its host: 127.0.0.1 {name}, or \
             127.0.0.1:{name})"
        ))
    } else if let Some(address) = ipv4_short_form(name) {
        Err(format!(
            "{name:?} is a short form of the IPv4 address {address}: write the address in full"
        ))
    } else {
        Ok(name)
    }
}

/// The IPv4 address the system's resolver reads `name` as when it is one of the short forms
/// `inet_aton` takes (`0.0`, `127.1`, `0x7f.1`, `0177.0.0.1`: one to four numbers, decimal,
/// octal after a `0` or hexadecimal after `0x`, the last filling the bytes left), and not the
/// dotted quad an IPv4 address is written as; `None` for anything else, a name included (no
/// top-level domain is all digits).
fn ipv4_short_form(name: &str) -> Option<std::net::Ipv4Addr> {
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return None;
    }
    let parts: Vec<u32> = name
        .split('.')
        .map(|part| {
            let (digits, radix) = match part.strip_prefix("0x").or(part.strip_prefix("0X")) {
                Some(hex) => (hex, 16),
                None if part.len() > 1 && part.starts_with('0') => (&part[1..], 8),
                None => (part, 10),
            };
            match (digits, radix) {
                // `0x` alone is 0 to inet_aton.
                ("", 16) => Some(0),
                ("", _) => None,
                _ if digits.starts_with(['+', '-']) => None,
                _ => u32::from_str_radix(digits, radix).ok(),
            }
        })
        .collect::<Option<_>>()?;
    let (last, leading) = parts.split_last()?;
    if parts.len() > 4 || leading.iter().any(|&p| p > 255) {
        return None;
    }
    let last_bits = 8 * (4 - leading.len() as u32);
    if last_bits < 32 && *last >= 1 << last_bits {
        return None;
    }
    let high = leading
        .iter()
        .enumerate()
        .fold(0u32, |address, (i, &p)| address | p << (24 - 8 * i));
    Some(std::net::Ipv4Addr::from(high | last))
}

/// Parses a PORT argument (clap's value parser): digits only, 0 to 65535, as the port of
/// `HOST:PORT`. (clap's own parser for a `u16`, like `u16`'s, takes a sign: `+9002` would be
/// port 9002, and `-0`, read as a value as every negative number is, port 0.)
///
/// # Errors
///
/// A message for clap when `text` is not a port number; `u16`'s own for one that is no number
/// at all (`invalid digit found in string`).
///
/// # Examples
///
/// ```
/// use examples::address::port;
/// assert_eq!(port("9002"), Ok(9002));
/// assert!(port("+9002").is_err());
/// assert!(port("-0").is_err());
/// assert_eq!(port("70000").unwrap_err(), "70000 is not in 0..=65535");
/// ```
pub fn port(text: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(port) if is_digits(text) => Ok(port),
        Err(_) if is_digits(text) => Err(format!("{text} is not in 0..=65535")),
        Err(e) if !text.starts_with(['+', '-']) => Err(e.to_string()),
        // A sign: `+9002`, `-0`, `-5`.
        _ => Err(format!(
            "{text:?} is not a port number (0 to 65535): digits only"
        )),
    }
}

/// A port number: digits only (`u16`'s parser also takes a sign), 0 to 65535.
fn port_number(port: &str, text: &str) -> Result<u16, String> {
    port.parse::<u16>()
        .ok()
        .filter(|_| is_digits(port))
        .ok_or_else(|| format!("{port:?} in {text:?} is not a port number (0 to 65535)"))
}

fn is_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `text` is an IPv6 address, with perhaps a scope after `%` (a number or an
/// interface's name, which the system's resolver reads).
fn is_ipv6(text: &str) -> bool {
    let (address, scope) = match text.split_once('%') {
        Some((address, scope)) => (address, Some(scope)),
        None => (text, None),
    };
    let scope_ok = scope.is_none_or(|s| !s.is_empty() && !s.contains([':', '%']));
    scope_ok && address.parse::<Ipv6Addr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both(text: &str, port: Option<u16>) -> Result<(String, u16), String> {
        host(text)?.with_port(port, Some(7))
    }

    fn ok(host: &str, port: u16) -> Result<(String, u16), String> {
        Ok((host.to_owned(), port))
    }

    #[test]
    fn hosts_and_host_ports() {
        assert_eq!(both("127.0.0.1", None), ok("127.0.0.1", 7));
        assert_eq!(both("127.0.0.1", Some(9)), ok("127.0.0.1", 9));
        assert_eq!(both("127.0.0.1:9002", None), ok("127.0.0.1", 9002));
        assert_eq!(both("localhost:0", None), ok("localhost", 0));
        assert_eq!(both("::1", None), ok("::1", 7));
        assert_eq!(both("[::1]", Some(9)), ok("::1", 9));
        assert_eq!(both("[::1]:9002", None), ok("::1", 9002));
        assert_eq!(both("::", None), ok("::", 7));
        assert_eq!(both("fe80::1%eth0", None), ok("fe80::1%eth0", 7));
        assert_eq!(both("[fe80::1%2]:80", None), ok("fe80::1%2", 80));
        assert_eq!(both("2001:db8::1", None), ok("2001:db8::1", 7));
        assert_eq!(both("::ffff:127.0.0.1", None), ok("::ffff:127.0.0.1", 7));
        // Given on its own, the port makes the whole text the address.
        assert_eq!(both("::1:9002", Some(9)), ok("::1:9002", 9));
        // Names, and what inet_aton does not take as an address.
        for name in [
            "example.com",
            "host-1",
            "0xbeef.example",
            "1.2.3.4.5",
            "08.1",
            "1.256.1",
        ] {
            assert_eq!(both(name, None), ok(name, 7));
        }
    }

    #[test]
    fn refused() {
        for (text, port, says) in [
            ("::1:9002", None, "as in [::1]:9002"),
            ("2001:db8::1:80", None, "as in [2001:db8::1]:80"),
            ("fe80::1%2:80", None, "as in [fe80::1%2]:80"),
            ("1:2:3:4:5:6:7:8:80", None, "as in [1:2:3:4:5:6:7:8]:80"),
            ("a:b:c", None, "neither a host nor HOST:PORT"),
            ("", Some(1), "no host"),
            (":80", None, "no host"),
            ("0", None, "\"0\" is not a host"),
            ("9002", Some(1), "\"9002\" is not a host"),
            ("1:80", None, "\"1\" is not a host"),
            ("/tmp/s.sock", None, "Unix sockets"),
            ("[127.0.0.1]:80", None, "not an IPv6 address"),
            ("[localhost]", None, "not an IPv6 address"),
            ("[::1", None, "no closing bracket"),
            ("[::1]80", None, "is not HOST:PORT"),
            ("[::1]:", None, "not a port number"),
            ("[::1]:70000", None, "\"70000\""),
            ("host:+80", None, "\"+80\""),
            ("host:", None, "not a port number"),
            ("host:1", Some(1), "port given twice"),
            ("0.0", None, "short form of the IPv4 address 0.0.0.0"),
            ("0x0", Some(1), "short form of the IPv4 address 0.0.0.0"),
            ("127.1", None, "short form of the IPv4 address 127.0.0.1"),
            (
                "0177.0.0.1:80",
                None,
                "short form of the IPv4 address 127.0.0.1",
            ),
            ("0x7f.1", None, "short form of the IPv4 address 127.0.0.1"),
            ("1.2.3", None, "short form of the IPv4 address 1.2.0.3"),
        ] {
            let result = both(text, port);
            let e = result.expect_err(text);
            assert!(e.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn host_port_needs_its_port() {
        assert_eq!(host_port("[::1]:80"), ok("::1", 80));
        assert_eq!(host_port("h:1"), ok("h", 1));
        for (text, says) in [
            ("::1", "has no port"),
            ("[::1]", "has no port"),
            ("localhost", "is not HOST:PORT"),
            ("::1:80", "as in [::1]:80"),
            ("0", "is not a host"),
            ("a:99999", "not a port number"),
        ] {
            let e = host_port(text).expect_err(text);
            assert!(e.contains(says), "{text}: {e}");
        }
        assert_eq!(
            host(":1")
                .and_then(|a| a.with_port(None, None))
                .unwrap_err(),
            "no host: give a name or an address, such as 127.0.0.1 or ::1"
        );
        assert!(
            host("h")
                .unwrap()
                .with_port(None, None)
                .unwrap_err()
                .contains("<PORT>")
        );
    }
}
