#!/usr/bin/env python3
"""torcx benchmark for remotes and trust (issue 10), all rows in one run:

- `torcx profile populate` of the large corpus image over loopback HTTP,
  against `curl -o FILE` then `sha512sum FILE` from the same server, into
  the same file system;
- `torcx apply` with `verify: signed` against `verify: none` on the same
  archives (the large image, and the 50 small ones);
- peak RSS of populate and of apply with `verify: signed`.

usage: sudo bench/fetch.py [--runs N] [--corpus DIR] [--torcx PATH]

The server is tests/fixtures/remote_server.py (Python, threaded, sendfile
not used): the same for both rows. Everything happens under a scratch
`--root`; apply runs in a private mount namespace with a tmpfs on ROOT/run.
Wall time of the whole process, ms, median of N.
"""
import json, os, shutil, statistics, subprocess, tempfile, time

from benchlib import REPO, args, sh, wall


def ns_apply(root, torcx):
    """`torcx --root ROOT apply` in a fresh namespace; its wall time in ms, measured inside."""
    script = (f"mount -t tmpfs -o mode=755 tmpfs {root}/run && s=$(date +%s%N) && "
              f"{torcx} --root {root} apply --json >/dev/null && e=$(date +%s%N) && echo $((e - s))")
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "--", "sh", "-ec", script],
                       check=True, stdout=subprocess.PIPE, text=True)
    return int(r.stdout.strip().splitlines()[-1]) / 1e6


def rss(cmd):
    r = subprocess.run(f"/usr/bin/time -f %M {cmd} >/dev/null", shell=True, check=True,
                       stderr=subprocess.PIPE, text=True)
    return int(r.stderr.strip().splitlines()[-1])


def main():
    a = args()
    for tool, pkg in (("curl", "curl"), ("gpg", "gnupg")):
        if not shutil.which(tool):
            sh(f"apt-get install -y -q {pkg} >/dev/null")
    if not os.path.exists("/usr/bin/time"):
        sh("apt-get install -y -q time >/dev/null")
    torcx = a.torcx
    c = a.corpus
    # The scratch dir is on the same file system as /var would be (not a tmpfs), so fsync costs what it costs.
    work = tempfile.mkdtemp(prefix="torcx-bench-fetch-", dir="/var/tmp")
    media = os.path.join(work, "media")
    os.makedirs(media)
    large = os.path.join(c, "store", "tgz-large", "docker:20.10.torcx.tgz")
    many_dir = os.path.join(c, "store", "tgz-many")
    many = sorted(os.listdir(many_dir))
    for p in [large] + [os.path.join(many_dir, f) for f in many]:
        os.link(os.path.realpath(p), os.path.join(media, os.path.basename(p))) if os.stat(os.path.realpath(p)).st_dev == os.stat(media).st_dev \
            else shutil.copy(os.path.realpath(p), media)

    # A key, and the signed index of the media.
    gnupg = os.path.join(work, "gnupg")
    os.makedirs(gnupg, mode=0o700)
    g = f"gpg --homedir {gnupg} --batch --pinentry-mode loopback --passphrase ''"
    sh(f"{g} --quick-gen-key 'torcx bench <bench@torcx.invalid>' ed25519 sign never 2>/dev/null")
    images = []
    for f in sorted(os.listdir(media)):
        name, ref = f[: -len(".torcx.tgz")].split(":")
        digest = subprocess.run(["sha512sum", os.path.join(media, f)], check=True, capture_output=True,
                                text=True).stdout.split()[0]
        images.append({"name": name, "defaultVersion": ref,
                       "versions": [{"version": ref, "format": "tgz", "location": f, "hash": "sha512-" + digest}]})
    doc = json.dumps({"kind": "torcx-remote-contents-v1", "value": {"images": images}}, indent=1)
    idx = os.path.join(media, "torcx_remote_contents.json.asc")
    subprocess.run(f"{g} --clearsign > {idx}", shell=True, check=True, input=doc, text=True)

    state = os.path.join(work, "server")
    os.makedirs(state)
    srv = subprocess.Popen(["python3", os.path.join(REPO, "tests/fixtures/remote_server.py"), "--dir", media,
                            "--port-file", f"{state}/port", "--control", f"{state}/control", "--log", f"{state}/log"])
    try:
        for _ in range(100):
            if os.path.exists(f"{state}/port"):
                break
            time.sleep(0.05)
        url = f"http://127.0.0.1:{open(f'{state}/port').read().strip()}"
        root = os.path.join(work, "root")

        def w(rel, text):
            p = os.path.join(root, rel)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            open(p, "w").write(text)

        w("usr/lib/os-release", "ID=bench\nVERSION_ID=1\n")
        os.makedirs(os.path.join(root, "run"))
        key = subprocess.run(f"{g} --armor --export", shell=True, check=True, capture_output=True, text=True).stdout
        w("etc/torcx/remotes/bench/key.asc", key)
        w("etc/torcx/remotes/bench/remote.json", json.dumps(
            {"kind": "remote-manifest-v0", "value": {"base_url": url, "keys": [{"armored_keyring": "key.asc"}]}}))

        def profile(name, imgs):
            w(f"etc/torcx/profiles/{name}.json", json.dumps({"kind": "profile-manifest-v1", "value": {"images": [
                {"name": n, "reference": r, "remote": "bench"} for n, r in imgs]}}))

        profile("large", [("docker", "20.10")])
        profile("many", [tuple(f[: -len(".torcx.tgz")].split(":")) for f in many])
        store = os.path.join(root, "var/lib/torcx/store")
        out = os.path.join(root, "var/lib/torcx/curl.tgz")
        pop = f"{torcx} --root {root} profile populate --name large --json"
        curl = f"curl -sSf -o {out} {url}/docker:20.10.torcx.tgz && sha512sum {out}"
        rows = {"populate": [], "curl": [], "curl+sync": []}
        for _ in range(a.runs):
            rows["populate"].append(wall(pop, setup=f"rm -rf {store}"))
            rows["curl"].append(wall(curl, setup=f"rm -f {out}"))
            rows["curl+sync"].append(wall(curl + f" && sync -d {out}", setup=f"rm -f {out}"))
        sh(f"rm -rf {store} {out}")
        pop_rss = rss(pop)
        size = os.path.getsize(large)

        # Apply: both profiles populated, then none against signed.
        sh(f"{torcx} --root {root} profile populate --name many --json >/dev/null")
        res = {}
        for kind in ("large", "many"):
            w("etc/torcx/next-profile", kind + "\n")
            for verify in ("none", "signed"):
                w("etc/torcx/config.json", json.dumps({"kind": "torcx-config-v1", "value": {"verify": verify}}))
                res[(kind, verify)] = [ns_apply(root, torcx) for _ in range(a.runs)]
            script = (f"mount -t tmpfs -o mode=755 tmpfs {root}/run && /usr/bin/time -f %M {torcx} --root {root} apply --json >/dev/null")
            r = subprocess.run(["unshare", "--mount", "--propagation", "private", "--", "sh", "-ec", script],
                               check=True, stderr=subprocess.PIPE, text=True)
            res[(kind, "rss")] = int(r.stderr.strip().splitlines()[-1])
    finally:
        srv.terminate()
        srv.wait()
    med = {k: statistics.median(v) for k, v in rows.items()}
    print(f"corpus {c}, runs {a.runs}, median ms")
    print(f"\n## populate of docker:20.10 ({size / 1e6:.1f} MB) over loopback HTTP")
    print(f"  torcx profile populate            {med['populate']:8.1f}  ({med['populate'] / med['curl']:.2f}x curl+sha512sum, "
          f"{med['populate'] / med['curl+sync']:.2f}x with sync)")
    print(f"  curl -o FILE && sha512sum FILE    {med['curl']:8.1f}")
    print(f"  ... && sync FILE                  {med['curl+sync']:8.1f}")
    print(f"  peak RSS of populate (KiB)        {pop_rss:8}  ({pop_rss / 1024:.1f} MiB)")
    for kind in ("large", "many"):
        n, s = statistics.median(res[(kind, "none")]), statistics.median(res[(kind, "signed")])
        print(f"\n## torcx apply, {kind} (tgz)")
        print(f"  verify: none                      {n:8.1f}")
        print(f"  verify: signed                    {s:8.1f}  ({s / n:.2f}x none)")
        print(f"  peak RSS, signed (KiB)            {res[(kind, 'rss')]:8}  ({res[(kind, 'rss')] / 1024:.1f} MiB)")
    subprocess.run(["gpgconf", "--homedir", gnupg, "--kill", "all"], stderr=subprocess.DEVNULL)
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
