//! `angzarr-bus`: see the crate library for the commands.

use std::process::ExitCode;

fn main() -> ExitCode {
    bus_cli::main_entry()
}
