SUMMARY = "PID-1 shim of the supermachine aarch64 guest"
DESCRIPTION = "PID 1 of the aarch64 guest to supermachine's HVF boot contract: stacks \
the layer disks and the delta under a tmpfs overlay, fetches the environment from vsock \
port 1026, starts the agent and the workload from the delta, prints the console markers \
the VMM scans for and loads smpark.ko. One static musl binary."

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
