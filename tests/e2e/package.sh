#!/usr/bin/env bash
# package.sh — the Debian package, installed into the harness's Debian rootfs
# with dpkg, boots with a vendor profile and runs the example addon.
#
# usage: tests/e2e/package.sh TORCX_BINARY ROOTFS      (ROOTFS: bookworm | trixie)
#
# Builds the package with `make deb TORCX_BIN=TORCX_BINARY`, copies the
# harness's cached rootfs to a scratch harness work directory, installs the
# package there with `dpkg --root`, and boots it. The generator the guest runs
# is the one the package installed (/usr/lib/systemd/system-generators), the
# units are the packaged ones, and torcx-apply.service runs the packaged
# /usr/bin/torcx. Exit: the harness's code (0 PASS, 1 FAIL, 2 harness error).
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 TORCX_BINARY bookworm|trixie" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "package.sh: must run as root" >&2; exit 2; }
BIN=$(readlink -f "$1")
ROOTFS=$2
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HARNESS=${HARNESS:-$REPO/../shared/harness/systemd-harness.sh}
CACHE=${HARNESS_WORKDIR:-/var/tmp/torcx-harness}

# The cached rootfs: one default harness run builds it if needed.
if [ ! -e "$CACHE/rootfs-$ROOTFS/.harness-ready" ]; then
    ROOTFS=$ROOTFS "$HARNESS" "$CACHE" >/dev/null 2>&1 || true
fi
[ -e "$CACHE/rootfs-$ROOTFS/.harness-ready" ] || { echo "package.sh: no $ROOTFS rootfs in $CACHE" >&2; exit 2; }

WORK=$(mktemp -d /var/tmp/torcx-pkg.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
# One package build at a time: the tests for both rootfs run in parallel.
mkdir -p "$REPO/target"
# shellcheck disable=SC2016  # expanded by the inner shell
flock "$REPO/target/.deb.lock" sh -c '
    make -s -C "$1" deb TORCX_BIN="$2" DEB_COMPRESS=gzip >/dev/null && cp "$1"/target/debian/torcx_*.deb "$3/"
' package "$REPO" "$BIN" "$WORK"
DEB=$(ls "$WORK"/torcx_*.deb)
cp -a "$CACHE/rootfs-$ROOTFS" "$WORK/rootfs-$ROOTFS"
dpkg --root="$WORK/rootfs-$ROOTFS" --force-script-chrootless -i "$DEB" >/dev/null

mkdir -p "$WORK/store" "$WORK/build"
"$REPO/examples/build-example.sh" "$WORK/build" 1.0 >/dev/null
cp "$WORK/build/hello-addon:1.0.torcx.tgz" "$WORK/store/"
cp "$REPO/profiles/vendor.json" "$WORK/vendor.json"

# shellcheck disable=SC2016
CHECK='
fail() { echo "CHECK: FAIL: $*"; exit 1; }
dpkg -s torcx | grep -q "Status: install ok installed" || fail "the torcx package is not installed"
test "$(readlink /usr/lib/systemd/system-generators/torcx-generator)" = ../../../bin/torcx || fail "generator link"
test -f /usr/share/man/man8/torcx.8.gz && test -f /usr/share/man/man5/torcx-profile.5.gz || fail "man pages"
test -f /usr/share/bash-completion/completions/torcx || fail "bash completion"
systemctl is-active torcx-apply.service || fail "torcx-apply.service is not active"
systemctl is-active hello-addon.service || fail "hello-addon.service is not active"
grep -q "hello from torcx addon (libhello 1.0)" /run/hello-addon.out || fail "no greeting"
test -f /run/metadata/torcx || fail "not sealed"
torcx --version
echo "CHECK: all good"
'
# The harness binds a generator at /etc/systemd/system-generators/torcx-generator,
# which shadows the packaged one of the same name: give it the packaged binary.
export ROOTFS
GENERATOR="$WORK/rootfs-$ROOTFS/usr/bin/torcx" STORE="$WORK/store" \
    BINDS="$WORK/vendor.json:/usr/share/torcx/profiles/vendor.json" BINDS_RW="" \
    CHECK="$CHECK" CHECK_HOST="" "$HARNESS" "$WORK"
