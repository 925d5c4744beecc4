//! Compiles `proto/**/*.proto` into Rust with the pure-Rust `protox` compiler
//! (no system `protoc`), then generates prost messages and tonic clients and
//! servers, and writes the encoded file descriptor set next to them.

use std::error::Error;
use std::path::{Path, PathBuf};

/// Name of the encoded `FileDescriptorSet` in `OUT_DIR`, included by `lib.rs`.
const DESCRIPTOR_FILE: &str = "aerie_descriptor.bin";

fn main() -> Result<(), Box<dyn Error>> {
    let root = Path::new("proto");
    println!("cargo:rerun-if-changed={}", root.display());

    let mut files = Vec::new();
    collect_protos(root, &mut files)?;
    // A stable order keeps the descriptor set (and so the build) reproducible.
    files.sort();
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    let fds = protox::compile(&files, [root])?;

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join(DESCRIPTOR_FILE),
        prost::Message::encode_to_vec(&fds),
    )?;

    tonic_prost_build::configure()
        // Ours encodes through a contiguous scratch buffer (see src/codec.rs).
        .codec_path("crate::codec::Codec")
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}

/// Every `.proto` file under `dir`, recursively.
fn collect_protos(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_protos(&path, out)?;
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            out.push(path);
        }
    }
    Ok(())
}
