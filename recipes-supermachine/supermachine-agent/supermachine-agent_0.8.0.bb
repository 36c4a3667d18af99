SUMMARY = "supermachine guest agent"
DESCRIPTION = "PID 1 inside the container of a supermachine microVM: serves exec, \
signal, wait and guest-control RPCs to the host over vsock. Static musl binary."

require recipes-supermachine/supermachine-workspace.inc

inherit supermachine-guest

CARGO_BUILD_FLAGS += "--package supermachine-agent"

do_deploy() {
	install -d ${SUPERMACHINE_BLOBS_DIR}
	${STRIP} -o ${SUPERMACHINE_BLOBS_DIR}/supermachine-agent ${D}${bindir}/supermachine-agent
	chmod 0755 ${SUPERMACHINE_BLOBS_DIR}/supermachine-agent
}
addtask deploy after do_install before do_build
