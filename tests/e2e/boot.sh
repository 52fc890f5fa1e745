#!/usr/bin/env bash
# boot.sh — end-to-end boot test: a real systemd (in a container, via the shared harness)
# boots with torcx as its generator, applies a vendor profile holding the example image
# hello-addon:1.0 early in boot, and starts the addon's service.
#
# usage: tests/e2e/boot.sh TORCX_BINARY ROOTFS          (ROOTFS: bookworm | trixie)
#
# Needs root (the harness boots systemd-nspawn). Exit code: the harness's (0 PASS, 1 FAIL,
# 2 harness error); 2 for a usage or setup error here. A boot that passed the in-guest
# checks still fails (1) when the console shows an ordering cycle: cycles found in the
# first boot transaction are logged before journald runs, so they never reach the journal.
#
# env (all optional):
#   HARNESS          harness script   (default REPO/../shared/harness/systemd-harness.sh)
#   HARNESS_WORKDIR  its WORKDIR      (default /var/tmp/torcx-harness; rootfs caches live there)
#   ARCHIVE_FORMAT   tgz | zst | squashfs | erofs   which archive of the example goes into the store
#                    (default tgz; squashfs and erofs are made from the tgz's tree)
#   UNITS_DIR        where torcx-apply.service and torcx.target come from (default REPO/units)
#   MODE, BOOT_TIMEOUT, KEEP          passed on to the harness
set -euo pipefail

usage() { echo "usage: $0 TORCX_BINARY ROOTFS   (ROOTFS: bookworm | trixie)" >&2; exit 2; }
die() { echo "boot.sh: $*" >&2; exit 2; }
[ $# -eq 2 ] || usage
[ "$(id -u)" = 0 ] || die "must run as root (the harness boots a container)"

TORCX_BINARY=$1
ROOTFS=$2
case "$ROOTFS" in
    bookworm | trixie) ;;
    # with ROOTFS=host the guest's /usr is the host's, read-only: /usr/bin/torcx and the
    # vendor profile cannot be bound there
    *) die "ROOTFS must be bookworm or trixie, not '$ROOTFS'" ;;
esac
if [ ! -f "$TORCX_BINARY" ] || [ ! -x "$TORCX_BINARY" ]; then die "$TORCX_BINARY: not an executable file"; fi
TORCX_BINARY=$(readlink -f "$TORCX_BINARY")

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HARNESS=${HARNESS:-$REPO/../shared/harness/systemd-harness.sh}
WORKDIR=${HARNESS_WORKDIR:-/var/tmp/torcx-harness}
UNITS_DIR=${UNITS_DIR:-$REPO/units}
ARCHIVE_FORMAT=${ARCHIVE_FORMAT:-tgz}
[ -x "$HARNESS" ] || die "harness $HARNESS not found (set HARNESS=)"
for u in torcx-apply.service torcx.target; do
    [ -f "$UNITS_DIR/$u" ] || die "$UNITS_DIR/$u not found"
done
UNITS_DIR=$(cd "$UNITS_DIR" && pwd)
case "$ARCHIVE_FORMAT" in
    tgz) ARCHIVE_EXT=torcx.tgz ;;
    zst) ARCHIVE_EXT=torcx.tar.zst ;;
    squashfs) ARCHIVE_EXT=torcx.squashfs ;;
    erofs) ARCHIVE_EXT=torcx.erofs ;;
    *) die "ARCHIVE_FORMAT must be tgz, zst, squashfs or erofs" ;;
esac

TMP=$(mktemp -d "${TMPDIR:-/tmp}/torcx-e2e.XXXXXX")
HPID=""
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
    if [ "${KEEP:-0}" = 1 ]; then
        echo "boot.sh: KEEP=1, leaving $TMP (bound into the guest)" >&2
    else
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT
# The harness runs in the background, so that we can wait for it and still react to
# signals; without job control it would ignore SIGINT, so pass signals on as SIGTERM
# (it then tears the guest down and exits 2). Before it runs, a signal just ends us.
INTERRUPTED=0
# shellcheck disable=SC2317  # called by the INT/TERM traps
on_signal() {
    INTERRUPTED=1
    if [ -z "$HPID" ]; then exit 2; fi
    kill -TERM "$HPID" 2>/dev/null || true
}
trap on_signal INT TERM

# The harness splits BINDS at spaces and at the first ':' of each pair.
for p in "$TMP" "$TORCX_BINARY" "$UNITS_DIR"; do
    case "$p" in *[[:space:]:]*) die "path '$p' contains a space or ':', which BINDS cannot carry" ;; esac
done

# ---- store: the example image hello-addon:1.0, one archive only
mkdir -p "$TMP/build" "$TMP/store" "$TMP/profiles" "$TMP/gen"
"$REPO/examples/build-example.sh" "$TMP/build" 1.0 >/dev/null
case "$ARCHIVE_FORMAT" in
    squashfs | erofs)
        mkdir -p "$TMP/tree"
        tar -xzf "$TMP/build/hello-addon:1.0.torcx.tgz" -C "$TMP/tree"
        if [ "$ARCHIVE_FORMAT" = squashfs ]; then
            mksquashfs "$TMP/tree" "$TMP/store/hello-addon:1.0.$ARCHIVE_EXT" -all-root -noappend -quiet -no-progress
        else
            mkfs.erofs --all-root -T0 --quiet "$TMP/store/hello-addon:1.0.$ARCHIVE_EXT" "$TMP/tree"
        fi
        ;;
    *) cp "$TMP/build/hello-addon:1.0.$ARCHIVE_EXT" "$TMP/store/" ;;
esac

# ---- vendor profile
printf '%s\n' '{"kind":"profile-manifest-v1","value":{"images":[{"name":"hello-addon","reference":"1.0"}]}}' \
    >"$TMP/profiles/vendor.json"

# ---- generator: the same binary under the name torcx-generator. (The harness resolves
# the symlink and binds the binary to /etc/systemd/system-generators/torcx-generator, so
# inside the guest it runs under that name either way.)
ln -s "$TORCX_BINARY" "$TMP/gen/torcx-generator"

BINDS="$TORCX_BINARY:/usr/bin/torcx"
BINDS+=" $UNITS_DIR/torcx-apply.service:/etc/systemd/system/torcx-apply.service"
BINDS+=" $UNITS_DIR/torcx.target:/etc/systemd/system/torcx.target"
BINDS+=" $TMP/profiles/vendor.json:/usr/share/torcx/profiles/vendor.json"
if [ "$ARCHIVE_FORMAT" = squashfs ]; then
    # squashfs needs a loop device. nspawn's device policy hides them, so boot
    # with the harness's unshare mode, whose /dev allows device nodes: torcx
    # makes /dev/loop-control and the /dev/loopN it is handed when missing.
    export MODE=${MODE:-unshare}
fi

# runs inside the guest with /bin/sh; expanded there, not here
# shellcheck disable=SC2016
CHECK='
fail() { echo "CHECK: $*"; exit 1; }
systemctl is-active torcx-apply.service || fail "torcx-apply.service is not active"
systemctl is-active torcx.target || fail "torcx.target is not active"
systemctl is-active hello-addon.service || fail "hello-addon.service is not active"
grep -q "hello from torcx addon (libhello 1.0)" /run/hello-addon.out ||
    fail "/run/hello-addon.out lacks the greeting: $(cat /run/hello-addon.out 2>&1)"
test -f /run/metadata/torcx || fail "/run/metadata/torcx (the seal) is missing"
if journalctl -b --no-pager | grep -i "ordering cycle"; then fail "ordering cycle in the journal"; fi
echo "CHECK: all good"
'

echo "boot.sh: ROOTFS=$ROOTFS torcx=$TORCX_BINARY store=$TMP/store ($ARCHIVE_FORMAT)" >&2
# shellcheck source=tests/e2e/lib.sh
. "$REPO/tests/e2e/lib.sh"
run_harness boot.sh 'torcx|hello-addon|generator|cycle'
