//! TCP, UDP and Unix sockets with Ktor's builder model (work in progress: see the issues).
