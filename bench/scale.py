#!/usr/bin/env python3
"""torcx at scale: boot time from 50 to 500 small images, peak memory on a
2 GiB image, and the read-only commands on a profile of 500 images.

usage: sudo bench/scale.py [--runs 7] [--corpus DIR] [--torcx PATH] [--json OUT]

The images are made from the corpus's 50 small ones (../shared/bench): image
i is addon-(i mod 50) renamed to addon-NNN, packed with tar and gzip. The
2 GiB image is the large corpus tree and eleven more copies of its binaries,
packed with tar and igzip -1. Timing as in bench/run.py (bench/launch.c: fork, exec, wait4, the
monotonic clock; rows round-robin; a sample disturbed by outside load redone).
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import HERE, REPO, Row, measure, sample, sh  # noqa: E402

COUNTS = (50, 100, 200, 500)


def make_many(c, dest, n):
    """Store `dest` with images addon-000..addon-(n-1), and a profile of them."""
    store = os.path.join(dest, "store")
    os.makedirs(store, exist_ok=True)
    tmp = os.path.join(dest, "tree")
    for i in range(n):
        name = f"addon-{i:03d}"
        out = os.path.join(store, f"{name}:1.0.torcx.tgz")
        if os.path.exists(out):
            continue
        src_name = f"addon-{i % 50:02d}"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(os.path.join(c, "tree", "many", src_name), tmp, symlinks=True)
        for root, dirs, files in os.walk(tmp, topdown=False):
            for f in files:
                p = os.path.join(root, f)
                if f.endswith((".json", ".service")):
                    with open(p) as fh:
                        text = fh.read().replace(src_name, name)
                    with open(p, "w") as fh:
                        fh.write(text)
                if src_name in f:
                    os.rename(p, os.path.join(root, f.replace(src_name, name)))
            for d in dirs:
                if src_name in d:
                    os.rename(os.path.join(root, d), os.path.join(root, d.replace(src_name, name)))
        sh(f"tar --sort=name -C {tmp} -czf {out} .")
    shutil.rmtree(tmp, ignore_errors=True)


def conf(dest, store, images, extra=None):
    os.makedirs(os.path.join(dest, "profiles"), exist_ok=True)
    value = {"base_dir": os.path.join(dest, "base"), "run_dir": "/run/torcx", "store_paths": [store]}
    value.update(extra or {})
    json.dump({"kind": "torcx-config-v0", "value": value}, open(os.path.join(dest, "config.json"), "w"))
    prof = {"kind": "profile-manifest-v1", "value": {"images": [{"name": n, "reference": "1.0"} for n in images]}}
    json.dump(prof, open(os.path.join(dest, "profiles", "bench.json"), "w"))
    open(os.path.join(dest, "next-profile"), "w").write("bench\n")
    return (f"export TORCX_BASEDIR={dest}/base TORCX_RUNDIR=/run/torcx TORCX_CONFDIR={dest} "
            f"TORCX_STOREPATH={store} TORCX_USR_MOUNTPOINT={dest}/usr;")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--corpus", default="/tmp/torcx-bench")
    ap.add_argument("--torcx", help="default: what `make` builds (built now)")
    ap.add_argument("--work", default="/var/tmp/torcx-scale", help="kept between runs (the images take a while)")
    ap.add_argument("--json")
    a = ap.parse_args()
    # As at boot (and as bench/run.py): no backtraces asked for.
    for v in ("RUST_BACKTRACE", "RUST_LIB_BACKTRACE"):
        os.environ.pop(v, None)
    if not a.torcx:
        from benchlib import shipped
        a.torcx = shipped()
    t = os.path.abspath(a.torcx)
    if os.geteuid() != 0:
        sys.exit("bench: run as root")
    if not os.path.exists(os.path.join(a.corpus, "meta.json")):
        sh(f"bash {REPO}/../shared/bench/corpus.sh {a.corpus}")
    w = a.work
    os.makedirs(w, exist_ok=True)
    make_many(a.corpus, os.path.join(w, "many"), max(COUNTS))
    big = os.path.join(w, "big", "store", "big:1.0.torcx.tgz")
    if not os.path.exists(big):
        tree = os.path.join(w, "big", "tree")
        shutil.rmtree(tree, ignore_errors=True)
        os.makedirs(tree)
        os.rmdir(tree)
        shutil.copytree(os.path.join(a.corpus, "tree", "large"), tree, symlinks=True)
        for k in range(11):
            shutil.copytree(os.path.join(a.corpus, "tree", "large", "bin"), os.path.join(tree, f"more{k}"), symlinks=True)
        os.makedirs(os.path.dirname(big), exist_ok=True)
        sh(f"tar --sort=name -C {tree} -cf - . | igzip -1 -c > {big}.part && mv {big}.part {big}")
        shutil.rmtree(tree)
    tmp = tempfile.mkdtemp(prefix="torcx-scale-")
    launch = os.path.join(tmp, "launch")
    sh(f"cc -O2 -o {launch} {HERE}/launch.c")
    gen = os.path.join(tmp, "torcx-generator")
    os.symlink(t, gen)
    store = os.path.join(w, "many", "store")
    rows = []
    for n in COUNTS:
        e = conf(os.path.join(tmp, f"conf-{n}"), store, [f"addon-{i:03d}" for i in range(n)])
        rows.append(Row("boot", f"{n} images: generator + apply, cached", f"{gen} /run/x :: {t} apply --json", env=e, rss=True))
    e500 = rows[-1].env
    after = f"{gen} /run/x && {t} apply --json"
    for cmd in ("status --json", "image list --json", "profile check --json"):
        rows.append(Row("500 images", f"torcx {cmd}", f"{t} {cmd}", setup=f"{e500} {after}", env=e500))
    size = os.path.getsize(big)
    eb = conf(os.path.join(tmp, "conf-big"), os.path.dirname(big), ["big"], {"unpack_limit": "3G", "unpack_total_limit": "3G"})
    rows.append(Row("2 GiB image", f"torcx apply ({size / 2**20:.0f} MiB tgz)", f"{t} apply --json", env=eb, rss=True))
    for r in rows:
        sample(launch, r)
    for k in range(a.runs):
        for r in rows[k % len(rows):] + rows[:k % len(rows)]:
            measure(launch, r)
    out = {}
    per50 = None
    print(f"{a.runs} samples a row, round-robin, median ms")
    for r in rows:
        med = statistics.median(r.ms)
        extra = f"  peak RSS {r.maxrss / 1024:.1f} MiB" if r.rss else ""
        if r.group == "boot":
            n = int(r.name.split()[0])
            per = med / n
            per50 = per50 or per
            extra += f"  {per:.2f} ms/image ({per / per50:.2f}x the 50-image rate)"
        print(f"  {r.group:<12} {r.name:<44} {med:>9.1f}{extra}" + (f"  ({r.redone} redone)" if r.redone else ""))
        out[f"{r.group} / {r.name}"] = {"median_ms": med, "samples_ms": r.ms, "max_rss_kib": r.maxrss, "redone": r.redone}
    if a.json:
        json.dump(out, open(a.json, "w"), indent=1)
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
