//! `torcx-generator` (the torcx binary called by that name): it plans the
//! boot read-only, writing only into its output directory, never mounting.

mod common;

use common::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const X_SERVICE: &str = "[Unit]\nDescription=x\n\n[Service]\nExecStart=/run/torcx/bin/x\n";
const X_SOCKET: &str = "[Socket]\nListenStream=/run/x.sock\n";
const APPLY_LINK: &str = "sysinit.target.wants/torcx-apply.service";
const APPLY_TARGET: &str = "/usr/lib/systemd/system/torcx-apply.service";

/// Image `x`: a binary, a service and a socket, the service enabled through
/// a `.wants` directory, and a tmpfiles entry the generator must leave alone.
fn image_x(t: &TestRoot) -> Image {
    let img = Image::new(t, "x", "1");
    img.manifest(json!({
        "bin": ["/bin/x"],
        "units": [
            "/lib/systemd/system/x.service",
            "/lib/systemd/system/x.socket",
            "/lib/systemd/system/multi-user.target.wants",
        ],
        "tmpfiles": ["/lib/tmpfiles.d/x.conf"],
    }))
    .exec("bin/x", "#!/bin/sh\necho x\n")
    .file("lib/systemd/system/x.service", X_SERVICE)
    .file("lib/systemd/system/x.socket", X_SOCKET)
    .symlink("lib/systemd/system/multi-user.target.wants/x.service", "../x.service")
    .file("lib/tmpfiles.d/x.conf", "d /run/x\n");
    img
}

/// A root with image x in the user store, listed by the vendor profile.
fn root_with_x() -> TestRoot {
    let t = TestRoot::new();
    image_x(&t).pack(&t, USER_STORE, Fmt::Tgz);
    t.vendor_profile(&[("x", "1")]);
    t
}

/// Output directories of one generator run, outside the root.
struct Out {
    _dir: tempfile::TempDir,
    normal: PathBuf,
    early: PathBuf,
    late: PathBuf,
}

impl Out {
    fn new() -> Out {
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        let (normal, early, late) = (base.join("normal"), base.join("early"), base.join("late"));
        for d in [&normal, &early, &late] {
            std::fs::create_dir(d).unwrap();
        }
        Out { _dir: dir, normal, early, late }
    }

    fn args<'a>(&'a self, t: &'a TestRoot) -> Vec<&'a str> {
        vec![
            "--root",
            t.root.to_str().unwrap(),
            self.normal.to_str().unwrap(),
            self.early.to_str().unwrap(),
            self.late.to_str().unwrap(),
        ]
    }

    fn normal(&self, rel: &str) -> PathBuf {
        self.normal.join(rel)
    }

    fn assert_early_late_empty(&self) {
        for d in [&self.early, &self.late] {
            assert_eq!(std::fs::read_dir(d).unwrap().count(), 0, "{} written", d.display());
        }
    }
}

fn service_dropin() -> String {
    "# Attached by torcx from x:1 (/var/lib/torcx/store/x:1.torcx.tgz); do not edit.\n\
     [Unit]\nRequires=torcx.target\nAfter=torcx.target\n\n\
     [Service]\n\
     Environment=TORCX_IMAGE=x TORCX_REFERENCE=1 TORCX_IMAGEDIR=/run/torcx/unpack/x TORCX_BINDIR=/run/torcx/bin\n\
     Environment=PATH=/run/torcx/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n\
     LogExtraFields=TORCX_IMAGE=x:1\n"
        .to_string()
}

#[track_caller]
fn assert_apply_link(out: &Out) {
    assert_eq!(
        std::fs::read_link(out.normal(APPLY_LINK)).expect("no torcx-apply.service link"),
        Path::new(APPLY_TARGET)
    );
}

/// Everything the generator wrote for image x, checked exactly.
#[track_caller]
fn assert_x_planned(out: &Out) {
    let got = listing(&out.normal);
    let names: Vec<&str> = got.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "multi-user.target.wants",
            "multi-user.target.wants/x.service",
            "sysinit.target.wants",
            "sysinit.target.wants/torcx-apply.service",
            "x.service",
            "x.service.d",
            "x.service.d/10-torcx.conf",
            "x.socket",
            "x.socket.d",
            "x.socket.d/10-torcx.conf",
        ],
        "{got:#?}"
    );
    assert_eq!(read(&out.normal("x.service")), X_SERVICE);
    assert_eq!(read(&out.normal("x.socket")), X_SOCKET);
    assert_eq!(read(&out.normal("x.service.d/10-torcx.conf")), service_dropin());
    assert_eq!(
        read(&out.normal("x.socket.d/10-torcx.conf")),
        "# Attached by torcx from x:1 (/var/lib/torcx/store/x:1.torcx.tgz); do not edit.\n\
         [Unit]\nRequires=torcx.target\nAfter=torcx.target\n"
    );
    assert_eq!(std::fs::read_link(out.normal("multi-user.target.wants/x.service")).unwrap(), Path::new("../x.service"));
    assert_apply_link(out);
}

#[test]
fn generator_plans_from_a_read_only_root_without_mounting() {
    require_root("generator_plans_from_a_read_only_root_without_mounting");
    let t = root_with_x();
    let out = Out::new();
    let before = listing(&t.root);
    let mut ns = Ns::new(&t);
    ns.sh("mount --bind \"$ROOT\" \"$ROOT\" && mount -o remount,bind,ro \"$ROOT\"");
    // Make sure the root really is read-only in there.
    ns.sh("if touch \"$ROOT/probe\" 2>/dev/null; then echo 'root is writable' >&2; exit 1; fi");
    ns.generator(&out.args(&t));
    let s = ns.run().pop().unwrap();
    assert_eq!(s.code, 0, "{}", s.describe());
    assert_x_planned(&out);
    out.assert_early_late_empty();
    assert_eq!(
        s.mounts_before.len(),
        s.mounts_after.len(),
        "the generator changed the mount table:\n{:#?}\n{:#?}",
        s.mounts_before,
        s.mounts_after
    );
    assert_eq!(s.mounts_before, s.mounts_after);
    assert_eq!(listing(&t.root), before);
}

#[test]
fn generator_writes_nothing_outside_its_output_directory() {
    require_root("generator_writes_nothing_outside_its_output_directory");
    // A writable root this time: still nothing may appear there.
    let t = root_with_x();
    let out = Out::new();
    let before = listing(&t.root);
    let mut ns = Ns::new(&t);
    ns.generator(&out.args(&t));
    let s = ns.run().pop().unwrap();
    assert_eq!(s.code, 0, "{}", s.describe());
    assert_x_planned(&out);
    out.assert_early_late_empty();
    assert_eq!(listing(&t.root), before, "the generator wrote under the root");
    assert!(!t.exists("run"), "the generator created /run under the root");
    assert_eq!(s.mounts_before, s.mounts_after);
    t.assert_canary();
    // Only NORMAL given: the same plan.
    let out1 = Out::new();
    let mut ns = Ns::new(&t);
    ns.generator(&["--root", t.root.to_str().unwrap(), out1.normal.to_str().unwrap()]);
    let s = ns.run().pop().unwrap();
    assert_eq!(s.code, 0, "{}", s.describe());
    assert_x_planned(&out1);
}

/// Runs the generator, then `torcx apply`, both succeeding: what the
/// generator planned (its own apply link aside) and what apply placed.
fn generator_then_apply(t: &TestRoot) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let out = Out::new();
    let mut ns = Ns::new(t);
    ns.generator(&out.args(t));
    ns.apply();
    let steps = ns.run();
    assert_eq!(steps[0].code, 0, "{}", steps[0].describe());
    assert_eq!(steps[1].code, 0, "{}", steps[1].describe());
    let mut planned = listing(&out.normal);
    planned.remove("sysinit.target.wants");
    planned.remove(APPLY_LINK);
    (planned, listing(&t.path("run/systemd/system")))
}

#[test]
fn generator_and_apply_agree_on_units_and_dropins() {
    require_root("generator_and_apply_agree_on_units_and_dropins");
    let t = root_with_x();
    let (planned, placed) = generator_then_apply(&t);
    assert_eq!(planned, placed, "generator and apply placed different units");
}

#[test]
fn generator_does_nothing_once_sealed() {
    require_root("generator_does_nothing_once_sealed");
    let t = root_with_x();
    t.write(
        "run/metadata/torcx",
        "TORCX_LOWER_PROFILES=\"vendor\"\nTORCX_UPPER_PROFILE=\"\"\nTORCX_PROFILE_PATH=\"/run/torcx/profile.json\"\n\
         TORCX_BINDIR=\"/run/torcx/bin\"\nTORCX_UNPACKDIR=\"/run/torcx/unpack\"\n",
    );
    let out = Out::new();
    let before = listing(&t.root);
    let mut ns = Ns::new(&t);
    ns.generator(&out.args(&t));
    let s = ns.run().pop().unwrap();
    assert_eq!(s.code, 0, "{}", s.describe());
    assert_eq!(listing(&out.normal), Default::default(), "the generator wrote after the seal");
    out.assert_early_late_empty();
    assert_eq!(listing(&t.root), before);
}

#[test]
fn generator_with_a_broken_profile_fails_but_pulls_in_apply() {
    require_root("generator_with_a_broken_profile_fails_but_pulls_in_apply");
    let t = root_with_x();
    t.write("usr/share/torcx/profiles/vendor.json", "{\"kind\": \"profile-manifest-v0\", oops");
    let out = Out::new();
    let mut ns = Ns::new(&t);
    ns.generator(&out.args(&t));
    let s = ns.run().pop().unwrap();
    assert_eq!(s.code, 1, "{}", s.describe());
    assert_contains(&s.log, "/usr/share/torcx/profiles/vendor.json", &s);
    let names: Vec<String> = listing(&out.normal).into_keys().collect();
    assert_eq!(names, ["sysinit.target.wants", APPLY_LINK], "{names:?}");
    assert_apply_link(&out);
    assert!(!t.exists("run"));
}

#[test]
fn generator_with_a_broken_next_profile_plans_the_lower_images() {
    require_root("generator_with_a_broken_next_profile_plans_the_lower_images");
    let t = root_with_x();
    t.write("etc/torcx/profiles/mine.json", "{\"kind\": \"profile-manifest-v0\", oops");
    t.write("etc/torcx/next-profile", "mine");
    let out = Out::new();
    let mut ns = Ns::new(&t);
    ns.generator(&out.args(&t));
    let s = ns.run().pop().unwrap();
    assert_eq!(s.code, 1, "{}", s.describe());
    assert_contains(&s.log, "/etc/torcx/profiles/mine.json", &s);
    assert_x_planned(&out);
}

#[test]
fn generator_plans_the_images_it_can() {
    require_root("generator_plans_the_images_it_can");
    // x is fine, m has no archive: x is planned, m is logged, exit 1.
    let t = root_with_x();
    t.vendor_profile(&[("m", "1"), ("x", "1")]);
    let out = Out::new();
    let mut ns = Ns::new(&t);
    ns.generator(&out.args(&t));
    let s = ns.run().pop().unwrap();
    assert_eq!(s.code, 1, "{}", s.describe());
    assert_contains(&s.log, "image m:1", &s);
    assert_x_planned(&out);
}

/// The kernel keeps ten lines per opening of /dev/kmsg, and refuses a line
/// over 1,024 bytes: with 14 images failing, each still has its line (the
/// generator opens /dev/kmsg again every ten lines), and one line sums up
/// the profile instead of a line per image planned, in two records when it
/// is too long for one.
#[test]
fn generator_logs_every_failure_and_one_line_for_the_profile() {
    require_root("generator_logs_every_failure_and_one_line_for_the_profile");
    require_tool("generator_logs_every_failure_and_one_line_for_the_profile", "strace", "strace");
    let t = root_with_x();
    // Long names: the list of those not planned is over 900 bytes.
    let names: Vec<String> = (0..14).map(|i| format!("m{i:02}-{}", "n".repeat(60))).collect();
    let mut profile: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "1")).collect();
    profile.push(("x", "1"));
    t.vendor_profile(&profile);
    let out = Out::new();
    let opens = t.scratch("strace").join("opens");
    let mut ns = Ns::new(&t);
    ns.wrap(&format!("strace -f -qq -e trace=openat -o {}", opens.display()));
    ns.generator(&out.args(&t));
    let s = ns.run().pop().unwrap();
    assert_eq!(s.code, 1, "{}", s.describe());
    for n in &names {
        assert_contains(&s.log, &format!("image {n}:1: no archive in any store"), &s);
    }
    assert!(!s.log.contains("image x:1"), "a line for the image planned:\n{}", s.log);
    // 14 lines, then the summary in two records, the second marked as such.
    let lines: Vec<&str> = s.log.lines().collect();
    assert_eq!(lines.len(), 16, "{}", s.log);
    assert!(lines.iter().all(|l| l.len() < 976), "{}", s.log);
    let (first, second) = (lines[14], lines[15]);
    let prefix = &first[..first.find("]: ").unwrap() + 3];
    let rest = second.strip_prefix(&format!("{prefix}... ")).unwrap_or_else(|| panic!("{second}"));
    let ids: Vec<String> = names.iter().map(|n| format!("{n}:1")).collect();
    let summary = format!("1 of 15 images planned, 5 files written; not planned: {}", ids.join(", "));
    assert_eq!(format!("{}{rest}", &first[prefix.len()..]), summary);
    // 16 lines: opened once, then again after 10.
    let n = read(&opens).lines().filter(|l| l.contains("\"/dev/kmsg\"")).count();
    assert_eq!(n, 2, "{}", read(&opens));
    assert_x_planned(&out);
}

#[test]
fn generator_refuses_a_traversal_entry() {
    require_root("generator_refuses_a_traversal_entry");
    let t = TestRoot::new();
    let manifest = json!({"kind": "image-manifest-v0",
        "value": {"units": ["/lib/systemd/system/evil.service"]}})
    .to_string();
    let entry = "lib/systemd/system/../../../../../../canary/evil.service";
    py_tar(
        &t.path("var/lib/torcx/store/evil:1.torcx.tgz"),
        Fmt::Tgz,
        &[
            e_file(".torcx/manifest.json", manifest.as_bytes()),
            e_file(entry, b"[Service]\nExecStart=/bin/false\n"),
            e_file("lib/systemd/system/evil.service", b"[Service]\nExecStart=/bin/true\n"),
        ],
    );
    t.vendor_profile(&[("evil", "1")]);
    let out = Out::new();
    let mut ns = Ns::new(&t);
    ns.generator(&out.args(&t));
    let s = ns.run().pop().unwrap();
    assert_eq!(s.code, 1, "{}", s.describe());
    assert_contains(&s.log, "image evil:1", &s);
    assert_contains(&s.log, entry, &s);
    let names: Vec<String> = listing(&out.normal).into_keys().collect();
    assert_eq!(names, ["sysinit.target.wants", APPLY_LINK], "{names:?}");
    t.assert_canary();
}

#[test]

fn generator_refuses_an_absolute_entry_as_apply_does() {
    require_root("generator_refuses_an_absolute_entry_as_apply_does");
    let t = TestRoot::new();
    let manifest = json!({"kind": "image-manifest-v0",
        "value": {"units": ["/lib/systemd/system/x.service"]}})
    .to_string();
    let entry = "/lib/systemd/system/x.service";
    py_tar(
        &t.path("var/lib/torcx/store/x:1.torcx.tgz"),
        Fmt::Tgz,
        &[e_file(".torcx/manifest.json", manifest.as_bytes()), e_file(entry, X_SERVICE.as_bytes())],
    );
    t.vendor_profile(&[("x", "1")]);
    let out = Out::new();
    let mut ns = Ns::new(&t);
    ns.generator(&out.args(&t));
    ns.apply();
    let steps = ns.run();
    let (g, a) = (&steps[0], &steps[1]);
    // apply refuses the image...
    assert_eq!(a.code, 1, "{}", a.describe());
    assert_contains(&a.stderr, "entry \"/lib/systemd/system/x.service\": absolute path refused", a);
    // ...so the generator must not plan its unit either.
    assert_eq!(g.code, 1, "{}", g.describe());
    assert_contains(&g.log, entry, g);
    let names: Vec<String> = listing(&out.normal).into_keys().collect();
    assert_eq!(names, ["sysinit.target.wants", APPLY_LINK], "{names:?}");
}

#[test]
fn generator_never_writes_links_that_leave_the_image() {
    require_root("generator_never_writes_links_that_leave_the_image");
    // `.wants` links are copied with their text; one that points outside the
    // image (absolute, or climbing above its root) must not be written, and
    // the image fails, as apply fails it.
    for target in ["/etc/shadow", "../../../../../../../etc/shadow"] {
        let t = TestRoot::new();
        let manifest = json!({"kind": "image-manifest-v0", "value": {"units": [
            "/lib/systemd/system/x.service", "/lib/systemd/system/multi-user.target.wants"]}})
        .to_string();
        let entry = "lib/systemd/system/multi-user.target.wants/x.service";
        py_tar(
            &t.path("var/lib/torcx/store/x:1.torcx.tgz"),
            Fmt::Tgz,
            &[
                e_file(".torcx/manifest.json", manifest.as_bytes()),
                e_file("lib/systemd/system/x.service", X_SERVICE.as_bytes()),
                e_symlink(entry, target),
            ],
        );
        t.vendor_profile(&[("x", "1")]);
        let out = Out::new();
        let mut ns = Ns::new(&t);
        ns.generator(&out.args(&t));
        ns.apply();
        let steps = ns.run();
        let (g, a) = (&steps[0], &steps[1]);
        assert_eq!(a.code, 1, "{}", a.describe());
        assert_contains(&a.stderr, &format!("entry \"{entry}\""), a);
        let leaks: Vec<(String, String)> = listing(&out.normal)
            .into_iter()
            .filter(|(k, v)| k != APPLY_LINK && v.starts_with("link -> ") && v.contains("etc/shadow"))
            .collect();
        assert!(leaks.is_empty(), "target {target}: the generator wrote {leaks:?}\n{}", g.describe());
        assert_eq!(g.code, 1, "target {target}: {}", g.describe());
        assert_contains(&g.log, "image x:1", g);
        assert_apply_link(&out);
    }
}

/// After an apply, the generator reads the units from the cache (compact,
/// text as text); an entry the policy refuses is not used, and the
/// archive is read instead.
#[test]
fn the_cache_is_used_only_when_it_passes_the_policy() {
    require_root("the_cache_is_used_only_when_it_passes_the_policy");
    let t = root_with_x();
    let mut ns = Ns::new(&t);
    ns.apply();
    let s = ns.run().pop().unwrap();
    assert_eq!(s.code, 0, "{}", s.describe());
    let cache = t.path("var/lib/torcx/cache/generator/x:1.json");
    let text = read(&cache);
    assert!(text.contains("\"kind\":\"torcx-generator-cache-v5\""), "{text}");
    assert!(text.contains("\"path\":\"lib/systemd/system/x.service\",\"text\":"), "{text}");
    // The next boot: /run is empty again (the apply's mounts went with its namespace).
    std::fs::remove_dir_all(t.path("run")).unwrap();

    // A valid entry is used: what it says is what the generator writes.
    let edited = text.replace("ExecStart=", "ExecStart=/from/the/cache ");
    assert_ne!(edited, text);
    std::fs::write(&cache, &edited).unwrap();
    let run = |t: &TestRoot| {
        let out = Out::new();
        let mut ns = Ns::new(t);
        ns.generator(&out.args(t));
        let s = ns.run().pop().unwrap();
        assert_eq!(s.code, 0, "{}", s.describe());
        out
    };
    let out = run(&t);
    assert!(read(&out.normal("x.service")).contains("/from/the/cache"));

    // One that would let the image past the policy is not: the archive is
    // read again, and the generator plans what it holds.
    let hostile =
        text.replace("\"path\":\"lib/systemd/system/x.socket\"", "\"path\":\"lib/systemd/system/../../../x.socket\"");
    assert_ne!(hostile, text);
    std::fs::write(&cache, &hostile).unwrap();
    let out = run(&t);
    assert_x_planned(&out);
}

/// A tar archive's sha256 is kept in its cache entry with the identity of
/// the file apply hashed: the next apply records it without reading the
/// archive again for it, but only for that very file, and only a digest
/// that reads as a sha256.
#[test]
fn apply_records_a_cached_digest_only_for_the_file_it_is_of() {
    require_root("apply_records_a_cached_digest_only_for_the_file_it_is_of");
    let t = root_with_x();
    let archive = t.path(USER_STORE).join("x:1.torcx.tgz");
    let cache = t.path("var/lib/torcx/cache/generator/x:1.json");
    let sum = std::process::Command::new("sha256sum").arg(&archive).output().unwrap();
    let real = format!("sha256:{}", String::from_utf8_lossy(&sum.stdout).split_whitespace().next().unwrap());
    // One boot: apply, the digest it recorded; /run empty again after.
    let boot = |t: &TestRoot| -> String {
        let s = apply_once(t, &[]);
        assert_eq!(s.code, 0, "{}", s.describe());
        let rec = read_json(&t.path("run/torcx/attached/x.json"));
        std::fs::remove_dir_all(t.path("run")).unwrap();
        rec["value"]["digest"].as_str().unwrap_or_default().to_string()
    };
    let set_digest = |d: &str| {
        let mut e = read_json(&cache);
        e["digest"] = json!(d);
        write(&cache, e.to_string());
    };

    assert_eq!(boot(&t), real);
    assert_eq!(read_json(&cache)["digest"], json!(real));
    // The entry's digest is what the next apply records: it did not hash.
    let other = format!("sha256:{}", "ab".repeat(32));
    set_digest(&other);
    assert_eq!(boot(&t), other);
    // Another file (a new mtime, so a new ctime): hashed again, and kept.
    std::process::Command::new("touch").args(["-d", "2001-01-01"]).arg(&archive).status().unwrap();
    assert_eq!(boot(&t), real);
    assert_eq!(read_json(&cache)["digest"], json!(real));
    // What does not read as a sha256 is not used.
    for bad in ["sha256:AB", "sha512:00", &format!("sha256:{}\nx", "ab".repeat(32)), &format!("{real} ")] {
        set_digest(bad);
        assert_eq!(boot(&t), real, "{bad}");
    }
    // An entry the generator refuses (a unit path out of the tree) vouches
    // for nothing: its digest is not taken, and the entry is written again.
    let mut e = read_json(&cache);
    e["digest"] = json!(other);
    e["mem"]["files"][1]["path"] = json!("lib/systemd/system/../../../x.service");
    write(&cache, e.to_string());
    assert_eq!(boot(&t), real);
    let e = read_json(&cache);
    assert_eq!(e["digest"], json!(real));
    assert_eq!(e["mem"]["files"][1]["path"], json!("lib/systemd/system/x.service"));
}

/// A read-only store swapped whole, as a `/usr` is by an A/B update, with
/// archive times fixed by a reproducible build: the new archive has the
/// old one's device, inode, size, mtime and ctime. The generator plans from
/// it, not from the old one's cache entry, and apply records its digest.
#[test]
fn a_swapped_read_only_store_with_the_same_file_times_is_read_again() {
    require_root("a_swapped_read_only_store_with_the_same_file_times_is_read_again");
    let t = TestRoot::new();
    t.vendor_profile(&[("x", "1")]);
    let mut sums = vec![];
    for v in ["A", "B"] {
        let dir = t.base.join(format!("usr{v}"));
        let tgz = dir.join("x:1.torcx.tgz");
        let body = v.repeat(4);
        py_tar(
            &tgz,
            Fmt::Tgz,
            &[
                e_file(".torcx/manifest.json", br#"{"kind":"image-manifest-v0","value":{"bin":["/bin/x"],"units":["/lib/systemd/system/x.service"]}}"#),
                e_file_mode("bin/x", format!("#!/bin/sh\necho {body}\n").as_bytes(), 0o755),
                e_file("lib/systemd/system/x.service", format!("[Unit]\nDescription={body}\n[Service]\nExecStart=/run/torcx/bin/x\n").as_bytes()),
            ],
        );
        let sum = std::process::Command::new("sha256sum").arg(&tgz).output().unwrap();
        sums.push(format!("sha256:{}", String::from_utf8_lossy(&sum.stdout).split_whitespace().next().unwrap()));
        let st = std::process::Command::new("mksquashfs")
            .arg(&dir)
            .arg(t.base.join(format!("usr{v}.sq")))
            .args(["-noappend", "-quiet", "-all-root", "-all-time", "1700000000", "-mkfs-time", "1700000000"])
            .status()
            .unwrap();
        assert!(st.success());
    }
    let len = |p: PathBuf| std::fs::metadata(p).unwrap().len();
    let (a, b) = (t.base.join("usrA.sq"), t.base.join("usrB.sq"));
    assert_eq!(
        len(t.base.join("usrA/x:1.torcx.tgz")),
        len(t.base.join("usrB/x:1.torcx.tgz")),
        "the archives differ in size"
    );
    assert_eq!(len(a.clone()), len(b.clone()), "the images differ in size");
    // One loop device over a file that holds A, then B: the same device
    // number for both.
    let img = t.base.join("usr.sq");
    std::fs::copy(&a, &img).unwrap();
    let store = t.path(VENDOR_STORE);
    std::fs::create_dir_all(&store).unwrap();
    let (out1, out2) = (Out::new(), Out::new());
    let seen = t.base.join("seen");
    std::fs::create_dir_all(&seen).unwrap();
    let mut ns = Ns::new(&t);
    let q = |p: &Path| format!("'{}'", p.display());
    ns.sh(&format!(
        "L=$(losetup -f --show -r {img})\ntrap 'losetup -d $L' EXIT\nmount -t squashfs -o ro $L {store}\n\
         stat -c '%d %i %s %Y %Z' {store}/x:1.torcx.tgz > {seen}/id-1",
        img = q(&img),
        store = q(&store),
        seen = q(&seen)
    ));
    ns.generator(&out1.args(&t));
    ns.apply();
    ns.sh(&format!(
        "cp \"$ROOT/run/torcx/attached/x.json\" {seen}/rec-1\n\
         grep -o \" $ROOT/run[^ ]*\" /proc/self/mountinfo | sort -r | while read m; do umount -l $m; done\n\
         rm -rf \"$ROOT/run\"; umount {store}\n\
         dd if={b} of={img} conv=notrunc status=none; blockdev --flushbufs $L\n\
         mount -t squashfs -o ro $L {store}\n\
         stat -c '%d %i %s %Y %Z' {store}/x:1.torcx.tgz > {seen}/id-2",
        img = q(&img),
        b = q(&b),
        store = q(&store),
        seen = q(&seen)
    ));
    ns.generator(&out2.args(&t));
    ns.apply();
    ns.sh(&format!(
        "cp \"$ROOT/run/torcx/attached/x.json\" {seen}/rec-2\ncat \"$ROOT/run/torcx/unpack/x/bin/x\" > {seen}/x-2\n\
         umount {store}",
        store = q(&store),
        seen = q(&seen)
    ));
    let steps = ns.run();
    for s in &steps {
        assert_eq!(s.code, 0, "{}", s.describe());
    }
    let read = |f: &str| std::fs::read_to_string(seen.join(f)).unwrap();
    // The case at hand: the same identity as far as stat goes.
    assert_eq!(read("id-1"), read("id-2"));
    let digest = |f: &str| serde_json::from_str::<serde_json::Value>(&read(f)).unwrap()["value"]["digest"].clone();
    assert_eq!(digest("rec-1"), json!(sums[0]));
    assert_eq!(digest("rec-2"), json!(sums[1]), "apply recorded the digest of the archive it no longer unpacks");
    assert_eq!(read("x-2"), "#!/bin/sh\necho BBBB\n");
    let unit = std::fs::read_to_string(out2.normal.join("x.service")).unwrap();
    assert!(unit.contains("Description=BBBB"), "the generator planned from the old archive's entry:\n{unit}");
}

/// Issue 9, class 3: an image without a manifest whose tar has no
/// directory entries (only files and links, as `tar --no-recursion` or a
/// hand-made archive writes them) is planned by the generator exactly as
/// apply places it: same unit, same drop-in, same `.wants` link.
#[test]
fn a_manifest_less_tar_without_directory_entries_is_planned_as_apply_places_it() {
    require_root("a_manifest_less_tar_without_directory_entries_is_planned_as_apply_places_it");
    let t = TestRoot::new();
    py_tar(
        &t.path(USER_STORE).join("bare:1.torcx.tgz"),
        Fmt::Tgz,
        &[
            e_file_mode("usr/bin/bare", b"#!/bin/sh\necho bare\n", 0o755),
            e_file(
                "usr/lib/systemd/system/bare.service",
                b"[Service]\nExecStart=/run/torcx/bin/bare\n[Install]\nWantedBy=multi-user.target\n",
            ),
            e_symlink("usr/lib/systemd/system/multi-user.target.wants/bare.service", "../bare.service"),
        ],
    );
    t.vendor_profile(&[("bare", "1")]);
    let (planned, placed) = generator_then_apply(&t);
    assert!(placed.contains_key("bare.service"), "{placed:#?}");
    assert!(placed.contains_key("multi-user.target.wants/bare.service"), "{placed:#?}");
    assert_eq!(planned, placed, "generator and apply placed different units");
}

#[test]
fn a_unit_already_in_the_output_directory_fails_the_image_that_ships_it_whole() {
    require_root("a_unit_already_in_the_output_directory_fails_the_image_that_ships_it_whole");
    // y ships x.service as well (x, earlier in the profile, wrote it), and z
    // ships a unit another generator wrote before this one ran: each fails,
    // and writes none of its other units. x is planned as alone.
    let t = root_with_x();
    for (name, clash) in [("y", "x"), ("z", "pre")] {
        let img = Image::new(&t, name, "1");
        img.manifest(json!({
            "units": [format!("/lib/systemd/system/{name}.service"), format!("/lib/systemd/system/{clash}.service")],
        }))
        .file(&format!("lib/systemd/system/{name}.service"), "[Service]\nExecStart=/bin/true\n")
        .file(&format!("lib/systemd/system/{clash}.service"), "[Service]\nExecStart=/bin/false\n");
        img.pack(&t, USER_STORE, Fmt::Tgz);
    }
    t.vendor_profile(&[("x", "1"), ("y", "1"), ("z", "1")]);
    let out = Out::new();
    std::fs::write(out.normal("pre.service"), "another generator's\n").unwrap();
    let mut ns = Ns::new(&t);
    ns.generator(&out.args(&t));
    let s = ns.run().pop().unwrap();
    assert_eq!(s.code, 1, "{}", s.describe());
    for (name, clash) in [("y", "x"), ("z", "pre")] {
        let want = format!(
            "image {name}:1: {} is already provided by an earlier image of the profile",
            out.normal(&format!("{clash}.service")).display()
        );
        assert_contains(&s.log, &want, &s);
        assert!(!out.normal(&format!("{name}.service")).exists(), "{name} wrote a unit");
        assert!(!out.normal(&format!("{name}.service.d")).exists(), "{name} wrote a drop-in");
    }
    assert_eq!(read(&out.normal("pre.service")), "another generator's\n");
    std::fs::remove_file(out.normal("pre.service")).unwrap();
    assert_x_planned(&out);
}

/// An archive written to while apply unpacks it (after the generator and
/// an earlier apply cached its digest): the image fails, saying so, and no
/// record claims a digest for a tree that may hold some of either.
#[test]
fn an_archive_changed_while_it_is_unpacked_fails_its_image() {
    require_root("an_archive_changed_while_it_is_unpacked_fails_its_image");
    let t = root_with_x();
    let s = apply_once(&t, &[]);
    assert_eq!(s.code, 0, "{}", s.describe());
    std::fs::remove_dir_all(t.path("run")).unwrap();
    let hold = t.base.join("hold");
    std::fs::create_dir_all(&hold).unwrap();
    let archive = t.path(USER_STORE).join("x:1.torcx.tgz");
    let mut ns = Ns::new(&t);
    ns.sh(&format!(
        "( for i in $(seq 1000); do [ -e '{h}/held' ] && break; sleep 0.01; done\n  \
         touch -d 2001-01-01 '{a}'; : > '{h}/go' ) &",
        h = hold.display(),
        a = archive.display()
    ));
    let held = format!("unpacked:{}", hold.display());
    ns.torcx_env(&[("TORCX_TEST_HOLD", &held)], &["apply"]);
    ns.sh("wait");
    let s = ns.run().pop().unwrap();
    assert!(hold.join("held").exists(), "apply never reached the hold: {}", s.describe());
    assert_ne!(s.code, 0, "{}", s.describe());
    assert_contains(&s.stderr, &format!("archive {USER_STORE}/x:1.torcx.tgz changed while it was unpacked"), &s);
    assert!(!t.exists("run/torcx/attached/x.json"), "{}", s.describe());
}

/// Every cache entry is of the OS it was made on: after an OS update (a
/// new `/usr/lib/os-release`), the generator reads the archive again, even
/// where the archive's identity did not change, and apply writes the entry
/// again.
#[test]
fn an_os_update_makes_the_generator_read_every_archive_again() {
    require_root("an_os_update_makes_the_generator_read_every_archive_again");
    let t = root_with_x();
    write(&t.path("usr/lib/os-release"), "ID=test\nBUILD_ID=1\n");
    let s = apply_once(&t, &[]);
    assert_eq!(s.code, 0, "{}", s.describe());
    std::fs::remove_dir_all(t.path("run")).unwrap();
    let cache = t.path("var/lib/torcx/cache/generator/x:1.json");
    // An entry marked as the generator's: its unit says where it came from.
    let text = read(&cache);
    let edited = text.replace("ExecStart=", "ExecStart=/from/the/cache ");
    assert_ne!(edited, text);
    write(&cache, &edited);
    let plan = |t: &TestRoot| {
        let out = Out::new();
        let mut ns = Ns::new(t);
        ns.generator(&out.args(t));
        let s = ns.run().pop().unwrap();
        assert_eq!(s.code, 0, "{}", s.describe());
        read(&out.normal("x.service"))
    };
    assert!(plan(&t).contains("/from/the/cache"), "the entry of this OS was not used");
    write(&t.path("usr/lib/os-release"), "ID=test\nBUILD_ID=2\n");
    assert_eq!(plan(&t), X_SERVICE, "an entry made on another OS was used");
    let s = apply_once(&t, &[]);
    assert_eq!(s.code, 0, "{}", s.describe());
    let now = read(&cache);
    assert_ne!(os_of(&text), os_of(&now), "apply did not write the entry again");
    assert!(!now.contains("/from/the/cache"), "{now}");
}

/// The `"os":N` of a cache entry's key.
fn os_of(entry: &str) -> String {
    read_json_str(entry)["key"]["os"].to_string()
}

fn read_json_str(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap()
}
