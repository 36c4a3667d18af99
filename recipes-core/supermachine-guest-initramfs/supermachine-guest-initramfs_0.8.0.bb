SUMMARY = "Initramfs of the supermachine guest"
DESCRIPTION = "The initramfs that boots a supermachine guest into its container: on \
x86_64 a /init rendered from files/init with a static busybox and the agent; on aarch64 \
the one supermachine's VMM builds: init-oci as /init, empty proc sys dev newroot and \
/supermachine-smpark.ko (the agent comes from the delta disk). Written by \
supermachine-initramfs, as in the host build."
HOMEPAGE = "https://github.com/supermachine-dev/meta-supermachine"
# The x86_64 archive holds busybox (GPL-2.0-only & bzip2-1.0.6) and the MIT agent; the
# aarch64 one the MIT init-oci and smpark.ko (GPL-2.0-only).
LICENSE = "MIT & GPL-2.0-only"
LICENSE:x86-64 = "MIT & GPL-2.0-only & bzip2-1.0.6"
LIC_FILES_CHKSUM = "file://COPYING.MIT;md5=70c9ff6c1b20c88748d7a612a84d5535"

DEPENDS = "supermachine-tools-native"

# The init parameters and template are files/init/ of this repository.
FILESEXTRAPATHS:prepend := "${THISDIR}/../..:"

SRC_URI = "\
    file://COPYING.MIT \
    file://files/init \
"

# S is UNPACKDIR itself, so SOURCE_DATE_EPOCH is OE's fixed fallback: a checkout's file
# mtimes, which OE would use for a subdirectory, differ on every clone.
S = "${UNPACKDIR}"

inherit nopackages supermachine-guest

# The blobs it packs come from the deploy tasks of the same multiconfig.
SUPERMACHINE_INITRAMFS_DEPLOYS = "${@oe.utils.conditional('TARGET_ARCH', 'x86_64', 'busybox:do_deploy supermachine-agent:do_deploy', 'init-oci:do_deploy smpark:do_deploy', d)}"
do_compile[depends] += "${SUPERMACHINE_INITRAMFS_DEPLOYS}"

SUPERMACHINE_BLOBS_IN = "${DEPLOY_DIR_IMAGE}/${SUPERMACHINE_BLOBS_SUBDIR}"

do_compile() {
	# AGENT_INITRAMFS_PATH and the other init parameters: one file, shared with /init.
	. ${S}/files/init/init.conf
	root=${B}/root
	rm -rf $root
	install -d $root
	if [ "${TARGET_ARCH}" = x86_64 ]; then
		install -D -m 0755 ${SUPERMACHINE_BLOBS_IN}/supermachine-agent $root$AGENT_INITRAMFS_PATH
		# The layout of supermachine's KVM initramfs; /init calls every applet as
		# `busybox APPLET`, so no applet links are needed.
		install -d $root/bin $root/modules $root/proc $root/dev $root/sys
		install -D -m 0755 ${SUPERMACHINE_BLOBS_IN}/busybox $root$BUSYBOX_INITRAMFS_PATH
		supermachine-initramfs render-init --conf ${S}/files/init/init.conf \
			--template ${S}/files/init/init.sh.in --out $root/init
		chmod 0755 $root/init
	else
		install -m 0755 ${SUPERMACHINE_BLOBS_IN}/init-oci $root/init
		install -d $root/proc $root/sys $root/dev $root/newroot
		install -m 0644 ${SUPERMACHINE_BLOBS_IN}/smpark.ko $root/supermachine-smpark.ko
	fi
	supermachine-initramfs cpio --root $root --out ${B}/initramfs.cpio.gz \
		--source-date-epoch ${SOURCE_DATE_EPOCH}
}

do_deploy() {
	install -d ${SUPERMACHINE_BLOBS_DIR}
	install -m 0644 ${B}/initramfs.cpio.gz ${SUPERMACHINE_BLOBS_DIR}/initramfs.cpio.gz
}
addtask deploy after do_compile before do_build
