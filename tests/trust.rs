//! `verify: signed` (torcx-config-v1): the signed index populate keeps
//! vouches for an archive at every boot. apply, attach and the generator
//! accept an archive outside the vendor store only when its hash is listed;
//! a changed archive fails by name and nothing of it is placed or sealed.
//! Keys by `gpg`, archives by `tar` and `mksquashfs`, populated from a
//! `file://` remote, applied in a private mount namespace.

mod common;

use common::remote::Gpg;
use common::*;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

const A_UNIT: &str = "[Service]\nExecStart=/run/torcx/bin/a-tool\n";

fn sha512(path: &Path) -> String {
    let out = std::process::Command::new("sha512sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string()
}

/// Image `NAME:REF` with a binary and a service.
fn image(t: &TestRoot, name: &str, reference: &str, text: &str) -> Image {
    let img = Image::new(t, name, reference);
    img.manifest(
        json!({"bin": [format!("/bin/{name}-tool")], "units": [format!("/lib/systemd/system/{name}.service")]}),
    )
    .exec(&format!("bin/{name}-tool"), format!("#!/bin/sh\necho {text}\n"))
    .file(&format!("lib/systemd/system/{name}.service"), A_UNIT.replace("a-tool", &format!("{name}-tool")));
    img
}

fn squashfs(dir: &Path, dest: &Path) {
    let out = std::process::Command::new("mksquashfs")
        .arg(dir)
        .arg(dest)
        .args(["-noappend", "-all-root", "-quiet"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A machine with `verify: signed`: `a:1` (tgz) and `s:1` (squashfs)
/// populated from a signed `file://` remote, `v:1` in the vendor store
/// (no index lists it), all three in the next profile.
struct Signed {
    t: TestRoot,
    media: PathBuf,
    gpg: Gpg,
}

impl Signed {
    fn new() -> Signed {
        require_root("trust");
        require_tool("trust", "mksquashfs", "squashfs-tools");
        let t = TestRoot::new();
        t.write("usr/lib/os-release", "ID=flatcar\nVERSION_ID=1.0.0\n");
        let gpg = Gpg::new(&t.scratch("keys"), "torcx test <test@torcx.invalid>", "ed25519");
        let media = t.scratch("media");
        image(&t, "a", "1", "a").pack_to(&media.join("a:1.torcx.tgz"), Fmt::Tgz);
        squashfs(&image(&t, "s", "1", "s").dir, &media.join("s:1.torcx.squashfs"));
        image(&t, "v", "1", "v").pack(&t, VENDOR_STORE, Fmt::Tgz);
        let s = Signed { t, media, gpg };
        let v = |file: &str| {
            let (n, r) = file.split_once('.').unwrap().0.split_once(':').unwrap();
            json!({"name": n, "defaultVersion": r, "versions": [{"version": r, "format": "", "location": file,
                   "hash": format!("sha512-{}", sha512(&s.media.join(file)))}]})
        };
        let doc = json!({"kind": "torcx-remote-contents-v1", "value": {"images": [v("a:1.torcx.tgz"), v("s:1.torcx.squashfs")]}});
        write(&s.media.join("torcx_remote_contents.json.asc"), s.gpg.clearsign(&doc.to_string()));
        s.t.write(
            "etc/torcx/remotes/media/remote.json",
            json!({"kind": "remote-manifest-v0", "value": {"base_url": format!("file://{}", s.media.display()),
                   "keys": [{"armored_keyring": "key.asc"}]}})
            .to_string(),
        );
        s.t.write("etc/torcx/remotes/media/key.asc", s.gpg.public_armored());
        let images: Vec<Value> = [("a", "1", "media"), ("s", "1", "media"), ("v", "1", "")]
            .iter()
            .map(|(n, r, rem)| json!({"name": n, "reference": r, "remote": rem}))
            .collect();
        s.t.write(
            "etc/torcx/profiles/p.json",
            json!({"kind": "profile-manifest-v1", "value": {"images": images}}).to_string(),
        );
        s.t.write("etc/torcx/next-profile", "p\n");
        let (code, out, err) = torcx_in(None, &["--root", s.t.root.to_str().unwrap(), "profile", "populate"]);
        assert_eq!(code, 0, "{out}{err}");
        s.t.write("etc/torcx/config.json", r#"{"kind":"torcx-config-v1","value":{"verify":"signed"}}"#);
        s
    }

    fn user_archive(&self, file: &str) -> PathBuf {
        self.t.path(USER_STORE).join(file)
    }

    /// Replaces a populated archive by another valid one (same name, other content).
    fn tamper(&self, file: &str) {
        let img = image(&self.t, file.split(':').next().unwrap(), "evil", "evil");
        let dest = self.user_archive(file);
        if file.ends_with(".squashfs") {
            squashfs(&img.dir, &dest);
        } else {
            img.pack_to(&dest, Fmt::Tgz);
        }
    }
}

/// The generator's three output directories, in a directory of their own.
struct GenOut {
    _dir: tempfile::TempDir,
    normal: PathBuf,
    early: PathBuf,
    late: PathBuf,
}

impl GenOut {
    fn new() -> GenOut {
        let d = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(d.path()).unwrap();
        let (normal, early, late) = (base.join("normal"), base.join("early"), base.join("late"));
        for p in [&normal, &early, &late] {
            std::fs::create_dir(p).unwrap();
        }
        GenOut { _dir: d, normal, early, late }
    }

    /// Adds `torcx-generator --root ROOT NORMAL EARLY LATE` to the session.
    fn run_in(&self, ns: &mut Ns, t: &TestRoot) {
        let p = |p: &Path| p.to_str().unwrap().to_string();
        ns.generator(&["--root", t.root.to_str().unwrap(), &p(&self.normal), &p(&self.early), &p(&self.late)]);
    }
}

#[test]
fn signed_boot_accepts_populated_and_vendor_archives() {
    let s = Signed::new();
    let g = GenOut::new();
    let n = &g.normal;
    let mut ns = Ns::new(&s.t);
    g.run_in(&mut ns, &s.t);
    ns.apply();
    let steps = ns.run();
    assert_eq!(steps[0].code, 0, "{}", steps[0].describe());
    assert_eq!(steps[1].code, 0, "{}", steps[1].describe());
    for u in ["a.service", "s.service", "v.service"] {
        assert!(n.join(u).exists(), "{u} not planned");
    }
    for img in ["a/bin/a-tool", "s/bin/s-tool", "v/bin/v-tool"] {
        assert!(steps[1].unpack.contains_key(img), "{img} missing: {:?}", steps[1].unpack.keys());
    }
    assert!(s.t.exists("run/metadata/torcx"));
    // The record holds the digest verified while unpacking (no second read).
    let rec = read_json(&s.t.path("run/torcx/attached/a.json")).to_string();
    assert!(rec.contains(&format!("sha512:{}", sha512(&s.user_archive("a:1.torcx.tgz")))), "{rec}");
}

#[test]
fn a_changed_archive_fails_by_name_and_nothing_of_it_is_placed_or_sealed() {
    for file in ["a:1.torcx.tgz", "s:1.torcx.squashfs"] {
        let s = Signed::new();
        s.tamper(file);
        let name = &file[..1];
        let g = GenOut::new();
        let n = &g.normal;
        let mut ns = Ns::new(&s.t);
        g.run_in(&mut ns, &s.t);
        ns.apply();
        let steps = ns.run();
        let want = format!("{USER_STORE}/{file}: hash mismatch for image {name}:1: the signed index lists sha512-");
        // The generator writes no unit of it: systemd never loads them.
        assert_eq!(steps[0].code, 1, "{}", steps[0].describe());
        assert_contains(&steps[0].log, &want, &steps[0]);
        assert!(!n.join(format!("{name}.service")).exists(), "{file}: unit planned");
        assert!(n.join("v.service").exists());
        // Apply: the image fails by name, its tree is taken down, no seal.
        assert_eq!(steps[1].code, 1, "{}", steps[1].describe());
        assert_contains(&steps[1].stderr, &want, &steps[1]);
        assert!(
            !steps[1].unpack.keys().any(|k| k.starts_with(&format!("{name}/"))),
            "{file}: {:?}",
            steps[1].unpack.keys()
        );
        assert!(steps[1].mounts_after.iter().all(|m| !m.mount_point.ends_with(&format!("unpack/{name}"))));
        assert!(!s.t.exists(&format!("run/systemd/system/{name}.service")));
        assert!(!s.t.exists(&format!("run/torcx/bin/{name}-tool")));
        assert!(!s.t.exists("run/metadata/torcx"));
        assert!(s.t.exists("run/torcx/bin/v-tool"), "the other images are attached");
        let status = read_json(&s.t.path("run/torcx/status.json"));
        assert!(status_error(&status, &format!("{name}:1")).contains("hash mismatch"), "{status}");
        // image verify says the same, one line.
        let (code, _, err) = torcx_in(None, &["--root", s.t.root.to_str().unwrap(), "image", "verify"]);
        assert_eq!(code, 1);
        let errors: Vec<&str> = err.lines().filter(|l| l.contains(": error: ")).collect();
        assert_eq!(errors.len(), 1, "{err}");
        assert!(errors[0].contains(&format!("image {name}:1")) && errors[0].contains("hash mismatch"), "{err}");
    }
}

#[test]
fn an_archive_no_index_lists_is_refused_before_unpacking() {
    let s = Signed::new();
    image(&s.t, "c", "1", "c").pack(&s.t, USER_STORE, Fmt::Tgz);
    // An OEM archive needs a signature too: the OEM partition is writable.
    image(&s.t, "o", "1", "o").pack(&s.t, "/usr/share/oem/torcx/store", Fmt::Tgz);
    let mut ns = Ns::new(&s.t);
    ns.torcx(&["attach", "c:1", "--no-reload"]);
    ns.torcx(&["attach", "o:1", "--no-reload"]);
    ns.torcx(&["attach", &s.t.scratch("stage").join("c:1").display().to_string(), "--no-reload"]);
    ns.torcx(&["attach", "a:1", "--no-reload"]);
    let steps = ns.run();
    assert_eq!(steps[0].code, 1);
    assert_contains(
        &steps[0].stderr,
        &format!("{USER_STORE}/c:1.torcx.tgz: verify is signed and no signed remote index lists image c:1"),
        &steps[0],
    );
    assert!(steps[0].mounts_after.len() == steps[0].mounts_before.len(), "something was mounted");
    assert_eq!(steps[1].code, 1);
    assert_contains(&steps[1].stderr, "no signed remote index lists image o:1", &steps[1]);
    assert_eq!(steps[2].code, 1);
    assert_contains(&steps[2].stderr, "verify is signed, and an image directory has no hash to verify", &steps[2]);
    assert_eq!(steps[3].code, 0, "{}", steps[3].describe());
    assert!(steps[3].unpack.contains_key("a/bin/a-tool"));
    let (code, out, err) = torcx_in(None, &["--root", s.t.root.to_str().unwrap(), "--json", "image", "verify"]);
    assert_eq!(code, 1);
    let doc: Value = serde_json::from_str(&out).unwrap();
    let mut got: Vec<(String, bool)> = doc["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["image"].as_str().unwrap().into(), v["ok"].as_bool().unwrap()))
        .collect();
    got.sort();
    // The vendor store's v:1 is not checked: /usr is verified by the OS.
    assert_eq!(
        got,
        [("a:1".into(), true), ("c:1".into(), false), ("o:1".into(), false), ("s:1".into(), true)],
        "{err}"
    );
}

#[test]
fn an_index_is_trusted_only_while_its_signature_verifies_against_the_remote_keys() {
    let s = Signed::new();
    // The admin replaces the remote's key: the kept index no longer vouches.
    let other = Gpg::new(&s.t.scratch("other"), "other <o@torcx.invalid>", "ed25519");
    s.t.write("etc/torcx/remotes/media/key.asc", other.public_armored());
    let step = apply_once(&s.t, &[]);
    assert_eq!(step.code, 1);
    assert_contains(&step.stderr, "no signed remote index lists image a:1", &step);
    assert_contains(&step.stderr, "does not verify against any key the remote lists", &step);
    // A kept index edited in place does not verify either.
    s.t.write("etc/torcx/remotes/media/key.asc", s.gpg.public_armored());
    let kept =
        std::fs::read_dir(s.t.path(USER_STORE).join(".torcx-remotes/media")).unwrap().next().unwrap().unwrap().path();
    let text = std::fs::read_to_string(&kept).unwrap();
    std::fs::write(&kept, text.replace(&sha512(&s.user_archive("a:1.torcx.tgz")), &"0".repeat(128))).unwrap();
    let step = apply_once(&s.t, &[]);
    assert_eq!(step.code, 1);
    assert_contains(&step.stderr, "does not verify", &step);
    std::fs::write(&kept, text).unwrap();
    assert_eq!(apply_once(&s.t, &[]).code, 0);
}

/// Found by the attack on issue 10: under `verify: signed` the generator
/// does not take units from its cache (in /var, as writable as the store,
/// and keyed by metadata anyone can read), but from the archive it hashed.
/// A generator cache entry forged with the right key (every field of the
/// archive's identity, ctime included, is public through stat) brings no
/// unit under `verify: signed`: the generator reads the archive, and apply
/// places a squashfs image's units from the hashed file, not the cache
/// (found by the attack on issue 13), and records a tar archive's digest
/// from the bytes it unpacked, not the entry's.
#[test]
fn a_forged_generator_cache_brings_no_unit() {
    let s = Signed::new();
    use std::os::unix::fs::MetadataExt;
    let forge = |file: &str, name: &str| {
        let st = std::fs::metadata(s.user_archive(file)).unwrap();
        let manifest =
            json!({"kind": "image-manifest-v0", "value": {"units": [format!("/lib/systemd/system/{name}.service")]}});
        let entry = json!({"kind": "torcx-generator-cache-v5",
            "key": {"archive": format!("{USER_STORE}/{file}"), "dev": st.dev(), "ino": st.ino(), "size": st.size(),
                "mtime": st.mtime(), "mtime_nsec": st.mtime_nsec(), "ctime": st.ctime(), "ctime_nsec": st.ctime_nsec()},
            "mem": {"files": [
                {"path": ".torcx/manifest.json", "text": manifest.to_string()},
                {"path": format!("lib/systemd/system/{name}.service"), "text": "[Service]\nExecStart=/bin/sh -c 'echo FORGED'\n"}],
                "links": [], "dirs": []},
            "digest": format!("sha256:{}", "0".repeat(64))});
        s.t.write(&format!("var/lib/torcx/cache/generator/{name}:1.json"), entry.to_string());
    };
    forge("a:1.torcx.tgz", "a");
    forge("s:1.torcx.squashfs", "s");
    let g = GenOut::new();
    let n = &g.normal;
    let mut ns = Ns::new(&s.t);
    g.run_in(&mut ns, &s.t);
    let apply = ns.apply();
    let steps = ns.run();
    assert_eq!(steps[0].code, 0, "{}", steps[0].describe());
    for name in ["a", "s"] {
        let unit = read(&n.join(format!("{name}.service")));
        assert!(unit.contains(&format!("ExecStart=/run/torcx/bin/{name}-tool")) && !unit.contains("FORGED"), "{unit}");
    }
    let placed = read(&s.t.path("run/systemd/system/s.service"));
    assert!(
        placed.contains("ExecStart=/run/torcx/bin/s-tool") && !placed.contains("FORGED"),
        "{}",
        steps[apply].describe()
    );
    // Nor a digest: the tar archive's recorded one is of the bytes unpacked.
    let rec = read_json(&s.t.path("run/torcx/attached/a.json"));
    let want = format!("sha512:{}", sha512(&s.user_archive("a:1.torcx.tgz")));
    assert_eq!(rec["value"]["digest"], json!(want), "{}", steps[apply].describe());
}

/// Found by the attack on issue 10: the OEM partition is as writable as the
/// OEM store, so a remote (and key) it defines vouches for nothing at boot,
/// and it cannot replace the keys of a remote `/etc` or `/usr` defines.
#[test]
fn oem_remotes_do_not_vouch() {
    let s = Signed::new();
    let evil = Gpg::new(&s.t.scratch("evil"), "evil <e@torcx.invalid>", "ed25519");
    let oem = "usr/share/oem/torcx";
    let img = image(&s.t, "o", "1", "o");
    let archive = s.t.path(oem).join("store/o:1.torcx.tgz");
    img.pack_to(&archive, Fmt::Tgz);
    let index = json!({"kind": "torcx-remote-contents-v1", "value": {"images": [{"name": "o", "defaultVersion": "1",
        "versions": [{"version": "1", "format": "tgz", "location": "o:1.torcx.tgz", "hash": format!("sha512-{}", sha512(&archive))}]}]}});
    for remote in ["oem", "media"] {
        s.t.write(&format!("{oem}/store/.torcx-remotes/{remote}/x.json.asc"), evil.clearsign(&index.to_string()));
        s.t.write(&format!("{oem}/remotes/{remote}/key.asc"), evil.public_armored());
        s.t.write(
            &format!("{oem}/remotes/{remote}/remote.json"),
            json!({"kind": "remote-manifest-v0", "value": {"base_url": "file:///nowhere", "keys": [{"armored_keyring": "key.asc"}]}}).to_string(),
        );
    }
    let (code, out, err) = torcx_in(None, &["--root", s.t.root.to_str().unwrap(), "--json", "image", "verify", "o:1"]);
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("no signed remote index lists image o:1"), "{err}");
    assert!(
        err.contains("no remote.json for remote oem (searched /usr/share/torcx/remotes, /etc/torcx/remotes)"),
        "{err}"
    );
    assert!(err.contains("does not verify against any key the remote lists"), "{err}");
}

/// Found by the attack on issue 10: a FIFO among the kept indexes is
/// refused at once, not waited on.
#[test]
fn a_fifo_among_the_kept_indexes_is_not_waited_on() {
    let s = Signed::new();
    let fifo = s.t.path(USER_STORE).join(".torcx-remotes/media/0000.json.asc");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let out = std::process::Command::new("timeout")
        .args(["20", TORCX, "--root", s.t.root.to_str().unwrap(), "image", "verify"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("0000.json.asc: not a regular file"), "{err}");
}
