SUMMARY = "supermachine guest boot assets, as the three kernel crates"
DESCRIPTION = "Collects the kernel, busybox, agent, init-oci and smpark.ko of the \
supermachine-x86-64 and supermachine-aarch64 multiconfigs and deploys the crates \
supermachine-kernel-x86-64, supermachine-kernel-aarch64 and supermachine-kernel, the \
blobs, their checksums and manifest, and the source and licence bundle."
HOMEPAGE = "https://github.com/supermachine-dev/meta-supermachine"
LICENSE = "MIT & GPL-2.0-only"
LIC_FILES_CHKSUM = "file://COPYING.MIT;md5=70c9ff6c1b20c88748d7a612a84d5535 \
                    file://${COMMON_LICENSE_DIR}/GPL-2.0-only;md5=801f80980d171dd6425610833a22dbe6"

# The crate templates are files/crates/ of this repository, shared with the host build.
FILESEXTRAPATHS:prepend := "${THISDIR}/../..:"

SRC_URI = "\
    file://COPYING.MIT \
    file://Cargo.lock \
    file://files/crates \
"

# S is UNPACKDIR itself, so SOURCE_DATE_EPOCH is OE's fixed fallback: a checkout's file
# mtimes, which OE would use for a subdirectory, differ on every clone.
S = "${UNPACKDIR}"

inherit supermachine-crate

SUPERMACHINE_CRATE_TEMPLATES = "${S}/files/crates"
# The lock file the agent and init-oci recipes build with (crates.inc is generated from
# it): the crate graph of the SBOMs.
SUPERMACHINE_CRATE_CARGO_LOCK = "${S}/Cargo.lock"

SUPERMACHINE_CRATE_MULTICONFIG_X86_64 = "supermachine-x86-64"
SUPERMACHINE_CRATE_BLOBS_X86_64 = "${SUPERMACHINE_X86_64_DEPLOY_DIR_IMAGE}/${SUPERMACHINE_BLOBS_SUBDIR}"
SUPERMACHINE_CRATE_SOURCES_X86_64 = "${SUPERMACHINE_X86_64_DEPLOY_DIR_SRC}"
SUPERMACHINE_CRATE_FILES_X86_64 = "kernel/bzImage kernel/vmlinux kernel/config busybox \
    supermachine-agent initramfs.cpio.gz"
SUPERMACHINE_CRATE_TASKS_X86_64 = "\
    linux-supermachine:do_deploy \
    busybox:do_deploy \
    supermachine-agent:do_deploy \
    supermachine-guest-initramfs:do_deploy \
"
SUPERMACHINE_CRATE_SOURCE_PNS_X86_64 = "${SUPERMACHINE_X86_64_SOURCE_PNS}"

SUPERMACHINE_CRATE_MULTICONFIG_AARCH64 = "supermachine-aarch64"
SUPERMACHINE_CRATE_BLOBS_AARCH64 = "${SUPERMACHINE_AARCH64_DEPLOY_DIR_IMAGE}/${SUPERMACHINE_BLOBS_SUBDIR}"
SUPERMACHINE_CRATE_SOURCES_AARCH64 = "${SUPERMACHINE_AARCH64_DEPLOY_DIR_SRC}"
SUPERMACHINE_CRATE_FILES_AARCH64 = "kernel/Image kernel/config init-oci smpark.ko \
    supermachine-agent initramfs.cpio.gz"
SUPERMACHINE_CRATE_TASKS_AARCH64 = "\
    linux-supermachine:do_deploy \
    init-oci:do_deploy \
    smpark:do_deploy \
    supermachine-agent:do_deploy \
    supermachine-guest-initramfs:do_deploy \
"
SUPERMACHINE_CRATE_SOURCE_PNS_AARCH64 = "${SUPERMACHINE_AARCH64_SOURCE_PNS}"
