//! Compiles the poker domain events with protox (no system protoc).

use std::io::{Error, ErrorKind};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/poker/v1/events.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(protos, ["proto"])
        .map_err(|e| Error::new(ErrorKind::InvalidData, format!("{e:?}")))?;
    let mut config = prost_build::Config::new();
    config.enable_type_names();
    config.compile_fds(descriptors)?;
    Ok(())
}
