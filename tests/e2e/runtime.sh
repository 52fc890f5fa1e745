#!/usr/bin/env bash
# runtime.sh — end-to-end runtime test: a real systemd (in a container, via the shared
# harness) boots with torcx as its generator and an EMPTY vendor profile, so the boot seals
# with nothing attached; then, on the running system, the check drives
#   attach --now, a refused second attach, a refused detach of an active unit,
#   reattach --now to another reference, detach --now,
#   attach --portable of an image built here (a static binary run with RootDirectory=),
#   and a refused --portable attach of an image that lacks the portable requirements.
#
# usage: tests/e2e/runtime.sh TORCX_BINARY ROOTFS          (ROOTFS: bookworm | trixie)
#
# Needs root (the harness boots systemd-nspawn). Exit code: the harness's (0 PASS, 1 FAIL,
# 2 harness error); 2 for a usage or setup error here. A run whose checks passed still fails
# (1) when the console shows an ordering cycle (cycles of the first boot transaction are
# logged before journald runs, so they never reach the journal).
#
# env (all optional):
#   HARNESS           harness script   (default REPO/../shared/harness/systemd-harness.sh)
#   HARNESS_WORKDIR   its WORKDIR      (default /var/tmp/torcx-harness; rootfs caches live there)
#   ARCHIVE_FORMAT    tgz | zst        which archives of the example go into the store (default tgz)
#   UNITS_DIR         where torcx-apply.service and torcx.target come from (default REPO/units)
#   PORTABLE_SANDBOX  the --portable= profile of step 6 (default strict); the test is written
#                     for strict, the others exist to diagnose a failure
#   MODE, BOOT_TIMEOUT, KEEP          passed on to the harness
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init runtime.sh "$@"
PORTABLE_SANDBOX=${PORTABLE_SANDBOX:-strict}
case "$ARCHIVE_FORMAT" in
    tgz) ARCHIVE_EXT=torcx.tgz ;;
    zst) ARCHIVE_EXT=torcx.tar.zst ;;
    *) die "ARCHIVE_FORMAT must be tgz or zst" ;;
esac
case "$PORTABLE_SANDBOX" in
    default | nonetwork | strict | trusted) ;;
    *) die "PORTABLE_SANDBOX must be default, nonetwork, strict or trusted" ;;
esac
for tool in gcc tar gzip; do
    command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found"
done

e2e_workspace

# ---- store: the example image at two references
for ref in 1.0 2.0; do
    "$REPO/examples/build-example.sh" "$TMP/build" "$ref" >/dev/null
    cp "$TMP/build/hello-addon:$ref.$ARCHIVE_EXT" "$TMP/store/"
done

# ---- store: portable-demo:1.0, a portable image (seed 004's minimal requirements) whose
# only content is a static binary that sleeps until killed
P=$TMP/portable
mkdir -p "$P/src" "$P/tree/.torcx" "$P/tree/bin" "$P/tree/lib/systemd/system" "$P/tree/etc"
cat >"$P/src/portable-demo.c" <<'EOF'
#include <unistd.h>

int main(void)
{
    for (;;)
        pause();
}
EOF
gcc -static -O2 -Wall -Wextra -Werror -o "$P/tree/bin/portable-demo" "$P/src/portable-demo.c" ||
    die "cannot link a static binary (install libc6-dev)"
printf '%s\n' '{"kind":"image-manifest-v0","value":{"units":["/lib/systemd/system/portable-demo.service"]}}' \
    >"$P/tree/.torcx/manifest.json"
cat >"$P/tree/lib/systemd/system/portable-demo.service" <<'EOF'
[Unit]
Description=torcx e2e portable service (portable-demo)

[Service]
Type=simple
ExecStart=/bin/portable-demo
EOF
echo ID=portable-demo >"$P/tree/etc/os-release"
: >"$P/tree/etc/resolv.conf"
: >"$P/tree/etc/machine-id"
mkdir -p "$P/tree/proc" "$P/tree/sys" "$P/tree/dev" "$P/tree/run" "$P/tree/tmp" "$P/tree/var/tmp"
find "$P/tree" -type d -exec chmod 0755 {} +
find "$P/tree" -type f -exec chmod 0644 {} +
chmod 0755 "$P/tree/bin/portable-demo"
tar -C "$P/tree" --sort=name --owner=0 --group=0 --numeric-owner -czf "$TMP/store/portable-demo:1.0.torcx.tgz" .

# ---- vendor profile: no images, so the boot seals with nothing attached
printf '%s\n' '{"kind":"profile-manifest-v1","value":{"images":[]}}' >"$TMP/profiles/vendor.json"


# Runs inside the guest with /bin/sh (dash); expanded there, not here. Stops at the first
# wrong step. torcx prints JSON when stdout is not a terminal, as here, so outputs are
# matched as JSON.
# shellcheck disable=SC2016
CHECK='
SANDBOX='"$PORTABLE_SANDBOX"'
STORE=/var/lib/torcx/store
fail() { echo "CHECK: FAIL: $*"; exit 1; }
# run CMD...: runs CMD with a time limit; sets RC, OUT (stdout) and ERR (stderr)
run() {
    echo "CHECK: \$ $*"
    RC=0
    timeout 120 "$@" >/tmp/check.stdout 2>/tmp/check.stderr || RC=$?
    OUT=$(cat /tmp/check.stdout); ERR=$(cat /tmp/check.stderr)
}
show() {
    echo "  exit code: $RC"
    printf "%s\n" "$OUT" | sed "s/^/  stdout: /"
    printf "%s\n" "$ERR" | sed "s/^/  stderr: /"
}
must_succeed() { [ "$RC" = 0 ] || { show; fail "$1: exited $RC, expected 0"; }; }
must_fail() {
    [ "$RC" != 0 ] || { show; fail "$1: exited 0, expected a refusal"; }
    printf "%s\n" "$ERR" | sed "s/^/CHECK: refused as expected (exit $RC): /"
}
err_has() { printf "%s\n" "$ERR" | grep -qiE -- "$2" || { show; fail "$1: stderr does not match /$2/"; }; }
unit_active() { # UNIT STEP
    st=$(systemctl is-active "$1") || fail "$2: $1 is ${st:-unknown}, not active"
}
out_has() { # FILE TEXT STEP
    grep -qF -- "$2" "$1" 2>/dev/null || fail "$3: $1 lacks \"$2\": $(cat "$1" 2>&1)"
}
is_attached() { # NAME STATE STEP: exit 0 and this state
    run torcx --json is-attached "$1"
    [ "$RC" = 0 ] || { show; fail "$3: torcx is-attached $1 exited $RC, expected 0 ($2)"; }
    printf "%s\n" "$OUT" | grep -qE "\"state\": *\"$2\"" || { show; fail "$3: torcx is-attached $1 does not say $2"; }
}
not_attached() { # NAME STEP: exit 1, not-attached, and nothing of it left on the system
    run torcx --json is-attached "$1"
    [ "$RC" = 1 ] || { show; fail "$2: torcx is-attached $1 exited $RC, expected 1"; }
    printf "%s\n" "$OUT" | grep -qE "\"state\": *\"not-attached\"" || { show; fail "$2: torcx is-attached $1 does not say not-attached"; }
    if awk -v m="/run/torcx/unpack/$1" "\$5 == m { found = 1 } END { exit !found }" /proc/self/mountinfo; then
        grep -F " /run/torcx/unpack/$1 " /proc/self/mountinfo
        fail "$2: /run/torcx/unpack/$1 is still mounted"
    fi
    if [ -e "/run/torcx/attached/$1.json" ]; then fail "$2: /run/torcx/attached/$1.json is still there"; fi
}
unit_gone() { # UNIT STEP
    ls=$(systemctl show -p LoadState --value "$1")
    [ "$ls" = not-found ] || fail "$2: LoadState of $1 is \"$ls\", expected not-found"
    for f in "/run/systemd/system/$1" "/run/systemd/system/$1.d/10-torcx.conf"; do
        if [ -e "$f" ] || [ -L "$f" ]; then fail "$2: $f is still there"; fi
    done
}
portable_diag() {
    echo "--- drop-in /run/systemd/system/portable-demo.service.d/10-torcx.conf:"
    cat /run/systemd/system/portable-demo.service.d/10-torcx.conf 2>&1
    echo "--- systemctl status portable-demo.service:"
    systemctl status --no-pager --full portable-demo.service 2>&1
    echo "--- journalctl -u portable-demo.service:"
    journalctl -b --no-pager -o short-monotonic -u portable-demo.service 2>&1
}

echo "CHECK: step 0: the boot sealed with nothing attached"
unit_active torcx-apply.service "step 0"
# nothing is attached, so nothing has pulled in torcx.target yet; the first attached unit
# does (its drop-in requires it), and the seal lets it start
echo "CHECK: torcx.target is $(systemctl is-active torcx.target)"
test -f /run/metadata/torcx || fail "step 0: /run/metadata/torcx (the seal) is missing"
not_attached hello-addon "step 0"
not_attached portable-demo "step 0"

S="step 1 (attach hello-addon:1.0 --now)"
echo "CHECK: $S"
run torcx attach hello-addon:1.0 --now
must_succeed "$S"
unit_active hello-addon.service "$S"
unit_active torcx.target "$S"
out_has /run/hello-addon.out "hello from torcx addon (libhello 1.0)" "$S"
test -x /run/torcx/bin/hello-addon || fail "$S: /run/torcx/bin/hello-addon is missing"
is_attached hello-addon running "$S"

S="step 2 (attach hello-addon:1.0 again)"
echo "CHECK: $S"
run torcx attach hello-addon:1.0
must_fail "$S"
err_has "$S" "reattach"
unit_active hello-addon.service "$S, afterwards"
is_attached hello-addon running "$S, afterwards"

S="step 3 (detach hello-addon while its unit is active)"
echo "CHECK: $S"
run torcx detach hello-addon
must_fail "$S"
err_has "$S" "hello-addon\.service is active"
unit_active hello-addon.service "$S, afterwards"
is_attached hello-addon running "$S, afterwards"

S="step 4 (reattach hello-addon:2.0 --now)"
echo "CHECK: $S"
rm -f /run/hello-addon.out
run torcx reattach hello-addon:2.0 --now
must_succeed "$S"
unit_active hello-addon.service "$S"
out_has /run/hello-addon.out "hello from torcx addon (libhello 2.0)" "$S"
run torcx status --json
must_succeed "$S: torcx status --json"
printf "%s\n" "$OUT" | grep -qE "\"reference\": *\"2\\.0\"" || { show; fail "$S: torcx status --json does not show reference 2.0"; }
if printf "%s\n" "$OUT" | grep -qE "\"reference\": *\"1\\.0\""; then show; fail "$S: torcx status --json still shows reference 1.0"; fi
# The unit states come from one systemctl call for all units.
printf "%s\n" "$OUT" | grep -qE "\"active_state\": *\"active\"" || { show; fail "$S: torcx status --json does not show hello-addon.service active"; }
is_attached hello-addon running "$S"

S="step 5 (detach hello-addon --now)"
echo "CHECK: $S"
run torcx detach hello-addon --now
must_succeed "$S"
unit_gone hello-addon.service "$S"
if [ -e /run/torcx/bin/hello-addon ] || [ -L /run/torcx/bin/hello-addon ]; then fail "$S: /run/torcx/bin/hello-addon is still there"; fi
not_attached hello-addon "$S"

S="step 6 (attach portable-demo --portable=$SANDBOX)"
echo "CHECK: $S"
run torcx attach "$STORE/portable-demo:1.0.torcx.tgz" "--portable=$SANDBOX"
must_succeed "$S"
grep -qx "RootDirectory=/run/torcx/unpack/portable-demo" /run/systemd/system/portable-demo.service.d/10-torcx.conf ||
    { portable_diag; fail "$S: the drop-in has no RootDirectory=/run/torcx/unpack/portable-demo"; }
run systemctl start portable-demo.service
[ "$RC" = 0 ] || { show; portable_diag; fail "$S: systemctl start portable-demo.service exited $RC"; }
# Type=simple: start returns before the exec, so watch it stay up for a while
i=0
while [ $i -lt 10 ]; do
    st=$(systemctl is-active portable-demo.service) || { portable_diag; fail "$S: portable-demo.service is ${st:-unknown}, not active"; }
    sleep 0.2; i=$((i + 1))
done
PID=$(systemctl show -p MainPID --value portable-demo.service)
case "$PID" in "" | 0) portable_diag; fail "$S: portable-demo.service has no main process" ;; esac
# Its root must be the image tree: the very same directory (device and inode) as
# /run/torcx/unpack/portable-demo, a tmpfs of its own. readlink(/proc/PID/root) is only
# printed: systemd moves the tree to / of the service'"'"'s own mount namespace, so it reads
# "/" here (MODE=unshare: the guest'"'"'s root as the host sees it).
ROOT=$(readlink "/proc/$PID/root") || fail "$S: cannot read /proc/$PID/root"
ROOT_ID=$(stat -L -c %d:%i "/proc/$PID/root/") || fail "$S: cannot stat /proc/$PID/root/"
TREE_ID=$(stat -c %d:%i /run/torcx/unpack/portable-demo/) || fail "$S: cannot stat /run/torcx/unpack/portable-demo/"
echo "CHECK: portable-demo main PID $PID: root $ROOT ($ROOT_ID), tree /run/torcx/unpack/portable-demo ($TREE_ID), exe $(readlink "/proc/$PID/exe")"
if [ "$ROOT_ID" != "$TREE_ID" ]; then
    portable_diag
    echo "--- /proc/$PID/mountinfo:"; cat "/proc/$PID/mountinfo"
    fail "$S: the root of portable-demo (PID $PID) is $ROOT ($ROOT_ID), not /run/torcx/unpack/portable-demo ($TREE_ID)"
fi
# for the record: which namespaces the sandbox got here (PrivateNetwork= may be refused in
# a container, and systemd then proceeds without it)
for ns in mnt net user; do
    if [ "$(readlink "/proc/$PID/ns/$ns")" = "$(readlink "/proc/1/ns/$ns")" ]; then n=shared; else n=private; fi
    echo "CHECK: portable-demo $ns namespace: $n"
done
grep -qx ID=portable-demo "/proc/$PID/root/etc/os-release" ||
    fail "$S: /etc/os-release as portable-demo sees it is not the image'"'"'s: $(cat "/proc/$PID/root/etc/os-release" 2>&1)"
S="step 6 (detach portable-demo --now)"
run torcx detach portable-demo --now
must_succeed "$S"
unit_gone portable-demo.service "$S"
not_attached portable-demo "$S"

S="step 7 (attach hello-addon:1.0 --portable, not a portable image)"
echo "CHECK: $S"
run torcx attach hello-addon:1.0 --portable
must_fail "$S"
for want in "os-release" "/etc/resolv\.conf" "/etc/machine-id" "/proc" "/var/tmp"; do
    err_has "$S" "missing.*$want"
done
unit_gone hello-addon.service "$S, afterwards"
not_attached hello-addon "$S, afterwards"

if journalctl -b --no-pager | grep -i "ordering cycle"; then fail "ordering cycle in the journal"; fi
echo "CHECK: all good"
'

echo "runtime.sh: ROOTFS=$ROOTFS torcx=$TORCX_BINARY store=$TMP/store ($ARCHIVE_FORMAT) portable=$PORTABLE_SANDBOX" >&2
run_harness runtime.sh 'torcx|hello-addon|portable-demo|generator|cycle'
