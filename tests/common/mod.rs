//! Shared helpers of the integration tests: a scratch root per test, profiles,
//! image trees packed by the real `tar`/`gzip`/`zstd` (or by Python's
//! `tarfile` for hostile archives GNU tar will not write), and a runner that
//! executes torcx inside a private mount namespace (`unshare`), recording for
//! every step its exit code, output, the mount table before and after, and
//! listings of the root, so tests can assert after the namespace is gone.

#![allow(dead_code)]

pub mod remote;

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

pub const TORCX: &str = env!("CARGO_BIN_EXE_torcx");

/// Nothing from the caller's environment may point torcx elsewhere.
pub fn clean_env(c: &mut Command) -> &mut Command {
    for v in [
        "TORCX_BASEDIR",
        "TORCX_RUNDIR",
        "TORCX_CONFDIR",
        "TORCX_STOREPATH",
        "TORCX_USR_MOUNTPOINT",
        "TORCX_UNPACK_LIMIT",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "no_proxy",
        "SSL_CERT_FILE",
    ] {
        c.env_remove(v);
    }
    c
}

/// `torcx ARGS...` outside any namespace, in `dir` when given: (exit code, stdout, stderr).
pub fn torcx_in(dir: Option<&Path>, args: &[&str]) -> (i32, String, String) {
    let mut c = Command::new(TORCX);
    if let Some(d) = dir {
        c.current_dir(d);
    }
    let out = clean_env(&mut c).args(args).output().expect("running torcx");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs an end-to-end script of `tests/e2e/` (it boots a real systemd
/// through ../shared/harness) with the torcx binary and `rootfs`, and
/// asserts it printed PASS and succeeded.
pub fn run_e2e(test: &str, script: &str, rootfs: &str, env: &[(&str, &str)]) {
    require_root(test);
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .arg(repo.join("tests/e2e").join(script))
        .arg(TORCX)
        .arg(rootfs)
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("running tests/e2e/{script}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("PASS"), "{script} on {rootfs} {env:?} failed:\n{text}");
}

/// Mounting needs root. A test that cannot run fails, loudly, rather than
/// passing without having run: a run as another user must never look like a
/// full pass.
pub fn require_root(test: &str) {
    if !rustix::process::geteuid().is_root() {
        panic!("{test}: {NEEDS_ROOT}");
    }
}

/// A tool a test needs (the README and `.ci/run` install them all). Like
/// [`require_root`], a missing one fails the test instead of skipping it.
pub fn require_tool(test: &str, tool: &str, package: &str) {
    if Command::new(tool).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_err() {
        panic!("{test}: needs {tool}: apt-get install {package}");
    }
}

/// Why a privileged test failed as another user, and what to do instead.
pub const NEEDS_ROOT: &str = "needs root (mount namespaces, tmpfs, loop devices); run the suite as root, \
     or `cargo test --lib --test planners --test policy --test record --test layout --test docs` for the unprivileged tests";

/// Writes `data` at `path`, creating the parent directories.
/// A shell command writing to `file` (a shell word) the state of a boot
/// that must match another's: every path under `ROOT/run` with its type,
/// mode, link target and content hash; `status.json` without its clock or
/// what the run itself did (an image attached earlier is "unchanged", and
/// unpacked nothing); the mounts under `ROOT` without a tmpfs size (what
/// the limit left when it was mounted); the loop devices backed by a file
/// under `ROOT`.
pub fn run_snapshot_sh(file: &str) -> String {
    format!(
        r#"( cd "$ROOT" && find run -printf '%p|%y|%m|%l|' -exec sh -c 'if [ -f "$1" ] && [ ! -L "$1" ] && [ "$1" != run/torcx/status.json ]; then md5sum < "$1"; else echo; fi' _ {{}} \; | sort
  [ ! -f run/torcx/status.json ] || sed -E -e 's/"(started|finished|unpacked_bytes)": [0-9]+/"": N/' -e 's/"state": "(attached|unchanged)"/"state": "attached"/' run/torcx/status.json
  grep -F " $ROOT/" /proc/self/mountinfo | cut -d' ' -f5,6,9- | sed -E -e 's/,size=[0-9]+k//' -e 's/,nr_inodes=[0-9]+//' | sort
  for b in /sys/block/loop*/loop/backing_file; do [ -r "$b" ] && grep -F "$ROOT/" "$b" || true; done ) > {file}"#
    )
}

/// Bytes that no compressor shrinks, the same every run.
pub fn noise(n: usize) -> Vec<u8> {
    let mut x = 0x2545f4914f6cdd1du64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub fn write(path: &Path, data: impl AsRef<[u8]>) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

pub fn read_json(path: &Path) -> Value {
    serde_json::from_str(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `[("a","1"), ("b","")]` as a `profile-manifest-v0` document.
pub fn profile_json(images: &[(&str, &str)]) -> String {
    let images: Vec<Value> = images.iter().map(|(n, r)| json!({"name": n, "reference": r})).collect();
    json!({"kind": "profile-manifest-v0", "value": {"images": images}}).to_string()
}

/// One test's scratch space: `T/root` is the `--root`, `T/canary` a
/// directory next to it that nothing may touch, `T/stage` the image trees.
pub struct TestRoot {
    tmp: tempfile::TempDir,
    pub base: PathBuf,
    pub root: PathBuf,
    pub canary: PathBuf,
}

pub const CANARY_FILE: &str = "untouched";
pub const CANARY_TEXT: &str = "the canary is alive\n";

impl TestRoot {
    pub fn new() -> TestRoot {
        let tmp = tempfile::tempdir().unwrap();
        // mountinfo shows canonical paths.
        let base = std::fs::canonicalize(tmp.path()).unwrap();
        let root = base.join("root");
        let canary = base.join("canary");
        std::fs::create_dir_all(&root).unwrap();
        write(&canary.join(CANARY_FILE), CANARY_TEXT);
        TestRoot { tmp, base, root, canary }
    }

    /// `rel` (relative, or absolute as the booted system sees it) under the root.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel.trim_start_matches('/'))
    }

    pub fn write(&self, rel: &str, data: impl AsRef<[u8]>) {
        write(&self.path(rel), data)
    }

    pub fn exists(&self, rel: &str) -> bool {
        std::fs::symlink_metadata(self.path(rel)).is_ok()
    }

    pub fn vendor_profile(&self, images: &[(&str, &str)]) {
        self.write("usr/share/torcx/profiles/vendor.json", profile_json(images));
    }

    pub fn oem_profile(&self, images: &[(&str, &str)]) {
        self.write("usr/share/oem/torcx/profiles/oem.json", profile_json(images));
    }

    /// A user profile in `/etc/torcx/profiles`, selected by `next-profile`.
    pub fn next_profile(&self, name: &str, images: &[(&str, &str)]) {
        self.write(&format!("etc/torcx/profiles/{name}.json"), profile_json(images));
        self.write("etc/torcx/next-profile", format!("{name}\n"));
    }

    /// A fresh directory under the test's scratch space (not under the root).
    pub fn scratch(&self, name: &str) -> PathBuf {
        let d = self.base.join(name);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Asserts the canary directory next to the root still holds exactly its one file.
    pub fn assert_canary(&self) {
        let names: Vec<String> = std::fs::read_dir(&self.canary)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, [CANARY_FILE], "something was written next to the root");
        assert_eq!(read(&self.canary.join(CANARY_FILE)), CANARY_TEXT);
    }

    pub fn tmp(&self) -> &Path {
        self.tmp.path()
    }
}

/// With `TORCX_FUZZ_SEEDS=DIR` (set by `fuzz/seed.sh`), every archive a
/// test leaves in its scratch space is kept in `DIR`: the fuzz targets'
/// seed corpora are the test suite's own images, hostile ones included.
impl Drop for TestRoot {
    fn drop(&mut self) {
        let Some(dir) = std::env::var_os("TORCX_FUZZ_SEEDS") else { return };
        let _ = std::fs::create_dir_all(&dir);
        let mut todo = vec![self.base.clone()];
        while let Some(d) = todo.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else { continue };
            for e in rd.flatten() {
                let Ok(ft) = e.file_type() else { continue };
                let name = e.file_name().to_string_lossy().into_owned();
                if ft.is_dir() {
                    todo.push(e.path());
                } else if ft.is_file() && name.contains(".torcx.") {
                    let Ok(data) = std::fs::read(e.path()) else { continue };
                    let suffix = &name[name.find(".torcx.").unwrap()..];
                    let mut h = std::collections::hash_map::DefaultHasher::new();
                    std::hash::Hash::hash(&data, &mut h);
                    let _ = std::fs::write(
                        Path::new(&dir).join(format!("{:016x}{suffix}", std::hash::Hasher::finish(&h))),
                        data,
                    );
                }
            }
        }
    }
}

/// Archive formats a store holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fmt {
    Tgz,
    Zst,
}

impl Fmt {
    pub fn suffix(self) -> &'static str {
        match self {
            Fmt::Tgz => "torcx.tgz",
            Fmt::Zst => "torcx.tar.zst",
        }
    }
}

/// Stores, as the booted system names them.
pub const USER_STORE: &str = "/var/lib/torcx/store";
pub const VENDOR_STORE: &str = "/usr/share/torcx/store";

/// An image tree being built in `T/stage/NAME:REF`.
pub struct Image {
    pub name: String,
    pub reference: String,
    pub dir: PathBuf,
}

impl Image {
    pub fn new(t: &TestRoot, name: &str, reference: &str) -> Image {
        let dir = t.base.join("stage").join(format!("{name}:{reference}"));
        std::fs::create_dir_all(&dir).unwrap();
        Image { name: name.into(), reference: reference.into(), dir }
    }

    pub fn id(&self) -> String {
        format!("{}:{}", self.name, self.reference)
    }

    fn at(&self, rel: &str) -> PathBuf {
        self.dir.join(rel.trim_start_matches('/'))
    }

    pub fn file_mode(&self, rel: &str, data: impl AsRef<[u8]>, mode: u32) -> &Self {
        let p = self.at(rel);
        write(&p, data);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        self
    }

    pub fn file(&self, rel: &str, data: impl AsRef<[u8]>) -> &Self {
        self.file_mode(rel, data, 0o644)
    }

    pub fn exec(&self, rel: &str, data: impl AsRef<[u8]>) -> &Self {
        self.file_mode(rel, data, 0o755)
    }

    pub fn dir(&self, rel: &str) -> &Self {
        std::fs::create_dir_all(self.at(rel)).unwrap();
        self
    }

    pub fn symlink(&self, rel: &str, target: &str) -> &Self {
        let p = self.at(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, &p).unwrap();
        self
    }

    /// `rel` becomes a second name of the existing file `existing`.
    pub fn hardlink(&self, rel: &str, existing: &str) -> &Self {
        let p = self.at(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::hard_link(self.at(existing), &p).unwrap();
        self
    }

    /// Writes `.torcx/manifest.json` with `value` in the v0 envelope.
    pub fn manifest(&self, value: Value) -> &Self {
        self.file(".torcx/manifest.json", json!({"kind": "image-manifest-v0", "value": value}).to_string())
    }

    /// Packs the tree with GNU tar into `store` (a path as the booted system
    /// sees it, e.g. [`USER_STORE`]) under the root. Returns the host path.
    pub fn pack(&self, t: &TestRoot, store: &str, fmt: Fmt) -> PathBuf {
        let dest = t.path(store).join(format!("{}.{}", self.id(), fmt.suffix()));
        self.pack_to(&dest, fmt);
        dest
    }

    /// Packs the tree with GNU tar into the file `dest`.
    pub fn pack_to(&self, dest: &Path, fmt: Fmt) {
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        let compress = match fmt {
            Fmt::Tgz => "--gzip",
            Fmt::Zst => "--zstd",
        };
        let out = Command::new("tar")
            .args(["--sort=name", "--owner=0", "--group=0", "--numeric-owner", "--mtime=@0", compress, "-C"])
            .arg(&self.dir)
            .arg("-cf")
            .arg(dest)
            .arg(".")
            .output()
            .expect("running tar");
        assert!(out.status.success(), "tar failed: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// One entry of a hand-made (possibly hostile) archive, see [`py_tar`].
pub fn e_dir(name: &str) -> Value {
    json!({"type": "dir", "name": name, "mode": 0o755})
}
pub fn e_file(name: &str, data: &[u8]) -> Value {
    e_file_mode(name, data, 0o644)
}
pub fn e_file_mode(name: &str, data: &[u8], mode: u32) -> Value {
    let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
    json!({"type": "file", "name": name, "data": hex, "mode": mode})
}
pub fn e_symlink(name: &str, target: &str) -> Value {
    json!({"type": "symlink", "name": name, "target": target, "mode": 0o777})
}
pub fn e_hardlink(name: &str, target: &str) -> Value {
    json!({"type": "hardlink", "name": name, "target": target, "mode": 0o644})
}
pub fn e_char(name: &str) -> Value {
    json!({"type": "char", "name": name, "mode": 0o666, "major": 1, "minor": 3})
}
pub fn e_block(name: &str) -> Value {
    json!({"type": "block", "name": name, "mode": 0o660, "major": 7, "minor": 0})
}
pub fn e_fifo(name: &str) -> Value {
    json!({"type": "fifo", "name": name, "mode": 0o644})
}

/// Writes exactly the given entries, in order and with names as given
/// (`../x`, `/abs`, device nodes...), with Python's `tarfile`, then
/// compresses with `gzip` or `zstd`.
const PY_TAR: &str = r#"
import json, sys, tarfile
spec = json.load(open(sys.argv[1]))
kinds = {"dir": tarfile.DIRTYPE, "file": tarfile.REGTYPE, "symlink": tarfile.SYMTYPE,
         "hardlink": tarfile.LNKTYPE, "char": tarfile.CHRTYPE, "block": tarfile.BLKTYPE,
         "fifo": tarfile.FIFOTYPE}
fmt = {"GNU": tarfile.GNU_FORMAT, "PAX": tarfile.PAX_FORMAT, "USTAR": tarfile.USTAR_FORMAT}[sys.argv[3]]
with tarfile.open(sys.argv[2], "w", format=fmt) as t:
    for e in spec:
        ti = tarfile.TarInfo(e["name"])
        ti.type = kinds[e["type"]]
        ti.mode = e["mode"]
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = "root"
        ti.mtime = 0
        data = None
        if "data" in e:
            data = bytes.fromhex(e["data"])
            ti.size = len(data)
        if e["type"] in ("symlink", "hardlink"):
            ti.linkname = e["target"]
        if e["type"] in ("char", "block"):
            ti.devmajor, ti.devminor = e["major"], e["minor"]
        if data is None:
            t.addfile(ti)
        else:
            import io
            t.addfile(ti, io.BytesIO(data))
"#;

pub fn py_tar(dest: &Path, fmt: Fmt, entries: &[Value]) {
    py_tar_format(dest, fmt, entries, "GNU")
}

/// Like [`py_tar`], in tarfile's `GNU`, `PAX` or `USTAR` format (long names
/// become `././@LongLink` entries in GNU, `path` records in PAX).
pub fn py_tar_format(dest: &Path, fmt: Fmt, entries: &[Value], format: &str) {
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    let work = tempfile::tempdir().unwrap();
    let spec = work.path().join("spec.json");
    let script = work.path().join("mktar.py");
    let tar = work.path().join("out.tar");
    write(&spec, serde_json::to_vec(entries).unwrap());
    write(&script, PY_TAR);
    let out = Command::new("python3").arg(&script).arg(&spec).arg(&tar).arg(format).output().expect("running python3");
    assert!(out.status.success(), "python3 tarfile failed: {}", String::from_utf8_lossy(&out.stderr));
    let tool = match fmt {
        Fmt::Tgz => ["gzip", "-n", "-c"],
        Fmt::Zst => ["zstd", "-q", "-c"],
    };
    let f = std::fs::File::create(dest).unwrap();
    let st = Command::new(tool[0]).args(&tool[1..]).arg(&tar).stdout(f).status().unwrap();
    assert!(st.success(), "{} failed", tool[0]);
}

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub mount_point: String,
    pub options: Vec<String>,
    pub fstype: String,
    pub source: String,
    pub super_options: Vec<String>,
}

pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let f: Vec<&str> = pre.split(' ').collect();
            let p: Vec<&str> = post.split(' ').collect();
            Some(Mount {
                mount_point: f.get(4)?.replace("\\040", " "),
                options: f.get(5)?.split(',').map(String::from).collect(),
                fstype: p.first()?.to_string(),
                source: p.get(1)?.to_string(),
                super_options: p.get(2)?.split(',').map(String::from).collect(),
            })
        })
        .collect()
}

/// One file of a `find -printf` listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `f` file, `d` directory, `l` symlink, `p` fifo, `c`/`b` devices.
    pub kind: char,
    /// Permission bits including setuid/setgid/sticky.
    pub mode: u32,
    pub ino: u64,
    pub nlink: u64,
    pub size: u64,
    pub target: String,
}

const LIST_FMT: &str = r"%P|%y|%m|%i|%n|%s|%l\n";

fn parse_listing(text: &str) -> BTreeMap<String, Entry> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.splitn(7, '|').collect();
            (
                f[0].to_string(),
                Entry {
                    kind: f[1].chars().next().unwrap(),
                    mode: u32::from_str_radix(f[2], 8).unwrap(),
                    ino: f[3].parse().unwrap(),
                    nlink: f[4].parse().unwrap(),
                    size: f[5].parse().unwrap(),
                    target: f[6].to_string(),
                },
            )
        })
        .collect()
}

/// What one step of a namespace session saw.
#[derive(Debug)]
pub struct Step {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// The generator's log (what it wrote to /dev/kmsg, captured) plus stderr.
    pub log: String,
    pub mounts_before: Vec<Mount>,
    pub mounts_after: Vec<Mount>,
    /// `ROOT/run/torcx/unpack`, listed inside the namespace after the step
    /// (paths like `a/bin/tool`); empty when it does not exist.
    pub unpack: BTreeMap<String, Entry>,
    /// The whole root (paths relative to it) after the step, with mtimes,
    /// listed inside the namespace: compare two of these to see change.
    pub all: String,
}

impl Step {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }

    /// Mounts at or below `dir` after the step.
    pub fn mounts_under(&self, dir: &Path) -> Vec<&Mount> {
        let d = dir.to_str().unwrap();
        self.mounts_after.iter().filter(|m| m.mount_point == d || m.mount_point.starts_with(&format!("{d}/"))).collect()
    }

    pub fn mount_at(&self, dir: &Path) -> Option<&Mount> {
        let d = dir.to_str().unwrap();
        self.mounts_after.iter().rev().find(|m| m.mount_point == d)
    }

    /// Entries of the unpacked tree of image `name`, relative to it.
    pub fn tree(&self, name: &str) -> BTreeMap<String, Entry> {
        let pre = format!("{name}/");
        self.unpack.iter().filter_map(|(k, v)| k.strip_prefix(&pre).map(|k| (k.to_string(), v.clone()))).collect()
    }

    pub fn describe(&self) -> String {
        format!("exit {}\n--- stdout\n{}\n--- stderr\n{}\n--- log\n{}", self.code, self.stdout, self.stderr, self.log)
    }
}

fn shq(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

static SESSIONS: AtomicUsize = AtomicUsize::new(0);

/// A shell script run once inside `unshare --mount --propagation private`:
/// torcx steps, generator steps and plain shell commands, in order. Mounts
/// made inside vanish when it ends, so everything a test wants to know about
/// them is recorded by the step itself.
pub struct Ns<'a> {
    t: &'a TestRoot,
    out: PathBuf,
    script: String,
    steps: Vec<bool>,
    gen_link: PathBuf,
    wrap: String,
}

impl<'a> Ns<'a> {
    pub fn new(t: &'a TestRoot) -> Ns<'a> {
        let n = SESSIONS.fetch_add(1, Ordering::Relaxed);
        let out = t.base.join(format!("ns-out-{n}"));
        std::fs::create_dir_all(&out).unwrap();
        let gen_dir = t.base.join("gen-bin");
        std::fs::create_dir_all(&gen_dir).unwrap();
        let gen_link = gen_dir.join("torcx-generator");
        if std::fs::symlink_metadata(&gen_link).is_err() {
            std::os::unix::fs::symlink(TORCX, &gen_link).unwrap();
        }
        Ns { t, out, script: String::from("set -eu\n"), steps: vec![], gen_link, wrap: String::new() }
    }

    /// A plain shell command; the session fails if it does.
    pub fn sh(&mut self, cmd: &str) -> &mut Self {
        self.script.push_str(cmd);
        self.script.push('\n');
        self
    }

    /// Runs the following torcx steps under `cmd` (e.g. `prlimit
    /// --data=N --`, `timeout 60`): memory and time bounds asserted
    /// through limits, not measurements.
    pub fn wrap(&mut self, cmd: &str) -> &mut Self {
        self.wrap = cmd.to_string();
        self
    }

    fn step(&mut self, env: &[(&str, &str)], program: &str, args: &[String], generator: bool) -> usize {
        let i = self.steps.len();
        self.steps.push(generator);
        let o = format!("\"$OUT\"/{i}");
        let mut cmd = format!("{} env", self.wrap);
        for (k, v) in env {
            cmd += &format!(" {}", shq(&format!("{k}={v}")));
        }
        cmd += &format!(" {program}");
        for a in args {
            cmd += &format!(" {}", shq(a));
        }
        if generator {
            // Keep the generator's kernel-log lines off this machine's log: a
            // plain file stands in for /dev/kmsg while it runs.
            self.sh(&format!(": > {o}.kmsg\nif [ -e /dev/kmsg ]; then mount --bind {o}.kmsg /dev/kmsg; fi"));
        }
        self.sh(&format!(
            "cat /proc/self/mountinfo > {o}.mounts-before\n\
             rc=0; {cmd} > {o}.stdout 2> {o}.stderr < /dev/null || rc=$?; echo $rc > {o}.rc\n\
             cat /proc/self/mountinfo > {o}.mounts-after"
        ));
        if generator {
            self.sh("if [ -e /dev/kmsg ]; then umount /dev/kmsg; fi");
        }
        self.sh(&format!(
            "if [ -d \"$ROOT/run/torcx/unpack\" ]; then find \"$ROOT/run/torcx/unpack\" -mindepth 1 -printf '{LIST_FMT}' | sort > {o}.unpack; fi\n\
             find \"$ROOT\" -mindepth 1 -printf '%P|%y|%m|%s|%T@|%l\\n' | sort > {o}.all"
        ));
        i
    }

    /// `torcx --root ROOT ARGS...` with extra environment.
    pub fn torcx_env(&mut self, env: &[(&str, &str)], args: &[&str]) -> usize {
        let mut a = vec!["--root".to_string(), self.t.root.display().to_string()];
        a.extend(args.iter().map(|s| s.to_string()));
        self.step(env, "\"$TORCX\"", &a, false)
    }

    pub fn torcx(&mut self, args: &[&str]) -> usize {
        self.torcx_env(&[], args)
    }

    pub fn apply(&mut self) -> usize {
        self.torcx(&["apply"])
    }

    /// `torcx-generator ARGS...` (the same binary, called by that name).
    pub fn generator(&mut self, args: &[&str]) -> usize {
        let a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        self.step(&[], "\"$GEN\"", &a, true)
    }

    /// Copies the unpacked trees (`ROOT/run/torcx/unpack/.`) with `cp -a`
    /// (hard links, symlinks and modes kept) to a directory that outlives
    /// the namespace; returns it.
    pub fn copy_unpack(&mut self, label: &str) -> PathBuf {
        let dest = self.out.join(format!("copy-{label}"));
        self.sh(&format!("mkdir -p {d} && cp -a \"$ROOT/run/torcx/unpack/.\" {d}", d = shq(dest.to_str().unwrap())));
        dest
    }

    pub fn run(&self) -> Vec<Step> {
        let mut cmd = Command::new("unshare");
        clean_env(&mut cmd);
        let out = cmd
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(&self.script)
            .env("ROOT", &self.t.root)
            .env("OUT", &self.out)
            .env("TORCX", TORCX)
            .env("GEN", &self.gen_link)
            .stdin(Stdio::null())
            .output()
            .expect("running unshare");
        assert!(
            out.status.success(),
            "the namespace session failed ({}):\n{}\n--- script\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.script
        );
        let rd = |i: usize, ext: &str| std::fs::read_to_string(self.out.join(format!("{i}.{ext}"))).unwrap_or_default();
        (0..self.steps.len())
            .map(|i| {
                let stderr = rd(i, "stderr");
                Step {
                    code: rd(i, "rc").trim().parse().unwrap(),
                    stdout: rd(i, "stdout"),
                    log: format!("{}{}", rd(i, "kmsg"), stderr),
                    stderr,
                    mounts_before: parse_mountinfo(&rd(i, "mounts-before")),
                    mounts_after: parse_mountinfo(&rd(i, "mounts-after")),
                    unpack: parse_listing(&rd(i, "unpack")),
                    all: rd(i, "all"),
                }
            })
            .collect()
    }
}

/// Runs `torcx --root ROOT apply` once in a fresh namespace.
pub fn apply_once(t: &TestRoot, env: &[(&str, &str)]) -> Step {
    let mut ns = Ns::new(t);
    ns.torcx_env(env, &["apply"]);
    ns.run().pop().unwrap()
}

/// Every path under `dir` (relative), with its type and content or target;
/// for "nothing else changed" checks made outside the namespace.
pub fn listing(dir: &Path) -> BTreeMap<String, String> {
    fn walk(base: &Path, d: &Path, out: &mut BTreeMap<String, String>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(base).unwrap().display().to_string();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let desc = if m.file_type().is_symlink() {
                format!("link -> {}", std::fs::read_link(&p).unwrap().display())
            } else if m.is_dir() {
                walk(base, &p, out);
                format!("dir {:o}", m.mode() & 0o7777)
            } else if m.is_file() {
                let b = std::fs::read(&p).unwrap();
                format!("file {:o} {} bytes, {:x}", m.mode() & 0o7777, b.len(), fnv(&b))
            } else {
                format!("other {:o}", m.mode())
            };
            out.insert(rel, desc);
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf29ce484222325u64, |h, c| (h ^ *c as u64).wrapping_mul(0x100000001b3))
}

/// The images of a status document (`torcx-apply-status-v0`) as
/// `(name:reference, state)` pairs, checking the envelope.
pub fn status_states(doc: &Value) -> Vec<(String, String)> {
    assert_eq!(doc["kind"], "torcx-apply-status-v0", "{doc:#}");
    doc["value"]["images"]
        .as_array()
        .unwrap_or_else(|| panic!("no value.images in {doc:#}"))
        .iter()
        .map(|i| {
            (
                format!("{}:{}", i["name"].as_str().unwrap(), i["reference"].as_str().unwrap()),
                i["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

pub fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

/// The error of image `id` in a status document.
pub fn status_error(doc: &Value, id: &str) -> String {
    doc["value"]["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| format!("{}:{}", i["name"].as_str().unwrap(), i["reference"].as_str().unwrap()) == id)
        .unwrap_or_else(|| panic!("no image {id} in {doc:#}"))["error"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Asserts `needle` occurs in `hay`, printing the whole step otherwise.
#[track_caller]
pub fn assert_contains(hay: &str, needle: &str, step: &Step) {
    assert!(hay.contains(needle), "expected {needle:?} in:\n{hay}\n=== step\n{}", step.describe());
}
