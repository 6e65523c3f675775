//! The Go baseline: `bench/go/server.go` (Go's `net` + `bufio`), built with the `go` tool when
//! a run needs it.
//!
//! Go is optional. When no `go` tool is found (or the build fails) the driver prints a note and
//! runs every scenario without the Go baseline; nothing else depends on it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// The folder holding `go.mod` and `server.go`.
const SOURCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/go");

/// When the Go server flushes its `bufio.Writer` (its `-flush` flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flush {
    /// Only when the reader holds no complete request line (the default).
    Idle,
    /// After every reply.
    Each,
}

impl Flush {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Flush::Idle => "idle",
            Flush::Each => "each",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Flush> {
        Ok(match s {
            "idle" => Flush::Idle,
            "each" => Flush::Each,
            _ => bail!("unknown Go flush mode {s} (idle or each)"),
        })
    }
}

/// A built Go server.
#[derive(Debug, Clone)]
pub(crate) struct GoServer {
    /// The executable.
    pub(crate) path: PathBuf,
    /// What `go version` said.
    pub(crate) version: String,
}

/// The `go` tool: `$NETBENCH_GO` when set, else `go` on `PATH`.
fn tool() -> String {
    std::env::var("NETBENCH_GO").unwrap_or_else(|_| "go".to_owned())
}

/// Builds the Go server into `out_dir`. `Ok(None)` when there is no `go` tool.
///
/// The build runs offline (`GOPROXY=off`; the server needs only the standard library) and,
/// when the environment names no cache, keeps Go's build cache in `out_dir`.
pub(crate) fn build(out_dir: &Path) -> Result<Option<GoServer>> {
    let tool = tool();
    let version = match Command::new(&tool).arg("version").output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        Ok(out) => bail!(
            "`{tool} version` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("running `{tool} version`")),
    };
    std::fs::create_dir_all(out_dir)?;
    let path = out_dir.join("netbench-go-server");
    let mut cmd = Command::new(&tool);
    cmd.args(["build", "-o"])
        .arg(&path)
        .arg(".")
        .current_dir(SOURCE)
        .env("GOPROXY", "off")
        .stdin(Stdio::null());
    let no_cache = ["GOCACHE", "XDG_CACHE_HOME", "HOME"]
        .iter()
        .all(|v| std::env::var_os(v).is_none());
    if no_cache {
        cmd.env("GOCACHE", out_dir.join("go-cache"));
    }
    let out = cmd
        .output()
        .with_context(|| format!("running `{tool} build` in {SOURCE}"))?;
    if !out.status.success() {
        bail!(
            "`{tool} build` in {SOURCE} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(Some(GoServer { path, version }))
}
