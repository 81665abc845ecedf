//! `angzarr-bus`: see the crate library for the commands.

use std::process::ExitCode;

fn main() -> ExitCode {
    // `angzarr-bus server` runs the bundled server in this process.
    bus_embedded_server::memory::return_freed_memory_to_the_os();
    bus_cli::main_entry()
}
