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
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init boot.sh "$@"
case "$ARCHIVE_FORMAT" in
    tgz) ARCHIVE_EXT=torcx.tgz ;;
    zst) ARCHIVE_EXT=torcx.tar.zst ;;
    squashfs) ARCHIVE_EXT=torcx.squashfs ;;
    erofs) ARCHIVE_EXT=torcx.erofs ;;
    *) die "ARCHIVE_FORMAT must be tgz, zst, squashfs or erofs" ;;
esac

e2e_workspace

# ---- store: the example image hello-addon:1.0, one archive only
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
run_harness boot.sh 'torcx|hello-addon|generator|cycle'
