# Shared by the host-build scripts (sourced, bash). Paths, logging, the cache, and the
# reproducibility environment live here once.

set -euo pipefail

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT=${SUPERMACHINE_OUT:-$TOP/out}
WORK=${SUPERMACHINE_WORK:-$TOP/build}
CACHE=${SUPERMACHINE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/supermachine}
LINUX_TARBALL=${SUPERMACHINE_LINUX_TARBALL:-/usr/src/linux-source-6.12.tar.xz}
FRAGMENTS_DIR=$TOP/recipes-kernel/linux/linux-supermachine
FRAGMENTS_LIST=$TOP/recipes-kernel/linux/linux-supermachine-fragments.inc
TSI_LIST=$TOP/recipes-kernel/linux/linux-supermachine-tsi.inc

# Fixed identity for everything that would otherwise record who and where built it.
export KBUILD_BUILD_USER=supermachine KBUILD_BUILD_HOST=supermachine KBUILD_BUILD_VERSION=1
export LC_ALL=C TZ=UTC
umask 022

_t0=$(date +%s)
log() { printf '[%4ss] %s\n' "$(($(date +%s) - _t0))" "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

need() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null ||
            die "'$tool' is not installed; run 'sudo bash .ci/install' (Debian/Ubuntu) first"
    done
}

sha256() { sha256sum "$1" | cut -d' ' -f1; }

# The date stamped into everything that is not the kernel: the environment's
# SOURCE_DATE_EPOCH, else the last commit's date, else a fixed date for a tree
# that is not a git checkout (a release tarball).
repo_source_date_epoch() {
    if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
        echo "$SOURCE_DATE_EPOCH"
    else
        git -C "$TOP" log -1 --format=%ct 2>/dev/null || echo 1767225600
    fi
}

# Rust builds: no host path in the binaries, whatever the checkout's location.
rust_env() {
    local cargo_home=${CARGO_HOME:-$HOME/.cargo}
    export RUSTFLAGS="--remap-path-prefix=$TOP=/supermachine --remap-path-prefix=$cargo_home=/cargo ${SUPERMACHINE_EXTRA_RUSTFLAGS:-}"
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=aarch64-linux-gnu-gcc
    export CARGO_TERM_PROGRESS_WHEN=never
}

# Copies a file into place through a temporary name, so readers never see half a file.
install_atomic() { # MODE SRC DEST
    local tmp
    tmp=$(mktemp "$(dirname "$3")/.tmp.XXXXXX")
    cp "$2" "$tmp" && chmod "$1" "$tmp" && mv -f "$tmp" "$3"
}

# Replaces directory DEST by the fully written directory SRC.
replace_dir() { # SRC DEST
    local old=""
    if [ -e "$2" ]; then old="$2.old.$$"; mv "$2" "$old"; fi
    mv "$1" "$2"
    [ -z "$old" ] || rm -rf "$old"
}

# Runs a long command with its output in LOGFILE; prints a line of progress every
# 30 s and the log's tail if it fails.
run_logged() { # LOGFILE LABEL CMD...
    local logfile=$1 label=$2; shift 2
    "$@" >"$logfile" 2>&1 &
    local pid=$! start elapsed
    start=$(date +%s)
    while kill -0 "$pid" 2>/dev/null; do
        sleep 2
        elapsed=$(($(date +%s) - start))
        if [ $((elapsed % 30)) -lt 2 ] && [ "$elapsed" -ge 30 ]; then
            log "$label: ${elapsed}s, $(grep -c '^  [A-Z]' "$logfile" || true) build steps done"
        fi
    done
    if ! wait "$pid"; then
        tail -40 "$logfile" >&2
        die "$label failed; full log: $logfile"
    fi
}
