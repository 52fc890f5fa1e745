#!/usr/bin/env python3
"""Turns the archives the test suite builds into the fuzz targets' seeds.

Run by `make fuzz-seeds`: the tests run with TORCX_FUZZ_SEEDS=DIR, which
keeps every archive a test leaves behind (hostile ones included); this
script then writes each in the form each target reads (see
fuzz/harness.rs) into fuzz/corpus/TARGET/, named by content.

usage: seed.py ARCHIVES_DIR CORPUS_DIR
"""

import gzip
import hashlib
import io
import os
import subprocess
import sys
import tarfile

SEP = b"\n--layer--\n"


def put(corpus, target, data):
    d = os.path.join(corpus, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)


def text_members(tar_bytes):
    """The manifests and profile-like JSON files of a tar, for `parse`."""
    out = []
    try:
        with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as t:
            for m in t.getmembers():
                if m.isfile() and m.name.endswith(".json") and m.size < 65536:
                    out.append(t.extractfile(m).read())
    except (tarfile.TarError, EOFError, OSError):
        pass
    return out


def oci_layers(layout):
    """The layer blobs (plain tars) of an OCI layout's tar."""
    out = []
    try:
        with tarfile.open(fileobj=io.BytesIO(layout)) as t:
            for m in t.getmembers():
                if m.isfile() and m.name.startswith("blobs/"):
                    b = t.extractfile(m).read()
                    try:
                        b = gzip.decompress(b)
                    except OSError:
                        pass
                    if len(b) >= 512 and b[257:262] == b"ustar":
                        out.append(b)
    except (tarfile.TarError, EOFError, OSError):
        pass
    return out


def main():
    src, corpus = sys.argv[1], sys.argv[2]
    for name in sorted(os.listdir(src)):
        data = open(os.path.join(src, name), "rb").read()
        if len(data) > 1 << 20:
            continue
        if name.endswith(".torcx.tgz") or name.endswith(".torcx.tar.zst"):
            zst = name.endswith(".zst")
            try:
                if zst:
                    tar = subprocess.run(["zstd", "-dc"], input=data, capture_output=True, check=True).stdout
                else:
                    tar = gzip.decompress(data)
            except (OSError, subprocess.CalledProcessError):
                continue
            put(corpus, "extract", tar)
            put(corpus, "reader_tar", b"\0" + tar)
            put(corpus, "reader_tar", (b"\2" if zst else b"\1") + data)
            put(corpus, "reader_oci", b"\1" + tar)
            for j in text_members(tar):
                put(corpus, "parse", b"\0" + j)
        elif name.endswith(".torcx.squashfs") or name.endswith(".torcx.erofs"):
            put(corpus, "reader_fsimage", data)
        elif name.endswith(".torcx.oci.tgz"):
            try:
                layout = gzip.decompress(data)
            except OSError:
                continue
            put(corpus, "reader_oci", b"\0" + layout)
            layers = oci_layers(layout)
            if layers:
                put(corpus, "reader_oci", b"\1" + SEP.join(layers))
    # Profiles and configs in the forms the tests and docs use.
    for p in [
        b'{"kind":"profile-manifest-v0","value":{"images":[{"name":"docker","reference":"com.coreos.cl"}]}}',
        b'{"kind":"profile-manifest-v1","value":{"images":[{"name":"a","reference":"1","remote":""}]}}',
    ]:
        put(corpus, "parse", b"\1" + p)
    for c in [
        b'{"kind":"torcx-config-v0","value":{"base_dir":"/var/lib/torcx","store_paths":["/s"]}}',
        b'{"kind":"torcx-config-v0","value":{"run_dir":"/run/torcx","unpack_limit":"512M"}}',
    ]:
        put(corpus, "parse", b"\2" + c)
    for n in [b"docker:20.10.torcx.tgz", b"a.torcx.squashfs", b"x:y.torcx.oci.tgz"]:
        put(corpus, "parse", b"\3" + n)


if __name__ == "__main__":
    main()
