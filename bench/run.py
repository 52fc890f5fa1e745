#!/usr/bin/env python3
"""torcx benchmark: generator + `torcx apply` against tar/gzip/zstd on the
workload of ../shared/bench/corpus.sh, all rows measured in the same run.

usage: sudo bench/run.py [--runs N] [--corpus DIR] [--torcx PATH]

Each run is a fresh private mount namespace with a new tmpfs on /run (the
host's /run is never touched); wall time of the whole process tree in ms,
median of N. Peak memory is GNU time's maximum RSS of `torcx apply`.
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, check=True, **kw)


def ns(script, setup="true"):
    """Runs `script` in a private mount namespace with a fresh tmpfs /run and
    prints its wall time in ns, measured inside: setting up and tearing down
    the namespace (which unmounts everything, and frees loop devices) is not
    the boot's cost."""
    full = ("mount -t tmpfs -o mode=755 tmpfs /run && mkdir -p /run/x && ( " + setup + " ) >/dev/null && "
            "s=$(date +%s%N) && ( " + script +
            " ) >/dev/null && e=$(date +%s%N) && echo $((e - s))")
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-ec", full]


BASELINE = 0.0


def timed(argv, runs):
    out = []
    for _ in range(runs):
        r = subprocess.run(argv, check=True, stdout=subprocess.PIPE, text=True)
        out.append(int(r.stdout.strip().splitlines()[-1]) / 1e6 - BASELINE)
    return statistics.median(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=11)
    ap.add_argument("--corpus", default="/tmp/torcx-bench")
    ap.add_argument("--torcx", default=os.path.join(REPO, "target/release/torcx"))
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: run as root (it mounts tmpfs in private namespaces)")
    if not os.path.exists(os.path.join(a.corpus, "meta.json")):
        sh(f"bash {REPO}/../shared/bench/corpus.sh {a.corpus}")
    if not shutil.which("time") and not os.path.exists("/usr/bin/time"):
        sh("apt-get install -y -q time >/dev/null")
    meta = json.load(open(os.path.join(a.corpus, "meta.json")))
    global BASELINE
    BASELINE = timed(ns("true"), 21)
    c = a.corpus
    work = tempfile.mkdtemp(prefix="torcx-bench-")
    gen = os.path.join(work, "torcx-generator")
    os.symlink(os.path.abspath(a.torcx), gen)
    # tar.zst stores: the corpus names them NAME:REF.tar.zst.
    for kind in ("large", "many"):
        d = os.path.join(work, "zst-" + kind)
        os.makedirs(d)
        for f in os.listdir(os.path.join(c, "zst", kind)):
            os.symlink(os.path.join(c, "zst", kind, f), os.path.join(d, f.replace(".tar.zst", ".torcx.tar.zst")))

    def env(kind, store):
        conf = os.path.join(c, "conf", kind + "-tgz")
        base = os.path.join(work, "base")
        return (f"export TORCX_BASEDIR={base} TORCX_RUNDIR=/run/torcx TORCX_CONFDIR={conf} "
                f"TORCX_STOREPATH={store} TORCX_USR_MOUNTPOINT={work}/usr; ")

    rows = []
    for kind in ("large", "many"):
        stores = {"tgz": os.path.join(c, "store", "tgz-" + kind), "zst": os.path.join(work, "zst-" + kind)}
        archives = {f: sorted(os.path.realpath(os.path.join(stores[f], x)) for x in os.listdir(stores[f])) for f in stores}
        for fmt in ("tgz", "zst"):
            e = env(kind, stores[fmt])
            apply_ = f"{a.torcx} apply --json"
            genr = f"{gen} /run/x"
            cold = f"rm -rf {work}/base/cache && "
            r = {}
            # First boot with these archives: the generator inflates up to the units.
            r["generator + apply, cold"] = timed(ns(e + genr + " && " + apply_, setup=cold + "true"), a.runs)
            # Every later boot: the generator reads the units apply cached.
            r["generator + apply, cached"] = timed(ns(e + genr + " && " + apply_), a.runs)
            r["torcx apply"] = timed(ns(e + apply_), a.runs)
            r["torcx generator, cached"] = timed(ns(e + genr), a.runs)
            r["torcx generator, cold"] = timed(ns(e + genr, setup=f"rm -rf {work}/base/cache"), a.runs)
            flag = "-xzf" if fmt == "tgz" else "--zstd -xf"
            untar = " && ".join(f"mkdir /run/x/{i} && tar {flag} {p} -C /run/x/{i}" for i, p in enumerate(archives[fmt]))
            r[f"tar {flag} into tmpfs"] = timed(ns(untar), a.runs)
            dec = "gzip -dc" if fmt == "tgz" else "zstd -dc"
            r[f"{dec} > /dev/null"] = timed(ns(" && ".join(f"{dec} {p} > /dev/null" for p in archives[fmt])), a.runs)
            # Peak memory of the apply alone.
            out = subprocess.run(ns(e + f"/usr/bin/time -f %M {apply_} > /dev/null"), check=True,
                                 capture_output=True, text=True).stderr.strip().splitlines()[-1]
            r["peak RSS of apply (KiB)"] = int(out)
            rows.append((kind, fmt, r))
    # Runtime attach and detach (no daemon-reload: systemd does not run in the
    # namespace), against the unpack alone.
    for kind in ("large", "many"):
        store = os.path.join(c, "store", "tgz-" + kind)
        imgs = sorted(os.path.join(store, x) for x in os.listdir(store))
        names_ = [os.path.basename(p).split(":")[0] for p in imgs]
        e = f"export TORCX_BASEDIR={work}/base-rt TORCX_RUNDIR=/run/torcx TORCX_USR_MOUNTPOINT={work}/usr TORCX_CONFDIR={work}/conf-rt; "
        att = " && ".join(f"{a.torcx} attach {p} --no-reload" for p in imgs)
        det = " && ".join(f"{a.torcx} detach {n} --no-reload" for n in names_)
        r = {}
        r["torcx attach (each)"] = timed(ns(e + att), a.runs)
        r["torcx detach (each)"] = timed(ns(e + det, setup=e + att), a.runs)
        r["tar -xzf into tmpfs"] = timed(ns(" && ".join(f"mkdir /run/x/{i} && tar -xzf {p} -C /run/x/{i}" for i, p in enumerate(imgs))), a.runs)
        rows.append((kind + ", runtime", "tgz", r))
    # squashfs: torcx against the fastest possible loop setup and mount, and
    # against util-linux's mount -o loop, in the same run.
    for kind in ("large", "many"):
        store = os.path.join(c, "store", "sqfs-" + kind)
        imgs = sorted(os.path.join(store, x) for x in os.listdir(store))
        conf = os.path.join(c, "conf", kind + "-sqfs")
        e = (f"export TORCX_BASEDIR={work}/base-sqfs TORCX_RUNDIR=/run/torcx TORCX_CONFDIR={conf} "
             f"TORCX_STOREPATH={store} TORCX_USR_MOUNTPOINT={work}/usr; ")
        r = {}
        r["generator + apply"] = timed(ns(e + f"{gen} /run/x && {a.torcx} apply --json"), a.runs)
        r["torcx apply"] = timed(ns(e + f"{a.torcx} apply --json"), a.runs)
        r["torcx generator"] = timed(ns(e + f"{gen} /run/x"), a.runs)
        r["LOOP_CONFIGURE + mount, one process"] = timed(ns(f"python3 {HERE}/loopmount.py /run/x " + " ".join(imgs)), a.runs)
        # That process is Python: its start is not the kernel's work.
        r["  of which python3 starting"] = timed(ns("python3 -c pass"), a.runs)
        r["mount -o loop,ro (util-linux)"] = timed(ns(" && ".join(f"mkdir /run/x/{i} && mount -o loop,ro {p} /run/x/{i}" for i, p in enumerate(imgs))), a.runs)
        rows.append((kind, "squashfs", r))
    # The generator reading the large image packed by `torcx image pack`
    # (manifest and units first): cold, no cache.
    packed = os.path.join(work, "packed")
    os.makedirs(packed)
    pk = subprocess.run([a.torcx, "image", "pack", os.path.join(c, "tree", "large"), "-o",
                         os.path.join(packed, "docker:20.10.torcx.tgz")], capture_output=True)
    if pk.returncode == 0:
        e = (f"export TORCX_BASEDIR={work}/base-packed TORCX_RUNDIR=/run/torcx TORCX_CONFDIR={c}/conf/large-tgz "
             f"TORCX_STOREPATH={packed} TORCX_USR_MOUNTPOINT={work}/usr; ")
        r = {"torcx generator, cold": timed(ns(e + f"{gen} /run/x"), a.runs),
             "generator + apply, cold": timed(ns(e + f"{gen} /run/x && {a.torcx} apply --json", setup=f"rm -rf {work}/base-packed/cache"), a.runs)}
        r["tar -xzf into tmpfs"] = timed(ns(f"tar -xzf {packed}/docker:20.10.torcx.tgz -C /run/x"), a.runs)
        rows.append(("large, packed by torcx image pack", "tgz", r))
    else:
        print("image pack failed:", pk.stderr.decode().strip())
    # The generator after a sealed boot against the bare start of the binary.
    sealed = ns(gen + " /run/x", setup="mkdir -p /run/metadata && touch /run/metadata/torcx")
    version = ns(f"{a.torcx} --version")
    sealed_ms, version_ms = timed(sealed, a.runs * 3), timed(version, a.runs * 3)

    print(f"corpus {c}: pool sha256 {meta['pool_sha256'][:16]}, runs {a.runs}, median ms")
    for kind, fmt, r in rows:
        print(f"\n## {kind} ({fmt})")
        ref = (r["tar -xzf into tmpfs"] if fmt == "tgz" else r["tar --zstd -xf into tmpfs"] if fmt == "zst"
               else r["LOOP_CONFIGURE + mount, one process"])
        unit = "tar" if fmt != "squashfs" else "ref"
        for k, v in r.items():
            if "KiB" in k:
                print(f"  {k:<36} {v:>8}  ({v / 1024:.1f} MiB)")
            else:
                print(f"  {k:<36} {v:>8.1f}  ({v / ref:.2f}x {unit})")
    print(f"\n## generator after a sealed boot\n  sealed generator {sealed_ms:.2f} ms, torcx --version {version_ms:.2f} ms, "
          f"difference {sealed_ms - version_ms:+.2f} ms")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
