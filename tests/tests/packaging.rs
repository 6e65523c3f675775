//! What a user who adds `knet-io`, `knet-sockets` or `knet-tls` to a `Cargo.toml` gets, checked
//! without building anything (a second or so in all):
//!
//! - Each crate's README, its page on crates.io, and the workspace's README: the
//!   `[dependencies]` block a user copies declares every crate that the README's examples name,
//!   tokio included, with the features their `#[tokio::main]` needs. A block without tokio
//!   leaves the copied example failing to build ("cannot find module or crate `tokio`").
//! - A crate's README links only to absolute addresses: crates.io and docs.rs have the package
//!   alone, where a relative link to the workspace (`../../README.md`) leads nowhere.
//! - A crate's `description` (the line crates.io shows in search results) names its sibling
//!   packages as crates.io knows them (`knet-io`), not by their directories (`net-io` is an
//!   unrelated crate there).
//! - A library's normal dependencies (`cargo tree -e normal`, which reads the lock file and
//!   builds nothing) hold no crate that only the tests, examples or benchmarks use, and none of
//!   the futures-util stack that no library uses; knet-io's hold no procedural macro at all
//!   (a user of knet-io alone would compile syn for nothing).
//! - The version floors `[workspace.dependencies]` declares for the libraries' dependencies are
//!   no lower than what the libraries were found to need (`FLOORS`, below, says how): a user
//!   whose lock file holds an older version that the floor allows would get a build that
//!   fails, or one that breaks the libraries' docs.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The packages published to crates.io, with the directories they are packaged from.
const LIBRARIES: [(&str, &str); 3] = [
    ("knet-io", "crates/net-io"),
    ("knet-sockets", "crates/net-sockets"),
    ("knet-tls", "crates/net-tls"),
];

/// The workspace's root directory.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests live one level below the root")
        .to_path_buf()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The bodies of the fenced blocks of `markdown` whose info string's first word is `lang`
/// (`rust` takes `rust,no_run` too).
fn fenced_blocks<'a>(markdown: &'a str, lang: &str) -> Vec<&'a str> {
    let mut blocks = Vec::new();
    let mut rest = markdown;
    while let Some(start) = rest.find("```") {
        let after = &rest[start + 3..];
        let info_end = after.find('\n').unwrap_or(after.len());
        let info = &after[..info_end];
        let body = &after[(info_end + 1).min(after.len())..];
        let Some(end) = body.find("```") else { break };
        if info.split(',').next() == Some(lang) {
            blocks.push(&body[..end]);
        }
        rest = &body[end + 3..];
    }
    blocks
}

/// The features a `[dependencies]` line gives `package` (`None` if the block has no such line).
fn declared(toml: &str, package: &str) -> Option<Vec<String>> {
    let line = toml.lines().find(|line| {
        line.split(['=', ' '])
            .next()
            .is_some_and(|name| name == package)
    })?;
    let Some(start) = line.find("features") else {
        return Some(Vec::new());
    };
    let list = &line[start..];
    let list = &list[list.find('[').expect("a feature list")..list.find(']').expect("its end")];
    Some(
        list.split('"')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect(),
    )
}

/// Checks that the first `[dependencies]` block of the README at `path` declares what its Rust
/// examples need; returns what is missing, one line each.
fn missing_from_readme(path: &Path) -> Vec<String> {
    let readme = read(path);
    let toml = fenced_blocks(&readme, "toml")
        .into_iter()
        .find(|block| block.contains("[dependencies]"))
        .unwrap_or_else(|| panic!("{}: no [dependencies] block", path.display()));
    let code = fenced_blocks(&readme, "rust").concat();
    let mut missing = Vec::new();
    for (library, package) in [
        ("net_io", "knet-io"),
        ("net_sockets", "knet-sockets"),
        ("net_tls", "knet-tls"),
    ] {
        if code.contains(&format!("{library}::")) && declared(toml, package).is_none() {
            missing.push(format!("{package} (the examples use {library})"));
        }
    }
    if code.contains("tokio::") {
        let mut needed = Vec::new();
        if code.contains("#[tokio::main") {
            needed.push("macros");
        }
        if code.contains("#[tokio::main]") || code.contains("flavor = \"multi_thread\"") {
            needed.push("rt-multi-thread");
        } else if code.contains("#[tokio::main") {
            needed.push("rt");
        }
        match declared(toml, "tokio") {
            None => missing.push(format!("tokio (the examples use it), with {needed:?}")),
            Some(features) => {
                for feature in needed {
                    // `rt-multi-thread` turns `rt` on.
                    let has = features
                        .iter()
                        .any(|f| f == feature || (feature == "rt" && f == "rt-multi-thread"));
                    if !has {
                        missing.push(format!("tokio's feature {feature:?}"));
                    }
                }
            }
        }
    }
    missing
}

#[test]
fn each_readme_declares_the_dependencies_of_its_examples() {
    let mut readmes = vec![root().join("README.md")];
    readmes.extend(
        LIBRARIES
            .iter()
            .map(|(_, dir)| root().join(dir).join("README.md")),
    );
    let mut failures = Vec::new();
    for readme in &readmes {
        for missing in missing_from_readme(readme) {
            failures.push(format!(
                "{}: [dependencies] lacks {missing}",
                readme.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_crate_readme_links_only_to_absolute_addresses() {
    let mut failures = Vec::new();
    for (package, dir) in LIBRARIES {
        let readme = read(&root().join(dir).join("README.md"));
        let mut rest = readme.as_str();
        while let Some(at) = rest.find("](") {
            let target = &rest[at + 2..];
            let target = &target[..target.find(')').unwrap_or(target.len())];
            if !(target.starts_with("https://") || target.starts_with('#')) {
                failures.push(format!(
                    "{package}'s README links to {target:?}, which its package lacks"
                ));
            }
            rest = &rest[at + 2..];
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_description_names_packages_as_crates_io_knows_them() {
    let mut failures = Vec::new();
    for (package, dir) in LIBRARIES {
        let manifest = read(&root().join(dir).join("Cargo.toml"));
        let description = manifest
            .lines()
            .find(|line| line.starts_with("description"))
            .unwrap_or_else(|| panic!("{package}: no description"));
        for (sibling, _) in LIBRARIES {
            let directory_name = &sibling["k".len()..];
            let bare = description
                .match_indices(directory_name)
                .any(|(at, _)| !description[..at].ends_with('k'));
            if bare {
                failures.push(format!(
                    "{package}'s {description} names {directory_name:?}, not {sibling:?}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The packages in `package`'s normal dependency tree, one `name vX.Y.Z [(proc-macro)]` each.
fn normal_dependencies(package: &str) -> Vec<String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "--locked",
            "-e",
            "normal",
            "--prefix",
            "none",
            "-p",
        ])
        .arg(package)
        .current_dir(root())
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo tree -p {package}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut lines: Vec<String> = String::from_utf8(output.stdout)
        .expect("UTF-8")
        .lines()
        .map(|line| line.trim_end_matches(" (*)").to_owned())
        .collect();
    lines.sort();
    lines.dedup();
    lines
}

#[test]
fn libraries_depend_on_nothing_they_do_not_use() {
    // Crates of the tests, examples and benchmarks, and futures-util (with its macros), which
    // tokio-util's `rt` feature brings and no library uses.
    const NOT_FOR_LIBRARIES: [&str; 10] = [
        "anyhow",
        "clap",
        "futures-macro",
        "futures-util",
        "hyper",
        "hyper-util",
        "proptest",
        "rcgen",
        "stats_alloc",
        "net-tests",
    ];
    let mut failures = Vec::new();
    for (package, _) in LIBRARIES {
        for dependency in normal_dependencies(package) {
            let name = dependency.split(' ').next().unwrap_or_default();
            if NOT_FOR_LIBRARIES.contains(&name) {
                failures.push(format!("{package} depends on {dependency}"));
            }
            if package == "knet-io" && dependency.ends_with("(proc-macro)") {
                failures.push(format!(
                    "{package} compiles the procedural macro {dependency}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The lowest versions of the libraries' dependencies that their code needs, each with what
/// in the libraries' sources (`crates/*/src`) needs it and why: the floors the workspace's
/// `Cargo.toml` declares must be no lower. Found by hand, for it takes a nightly cargo and the
/// network: `cargo +nightly update -Z direct-minimal-versions` with the workspace's members cut
/// to the three libraries (the dev tools' dependencies do not resolve at their floors), then
/// the libraries' builds (each alone, and knet-tls on `aws-lc-rs`) and their tests; and
/// net-tests' tests with the lock file's versions taken down to the floors one by one (`cargo
/// update -p PACKAGE --precise VERSION`). Neither lock file is to be committed.
const FLOORS: [(&str, &str, &str, &str); 8] = [
    (
        "bytes",
        "1.7.1",
        "try_reclaim",
        "1.7.0's `BytesMut::advance` past all its bytes left the buffer where it was: \
         write_frame allocated again after partial write-outs",
    ),
    (
        "rustls",
        "0.23.46",
        "writer().flush()",
        "before, rustls's `Writer` took bytes on a failed session and its `flush` said \
         nothing: TLS writes, flushes and shutdowns after a fatal alert waited or succeeded",
    ),
    (
        "rustls-native-certs",
        "0.8.1",
        "load_native_certs",
        "0.8.0 read the platform's store when the one SSL_CERT_FILE names held nothing",
    ),
    (
        "rustls-pki-types",
        "1.16",
        "ServerName::try_from",
        "before, a DNS name kept its trailing dot (verified, reported and matched with it)",
    ),
    (
        "tokio",
        "1.53.3",
        "register_with_interest",
        "`AsyncFd::register_with_interest`: 1.51.6 has it, 1.52.0 to 1.53.2 lack it",
    ),
    (
        "tokio",
        "1.54.1",
        "try_io(",
        "before 1.54, an accepted socket's first send (tried before waiting) waited for the \
         reactor's first event, and a timeout ending in the clock's last millisecond panicked \
         in tokio's timer (1.54.0 is yanked)",
    ),
    (
        "tokio-util",
        "0.7.11",
        "poll_read_buf",
        "`io::poll_read_buf` on a reader that is not `Sized`",
    ),
    (
        "tracing",
        "0.1.21",
        "tracing::Instrument",
        "`tracing::Instrument`",
    ),
];

/// A version's numbers (`1.7` is `[1, 7, 0]`).
fn version_numbers(version: &str) -> [u64; 3] {
    let mut numbers = [0; 3];
    for (slot, part) in numbers.iter_mut().zip(version.split('.')) {
        *slot = part
            .parse()
            .unwrap_or_else(|e| panic!("version {version:?}: {e}"));
    }
    numbers
}

/// The version requirement `[workspace.dependencies]` gives `package` (`None` if none).
fn workspace_floor(manifest: &str, package: &str) -> Option<String> {
    let section = &manifest[manifest.find("[workspace.dependencies]")?..];
    let line = section
        .lines()
        .skip(1)
        .take_while(|line| !line.starts_with('['))
        .find(|line| line.split(['=', ' ']).next() == Some(package))?;
    let value = line.split_once('=')?.1;
    let value = match value.find("version") {
        Some(at) => &value[at..],
        None => value,
    };
    Some(value.split('"').nth(1)?.to_owned())
}

#[test]
fn declared_floors_are_no_lower_than_what_the_libraries_need() {
    let manifest = read(&root().join("Cargo.toml"));
    let mut sources = String::new();
    for (_, dir) in LIBRARIES {
        let mut pending = vec![root().join(dir).join("src")];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir:?}: {e}")) {
                let path = entry.expect("a directory entry").path();
                if path.is_dir() {
                    pending.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    sources.push_str(&read(&path));
                }
            }
        }
    }
    let mut failures = Vec::new();
    for (package, needed, used, why) in FLOORS {
        if !sources.contains(used) {
            failures.push(format!(
                "the libraries no longer use {used:?}: check {package}'s floor and this entry"
            ));
            continue;
        }
        let Some(floor) = workspace_floor(&manifest, package) else {
            failures.push(format!("[workspace.dependencies] has no {package}"));
            continue;
        };
        let floor = floor.trim_start_matches('^');
        if version_numbers(floor) < version_numbers(needed) {
            failures.push(format!(
                "{package} {floor}: the libraries need {needed} ({why})"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
