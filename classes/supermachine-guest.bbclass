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
}
