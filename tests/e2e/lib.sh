# shellcheck shell=bash
# Shared by the end-to-end scripts: boot the harness with the caller's
# GENERATOR/STORE/BINDS/CHECK/ROOTFS, wait for it (signals are passed on by the
# caller's trap through HPID), then fail on an ordering cycle on the console
# and print what the guest said about torcx when the run failed.
#
# usage: run_harness LABEL GREP_PATTERN; uses HARNESS WORKDIR TMP BINDS CHECK
# ROOTFS INTERRUPTED and sets HPID; exits with the harness's code.
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
