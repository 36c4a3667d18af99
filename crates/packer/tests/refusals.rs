//! Every input check, one test each: the error names the file and the problem, and the
//! output directory gains nothing.

mod common;

use std::fs;

use common::*;
use supermachine_packer::{pack, Options};

/// Packs `opts` into an output directory holding one earlier file, expects an error
/// mentioning `file` and `problem`, and checks that the directory is unchanged (and that
/// a directory which did not exist is not created).
fn refused(f: &Fixture, opts: Options, file: &str, problem: &str) -> String {
    let err = refused_once(opts.clone(), file, problem);
    let mut opts = opts;
    opts.out = f.path("fresh-out");
    let again = pack(&opts)
        .expect_err("the packer accepted a bad input")
        .to_string();
    assert_eq!(
        again.replace("fresh-out", "out"),
        err.replace("fresh-out", "out")
    );
    assert!(
        !opts.out.exists(),
        "a fresh output directory was left behind"
    );
    err
}

/// [`refused`] into the existing output directory only.
fn refused_once(opts: Options, file: &str, problem: &str) -> String {
    fs::create_dir_all(&opts.out).unwrap();
    fs::write(opts.out.join("earlier"), b"keep").unwrap();
    let err = pack(&opts)
        .expect_err("the packer accepted a bad input")
        .to_string();
    assert!(err.contains(file), "error does not name {file:?}: {err}");
    assert!(
        err.contains(problem),
        "error does not say {problem:?}: {err}"
    );
    assert_eq!(
        listing(&opts.out),
        ["earlier"],
        "something was written after: {err}"
    );
    assert_eq!(fs::read(opts.out.join("earlier")).unwrap(), b"keep");
    err
}

fn refuse_input(rel: &str, data: &[u8], problem: &str) -> String {
    let f = Fixture::new();
    f.write(rel, data);
    let file = f.path(rel).display().to_string();
    refused(&f, f.options("out"), &file, problem)
}

#[test]
fn bzimage_without_hdrs_magic() {
    let mut bz = bz_image(RELEASE, 1000);
    bz[0x202..0x206].copy_from_slice(b"NoPe");
    refuse_input("x86_64/kernel/bzImage", &bz, "no \"HdrS\" magic at 0x202");
}

#[test]
fn bzimage_without_boot_signature() {
    let mut bz = bz_image(RELEASE, 1000);
    bz[0x1fe] = 0;
    refuse_input("x86_64/kernel/bzImage", &bz, "no 0x55AA boot signature");
}

#[test]
fn bzimage_of_a_32_bit_kernel() {
    let mut bz = bz_image(RELEASE, 1000);
    bz[0x236] = 0;
    refuse_input("x86_64/kernel/bzImage", &bz, "32-bit kernel");
}

#[test]
fn bzimage_that_is_an_elf_vmlinux() {
    refuse_input(
        "x86_64/kernel/bzImage",
        &static_exe(EM_X86_64),
        "not an x86 bzImage",
    );
}

#[test]
fn arm64_image_without_magic() {
    let mut image = arm64_image(RELEASE);
    image[0x38..0x3c].copy_from_slice(b"\x1f\x8b\x08\x00");
    refuse_input(
        "aarch64/kernel/Image",
        &image,
        "no \"ARM\\x64\" magic at 0x38",
    );
}

#[test]
fn arm64_image_big_endian() {
    let mut image = arm64_image(RELEASE);
    image[0x18] |= 1;
    refuse_input("aarch64/kernel/Image", &image, "big-endian");
}

#[test]
fn agent_of_the_wrong_elf_class() {
    let mut agent = static_exe(EM_X86_64);
    agent[4] = 1; // ELFCLASS32
    refuse_input("x86_64/supermachine-agent", &agent, "ELF class is 32-bit");
}

#[test]
fn agent_for_the_wrong_machine() {
    let err = refuse_input(
        "x86_64/supermachine-agent",
        &static_exe(EM_AARCH64),
        "ELF machine is aarch64",
    );
    assert!(err.contains("needs x86_64"), "{err}");
}

#[test]
fn init_oci_for_the_wrong_machine() {
    refuse_input(
        "aarch64/init-oci",
        &static_exe(EM_X86_64),
        "ELF machine is x86_64",
    );
}

#[test]
fn dynamically_linked_agent() {
    let agent = elf(EM_X86_64, ET_DYN, Some("/lib/ld-musl-x86_64.so.1"), &[]);
    let err = refuse_input("x86_64/supermachine-agent", &agent, "dynamically linked");
    assert!(
        err.contains("/lib/ld-musl-x86_64.so.1") && err.contains("x86_64-unknown-linux-musl"),
        "{err}"
    );
}

#[test]
fn dynamically_linked_busybox() {
    let busybox = elf(EM_X86_64, ET_EXEC, Some("/lib64/ld-linux-x86-64.so.2"), &[]);
    refuse_input("x86_64/busybox", &busybox, "dynamically linked");
}

#[test]
fn agent_that_is_not_an_elf() {
    refuse_input(
        "x86_64/supermachine-agent",
        b"#!/bin/sh\necho hi\n",
        "not an ELF file",
    );
}

#[test]
fn smpark_ko_not_relocatable() {
    let ko = elf(
        EM_AARCH64,
        ET_DYN,
        None,
        &[(".modinfo", b"vermagic=6.12.117 SMP\0")],
    );
    refuse_input(
        "aarch64/smpark.ko",
        &ko,
        "not a relocatable object (ET_REL)",
    );
}

#[test]
fn smpark_ko_for_the_wrong_machine() {
    refuse_input(
        "aarch64/smpark.ko",
        &module(EM_X86_64, RELEASE),
        "ELF machine is x86_64",
    );
}

#[test]
fn smpark_ko_without_modinfo() {
    let ko = elf(EM_AARCH64, ET_REL, None, &[(".text", b"\xc0\x03\x5f\xd6")]);
    refuse_input("aarch64/smpark.ko", &ko, "no .modinfo section");
}

#[test]
fn smpark_ko_for_another_kernel() {
    refuse_input(
        "aarch64/smpark.ko",
        &module(EM_AARCH64, "6.12.1"),
        "built for kernel 6.12.1 (vermagic)",
    );
}

#[test]
fn empty_blob() {
    refuse_input("aarch64/supermachine-agent", b"", "empty file");
}

#[test]
fn missing_blob() {
    let f = Fixture::new();
    fs::remove_file(f.path("x86_64/busybox")).unwrap();
    let file = f.path("x86_64/busybox").display().to_string();
    let err = refused(&f, f.options("out"), &file, "missing");
    assert!(err.contains("scripts/build --arch x86_64"), "{err}");
}

#[test]
fn missing_kernel_config() {
    let f = Fixture::new();
    fs::remove_file(f.path("aarch64/kernel/config")).unwrap();
    let file = f.path("aarch64/kernel/config").display().to_string();
    refused(&f, f.options("out"), &file, "missing");
}

#[test]
fn kernel_config_of_the_other_arch() {
    refuse_input(
        "aarch64/kernel/config",
        &config("x86_64", RELEASE),
        "config is for Linux/x86_64",
    );
}

#[test]
fn kernel_config_of_another_release() {
    let f = Fixture::new();
    f.write("x86_64/kernel/config", &config("x86_64", "6.12.99"));
    let file = f.path("x86_64/kernel/bzImage").display().to_string();
    refused(&f, f.options("out"), &file, "does not match kernel/config");
}

#[test]
fn kernel_config_without_header() {
    refuse_input(
        "x86_64/kernel/config",
        b"CONFIG_64BIT=y\n",
        "Kernel Configuration\" header",
    );
}

#[test]
fn missing_gpl_text() {
    let f = Fixture::new();
    fs::remove_file(f.path("licenses/GPL-2.0")).unwrap();
    let file = f.path("licenses/GPL-2.0").display().to_string();
    refused(&f, f.options("out"), &file, "GPL-2.0 or GPL-2.0-only");
}

#[test]
fn wrong_gpl_text() {
    refuse_input(
        "licenses/GPL-2.0",
        b"Apache License\nVersion 2.0\n",
        "not the GNU GPL version 2 text",
    );
}

#[test]
fn missing_bzip2_text() {
    // x86_64's busybox is GPL-2.0-only AND bzip2-1.0.6: its crate needs both texts.
    let f = Fixture::new();
    fs::remove_file(f.path("licenses/bzip2-1.0.6")).unwrap();
    let file = f.path("licenses/bzip2-1.0.6").display().to_string();
    refused(
        &f,
        f.options("out"),
        &file,
        "must hold the bzip2-1.0.6 licence text",
    );
}

#[test]
fn wrong_bzip2_text() {
    refuse_input(
        "licenses/bzip2-1.0.6",
        b"Permission is hereby granted, free of charge\n",
        "not the bzip2-1.0.6 licence text",
    );
}

#[test]
fn missing_agent_licence() {
    let f = Fixture::new();
    let mut opts = f.options("out");
    opts.agent_license = Some(f.path("nowhere/COPYING.MIT"));
    let file = f.path("nowhere/COPYING.MIT").display().to_string();
    refused(&f, opts, &file, "--agent-license");
}

#[test]
fn unknown_template_placeholder() {
    let f = Fixture::new();
    let templates = f.path("templates");
    copy_tree(&common::templates(), &templates);
    let lib = templates.join("supermachine-kernel/src/lib.rs.in");
    let text = fs::read_to_string(&lib).unwrap() + "// @NO_SUCH_VALUE@\n";
    fs::write(&lib, text).unwrap();
    let mut opts = f.options("out");
    opts.templates = templates;
    refused(
        &f,
        opts,
        &lib.display().to_string(),
        "unknown placeholder @NO_SUCH_VALUE@",
    );
}

#[test]
fn nothing_to_pack() {
    let f = Fixture::new();
    let mut opts = f.options("out");
    opts.x86_64 = None;
    opts.aarch64 = Some(f.path("missing"));
    refused(&f, opts, "--x86-64", "nothing to pack");
}

#[test]
fn bad_version() {
    let f = Fixture::new();
    let mut opts = f.options("out");
    opts.version = "0.8".into();
    refused(&f, opts, "--version 0.8", "not a semver version");
}

/// A crate over crates.io's 10 MiB: a kernel of incompressible noise just over the limit.
/// (Packed once only: compressing 10 MiB at xz -9e is the slowest thing these tests do.)
#[test]
fn crate_over_10_mib() {
    let f = Fixture::new();
    f.write(
        "x86_64/kernel/bzImage",
        &bz_image(RELEASE, 10 * 1024 * 1024 + 4096),
    );
    let err = refused_once(
        f.options("out"),
        "supermachine-kernel-x86-64-0.7.70.crate",
        "over the crates.io limit of 10485760 bytes",
    );
    let size: u64 = err
        .split(": ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(size > supermachine_packer::MAX_CRATE_SIZE, "{err}");
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let path = e.unwrap().path();
        let dest = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &dest);
        } else {
            fs::copy(&path, &dest).unwrap();
        }
    }
}

#[test]
fn cargo_lock_missing() {
    let f = Fixture::new();
    let mut opts = f.options("out");
    opts.cargo_lock = Some(f.path("no/Cargo.lock"));
    refused(&f, opts, "no/Cargo.lock", "pass --cargo-lock FILE");
}

#[test]
fn cargo_lock_that_is_not_one() {
    let f = Fixture::new();
    f.write("Cargo.lock", b"[workspace]\nmembers = []\n");
    let mut opts = f.options("out");
    opts.cargo_lock = Some(f.path("Cargo.lock"));
    refused(&f, opts, "Cargo.lock", "no [[package]] entries");
}

#[test]
fn cargo_lock_without_the_agent() {
    let f = Fixture::new();
    f.write(
        "Cargo.lock",
        b"version = 4\n\n[[package]]\nname = \"init-oci\"\nversion = \"0.8.0\"\n",
    );
    let mut opts = f.options("out");
    opts.cargo_lock = Some(f.path("Cargo.lock"));
    refused(
        &f,
        opts,
        "supermachine-kernel-x86-64",
        "Cargo.lock has no workspace package supermachine-agent",
    );
}
