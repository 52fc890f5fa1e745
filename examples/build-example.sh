#!/usr/bin/env bash
# build-example.sh — build the example torcx image "hello-addon" from its sources.
#
# usage: examples/build-example.sh OUTDIR [REF]        (REF defaults to 1.0)
#
# Compiles examples/hello-addon/src with gcc (libhello.so -> lib/, hello-addon -> bin/,
# RUNPATH $ORIGIN/../lib so the library is found only inside the image tree), stages
# examples/hello-addon/rootfs plus the build outputs in a temporary directory and writes
#   OUTDIR/hello-addon:REF.torcx.tgz
#   OUTDIR/hello-addon:REF.torcx.tar.zst
# The archives are deterministic (sorted entries, owner 0:0, mtime 0, fixed modes) and
# hold .torcx/manifest.json and the lib/systemd unit files first, then the rest.
# REF is compiled into libhello, so the binary prints which reference it came from.
# Running it again overwrites the two archives (each replaced atomically).
set -euo pipefail

NAME=hello-addon
usage() { echo "usage: $0 OUTDIR [REF]" >&2; exit 2; }
if [ $# -lt 1 ] || [ $# -gt 2 ]; then usage; fi
OUTDIR=$1
REF=${2:-1.0}
[ -n "$OUTDIR" ] || usage
# a torcx reference: also keeps REF safe to pass to the C preprocessor
if ! [[ $REF =~ ^[A-Za-z0-9][A-Za-z0-9._+-]{0,254}$ ]]; then
    echo "$0: invalid reference '$REF' (allowed: [A-Za-z0-9][A-Za-z0-9._+-]*)" >&2
    exit 2
fi

for tool in gcc tar gzip zstd; do
    command -v "$tool" >/dev/null 2>&1 || { echo "$0: '$tool' not found" >&2; exit 1; }
done

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=$HERE/$NAME/src
ROOTFS=$HERE/$NAME/rootfs
[ -f "$ROOTFS/.torcx/manifest.json" ] || { echo "$0: $ROOTFS/.torcx/manifest.json missing" >&2; exit 1; }

mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
TGZ=$OUTDIR/$NAME:$REF.torcx.tgz
ZST=$OUTDIR/$NAME:$REF.torcx.tar.zst
# partial outputs live next to the final ones under names no store lookup matches,
# so the final rename is atomic
TGZ_TMP=$OUTDIR/.$NAME:$REF.torcx.tgz.tmp.$$
ZST_TMP=$OUTDIR/.$NAME:$REF.torcx.tar.zst.tmp.$$

TMP=$(mktemp -d "${TMPDIR:-/tmp}/build-example.XXXXXX")
trap 'rm -rf "$TMP"; rm -f "$TGZ_TMP" "$ZST_TMP"' EXIT
STAGE=$TMP/stage

# ---- staging tree: the static part of the image, then the build outputs
mkdir -p "$STAGE"
cp -a "$ROOTFS/." "$STAGE/"
mkdir -p "$STAGE/bin" "$STAGE/lib"

# ---- compile (relative source names, so no host path ends up in the objects)
CFLAGS=(-O2 -Wall -Wextra -Werror -fno-ident)
(
    cd "$SRC"
    gcc "${CFLAGS[@]}" -fPIC -shared -Wl,-soname,libhello.so -DVERSION="\"$REF\"" \
        -o "$STAGE/lib/libhello.so" libhello.c
    # shellcheck disable=SC2016  # $ORIGIN is for the dynamic loader, not the shell
    gcc "${CFLAGS[@]}" -o "$STAGE/bin/$NAME" hello-addon.c \
        -L"$STAGE/lib" -lhello -Wl,-rpath,'$ORIGIN/../lib'
)

# ---- fixed modes, whatever the umask or the checkout did
find "$STAGE" -type d -exec chmod 0755 {} +
find "$STAGE" -type f -exec chmod 0644 {} +
chmod 0755 "$STAGE/bin/$NAME" "$STAGE/lib/libhello.so"

# ---- self-check: run it the way torcx does, through an absolute symlink from outside
# the tree; the library must come from the tree ($ORIGIN), and REF must show
mkdir -p "$TMP/torcx-bin"
ln -s "$STAGE/bin/$NAME" "$TMP/torcx-bin/$NAME"
want="hello from torcx addon (libhello $REF)"
got=$(env -u LD_LIBRARY_PATH "$TMP/torcx-bin/$NAME" "$TMP/out.txt")
if [ "$got" != "$want" ] || [ "$(cat "$TMP/out.txt")" != "$want" ]; then
    echo "$0: self-check failed: expected '$want', got '$got'" >&2
    exit 1
fi
if command -v ldd >/dev/null 2>&1; then
    # ldd resolves $ORIGIN from the path it is given, so ask it about the file in the tree
    lib=$(env -u LD_LIBRARY_PATH ldd "$STAGE/bin/$NAME" | awk '$1=="libhello.so"{print $3}')
    if [ "$lib" != "$STAGE/bin/../lib/libhello.so" ]; then
        echo "$0: self-check failed: libhello.so resolves to '${lib:-nothing}', not inside the tree" >&2
        exit 1
    fi
fi

# ---- archive member list: manifest and unit files first, then everything else
(
    cd "$STAGE"
    { printf '%s\n' lib; find .torcx lib/systemd -printf '%p\n'; } | LC_ALL=C sort >"$TMP/first.list"
    find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort >"$TMP/all.list"
    LC_ALL=C comm -23 "$TMP/all.list" "$TMP/first.list" >"$TMP/rest.list"
    cat "$TMP/first.list" "$TMP/rest.list" >"$TMP/members.list"
)

make_tar() {
    tar -C "$STAGE" --create --format=gnu --no-recursion --verbatim-files-from \
        --files-from="$TMP/members.list" \
        --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 --mode=go-w
}

make_tar | gzip -n -9 >"$TGZ_TMP"
make_tar | zstd -q -19 --no-progress -f -o "$ZST_TMP"
chmod 0644 "$TGZ_TMP" "$ZST_TMP"
mv -f "$TGZ_TMP" "$TGZ"
mv -f "$ZST_TMP" "$ZST"

echo "$TGZ"
echo "$ZST"
