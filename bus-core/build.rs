//! Compiles `proto/` with protox (a protobuf compiler written in Rust) and
//! prost-build, so the build needs no system `protoc`.

use std::io::{Error, ErrorKind};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/angzarr/bus/v1/envelope.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(protos, ["proto"])
        .map_err(|e| Error::new(ErrorKind::InvalidData, format!("{e:?}")))?;
    let mut config = prost_build::Config::new();
    config.enable_type_names();
    config.btree_map(["."]);
    config.bytes(["."]);
    config.compile_fds(descriptors)?;
    Ok(())
}
