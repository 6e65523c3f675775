//! [`Described`]: an OS error in words. Uses `std` only: the `addresses` fuzz target includes
//! this file (with `address.rs`) as it is.

use std::{fmt, io};

/// An OS error in words that say what went wrong where (a Unix path in use, and what is
/// there; a descriptor to adopt that is no socket), carried by an `io::Error`: the OS error
/// is its source, so that its code is kept and a chain of messages prints it once.
#[derive(Debug)]
pub(crate) struct Described {
    message: String,
    source: io::Error,
}

impl Described {
    /// An `io::Error` of `kind` that says `message`, with `source` as its cause.
    pub(crate) fn error(kind: io::ErrorKind, message: String, source: io::Error) -> io::Error {
        io::Error::new(kind, Described { message, source })
    }
}

impl fmt::Display for Described {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Described {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}
