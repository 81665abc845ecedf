//! `angzarr-bus bench`: runs the `nats-bench` binary with the arguments given.

use std::path::PathBuf;

use crate::error::{CliError, CliResult};

const BENCH: &str = "nats-bench";

fn exe_name() -> String {
    format!("{BENCH}{}", std::env::consts::EXE_SUFFIX)
}

/// `nats-bench` next to the current executable, else on PATH.
pub fn find() -> Option<PathBuf> {
    let name = exe_name();
    if let Ok(me) = std::env::current_exe()
        && let Some(dir) = me.parent()
    {
        let p = dir.join(&name);
        if p.is_file() {
            return Some(p);
        }
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .filter(|d| !d.as_os_str().is_empty())
        .map(|d| d.join(&name))
        .find(|p| p.is_file())
}

/// Runs it with `args`, inheriting stdio; exits with its status.
pub fn run(args: Vec<String>) -> CliResult {
    let Some(bin) = find() else {
        return Err(CliError::msg(
            "the benchmark needs the nats-bench binary, found neither next to angzarr-bus nor on \
             PATH: build it with `cargo build --release -p nats-bench` (it lands next to \
             angzarr-bus in target/release) or install it with `cargo install --path bench`",
        ));
    };
    let status = std::process::Command::new(&bin)
        .args(&args)
        .status()
        .map_err(|e| CliError::msg(format!("cannot run {} ({e})", bin.display())))?;
    match status.code() {
        Some(0) => Ok(()),
        Some(code) => Err(CliError::Exit(u8::try_from(code).unwrap_or(1))),
        None => Err(CliError::msg(format!(
            "{} was stopped by a signal",
            bin.display()
        ))),
    }
}
