//! The deployable artifacts: each function's arm64 release `bootstrap` as
//! `cargo lambda build --release --arm64` leaves it in `target/lambda/`.

use std::path::Path;

use crate::process::FUNCTIONS;
use crate::report::{Row, Section};
use crate::BenchError;

/// The budget for one artifact, as `infra/check-artifacts.sh` has it.
const BUDGET: u64 = 8_000_000;

/// Every function's artifact: size, architecture, symbols.
pub fn section(root: &Path) -> Result<Section, BenchError> {
    let mut sizes = Section::new("Artifacts: arm64 release binaries");
    for f in FUNCTIONS {
        let a = artifact(root, f.binary)?;
        sizes.rows.push(
            Row::new(
                f.binary,
                format!("{:.2} MiB ({} bytes)", a.bytes as f64 / 1024.0 / 1024.0, a.bytes),
                format!(
                    "`target/lambda/{}/bootstrap` from `cargo lambda build --release --arm64`; {}, {}",
                    f.binary,
                    if a.arm64 { "AArch64 ELF" } else { "NOT AArch64" },
                    if a.stripped { "stripped" } else { "NOT stripped" }
                ),
            )
            .target(
                "< 8 MB, arm64, stripped",
                a.bytes < BUDGET && a.arm64 && a.stripped,
            ),
        );
    }
    sizes.notes.push(
        "Release profile: `opt-level = \"s\"`, fat LTO, one codegen unit, stripped, `panic = \"abort\"`; the SDK's HTTPS client is rustls with ring (no aws-lc).".into(),
    );
    Ok(sizes)
}

/// What an artifact is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    pub bytes: u64,
    pub arm64: bool,
    /// No symbol table left in the file.
    pub stripped: bool,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Reads a 64-bit little-endian ELF file's machine and section types.
pub fn inspect(bytes: &[u8]) -> Option<Artifact> {
    if bytes.get(..4)? != b"\x7fELF" || *bytes.get(4)? != 2 || *bytes.get(5)? != 1 {
        return None;
    }
    const EM_AARCH64: u16 = 183;
    const SHT_SYMTAB: u32 = 2;
    let shoff = usize::try_from(u64_at(bytes, 0x28)?).ok()?;
    let shentsize = usize::from(u16_at(bytes, 0x3A)?);
    let shnum = usize::from(u16_at(bytes, 0x3C)?);
    let mut stripped = true;
    for i in 0..shnum {
        if u32_at(bytes, shoff + i * shentsize + 4)? == SHT_SYMTAB {
            stripped = false;
        }
    }
    Some(Artifact {
        bytes: bytes.len() as u64,
        arm64: u16_at(bytes, 18)? == EM_AARCH64,
        stripped,
    })
}

/// The artifact of `function`, if built.
pub fn artifact(root: &Path, function: &str) -> Result<Artifact, BenchError> {
    let path = root.join("target/lambda").join(function).join("bootstrap");
    let bytes = std::fs::read(&path)
        .map_err(|_| BenchError::Missing(format!("{} (run `make lambda`)", path.display())))?;
    inspect(&bytes).ok_or_else(|| BenchError::Runtime(format!("{} is not a 64-bit ELF file", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_test_binary() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let a = inspect(&me).unwrap();
        assert_eq!(a.arm64, cfg!(target_arch = "aarch64"));
        // Test binaries keep their symbols.
        assert!(!a.stripped);
        assert!(inspect(b"#!/bin/sh\n").is_none());
    }
}
