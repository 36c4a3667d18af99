# Static busybox for the supermachine x86_64 guest. Every change here is conditional on
# the `supermachine` override, which only the supermachine multiconfigs set: anywhere
# else busybox builds exactly as before, with unchanged task signatures.

FILESEXTRAPATHS:prepend:supermachine := "${THISDIR}/busybox:"

SRC_URI:append:supermachine = " file://supermachine-static.cfg"

# One binary holding every applet (no suid/nosuid split): the guest runs it as root.
BUSYBOX_SPLIT_SUID:supermachine = "0"

# do_deploy hands the binary to supermachine-kernel-assets. The class and the task exist
# only in the supermachine multiconfigs, so the default task graph is untouched; an
# override cannot guard an inherit or an addtask, hence the empty default and the python.
# nooelint: oelint.vars.noncoreoverride
SUPERMACHINE_BUSYBOX_CLASSES = ""
SUPERMACHINE_BUSYBOX_CLASSES:supermachine = "deploy"
# nooelint: oelint.var.improperinherit, oelint.var.inherit.inherit_defer
inherit ${SUPERMACHINE_BUSYBOX_CLASSES}

# A plain definition, not do_deploy:supermachine(): BitBake marks only the name a
# function is defined under as a shell function, so an override-only definition leaves
# do_deploy a plain variable that the task's run file omits ("do_deploy: not found").
# Outside the multiconfigs no task runs it, and no task signature refers to it.
# nooelint: oelint.vars.noncoreoverride (a function no task runs outside the override)
do_deploy() {
	install -d ${DEPLOYDIR}/${SUPERMACHINE_BLOBS_SUBDIR}
	# The binary the guest runs: stripped, its debug info stays in busybox-dbg.
	${STRIP} -o ${DEPLOYDIR}/${SUPERMACHINE_BLOBS_SUBDIR}/busybox ${B}/busybox
	chmod 0755 ${DEPLOYDIR}/${SUPERMACHINE_BLOBS_SUBDIR}/busybox
}

# nooelint: oelint.vars.noncoreoverride, oelint.task.noanonpython
python () {
    if 'supermachine' in d.getVar('OVERRIDES').split(':'):
        bb.build.addtask('do_deploy', 'do_build', 'do_install', d)
}
