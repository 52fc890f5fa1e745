"""What the benchmark scripts share: running shell commands, timing one,
and the common arguments (runs, corpus, torcx binary), with the corpus
built on first use."""
import argparse, os, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, check=True, **kw)


def wall(cmd, setup=None):
    """Wall time of `cmd` in ms, after `setup` (not timed)."""
    if setup:
        sh(setup)
    s = time.monotonic_ns()
    subprocess.run(cmd, shell=True, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return (time.monotonic_ns() - s) / 1e6


def shipped():
    """The binary `make` builds and ships (linked statically), built now."""
    sh(f"make -s -C {REPO} build")
    host = subprocess.run(["rustc", "-vV"], capture_output=True, text=True, check=True).stdout
    host = next(l.split(": ", 1)[1] for l in host.splitlines() if l.startswith("host: "))
    return os.path.join(REPO, "target", host, "release", "torcx")


def args(runs=11):
    """--runs, --corpus, --torcx; as root, with the corpus made if missing."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=runs)
    ap.add_argument("--corpus", default="/tmp/torcx-bench")
    ap.add_argument("--torcx", help="default: what `make` builds (built now)")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: run as root")
    if not os.path.exists(os.path.join(a.corpus, "meta.json")):
        sh(f"bash {REPO}/../shared/bench/corpus.sh {a.corpus}")
    a.torcx = os.path.abspath(a.torcx or shipped())
    return a
