//! TLS client and server for `net-sockets` on rustls (work in progress: see the issues).
