#!/usr/bin/env bash
# The README's first command: build torcx and the example image, then apply a
# profile holding it inside a throw-away root, in a private mount namespace.
# The host's /run, /etc and /usr are not touched. Needs root (it mounts).
set -euo pipefail
cd "$(dirname "$0")"
[ "$(id -u)" = 0 ] || { echo "demo.sh: run as root (torcx mounts a tmpfs per image)" >&2; exit 2; }
for t in cargo gcc tar gzip zstd unshare nasm autoreconf libtoolize make; do
    command -v "$t" >/dev/null || { echo "demo.sh: $t is missing (apt-get install gcc tar gzip zstd util-linux nasm autoconf automake libtool make)" >&2; exit 2; }
done

cargo build --release --quiet
ROOT=$(mktemp -d /tmp/torcx-demo.XXXXXX)
trap 'rm -rf "$ROOT"' EXIT

# A machine: a vendor profile naming hello-addon:1.0, and a store holding it.
examples/build-example.sh "$ROOT/var/lib/torcx/store" 1.0 >/dev/null
rm "$ROOT"/var/lib/torcx/store/*.tar.zst
install -D -m 0644 profiles/vendor.json "$ROOT/usr/share/torcx/profiles/vendor.json"
mkdir -p "$ROOT/run/systemd/generator"
ln -sf "$PWD/target/release/torcx" "$ROOT/torcx-generator"

# shellcheck disable=SC2016  # expanded by the inner shell
unshare --mount --propagation private -- bash -euo pipefail -c '
ROOT=$1
run() { echo; echo "\$ $*"; "$@"; }
echo "== what the generator plans (read-only, from the archive):"
run "$ROOT/torcx-generator" --root "$ROOT" "$ROOT/run/systemd/generator" 2>/dev/null
run find "$ROOT/run/systemd/generator" -mindepth 1
echo; echo "== what torcx-apply.service does:"
run target/release/torcx --root "$ROOT" apply --json
run grep "$ROOT/run/torcx/unpack" /proc/self/mountinfo
run ls -l "$ROOT/run/torcx/bin"
run cat "$ROOT/run/systemd/system/hello-addon.service.d/10-torcx.conf"
run cat "$ROOT/run/metadata/torcx"
echo; echo "== the addon runs from its image (its library comes from the image, through \$ORIGIN):"
run "$ROOT/run/torcx/unpack/hello-addon/bin/hello-addon"
echo; echo "== applying again changes nothing:"
run target/release/torcx --root "$ROOT" apply --json | grep already_applied
' demo "$ROOT"
echo
echo "demo: done; the throw-away root $ROOT is removed"
