//! SPEC §4.2's last clause, the parts no other test reads (`packaging` reads the READMEs and the
//! descriptions; `cargo xtask ci` runs `cargo package --workspace`): the folders stay
//! `crates/net-io`, `crates/net-sockets` and `crates/net-tls`, the library paths stay `net_io`,
//! `net_sockets` and `net_tls`, the package names are not `net-io` (an unrelated crate on
//! crates.io), and each crate has its own README, description, keywords and categories, in the
//! forms crates.io accepts (at most five keywords of at most 20 characters each, a letter then
//! letters, digits, `_`, `-` or `+`; categories from its list of slugs). Read from the
//! manifests, building nothing.

use std::path::{Path, PathBuf};

/// (package, folder, library path) for each published crate.
const CRATES: [(&str, &str, &str); 3] = [
    ("knet-io", "crates/net-io", "net_io"),
    ("knet-sockets", "crates/net-sockets", "net_sockets"),
    ("knet-tls", "crates/net-tls", "net_tls"),
];

/// crates.io's category slugs that a networking library could name (a subset of its list).
const KNOWN_CATEGORIES: [&str; 9] = [
    "asynchronous",
    "network-programming",
    "parsing",
    "cryptography",
    "encoding",
    "web-programming",
    "concurrency",
    "os::unix-apis",
    "authentication",
];

fn folder(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests live one level below the root")
        .join(dir)
}

/// The value of `key = ...` in `section` (`[package]`, `[lib]`) of `manifest`, as written.
fn value<'a>(manifest: &'a str, section: &str, key: &str) -> Option<&'a str> {
    let mut inside = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            inside = line == section;
            continue;
        }
        if !inside {
            continue;
        }
        if let Some((k, v)) = line.split_once('=')
            && k.trim() == key
        {
            return Some(v.trim());
        }
    }
    None
}

fn string(raw: &str) -> &str {
    raw.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or_else(|| panic!("not a one-line string: {raw}"))
}

fn list(raw: &str) -> Vec<&str> {
    let inner = raw
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or_else(|| panic!("not a one-line list: {raw}"));
    inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(string)
        .collect()
}

fn crates_io_accepts_keyword(keyword: &str) -> bool {
    let mut chars = keyword.chars();
    keyword.len() <= 20
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+'))
}

#[test]
fn each_crate_keeps_its_folder_and_library_path_and_has_its_own_metadata() {
    let mut failures = Vec::new();
    for (package, dir, library) in CRATES {
        let manifest_path = folder(dir).join("Cargo.toml");
        let manifest = std::fs::read_to_string(&manifest_path)
            .unwrap_or_else(|e| panic!("{}: {e}", manifest_path.display()));
        let mut fail = |what: String| failures.push(format!("{package} ({dir}): {what}"));

        match value(&manifest, "[package]", "name").map(string) {
            Some(name) if name == package && name != "net-io" => {}
            other => fail(format!("package name {other:?}")),
        }
        match value(&manifest, "[lib]", "name").map(string) {
            Some(name) if name == library => {}
            other => fail(format!("library path {other:?}, not {library:?}")),
        }
        match value(&manifest, "[package]", "description").map(string) {
            Some(d) if !d.trim().is_empty() => {}
            other => fail(format!("description {other:?}")),
        }
        match value(&manifest, "[package]", "readme").map(string) {
            Some(readme) => {
                let text = std::fs::read_to_string(folder(dir).join(readme)).unwrap_or_default();
                if !text.contains(package) {
                    fail(format!(
                        "its README {readme} is missing or does not name {package}"
                    ));
                }
            }
            None => fail("no readme".to_owned()),
        }
        let keywords = value(&manifest, "[package]", "keywords").map(list);
        match &keywords {
            Some(k) if (1..=5).contains(&k.len()) => {
                for bad in k.iter().filter(|k| !crates_io_accepts_keyword(k)) {
                    fail(format!("keyword {bad:?} is one crates.io refuses"));
                }
            }
            other => fail(format!("keywords {other:?}: one to five")),
        }
        let categories = value(&manifest, "[package]", "categories").map(list);
        match &categories {
            Some(c) if (1..=5).contains(&c.len()) => {
                for bad in c.iter().filter(|c| !KNOWN_CATEGORIES.contains(c)) {
                    fail(format!("category {bad:?} is not a crates.io slug"));
                }
            }
            other => fail(format!("categories {other:?}: one to five")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
