#!/usr/bin/env python3
"""torcx benchmark: boot (generator + `torcx apply`) against the fastest
tools this machine has for the same work, every row measured in one run.

usage: sudo bench/run.py [--runs 15] [--corpus DIR] [--torcx PATH]
                         [--original PATH] [--baseline PATH] [--json OUT]

How a row is timed:
- Each sample is a fresh private mount namespace with a new tmpfs on /run;
  its setup (mkdir, removing a cache) is not timed.
- `bench/launch.c` (built here with cc) times the command alone: fork,
  exec, wait4 and the monotonic clock. Several steps of one row run in
  sequence under one launcher, with no shell between them.
- The launcher also reports the CPU time the rest of the machine used
  meanwhile. A sample where that exceeds 20 ms + 10 % of its wall time is
  redone (up to 4 times); the count of redone samples is printed.
- Each sample starts on a quiet machine (a 50 ms window under 10 % busy,
  waited for up to 2 s): the kernel tears down the last sample's namespace
  after it exits.
- Rows go round-robin: sample k of every row, then sample k+1, so a burst of
  outside load spreads over all rows instead of landing on one.
- The squashfs reference is bench/loopmount.c (built here with cc): one
  LOOP_CONFIGURE and one mount per image, one process, no runtime to start.
- With --original PATH the original Go torcx runs in the same run on the
  same archives; without it the report says it was not measured.
Median of --runs samples, in milliseconds, with the ratio to the group's
reference row.
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, check=True, **kw)


class Row:
    def __init__(self, group, name, cmd, setup="true", env="", ref=False, rss=False):
        self.group, self.name, self.cmd, self.setup, self.env = group, name, cmd, setup, env
        self.ref, self.rss = ref, rss
        self.ms, self.other, self.maxrss, self.redone = [], [], 0, 0


def busy():
    """All CPUs' busy time so far, in ticks."""
    v = [int(x) for x in open("/proc/stat").readline().split()[1:9]]
    return v[0] + v[1] + v[2] + v[5] + v[6] + v[7]


def settle():
    """Waits (at most 2 s) until the machine is quiet: the kernel finishes
    tearing down the last sample's namespace (its tmpfs pages, its loop
    devices) after the process exits, and that work would land on this one."""
    hz = os.sysconf("SC_CLK_TCK")
    for _ in range(40):
        b, t = busy(), time.monotonic()
        time.sleep(0.05)
        if (busy() - b) / hz < 0.1 * (time.monotonic() - t):
            return


def sample(launch, row, dry_run=False):
    """One sample of `row`: (wall ms, other CPU ms, max RSS KiB)."""
    settle()
    script = ("mount -t tmpfs -o mode=755 tmpfs /run && mkdir -p /run/x && "
              f"( {row.setup} ) > /dev/null && {row.env} exec {launch} {row.cmd}")
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "--", "sh", "-ec", script],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = r.stdout.strip().splitlines()[-1:] if r.returncode == 0 else []
    f = line[0].split() if line else []
    if len(f) != 5 or f[4] != "0":
        sys.exit(f"bench: {row.group} / {row.name} failed:\n{row.cmd}\n{r.stdout}{r.stderr}")
    return int(f[0]) / 1e6, int(f[2]) / 1e3, int(f[3])


def measure(launch, row):
    for attempt in range(5):
        ms, other, rss = sample(launch, row)
        if other <= 20 + 0.10 * ms or attempt == 4:
            break
        row.redone += 1
    row.ms.append(ms)
    row.other.append(other)
    row.maxrss = max(row.maxrss, rss)


def rows_for(a, c, work, launch):
    t, gen = a.torcx, os.path.join(work, "torcx-generator")
    os.symlink(t, gen)
    rows = []
    # tar.zst stores: the corpus names them NAME:REF.tar.zst.
    for kind in ("large", "many"):
        d = os.path.join(work, "zst-" + kind)
        os.makedirs(d)
        for f in os.listdir(os.path.join(c, "zst", kind)):
            os.symlink(os.path.join(c, "zst", kind, f), os.path.join(d, f.replace(".tar.zst", ".torcx.tar.zst")))

    def original(g, kind, fmt, store):
        # The original's boot apply: a torcx-generator link (it picks its
        # mode from argv[0]) reading TORCX_* from the environment, with its
        # debug log on stderr as it always writes it.
        d = f"{work}/orig-{kind}-{fmt}"
        shutil.copytree(f"{c}/conf/{kind}-{'tgz' if fmt == 'tgz' else 'sqfs'}", f"{d}/conf")
        os.makedirs(f"{d}/base")
        return Row(g, "original torcx (Go): torcx-generator", f"{work}/orig/torcx-generator /run/x /run/x /run/x",
                   env=f"export TORCX_BASEDIR={d}/base TORCX_RUNDIR=/run/torcx TORCX_CONFDIR={d}/conf TORCX_STOREPATH={store};")

    def env(kind, store, base):
        return (f"TORCX_BASEDIR={base} TORCX_RUNDIR=/run/torcx TORCX_CONFDIR={c}/conf/{kind}-tgz "
                f"TORCX_STOREPATH={store} TORCX_USR_MOUNTPOINT={work}/usr ")

    for kind, label in (("large", "large"), ("many", "50 small")):
        stores = {"tgz": f"{c}/store/tgz-{kind}", "zst": f"{work}/zst-{kind}"}
        for fmt in ("tgz", "zst"):
            g = f"{label} {fmt}"
            base = f"{work}/base-{kind}-{fmt}"
            e = "export " + env(kind, stores[fmt], base) + ";"
            arch = sorted(os.path.realpath(os.path.join(stores[fmt], x)) for x in os.listdir(stores[fmt]))
            boot = f"{gen} /run/x :: {t} apply --json"
            # Each row its own base directory: a cold row empties its
            # generator cache, the cached row's stays warm.
            e1, e2 = (e.replace(base, base + sfx) for sfx in ("-cold", "-gencold"))
            rows += [
                Row(g, "torcx: generator + apply, cached (later boots)", boot, env=e, rss=True),
                Row(g, "torcx: generator + apply, cold (first boot)", boot, setup=f"rm -rf {base}-cold/cache", env=e1),
                Row(g, "torcx: generator, cold", f"{gen} /run/x", setup=f"rm -rf {base}-gencold/cache", env=e2),
                Row(g, "torcx apply", f"{t} apply --json", env=e),
            ]
            dec = "igzip -dc" if fmt == "tgz" else "zstd -dc"
            rows.append(Row(g, f"{dec} > /dev/null, one process", f"{dec} {' '.join(arch)}", ref=True))
            if fmt == "tgz":
                rows.append(Row(g, "gzip -dc > /dev/null", f"gzip -dc {' '.join(arch)}"))
            flag = "-xzf" if fmt == "tgz" else "--zstd -xf"
            mk = " && ".join(f"mkdir /run/x/{i}" for i in range(len(arch)))
            rows.append(Row(g, f"tar {flag} into tmpfs", " :: ".join(f"tar {flag} {p} -C /run/x/{i}" for i, p in enumerate(arch)), setup=mk))
            if fmt == "tgz" and a.original:
                rows.append(original(g, kind, "tgz", stores[fmt]))
    for kind, label in (("large", "large"), ("many", "50 small")):
        g = f"{label} squashfs"
        store = f"{c}/store/sqfs-{kind}"
        imgs = sorted(os.path.join(store, x) for x in os.listdir(store))
        base = f"{work}/base-sqfs-{kind}"
        e = (f"export TORCX_BASEDIR={base} TORCX_RUNDIR=/run/torcx TORCX_CONFDIR={c}/conf/{kind}-sqfs "
             f"TORCX_STOREPATH={store} TORCX_USR_MOUNTPOINT={work}/usr;")
        mk = " && ".join(f"mkdir /run/x/{i}" for i in range(len(imgs)))
        rows += [
            Row(g, "torcx: generator + apply", f"{gen} /run/x :: {t} apply --json", env=e, rss=True),
            Row(g, "torcx apply", f"{t} apply --json", env=e),
        ] + ([original(g, kind, "sqfs", store)] if a.original else []) + [
            Row(g, "LOOP_CONFIGURE + mount, one process (bench/loopmount.c)",
                f"{work}/loopmount /run/x " + " ".join(imgs), setup=mk, ref=kind == "many"),
            Row(g, "  the same, 4 threads (loopmount -j 4)",
                f"{work}/loopmount -j 4 /run/x " + " ".join(imgs), setup=mk),
            Row(g, "mount -o loop,ro (util-linux)", " :: ".join(f"mount -o loop,ro {p} /run/x/{i}" for i, p in enumerate(imgs)),
                setup=mk, ref=kind == "large"),
        ]
    if a.baseline:
        # The same torcx rows with another build (the last landed one, say),
        # its own base directory and generator cache, in this same run.
        bgen = os.path.join(work, "before", "torcx-generator")
        os.makedirs(os.path.dirname(bgen))
        os.symlink(os.path.abspath(a.baseline), bgen)
        before = []
        for r in rows:
            if r.name.startswith("torcx"):
                sub = lambda x: x.replace(gen, bgen).replace(t + " ", os.path.abspath(a.baseline) + " ").replace("/base-", "/before-base-")
                before.append(Row(r.group, "before: " + r.name, sub(r.cmd), setup=sub(r.setup), env=sub(r.env), rss=r.rss))
        rows += before
    # The generator after a sealed boot, against the bare start of the binary.
    g = "sealed"
    rows += [
        Row(g, "torcx-generator after a sealed boot", f"{gen} /run/x", setup="mkdir -p /run/metadata && touch /run/metadata/torcx"),
        Row(g, "torcx --version", f"{t} --version", ref=True),
    ]
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--corpus", default="/tmp/torcx-bench")
    ap.add_argument("--torcx", help="default: what `make` builds (built now)")
    ap.add_argument("--original", help="the original Go torcx binary: measured in the same run")
    ap.add_argument("--baseline", help="another torcx build whose torcx rows run in the same run, as 'before: ...'")
    ap.add_argument("--json", help="write every row's samples here")
    ap.add_argument("--only", help="only the groups whose name contains this (e.g. 'large tgz')")
    a = ap.parse_args()
    if not a.torcx:
        sys.path.insert(0, HERE)
        from benchlib import shipped
        a.torcx = shipped()
    a.torcx = os.path.abspath(a.torcx)
    # As at boot: no backtraces asked for (with them, every error torcx
    # makes and handles on its way, a missing optional file say, walks the
    # stack).
    for v in ("RUST_BACKTRACE", "RUST_LIB_BACKTRACE"):
        os.environ.pop(v, None)
    if os.geteuid() != 0:
        sys.exit("bench: run as root (it mounts tmpfs in private namespaces)")
    if not os.path.exists(os.path.join(a.corpus, "meta.json")):
        sh(f"bash {REPO}/../shared/bench/corpus.sh {a.corpus}")
    if not shutil.which("igzip"):
        sh("apt-get install -y -q isal >/dev/null")
    c = a.corpus
    meta = json.load(open(os.path.join(c, "meta.json")))
    work = tempfile.mkdtemp(prefix="torcx-bench-")
    launch = os.path.join(work, "launch")
    sh(f"cc -O2 -o {launch} {HERE}/launch.c")
    sh(f"cc -O2 -pthread -o {work}/loopmount {HERE}/loopmount.c")
    if a.original:
        os.makedirs(f"{work}/orig")
        os.symlink(os.path.abspath(a.original), f"{work}/orig/torcx-generator")
    rows = rows_for(a, c, work, launch)
    if a.only:
        rows = [r for r in rows if a.only in r.group]
    # One untimed pass: warm caches, and the generator cache "cached" rows read.
    for r in rows:
        sample(launch, r)
    for k in range(a.runs):
        # Start each round at another row, so no row always follows the same one.
        for r in rows[k % len(rows):] + rows[:k % len(rows)]:
            measure(launch, r)

    print(f"corpus {c}: pool sha256 {meta['pool_sha256'][:16]}, {a.runs} samples a row, round-robin, median ms")
    if not a.original:
        print("original torcx: not measured in this run (pass --original PATH)")
    groups = {}
    for r in rows:
        groups.setdefault(r.group, []).append(r)
    out = {}
    for g, rs in groups.items():
        ref = next((r for r in rs if r.ref), rs[0])
        print(f"\n## {g}")
        for r in rs:
            r.median = statistics.median(r.ms)
        for r in rs:
            rss = f"  peak RSS {r.maxrss / 1024:.1f} MiB" if r.rss else ""
            redo = f"  ({r.redone} redone)" if r.redone else ""
            print(f"  {r.name:<68} {r.median:>8.1f}  {r.median / ref.median:5.2f}x{rss}{redo}")
            out[f"{g} / {r.name}"] = {"median_ms": r.median, "ratio": r.median / ref.median, "samples_ms": r.ms,
                                      "other_cpu_ms": r.other, "redone": r.redone, "max_rss_kib": r.maxrss}
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
