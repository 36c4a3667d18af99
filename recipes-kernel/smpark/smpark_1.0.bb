SUMMARY = "smpark: park secondary vCPUs for a consistent snapshot"
DESCRIPTION = "Out-of-tree module of the supermachine aarch64 guest: parks every \
other vCPU polling a page on request and releases it, so the VMM can capture a \
consistent multi-vCPU snapshot. /dev/smpark ioctls, and /sys/kernel/smpark/state_gpa \
for the page the host may write to release them."
HOMEPAGE = "https://github.com/supermachine-dev/meta-supermachine"
LICENSE = "GPL-2.0-only"
LIC_FILES_CHKSUM = "file://COPYING;md5=b234ee4d69f5fce4486a80fdaf4a4263"

# The module source is files/smpark/ of this repository, shared with the host build.
FILESEXTRAPATHS:prepend := "${THISDIR}/../../files:"

SRC_URI = "file://smpark"

S = "${UNPACKDIR}/smpark"

inherit module supermachine-guest

# The x86_64 guest kernel has no module support; smpark is an arm64 mechanism.
COMPATIBLE_HOST = "aarch64.*-linux"

RPROVIDES:${PN} += "kernel-module-smpark"

do_deploy() {
	install -d ${SUPERMACHINE_BLOBS_DIR}
	install -m 0644 ${B}/smpark.ko ${SUPERMACHINE_BLOBS_DIR}/smpark.ko
}
addtask deploy after do_install before do_build
