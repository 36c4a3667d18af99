//! `supermachine-packer pack ...`: the command line of [`supermachine_packer::pack`], used
//! by `scripts/build` and by the Yocto `supermachine-crate` class.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use supermachine_packer::{pack, Options, DEFAULT_CRATE_VERSION};

const USAGE: &str = "\
usage: supermachine-packer pack --templates DIR --out DIR [--x86-64 DIR] [--aarch64 DIR]
                                --license-dir DIR [--agent-license FILE] [--cargo-lock FILE]
                                [--source-date-epoch N] [--source-note TEXT] [--version X.Y.Z]

Validates the guest blobs and writes the supermachine-kernel crates to --out:
<name>-<version>.crate, the unpacked <name>-<version>/ trees, SHA256SUMS,
manifest.json, LICENSES/ and NOTICE.

  --templates DIR          the crate templates (the repository's files/crates)
  --out DIR                output directory; nothing new is left there on error
  --x86-64 DIR             x86_64 inputs: kernel/bzImage kernel/config busybox
                           supermachine-agent
  --aarch64 DIR            aarch64 inputs: kernel/Image kernel/config init-oci
                           supermachine-agent smpark.ko
  --license-dir DIR        the blobs' licence texts, named by SPDX identifier as in
                           Yocto's common-licenses: GPL-2.0-only (or GPL-2.0), and
                           bzip2-1.0.6 when x86_64 is packed (busybox's bzip2 applet)
  --agent-license FILE     the agent's MIT text (default: COPYING.MIT of the repository)
  --cargo-lock FILE        the Cargo.lock the agent and init-oci were built with, for the
                           SBOM (default: Cargo.lock of the repository)
  --source-date-epoch N    time stamp of every entry (default: $SOURCE_DATE_EPOCH)
  --source-note TEXT       where the GPL binaries' source is, for NOTICE (\"built from TEXT\")
  --version X.Y.Z[+META]   crate version (default: {DEFAULT}, the supermachine-kernel
                           release whose contract the assets implement)

An arch whose directory is not given or does not exist is skipped with a message; the
supermachine-kernel facade is written only when both arches are.";

fn usage() -> String {
    USAGE.replace("{DEFAULT}", DEFAULT_CRATE_VERSION)
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let opts = match parse(&args) {
        Ok(Some(opts)) => opts,
        Ok(None) => {
            println!("{}", usage());
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("supermachine-packer: {msg}\n\n{}", usage());
            return ExitCode::from(2);
        }
    };
    match pack(&opts) {
        Ok(report) => {
            for skip in &report.skipped {
                eprintln!(
                    "supermachine-packer: not writing {}: {}",
                    skip.crate_name, skip.reason
                );
            }
            for path in &report.crates {
                println!("{}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("supermachine-packer: error: {e}");
            eprintln!(
                "supermachine-packer: nothing was written to {}",
                opts.out.display()
            );
            ExitCode::FAILURE
        }
    }
}

/// `Ok(None)` means help was asked for.
fn parse(args: &[OsString]) -> Result<Option<Options>, String> {
    let mut it = args.iter();
    match it.next().and_then(|a| a.to_str()) {
        Some("pack") => {}
        Some("-h" | "--help" | "help") => return Ok(None),
        Some(other) => return Err(format!("unknown command {other:?}; the command is `pack`")),
        None => return Err("no command given; the command is `pack`".into()),
    }
    let mut templates = None;
    let mut out = None;
    let mut x86_64 = None;
    let mut aarch64 = None;
    let mut license_dir = None;
    let mut agent_license = None;
    let mut cargo_lock = None;
    let mut sde = None;
    let mut source_note = None;
    let mut version = None;
    while let Some(flag) = it.next() {
        let flag = flag
            .to_str()
            .ok_or_else(|| format!("unexpected argument {flag:?}"))?;
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))?
            .clone();
        let slot = match flag {
            "--templates" => &mut templates,
            "--out" => &mut out,
            "--x86-64" => &mut x86_64,
            "--aarch64" => &mut aarch64,
            "--license-dir" => &mut license_dir,
            "--agent-license" => &mut agent_license,
            "--cargo-lock" => &mut cargo_lock,
            "--source-date-epoch" => &mut sde,
            "--source-note" => &mut source_note,
            "--version" => &mut version,
            _ => return Err(format!("unknown option {flag}")),
        };
        if slot.replace(value).is_some() {
            return Err(format!("{flag} given twice"));
        }
    }
    let required = |v: Option<OsString>, flag: &str| v.ok_or_else(|| format!("{flag} is required"));
    let text = |v: OsString, flag: &str| {
        v.into_string()
            .map_err(|v| format!("{flag} {v:?}: not valid UTF-8"))
    };
    let sde = match sde {
        Some(v) => text(v, "--source-date-epoch")?,
        None => std::env::var("SOURCE_DATE_EPOCH").map_err(|_| {
            "--source-date-epoch is required (or set SOURCE_DATE_EPOCH): the time stamp of \
             every file, for reproducible crates"
                .to_owned()
        })?,
    };
    let source_date_epoch = sde
        .trim()
        .parse::<u64>()
        .map_err(|_| format!("source date epoch {sde:?} is not a number of seconds since 1970"))?;
    Ok(Some(Options {
        templates: required(templates, "--templates")?.into(),
        out: required(out, "--out")?.into(),
        x86_64: x86_64.map(PathBuf::from),
        aarch64: aarch64.map(PathBuf::from),
        license_dir: required(license_dir, "--license-dir")?.into(),
        agent_license: agent_license.map(PathBuf::from),
        cargo_lock: cargo_lock.map(PathBuf::from),
        source_date_epoch,
        source_note: source_note.map(|v| text(v, "--source-note")).transpose()?,
        version: match version {
            Some(v) => text(v, "--version")?,
            None => DEFAULT_CRATE_VERSION.to_owned(),
        },
    }))
}
