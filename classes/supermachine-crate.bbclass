# Blobs to crates. Collects the guest blobs of both arches from their multiconfigs'
# deploy dirs into the packer's arch-directory layout and runs supermachine-packer, the
# same tool the host build runs, which writes the three kernel crates.
#
# A recipe inheriting this sets, for ARCH in X86_64 and AARCH64:
#   SUPERMACHINE_CRATE_MULTICONFIG_<ARCH>       the multiconfig that builds the arch
#   SUPERMACHINE_CRATE_BLOBS_<ARCH>    the blob directory in that multiconfig's deploy dir
#   SUPERMACHINE_CRATE_FILES_<ARCH>    the files below it to collect (packer layout)
#   SUPERMACHINE_CRATE_TASKS_<ARCH>  recipe:task pairs of that multiconfig producing them
#   SUPERMACHINE_CRATE_SOURCES_<ARCH>  that multiconfig's archiver output (DEPLOY_DIR_SRC)
#   SUPERMACHINE_CRATE_SOURCE_PNS_<ARCH>  its recipes whose source goes into the bundle
#                                      (their do_deploy_archives join the mcdepends)
# and SUPERMACHINE_CRATE_TEMPLATES, the directory of the crate templates, and
# SUPERMACHINE_CRATE_CARGO_LOCK, the Cargo.lock the Rust blobs were built with (the crate
# graph in each crate's SBOM).
# The result is deployed to DEPLOY_DIR_IMAGE/${SUPERMACHINE_CRATE_DEPLOY_SUBDIR}:
# crates/ (the .crate files, unpacked trees, SHA256SUMS, manifest.json, LICENSES, NOTICE),
# blobs/ (the collected inputs and their SHA256SUMS) and sources/ (the source bundle).

inherit deploy nopackages

# Only the native packer runs here: no target compiler or C library.
INHIBIT_DEFAULT_DEPS = "1"
DEPENDS += "supermachine-tools-native"
# It deploys into the machine's DEPLOY_DIR_IMAGE, so its sstate is per machine.
PACKAGE_ARCH = "${MACHINE_ARCH}"

SUPERMACHINE_CRATE_DEPLOY_SUBDIR ?= "${PN}"
# Version of the crates; empty means the packer's default, the supermachine-kernel release
# the assets stand in for (what scripts/build's --crate-version sets on the host).
SUPERMACHINE_CRATE_VERSION ?= ""
# Licence texts of what the crates bundle, from oe-core's common licences: the union of
# the bundled recipes' LICENSE (busybox is "GPL-2.0-only & bzip2-1.0.6");
# tests/layer/bitbake-checks compares the two.
SUPERMACHINE_CRATE_LICENSES ?= "GPL-2.0-only MIT bzip2-1.0.6"
SUPERMACHINE_CRATE_SOURCE_NOTE ?= "The corresponding source of every bundled binary \
(original sources and patches, as OpenEmbedded's archiver keeps them) is deployed next \
to these crates by meta-supermachine: DEPLOY_DIR_IMAGE/${SUPERMACHINE_CRATE_DEPLOY_SUBDIR}/sources/."

B = "${WORKDIR}/build"

def supermachine_crate_arches(d):
    """{arch: (multiconfig, its tasks, blob dir, sources dir, source recipes)}."""
    return {
        'x86_64': (d.getVar('SUPERMACHINE_CRATE_MULTICONFIG_X86_64'),
                   d.getVar('SUPERMACHINE_CRATE_TASKS_X86_64').split(),
                   d.getVar('SUPERMACHINE_CRATE_BLOBS_X86_64'),
                   d.getVar('SUPERMACHINE_CRATE_SOURCES_X86_64'),
                   d.getVar('SUPERMACHINE_CRATE_SOURCE_PNS_X86_64').split()),
        'aarch64': (d.getVar('SUPERMACHINE_CRATE_MULTICONFIG_AARCH64'),
                    d.getVar('SUPERMACHINE_CRATE_TASKS_AARCH64').split(),
                    d.getVar('SUPERMACHINE_CRATE_BLOBS_AARCH64'),
                    d.getVar('SUPERMACHINE_CRATE_SOURCES_AARCH64'),
                    d.getVar('SUPERMACHINE_CRATE_SOURCE_PNS_AARCH64').split()),
    }

python () {
    arches = supermachine_crate_arches(d)
    mcs = [mc for mc, _, _, _, _ in arches.values()]
    enabled = (d.getVar('BBMULTICONFIG') or '').split()
    missing = [mc for mc in mcs if mc not in enabled]
    if missing:
        # Without the multiconfigs there is nothing to collect; an unguarded mcdepends
        # would fail the whole parse instead of this one recipe.
        raise bb.parse.SkipRecipe('needs the multiconfigs %s: add BBMULTICONFIG += "%s" '
                                  'to local.conf' % (', '.join(missing), ' '.join(mcs)))
    deps = ['mc::%s:%s' % (mc, task) for mc, tasks, _, _, _ in arches.values() for task in tasks]
    deps += ['mc::%s:%s:do_deploy_archives' % (mc, pn) for mc, _, _, _, pns in arches.values()
             for pn in pns]
    # The mcdepends carry those tasks' signatures into ours, and so the inputs'. No
    # file-checksums over the deploy dirs: BitBake would hash them when it builds the run
    # queue, before those tasks run, i.e. the previous build's leftovers.
    d.appendVarFlag('do_compile', 'mcdepends', ' ' + ' '.join(deps))
}

do_compile[cleandirs] = "${B}"

# supermachine_crate_collect ARCH BLOBS_DIR SOURCES_DIR "SOURCE_PNS" FILES...
supermachine_crate_collect() {
	arch=$1; blobs=$2; sources=$3; pns=$4; shift 4
	for f in "$@"; do
		[ -f "$blobs/$f" ] || bbfatal "$blobs/$f is missing: the $arch multiconfig did not deploy it"
		# Executable as deployed (the agent, busybox, init-oci), else plain.
		mode=0644
		[ ! -x "$blobs/$f" ] || mode=0755
		install -D -m $mode "$blobs/$f" "${B}/blobs/$arch/$f"
	done
	for pn in $pns; do
		found=
		for dir in "$sources"/*/"$pn"-[0-9]*; do
			[ -d "$dir" ] || continue
			install -d "${B}/sources/$arch"
			cp -R --no-dereference "$dir" "${B}/sources/$arch/"
			found=1
		done
		[ -n "$found" ] || bbfatal "no source of $pn under $sources: is the archiver inherited in the $arch multiconfig?"
	done
}

do_compile() {
	supermachine_crate_collect x86_64 ${SUPERMACHINE_CRATE_BLOBS_X86_64} \
		${SUPERMACHINE_CRATE_SOURCES_X86_64} "${SUPERMACHINE_CRATE_SOURCE_PNS_X86_64}" \
		${SUPERMACHINE_CRATE_FILES_X86_64}
	supermachine_crate_collect aarch64 ${SUPERMACHINE_CRATE_BLOBS_AARCH64} \
		${SUPERMACHINE_CRATE_SOURCES_AARCH64} "${SUPERMACHINE_CRATE_SOURCE_PNS_AARCH64}" \
		${SUPERMACHINE_CRATE_FILES_AARCH64}

	install -d ${B}/licenses
	for id in ${SUPERMACHINE_CRATE_LICENSES}; do
		install -m 0644 ${COMMON_LICENSE_DIR}/$id ${B}/licenses/$id
	done

	version=
	[ -z "${SUPERMACHINE_CRATE_VERSION}" ] || version="--version ${SUPERMACHINE_CRATE_VERSION}"
	supermachine-packer pack --templates ${SUPERMACHINE_CRATE_TEMPLATES} --out ${B}/crates \
		--cargo-lock ${SUPERMACHINE_CRATE_CARGO_LOCK} \
		--x86-64 ${B}/blobs/x86_64 --aarch64 ${B}/blobs/aarch64 \
		--license-dir ${B}/licenses --source-date-epoch ${SOURCE_DATE_EPOCH} \
		$version \
		--source-note "${SUPERMACHINE_CRATE_SOURCE_NOTE}"

	(cd ${B}/blobs && find . -type f ! -name SHA256SUMS | LC_ALL=C sort | xargs sha256sum > SHA256SUMS)
}

do_deploy() {
	install -d ${DEPLOYDIR}/${SUPERMACHINE_CRATE_DEPLOY_SUBDIR}
	cp -R --no-dereference ${B}/crates ${B}/blobs ${B}/sources ${DEPLOYDIR}/${SUPERMACHINE_CRATE_DEPLOY_SUBDIR}/
}
addtask deploy after do_compile before do_build
