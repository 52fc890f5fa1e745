#!/usr/bin/env python3
"""torcx benchmark for registry pulls (issue 11), all rows in one run:

- `torcx image pull` of the large corpus image from a loopback
  `docker-registry`, against `skopeo copy docker://… oci:DIR:TAG` and against
  `curl` of its manifest and blobs, from the same registry (bare; then with
  `openssl dgst -sha256` of the blobs, the check torcx makes; then with
  `sync -f`, the durability torcx gives);
- a second `torcx image pull` of the unchanged tag;
- peak RSS of the pull.

usage: sudo bench/registry.py [--runs N] [--corpus DIR] [--torcx PATH]

The image is the corpus's large tree packed by `torcx image pack --format
oci` and pushed by skopeo. Everything is written under /var/tmp (a disk).
Wall time of the whole process, ms, median of N.
"""
import json, os, shutil, socket, statistics, subprocess, tempfile, time

from benchlib import REPO, args, sh, wall


def main():
    a = args()
    for tool, pkg in (("docker-registry", "docker-registry"), ("skopeo", "skopeo"), ("curl", "curl")):
        if not shutil.which(tool):
            sh(f"apt-get install -y -q {pkg} >/dev/null")
    if not os.path.exists("/usr/bin/time"):
        sh("apt-get install -y -q time >/dev/null")
    torcx = a.torcx
    work = tempfile.mkdtemp(prefix="torcx-bench-registry-", dir="/var/tmp")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    host = f"127.0.0.1:{port}"
    open(f"{work}/config.yml", "w").write(
        f"version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {work}/data\nhttp:\n  addr: {host}\n")
    reg = subprocess.Popen(["docker-registry", "serve", f"{work}/config.yml"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                time.sleep(0.05)
        os.makedirs(f"{work}/packed")
        sh(f"{torcx} image pack {a.corpus}/tree/large -o {work}/packed --name docker --reference 20.10 "
           f"--format oci >/dev/null 2>&1")
        os.makedirs(f"{work}/layout")
        sh(f"tar -xzf {work}/packed/docker.torcx.oci.tgz -C {work}/layout")
        sh(f"skopeo copy -q --dest-tls-verify=false oci:{work}/layout:20.10 docker://{host}/torcx/docker:20.10")
        manifest = json.loads(subprocess.run(
            ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{host}/torcx/docker:20.10"],
            check=True, capture_output=True, text=True).stdout)
        blobs = [manifest["config"]] + manifest["layers"]
        size = sum(b["size"] for b in blobs)
        root = f"{work}/root"
        os.makedirs(root)
        store = f"{root}/var/lib/torcx/store"
        pull = f"{torcx} --root {root} --json image pull {host}/torcx/docker:20.10"
        skopeo = f"skopeo copy -q --src-tls-verify=false docker://{host}/torcx/docker:20.10 oci:{work}/sk:20.10"
        curl = (f"curl -sSf -H 'Accept: application/vnd.oci.image.manifest.v1+json' -o {work}/cu/manifest "
                f"http://{host}/v2/torcx/docker/manifests/20.10 && "
                + " && ".join(f"curl -sSf -o {work}/cu/{b['digest'][7:]} http://{host}/v2/torcx/docker/blobs/{b['digest']}"
                              for b in blobs))
        # What torcx does besides fetching: every blob's sha256 checked (openssl uses SHA-NI where the CPU has it).
        verify = " && ".join(f"openssl dgst -sha256 {work}/cu/{b['digest'][7:]} >/dev/null" for b in blobs)
        rows = {"pull": [], "plain": [], "skopeo": [], "curl": [], "curl+sync": [], "curl+sha": [], "again": []}
        for _ in range(a.runs):
            rows["pull"].append(wall(pull, setup=f"rm -rf {store}"))
            rows["plain"].append(wall(pull + " --plain-http", setup=f"rm -rf {store}"))
            rows["again"].append(wall(pull))
            rows["skopeo"].append(wall(skopeo, setup=f"rm -rf {work}/sk"))
            rows["curl"].append(wall(curl, setup=f"rm -rf {work}/cu && mkdir {work}/cu"))
            rows["curl+sha"].append(wall(curl + " && " + verify, setup=f"rm -rf {work}/cu && mkdir {work}/cu"))
            rows["curl+sync"].append(wall(curl + f" && sync -f {work}/cu/manifest", setup=f"rm -rf {work}/cu && mkdir {work}/cu"))
        sh(f"rm -rf {store}")
        r = subprocess.run(f"/usr/bin/time -f %M {pull} >/dev/null", shell=True, check=True,
                           stderr=subprocess.PIPE, text=True)
        rss = int(r.stderr.strip().splitlines()[-1])
    finally:
        reg.terminate()
        reg.wait()
    m = {k: statistics.median(v) for k, v in rows.items()}
    print(f"## pull of docker:20.10 ({size / 1e6:.1f} MB of blobs) from a loopback registry, runs {a.runs}, median ms")
    print(f"  torcx image pull                  {m['pull']:8.1f}  ({m['pull'] / m['skopeo']:.2f}x skopeo, {m['pull'] / m['curl']:.2f}x curl)")
    print(f"  torcx image pull --plain-http     {m['plain']:8.1f}  ({m['plain'] / m['curl']:.2f}x curl: no HTTPS try first)")
    print(f"  skopeo copy docker:// oci:DIR     {m['skopeo']:8.1f}")
    print(f"  curl of the manifest and blobs    {m['curl']:8.1f}")
    print(f"  ... then openssl sha256 (checked) {m['curl+sha']:8.1f}  (torcx pull {m['pull'] / m['curl+sha']:.2f}x)")
    print(f"  ... then sync -f (as durable)     {m['curl+sync']:8.1f}  (torcx pull {m['pull'] / m['curl+sync']:.2f}x)")
    print(f"  torcx image pull, unchanged tag   {m['again']:8.1f}")
    print(f"  peak RSS of the pull (KiB)        {rss:8}  ({rss / 1024:.1f} MiB)")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
