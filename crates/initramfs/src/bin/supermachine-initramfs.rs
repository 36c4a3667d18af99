//! `supermachine-initramfs`: the command line of the initramfs tools, called by
//! scripts/build and by the Yocto initramfs recipe with the same arguments.

use std::path::PathBuf;
use std::process::ExitCode;

use supermachine_initramfs::{init_template, pack_tree, write_atomic};

const USAGE: &str = "\
usage:
  supermachine-initramfs render-init --conf init.conf --template init.sh.in --out PATH
  supermachine-initramfs cpio --root DIR --out FILE.cpio.gz [--source-date-epoch N]

render-init  substitutes the @KEY@ placeholders of the template with init.conf's values
cpio         packs DIR as a deterministic, gzip'd newc archive (adds /dev/console);
             mtimes come from --source-date-epoch or $SOURCE_DATE_EPOCH";

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("supermachine-initramfs: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `--name value` pairs after the subcommand.
struct Flags(Vec<(String, String)>);

impl Flags {
    fn parse(args: &[String], known: &[&str]) -> Result<Self, String> {
        let mut pairs = Vec::new();
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            if !known.contains(&flag.as_str()) {
                return Err(format!("unknown option '{flag}'\n{USAGE}"));
            }
            let value = it.next().ok_or(format!("{flag} needs a value"))?;
            pairs.push((flag.clone(), value.clone()));
        }
        Ok(Self(pairs))
    }

    fn get(&self, flag: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(f, _)| f == flag)
            .map(|(_, v)| v.as_str())
    }

    fn path(&self, flag: &str) -> Result<PathBuf, String> {
        self.get(flag)
            .map(PathBuf::from)
            .ok_or(format!("{flag} is required\n{USAGE}"))
    }
}

fn run(args: Vec<String>) -> Result<(), String> {
    let (command, rest) = args.split_first().ok_or(USAGE.to_string())?;
    match command.as_str() {
        "render-init" => {
            let flags = Flags::parse(rest, &["--conf", "--template", "--out"])?;
            let (conf, template, out) = (
                flags.path("--conf")?,
                flags.path("--template")?,
                flags.path("--out")?,
            );
            let read = |p: &PathBuf| {
                std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
            };
            let params = init_template::parse_params(&read(&conf)?)
                .map_err(|e| format!("{}: {e}", conf.display()))?;
            let rendered = init_template::render(&read(&template)?, &params)
                .map_err(|e| format!("{}: {e}", template.display()))?;
            write_atomic(&out, rendered.as_bytes(), 0o755)
                .map_err(|e| format!("cannot write {}: {e}", out.display()))
        }
        "cpio" => {
            let flags = Flags::parse(rest, &["--root", "--out", "--source-date-epoch"])?;
            let (root, out) = (flags.path("--root")?, flags.path("--out")?);
            let epoch = match flags.get("--source-date-epoch") {
                Some(v) => v.to_string(),
                None => std::env::var("SOURCE_DATE_EPOCH").map_err(|_| {
                    "no time stamp: pass --source-date-epoch N or set SOURCE_DATE_EPOCH".to_string()
                })?,
            };
            let mtime: u32 = epoch.parse().map_err(|_| {
                format!("SOURCE_DATE_EPOCH must be seconds since 1970 that fit in 32 bits, not '{epoch}'")
            })?;
            if !root.is_dir() {
                return Err(format!("{} is not a directory (--root)", root.display()));
            }
            pack_tree(&root, &out, mtime)
                .map_err(|e| format!("cannot write {}: {e}", out.display()))
        }
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => Err(format!("unknown command '{other}'\n{USAGE}")),
    }
}
