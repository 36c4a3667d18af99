# Recipes of the supermachine guest: built only in the supermachine-x86-64 and
# supermachine-aarch64 multiconfigs, each deploying its blob into the packer's
# arch-directory layout below ${SUPERMACHINE_BLOBS_DIR}.

inherit deploy

# Where supermachine-kernel-assets picks the blobs up (layout of docs/interfaces.md:
# kernel/bzImage|Image, kernel/config, busybox, supermachine-agent, init-oci, smpark.ko).
SUPERMACHINE_BLOBS_DIR = "${DEPLOYDIR}/${SUPERMACHINE_BLOBS_SUBDIR}"

python () {
    # A guest recipe in any other configuration would be a glibc, dynamically linked
    # build nobody asked for: skip it, and say how to get the real one.
    if 'supermachine' not in d.getVar('OVERRIDES').split(':'):
        raise bb.parse.SkipRecipe("built only in the supermachine-x86-64/supermachine-aarch64 "
                                  "multiconfigs: add them to BBMULTICONFIG and build "
                                  "supermachine-kernel-assets")
    # supermachine-kernel-assets, in the default configuration, cannot read this
    # multiconfig's variables: it collects from the paths of conf/layer.conf. Fail here,
    # at parse time, rather than in its do_compile after the whole build.
    mc = d.getVar('BB_CURRENT_MC')
    for var in ('DEPLOY_DIR_IMAGE', 'DEPLOY_DIR_SRC'):
        have, want = d.getVar(var), d.getVar('SUPERMACHINE_GUEST_' + var)
        if have != want:
            bb.fatal('multiconfig %s deploys %s to %s, but supermachine-kernel-assets collects '
                     'from %s: set SUPERMACHINE_%s_%s = "%s" in local.conf'
                     % (mc, var, have, want, mc.split('-', 1)[1].replace('-', '_').upper(), var, have))
    provider = d.getVar('PREFERRED_PROVIDER_virtual/kernel')
    if provider != 'linux-supermachine':
        bb.fatal('multiconfig %s builds the kernel %s, not linux-supermachine: a '
                 'PREFERRED_PROVIDER_virtual/kernel:supermachine setting overrides the '
                 "layer's; remove it" % (mc, provider))
}
