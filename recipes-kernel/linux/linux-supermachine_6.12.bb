SUMMARY = "Minimal Linux 6.12 kernel of the supermachine guests"
DESCRIPTION = "Linux 6.12 LTS from kernel.org, configured as make tinyconfig plus the \
fragments of linux-supermachine/, one per concern (the host build applies the same ones)."
HOMEPAGE = "https://www.kernel.org/"
LICENSE = "GPL-2.0-only"
LIC_FILES_CHKSUM = "file://COPYING;md5=6bc538ed5bd9a7fc9398086aedcd7e46"

LINUX_VERSION = "6.12.104"
PV = "${LINUX_VERSION}"

# kconfig-apply is the host build's configure step, shared so both get one .config.
FILESEXTRAPATHS:prepend := "${THISDIR}/../../scripts/lib:"

# SUPERMACHINE_KERNEL_FRAGMENTS: the shared fragments, in order (one list for both builds).
require linux-supermachine-fragments.inc

# TSI: the patches of linux-supermachine-tsi.inc and their fragment tsi.cfg, on by
# default as supermachine's VMM relies on them. Set SUPERMACHINE_KERNEL_TSI = "" to
# build the plain kernel (nothing fetched beyond kernel.org).
require linux-supermachine-tsi.inc
SUPERMACHINE_KERNEL_TSI ??= "${SUPERMACHINE_TSI_SRC_URI} file://tsi.cfg"

# The TSI patches' file names carry no version: their URLs pin libkrunfw's commit.
# nooelint: oelint.vars.downloadfilename
SRC_URI = "https://cdn.kernel.org/pub/linux/kernel/v6.x/linux-${LINUX_VERSION}.tar.xz \
           ${SUPERMACHINE_KERNEL_FRAGMENTS} \
           file://${SUPERMACHINE_KERNEL_ARCH_FRAGMENT} \
           file://kconfig-apply \
           ${SUPERMACHINE_KERNEL_TSI} \
           "
SRC_URI[sha256sum] = "949d166a1263bd0cf0c5aab44eeb57869615099e7c48bf88d0e4adb77379b999"

S = "${UNPACKDIR}/linux-${LINUX_VERSION}"

inherit kernel supermachine-guest

COMPATIBLE_HOST = "(x86_64|aarch64).*-linux"

SUPERMACHINE_KERNEL_ARCH_FRAGMENT = "${TARGET_ARCH}.cfg"

# The crates boot bzImage on x86_64 (vmlinux too: PVH boots the ELF directly) and
# Image on aarch64, whatever the machine configuration prefers. Plain values, not
# overrides: kernel.bbclass rewrites KERNEL_IMAGETYPES, which an override would mask.
KERNEL_IMAGETYPE = "${@oe.utils.conditional('TARGET_ARCH', 'x86_64', 'bzImage', 'Image', d)}"
KERNEL_IMAGETYPES = "${@oe.utils.conditional('TARGET_ARCH', 'x86_64', 'vmlinux', '', d)}"

# Reproducible: oe-core derives KBUILD_BUILD_TIMESTAMP from SOURCE_DATE_EPOCH; user and
# host are fixed to the host build's values.
export KBUILD_BUILD_USER = "supermachine"
export KBUILD_BUILD_HOST = "supermachine"

# C only: kconfig-apply configures with RUSTC=false, and every later make must agree,
# or kbuild would re-resolve the configuration against a rustc it finds.
EXTRA_OEMAKE:append = " RUSTC=false"

# tinyconfig, the fragments, olddefconfig, and a failure naming every fragment symbol
# that did not survive: the same script as the host build. It makes with EXTRA_OEMAKE
# (cross compiler, linker, host tools) as do_compile does: configured for another
# compiler, do_compile would re-resolve the .config, past the check.
KERNEL_CONFIG_COMMAND = "sh ${UNPACKDIR}/kconfig-apply ${S} ${B} ${ARCH} \
    ${@' '.join('${UNPACKDIR}/' + u.replace('file://', '', 1) for u in d.getVar('SUPERMACHINE_KERNEL_FRAGMENTS').split())} \
    ${UNPACKDIR}/${SUPERMACHINE_KERNEL_ARCH_FRAGMENT} \
    ${@'${UNPACKDIR}/tsi.cfg' if 'file://tsi.cfg' in d.getVar('SUPERMACHINE_KERNEL_TSI').split() else ''} \
    -- ${EXTRA_OEMAKE}"

do_deploy:append() {
	install -d ${SUPERMACHINE_BLOBS_DIR}/kernel
	for imagetype in ${KERNEL_IMAGETYPES}; do
		install -m 0644 ${KERNEL_OUTPUT_DIR}/$imagetype ${SUPERMACHINE_BLOBS_DIR}/kernel/$imagetype
	done
	install -m 0644 ${B}/.config ${SUPERMACHINE_BLOBS_DIR}/kernel/config
}
