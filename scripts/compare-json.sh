#!/usr/bin/env bash
# Runs the same commands with two torcx binaries on the bundled example, each
# in a fresh throw-away root inside a private mount namespace, and diffs what
# they print (JSON) and the JSON files they write. For refactors that must not
# change any output:  scripts/compare-json.sh OLD_TORCX NEW_TORCX
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "compare-json.sh: run as root (torcx mounts)" >&2; exit 2; }
old=$(realpath "$1"); new=$(realpath "$2")
work=$(mktemp -d /tmp/torcx-json.XXXXXX)
trap 'rm -rf "$work"' EXIT
examples/build-example.sh "$work/archives" 1.0 >/dev/null
examples/build-example.sh "$work/archives" 2.0 >/dev/null

run_all() { # BIN OUT
    local bin=$1 out=$2 root
    root=$(mktemp -d "$work/root.XXXXXX")
    mkdir -p "$out" "$root/var/lib/torcx/store" "$root/run/systemd/generator" "$root/etc/torcx/profiles"
    cp "$work"/archives/* "$root/var/lib/torcx/store/"
    install -D -m 0644 profiles/vendor.json "$root/usr/share/torcx/profiles/vendor.json"
    # shellcheck disable=SC2016
    unshare --mount --propagation private -- bash -uo pipefail -c '
        bin=$1 root=$2 out=$3; n=0
        t() { n=$((n+1)); "$bin" --root "$root" "$@" > "$out/$n.out" 2> "$out/$n.err"; echo $? > "$out/$n.rc"; }
        t --json image list
        t --json profile list
        t --json profile check
        t --json apply
        t --json apply
        t --json status
        t --json status hello-addon
        t --json is-attached hello-addon
        t --json image inspect hello-addon:1.0
        t --json profile new --name p1 --from-next
        t --json profile use-image --name p1 hello-addon:2.0
        t --json profile set-next p1
        t --json profile check
        t --json detach hello-addon
        t --json attach hello-addon:2.0
        t --json reattach hello-addon:1.0
        t --json status
        t --json detach hello-addon
        t --json image clear-versioned -k 1.0
        for f in run/torcx/status.json run/torcx/profile.json run/metadata/torcx etc/torcx/profiles/p1.json; do
            if [ -e "$root/$f" ]; then cp "$root/$f" "$out/file.$(echo "$f" | tr / _)"; fi
        done
    ' compare "$bin" "$root" "$out"
    # Times and the throw-away root differ from run to run.
    sed -i -E -e "s#$root#ROOT#g" -e 's/"(applied_at|time|timestamp|attached_at)": ?[0-9]+/"\1": T/g' "$out"/*
}
run_all "$old" "$work/old"
run_all "$new" "$work/new"
if diff -r "$work/old" "$work/new"; then
    echo "compare-json: $(ls "$work/new" | wc -l) outputs byte-identical"
else
    echo "compare-json: outputs differ" >&2; exit 1
fi
