//! Prints the SHA-256 of the guest blobs that the published `supermachine` library
//! extracts from the bytes it embeds (its own `AssetPaths::discover`, into
//! `$XDG_DATA_HOME`), and `supermachine_kernel::BUILD_ID`, for `run` to compare with the
//! host build's `manifest.json`.

use std::path::Path;
use std::process::ExitCode;

use sha2::{Digest, Sha256};

fn sha256(path: &Path) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn main() -> ExitCode {
    let assets = supermachine::AssetPaths::discover();
    let found = [
        ("kernel", assets.kernel),
        ("supermachine-agent", assets.supermachine_agent),
    ];
    for (name, path) in found {
        match path.ok_or_else(|| format!("supermachine found no {name}")).and_then(|p| sha256(&p)) {
            Ok(sum) => println!("{name} {sum}"),
            Err(e) => {
                eprintln!("supermachine-build-check: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    println!("BUILD_ID {}", supermachine_kernel::BUILD_ID);
    ExitCode::SUCCESS
}
