# Kernel-tree helpers (sourced, bash, after common.sh), shared by scripts/build-kernel
# and scripts/build-reference-kernel: arch names, image paths, unpacking, the kernel's
# reproducible date and the one way to call make on a tree.

# Sets karch, cross, image (path in the tree) and image_name for ARCH.
kernel_arch() { # ARCH
    case $1 in
        x86_64) karch=x86_64; cross=""; image=arch/x86/boot/bzImage; image_name=bzImage ;;
        aarch64) karch=arm64; cross=aarch64-linux-gnu-; image=arch/arm64/boot/Image; image_name=Image ;;
        *) die "ARCH must be x86_64 or aarch64, not '${1}'" ;;
    esac
}

# Checks the tools and the source tarball a kernel build needs.
kernel_need() {
    need make gcc "${cross}gcc" flex bison bc xz sha256sum
    [ -r "$LINUX_TARBALL" ] ||
        die "$LINUX_TARBALL not found; install Debian's linux-source-6.12 (sudo bash .ci/install) or set SUPERMACHINE_LINUX_TARBALL"
}

# Unpacks the kernel tarball afresh into TREE; the source is TREE/linux-source-6.12.
kernel_unpack() { # TREE
    log "unpacking $(basename "$LINUX_TARBALL") into $1"
    rm -rf "$1"
    mkdir -p "$1"
    tar -C "$1" -xf "$LINUX_TARBALL"
    [ -f "$1/linux-source-6.12/Makefile" ] || die "$LINUX_TARBALL did not unpack to linux-source-6.12/"
}

# Exports the build environment of a reproducible kernel build in SRC: the kernel's
# date is its source's release date unless the caller pins SOURCE_DATE_EPOCH; sets kernel_sde.
kernel_build_env() { # SRC
    kernel_sde=${SOURCE_DATE_EPOCH:-$(stat -c %Y "$1/Makefile")}
    export KBUILD_BUILD_TIMESTAMP
    KBUILD_BUILD_TIMESTAMP=$(date -u -d "@$kernel_sde" '+%a %b %e %H:%M:%S UTC %Y')
    export ARCH=$karch CROSS_COMPILE=$cross
}

# make on the kernel tree SRC. RUSTC=false as in kconfig-apply: the guests are C only,
# and a host rustc would otherwise be probed on every make and recorded in the .config.
kmake() { # SRC ARGS...
    local src=$1; shift
    make -C "$src" RUSTC=false "$@"
}

# Prints the path of each fragment ARCH's kernel is configured with, in order: the
# shared ones listed in $FRAGMENTS_LIST (the recipe's list too), then ARCH.cfg.
kernel_fragments() { # ARCH
    local names
    names=$(sed -n '/^SUPERMACHINE_KERNEL_FRAGMENTS = "/,/^"$/p' "$FRAGMENTS_LIST" |
        sed -e 's/^SUPERMACHINE_KERNEL_FRAGMENTS = "//' -e 's/[\\"]//g' | tr -s ' \n' '\n' | sed -n 's|^file://||p')
    [ -n "$names" ] || die "no SUPERMACHINE_KERNEL_FRAGMENTS list in $FRAGMENTS_LIST"
    local f
    for f in $names "$1.cfg"; do
        [ -r "$FRAGMENTS_DIR/$f" ] || die "kernel fragment $f (listed in $FRAGMENTS_LIST) not found in $FRAGMENTS_DIR"
        echo "$FRAGMENTS_DIR/$f"
    done
}

# Prints "NAME SHA256" for each TSI patch, in the order they apply, from $TSI_LIST
# (the recipe fetches the same files by the same sums).
kernel_tsi_patches() {
    local sums
    sums=$(sed -n 's/^SRC_URI\[\(tsi[0-9]*\)\.sha256sum\] = "\([0-9a-f]\{64\}\)"$/\1 \2/p' "$TSI_LIST")
    sed -n 's/^ *${SUPERMACHINE_TSI_BASE}\/\([^;]*\.patch\);name=\(tsi[0-9]*\) \\$/\2 \1/p' "$TSI_LIST" |
    while read -r id name; do
        local sum
        sum=$(printf '%s\n' "$sums" | sed -n "s/^$id //p")
        [ -n "$sum" ] || die "$TSI_LIST: no SRC_URI[$id.sha256sum] for $name"
        echo "$name $sum"
    done
}

# The TSI patches' source, as the MANIFEST records it: REPO@COMMIT.
kernel_tsi_source() {
    echo "$(sed -n 's/^SUPERMACHINE_TSI_REPO = "\(.*\)"$/\1/p' "$TSI_LIST")@$(sed -n 's/^SUPERMACHINE_TSI_SRCREV = "\(.*\)"$/\1/p' "$TSI_LIST")"
}

# Checks that DIR holds every TSI patch with its pinned sha256; dies naming the first
# that is missing or differs.
kernel_tsi_check() { # DIR
    local name sum got n=0
    while read -r name sum; do
        [ -r "$1/$name" ] ||
            die "TSI patch $name not found in $1; give the patches/ directory of a checkout of $(kernel_tsi_source) (https://github.com/, that commit)"
        got=$(sha256 "$1/$name")
        [ "$got" = "$sum" ] ||
            die "TSI patch $1/$name has sha256 $got, not the pinned $sum of $(kernel_tsi_source); check out that commit"
        n=$((n + 1))
    done < <(kernel_tsi_patches)
    [ "$n" -gt 0 ] || die "no TSI patches listed in $TSI_LIST"
}
