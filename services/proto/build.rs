//! Generates the `liverseg.v1` messages, server and client with the
//! vendored `protoc` (there is no `protoc` on the build machines).

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let proto = root.join("liverseg/v1/liverseg.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    let out = PathBuf::from(std::env::var("OUT_DIR")?);

    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    // Chunks are sliced and passed on without copies.
    config.bytes(["."]);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("liverseg_descriptor.bin"))
        .compile_with_config(config, &[proto], &[root])?;
    Ok(())
}
