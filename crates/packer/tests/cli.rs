//! The command line as `scripts/build` and the Yocto class call it.

mod common;

use std::process::{Command, Output};

use common::*;

fn packer(f: &Fixture, args: &[&str], epoch_env: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_supermachine-packer"));
    cmd.args(args)
        .current_dir(f.tmp.path())
        .env_remove("SOURCE_DATE_EPOCH");
    if let Some(epoch) = epoch_env {
        cmd.env("SOURCE_DATE_EPOCH", epoch);
    }
    cmd.output().unwrap()
}

fn base_args(templates: &str) -> Vec<&str> {
    vec![
        "pack",
        "--templates",
        templates,
        "--license-dir",
        "licenses",
        "--agent-license",
        "COPYING.MIT",
    ]
}

/// `pack` with only the x86_64 input directory, into `out/`.
fn pack_x86_64_only(f: &Fixture) -> Output {
    let templates = templates().display().to_string();
    let mut args = base_args(&templates);
    args.extend([
        "--out",
        "out",
        "--x86-64",
        "x86_64",
        "--source-date-epoch",
        "1",
    ]);
    packer(f, &args, None)
}

#[test]
fn packs_with_flags_and_with_source_date_epoch_from_the_environment() {
    let f = Fixture::new();
    let templates = templates().display().to_string();
    let epoch = EPOCH.to_string();
    let mut args = base_args(&templates);
    args.extend([
        "--out",
        "a",
        "--x86-64",
        "x86_64",
        "--aarch64",
        "aarch64",
        "--source-date-epoch",
        &epoch,
    ]);
    let out = packer(&f, &args, None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    assert!(
        stdout.contains("a/supermachine-kernel-0.7.70.crate"),
        "{stdout}"
    );

    let mut args = base_args(&templates);
    args.extend(["--out", "b", "--x86-64", "x86_64", "--aarch64", "aarch64"]);
    let out = packer(&f, &args, Some(&epoch));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(snapshot(&f.path("a")), snapshot(&f.path("b")));
}

#[test]
fn says_which_arch_is_missing_and_what_builds_it() {
    let f = Fixture::new();
    let out = pack_x86_64_only(&f);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("not writing supermachine-kernel-aarch64"),
        "{stderr}"
    );
    assert!(stderr.contains("scripts/build --arch aarch64"), "{stderr}");
    assert!(
        stderr.contains("not writing supermachine-kernel:"),
        "{stderr}"
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 1);
}

#[test]
fn refusal_exits_1_and_says_nothing_was_written() {
    let f = Fixture::new();
    f.write(
        "x86_64/supermachine-agent",
        &elf(EM_X86_64, ET_DYN, Some("/lib/ld-musl-x86_64.so.1"), &[]),
    );
    let out = pack_x86_64_only(&f);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("x86_64/supermachine-agent: dynamically linked"),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was written to out"), "{stderr}");
    assert!(!f.path("out").exists());
}

#[test]
fn usage_errors_exit_2() {
    let f = Fixture::new();
    for (args, says) in [
        (vec![], "no command given"),
        (vec!["unpack"], "unknown command"),
        (vec!["pack", "--out"], "--out needs a value"),
        (vec!["pack", "--bogus", "x"], "unknown option --bogus"),
        (
            vec![
                "pack",
                "--out",
                "o",
                "--templates",
                "t",
                "--license-dir",
                "l",
            ],
            "--source-date-epoch is required",
        ),
        (
            vec!["pack", "--out", "o", "--source-date-epoch", "soon"],
            "not a number",
        ),
        (
            vec!["pack", "--source-date-epoch", "1", "--out", "o"],
            "--templates is required",
        ),
    ] {
        let out = packer(&f, &args, None);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(
            stderr.contains("usage: supermachine-packer pack"),
            "{stderr}"
        );
    }
    let help = packer(&f, &["--help"], None);
    assert!(help.status.success());
    assert!(String::from_utf8(help.stdout)
        .unwrap()
        .contains("--source-note"));
}
