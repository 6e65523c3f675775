//! `cargo xtask bench [SCENARIO…]`: release-build the benchmark programs and run them.

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{cargo, describe, project_root};

/// The benchmark scenarios: name, binary in the `bench` package, and its arguments.
const SCENARIOS: &[(&str, &str, &[&str])] = &[("lines", "lines", &[])];

/// Runs the chosen scenarios (all when none is named).
pub(crate) fn run(args: &[String]) -> Result<()> {
    if args.iter().any(|a| a == "--list") {
        for (name, _, _) in SCENARIOS {
            println!("{name}");
        }
        return Ok(());
    }
    let chosen: Vec<_> = if args.is_empty() {
        SCENARIOS.iter().collect()
    } else {
        let mut chosen = Vec::new();
        for a in args {
            match SCENARIOS.iter().find(|(name, _, _)| name == a) {
                Some(s) => chosen.push(s),
                None => bail!("unknown scenario `{a}` (try `cargo xtask bench --list`)"),
            }
        }
        chosen
    };
    let root = project_root();
    let mut build = cargo(
        &root,
        &["build", "--release", "--locked", "-p", "bench", "--bins"],
    );
    println!("==> {}", describe(&build));
    if !build
        .status()
        .context("could not start cargo build")?
        .success()
    {
        bail!("building the benchmark programs failed");
    }
    for (name, bin, bin_args) in chosen {
        let path = root.join("target/release").join(bin);
        println!(
            "==> scenario {name}: {} {}",
            path.display(),
            bin_args.join(" ")
        );
        let status = Command::new(&path)
            .args(*bin_args)
            .status()
            .with_context(|| format!("could not run {}", path.display()))?;
        if !status.success() {
            bail!("scenario `{name}` failed ({status})");
        }
    }
    Ok(())
}
