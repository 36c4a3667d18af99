SUMMARY = "PID-1 shim of the supermachine aarch64 guest"
DESCRIPTION = "Mounts the container rootfs with a writable overlay, places the agent \
inside, switches root and execs the agent: the job of the x86_64 busybox /init as one \
static musl binary."

require recipes-supermachine/supermachine-workspace.inc

inherit supermachine-guest

# Only the aarch64 guest boots through init-oci; x86_64 uses busybox and a shell /init.
COMPATIBLE_HOST = "aarch64.*-linux"

CARGO_BUILD_FLAGS += "--package init-oci"

do_deploy() {
	install -d ${SUPERMACHINE_BLOBS_DIR}
	${STRIP} -o ${SUPERMACHINE_BLOBS_DIR}/init-oci ${D}${bindir}/init-oci
	chmod 0755 ${SUPERMACHINE_BLOBS_DIR}/init-oci
}
addtask deploy after do_install before do_build
