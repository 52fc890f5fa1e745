# shellcheck shell=bash
# Shared by the end-to-end scripts (boot.sh, runtime.sh): arguments and
# settings, a scratch directory bound into the guest, signal forwarding, and
# the harness run with its failure report.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LABEL=e2e
die() { echo "$LABEL: $*" >&2; exit 2; }

# e2e_init LABEL "$@": takes TORCX_BINARY ROOTFS and the environment
# (HARNESS, HARNESS_WORKDIR, UNITS_DIR, ARCHIVE_FORMAT); sets TORCX_BINARY,
# ROOTFS, HARNESS, WORKDIR, UNITS_DIR, ARCHIVE_FORMAT.
e2e_init() {
    LABEL=$1
    shift
    [ $# -eq 2 ] || { echo "usage: $0 TORCX_BINARY ROOTFS   (ROOTFS: bookworm | trixie)" >&2; exit 2; }
    [ "$(id -u)" = 0 ] || die "must run as root (the harness boots a container)"
    TORCX_BINARY=$1
    ROOTFS=$2
    case "$ROOTFS" in
        bookworm | trixie) ;;
        # with ROOTFS=host the guest's /usr is the host's, read-only: /usr/bin/torcx and
        # the vendor profile cannot be bound there
        *) die "ROOTFS must be bookworm or trixie, not '$ROOTFS'" ;;
    esac
    if [ ! -f "$TORCX_BINARY" ] || [ ! -x "$TORCX_BINARY" ]; then die "$TORCX_BINARY: not an executable file"; fi
    TORCX_BINARY=$(readlink -f "$TORCX_BINARY")
    HARNESS=${HARNESS:-$REPO/../shared/harness/systemd-harness.sh}
    WORKDIR=${HARNESS_WORKDIR:-/var/tmp/torcx-harness}
    UNITS_DIR=${UNITS_DIR:-$REPO/units}
    ARCHIVE_FORMAT=${ARCHIVE_FORMAT:-tgz}
    [ -x "$HARNESS" ] || die "harness $HARNESS not found (set HARNESS=)"
    local u
    for u in torcx-apply.service torcx.target; do
        [ -f "$UNITS_DIR/$u" ] || die "$UNITS_DIR/$u not found"
    done
    UNITS_DIR=$(cd "$UNITS_DIR" && pwd)
}

# shellcheck disable=SC2317  # called by the EXIT trap
e2e_cleanup() {
    if [ "${KEEP:-0}" = 1 ]; then
        echo "$LABEL: KEEP=1, leaving $TMP (bound into the guest)" >&2
    else
        rm -rf "$TMP"
    fi
}

# The harness runs in the background, so that we can wait for it and still react to
# signals; without job control it would ignore SIGINT, so pass signals on as SIGTERM
# (it then tears the guest down and exits 2). Before it runs, a signal just ends us.
# shellcheck disable=SC2317  # called by the INT/TERM traps
e2e_on_signal() {
    INTERRUPTED=1
    if [ -z "$HPID" ]; then exit 2; fi
    kill -TERM "$HPID" 2>/dev/null || true
}

# e2e_workspace: makes TMP (with store/, build/, profiles/, gen/), removed on
# exit; forwards signals; links the generator; sets the BINDS every boot needs
# (torcx at /usr/bin/torcx, the units, profiles/vendor.json as the vendor profile).
e2e_workspace() {
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/torcx-e2e.XXXXXX")
    HPID=""
    INTERRUPTED=0
    trap e2e_cleanup EXIT
    trap e2e_on_signal INT TERM
    # The harness splits BINDS at spaces and at the first ':' of each pair.
    local p
    for p in "$TMP" "$TORCX_BINARY" "$UNITS_DIR"; do
        case "$p" in *[[:space:]:]*) die "path '$p' contains a space or ':', which BINDS cannot carry" ;; esac
    done
    mkdir -p "$TMP/build" "$TMP/store" "$TMP/profiles" "$TMP/gen"
    # The generator: the same binary under the name torcx-generator. (The harness
    # resolves the symlink and binds the binary to
    # /etc/systemd/system-generators/torcx-generator, so inside the guest it runs
    # under that name either way.)
    ln -s "$TORCX_BINARY" "$TMP/gen/torcx-generator"
    BINDS="$TORCX_BINARY:/usr/bin/torcx"
    BINDS+=" $UNITS_DIR/torcx-apply.service:/etc/systemd/system/torcx-apply.service"
    BINDS+=" $UNITS_DIR/torcx.target:/etc/systemd/system/torcx.target"
    BINDS+=" $TMP/profiles/vendor.json:/usr/share/torcx/profiles/vendor.json"
}

# run_harness LABEL GREP_PATTERN: boots the harness with GENERATOR/STORE/BINDS/
# CHECK/ROOTFS, waits for it, then fails on an ordering cycle on the console
# and prints what the guest said about torcx when the run failed. Exits with
# the harness's code.
run_harness() {
    local label=$1 pattern=$2 rc=0
    GENERATOR="$TMP/gen/torcx-generator" STORE="$TMP/store" BINDS="$BINDS" BINDS_RW="" \
        CHECK="$CHECK" CHECK_HOST="" ROOTFS="$ROOTFS" \
        "$HARNESS" "$WORKDIR" &
    HPID=$!
    wait "$HPID" || rc=$?
    # a trapped signal interrupts wait; wait again for the harness's own exit code
    while kill -0 "$HPID" 2>/dev/null; do rc=0; wait "$HPID" || rc=$?; done
    if [ "$INTERRUPTED" = 1 ] && [ "$rc" = 0 ]; then rc=2; fi

    # the harness names its run directory after its PID
    local rundir=$WORKDIR/runs/torcx-h-$HPID
    strip_colors() { sed -E 's/\x1b\[[0-9;:]*m//g' "$@"; }

    # ordering cycles of the first transaction only reach the console: they are
    # logged before journald runs
    if [ -f "$rundir/console.log" ] && strip_colors "$rundir/console.log" | grep -qi 'ordering cycle'; then
        echo "$label: FAIL: ordering cycle on the console:" >&2
        strip_colors "$rundir/console.log" | grep -i 'ordering cycle' | sed 's/^/[console] /' >&2
        [ "$rc" = 0 ] && rc=1
    fi

    if [ "$rc" != 0 ]; then
        echo "$label: harness exit code $rc; run directory $rundir" >&2
        if [ -f "$rundir/check.out" ]; then
            sed 's/^/[check] /' "$rundir/check.out" >&2
        fi
        if [ -f "$rundir/console.log" ]; then
            echo "$label: console lines about torcx:" >&2
            strip_colors "$rundir/console.log" | grep -iE "$pattern" |
                grep -vE 'Unmounting|Unmounted|Hostname set|Attempted to remove disk' |
                sed 's/^/[console] /' >&2 || true
        fi
        if [ -f "$rundir/journal.txt" ]; then
            echo "$label: journal lines about torcx:" >&2
            # drop the guest's hostname (torcx-harness), which would match every line
            sed -E 's/^(\[[^]]*\]) torcx-harness /\1 /' "$rundir/journal.txt" |
                grep -iE "$pattern" | sed 's/^/[journal] /' >&2 || true
        else
            echo "$label: no journal was saved ($rundir/journal.txt missing)" >&2
        fi
    fi
    exit "$rc"
}
