//! `torcx image pack`: archives that apply like GNU tar's, byte for byte
//! reproducible, with the manifest and the units first; a manifest written
//! when the directory has none (the directory untouched); refusals of what
//! the confined unpack refuses. And an image without a manifest applying.

mod common;

use common::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const SERVICE: &str =
    "[Unit]\nDescription=hello\n\n[Service]\nExecStart=/run/torcx/bin/hello\n\n[Install]\nWantedBy=multi-user.target\n";

/// `torcx ARGS...` outside any namespace; returns (exit code, stdout, stderr).
fn torcx(args: &[&str]) -> (i32, String, String) {
    torcx_in(None, args)
}

/// `torcx image pack DIR -o OUT [EXTRA...]`, which must succeed; its JSON.
#[track_caller]
fn pack(dir: &Path, out: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["image", "pack", dir.to_str().unwrap(), "-o", out.to_str().unwrap()];
    args.extend(extra);
    let (code, stdout, stderr) = torcx(&args);
    assert_eq!(code, 0, "pack failed:\n{stdout}\n{stderr}");
    let doc: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"));
    assert_eq!(doc["kind"], "torcx-image-pack-v0", "{doc:#}");
    doc["value"].clone()
}

/// `tool` must run: a missing one fails the test (see `require_tool`).
fn have(tool: &str, package: &str, test: &str) -> bool {
    require_tool(test, tool, package);
    true
}

/// Image `a`: a manifest, binaries (one a hard link of the other), a
/// library and its link, a service enabled by a `.wants` link, a path
/// longer than a tar header holds, a private file.
fn image_a(t: &TestRoot) -> Image {
    let img = Image::new(t, "a", "1");
    let long = format!("usr/share/{}/file", "d".repeat(120));
    img.manifest(json!({
        "bin": ["/usr/bin"],
        "units": ["/usr/lib/systemd/system/hello.service", "/usr/lib/systemd/system/multi-user.target.wants"],
    }))
    .exec("usr/bin/hello", "#!/bin/sh\necho hello\n")
    .hardlink("usr/bin/hello-again", "usr/bin/hello")
    .file("usr/lib/libhello.so.1", "not really a library\n")
    .symlink("usr/lib/libhello.so", "libhello.so.1")
    .file("usr/lib/systemd/system/hello.service", SERVICE)
    .symlink("usr/lib/systemd/system/multi-user.target.wants/hello.service", "../hello.service")
    .file(&long, "deep\n")
    .file_mode("etc/secret", "s\n", 0o600)
    .file("a-z", "sorted after a/ by GNU tar\n")
    .file("a/z", "z\n");
    img
}

const FORMATS: [(&str, &str); 5] = [
    ("tgz", "torcx.tgz"),
    ("zst", "torcx.tar.zst"),
    ("squashfs", "torcx.squashfs"),
    ("erofs", "torcx.erofs"),
    // An OCI bundle; named `a:1...`, its one tag is `1`.
    ("oci", "torcx.oci.tgz"),
];

fn format_usable(fmt: &str, test: &str) -> bool {
    match fmt {
        "squashfs" => have("mksquashfs", "squashfs-tools", test),
        "erofs" => have("mkfs.erofs", "erofs-utils", test),
        _ => true,
    }
}

/// The unpacked tree of image `a` after a step, as comparable text: kind,
/// mode and, for files and links, size, link count and target. (Directory
/// sizes and inode numbers depend on the file system.)
fn tree_of(s: &Step) -> BTreeMap<String, String> {
    s.tree("a")
        .into_iter()
        .map(|(k, e)| {
            let v = if e.kind == 'd' {
                format!("d {:o}", e.mode)
            } else {
                format!("{} {:o} {} n{} {}", e.kind, e.mode, e.size, e.nlink, e.target)
            };
            (k, v)
        })
        .collect()
}

/// Everything placed under `run/systemd` and `run/torcx/bin`, with the
/// archive's file name replaced, so archives of two formats compare.
fn placed(t: &TestRoot, archive_name: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for dir in ["run/systemd", "run/torcx/bin"] {
        for (k, _) in listing(&t.path(dir)) {
            let p = t.path(dir).join(&k);
            let m = std::fs::symlink_metadata(&p).unwrap();
            let v = if m.file_type().is_symlink() {
                format!("-> {}", std::fs::read_link(&p).unwrap().display())
            } else if m.is_dir() {
                "dir".into()
            } else {
                read(&p).replace(archive_name, "ARCHIVE")
            };
            out.insert(format!("{dir}/{k}"), v);
        }
    }
    out
}

/// Applies the store archive `file` of image `a` in `t`; the step.
fn apply_a(t: &TestRoot) -> Step {
    t.vendor_profile(&[("a", "1")]);
    let s = apply_once(t, &[]);
    assert_eq!(s.code, 0, "{}", s.describe());
    s
}

#[test]
fn packed_archives_apply_like_gnu_tar() {
    require_root("packed_archives_apply_like_gnu_tar");
    // The reference: GNU tar.
    let t0 = TestRoot::new();
    let img = image_a(&t0);
    img.pack(&t0, USER_STORE, Fmt::Tgz);
    let s0 = apply_a(&t0);
    let want_tree = tree_of(&s0);
    let want_placed = placed(&t0, "a:1.torcx.tgz");
    assert!(want_tree.contains_key(&format!("usr/share/{}/file", "d".repeat(120))), "{want_tree:#?}");
    assert!(want_placed.contains_key("run/torcx/bin/hello-again"), "{want_placed:#?}");
    assert_eq!(s0.tree("a")["usr/bin/hello"].ino, s0.tree("a")["usr/bin/hello-again"].ino);

    for (fmt, suffix) in FORMATS {
        if !format_usable(fmt, "packed_archives_apply_like_gnu_tar") {
            continue;
        }
        let t = TestRoot::new();
        let name = format!("a:1.{suffix}");
        let dest = t.path(USER_STORE).join(&name);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        let v = pack(&img.dir, &dest, &[]);
        assert_eq!(v["manifest_generated"], false, "{v:#}");
        let s = apply_a(&t);
        assert_eq!(tree_of(&s), want_tree, "{fmt}: the unpacked tree differs from GNU tar's");
        assert_eq!(placed(&t, &name), want_placed, "{fmt}: the placements differ from GNU tar's");
        let tree = s.tree("a");
        assert_eq!(tree["usr/bin/hello"].ino, tree["usr/bin/hello-again"].ino, "{fmt}: the hard link became two files");
        assert_eq!(tree["etc/secret"].mode, 0o600, "{fmt}");
    }
}

#[test]
fn packing_twice_gives_identical_bytes() {
    let t = TestRoot::new();
    let img = image_a(&t);
    // A copy elsewhere (other inode numbers, other directory order on disk).
    let copy = t.scratch("copy").join("a");
    let st = Command::new("cp").arg("-a").arg(&img.dir).arg(&copy).status().unwrap();
    assert!(st.success());
    for (fmt, suffix) in FORMATS {
        if !format_usable(fmt, "packing_twice_gives_identical_bytes") {
            continue;
        }
        let name = format!("a:1.{suffix}");
        let one = t.scratch("one").join(&name);
        let two = t.scratch("two").join(&name);
        let three = t.scratch("three").join(&name);
        let v1 = pack(&img.dir, &one, &[]);
        pack(&img.dir, &two, &[]);
        pack(&copy, &three, &["--format", fmt]);
        let b1 = std::fs::read(&one).unwrap();
        assert!(!b1.is_empty());
        assert!(b1 == std::fs::read(&two).unwrap(), "{fmt}: packing twice gave different bytes");
        assert!(b1 == std::fs::read(&three).unwrap(), "{fmt}: packing a copy gave different bytes");
        assert_eq!(v1["format"], if fmt == "zst" { "tar.zst" } else { fmt });
        assert_eq!(v1["size"], b1.len());
        assert!(v1["digest"].as_str().unwrap().starts_with("sha256:"), "{v1:#}");
        // Nothing left beside the archive.
        let left: Vec<_> = std::fs::read_dir(one.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(left.is_empty(), "{fmt}: temporary files left: {left:?}");
    }
    // The gzip header names no file and no time.
    let gz = std::fs::read(t.base.join("one/a:1.torcx.tgz")).unwrap();
    assert_eq!(&gz[..4], [0x1f, 0x8b, 8, 0], "gzip header with flags: {:?}", &gz[..10]);
    assert_eq!(&gz[4..8], [0, 0, 0, 0], "gzip header with an mtime");
}

/// `tar -tvf` of an archive, one line per entry.
fn tar_list(archive: &Path, compress: &str) -> Vec<String> {
    let out = Command::new("tar").args([compress, "--numeric-owner", "-tvf"]).arg(archive).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect()
}

fn tar_names(archive: &Path, compress: &str) -> Vec<String> {
    let out = Command::new("tar").args([compress, "-tf"]).arg(archive).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect()
}

#[test]
fn tar_archives_start_with_the_manifest_and_the_units() {
    let t = TestRoot::new();
    let img = image_a(&t);
    for (compress, suffix) in [("--gzip", "torcx.tgz"), ("--zstd", "torcx.tar.zst")] {
        let dest = t.scratch("out").join(format!("a:1.{suffix}"));
        pack(&img.dir, &dest, &[]);
        let names = tar_names(&dest, compress);
        assert_eq!(
            names[..5],
            [
                ".torcx/",
                ".torcx/manifest.json",
                "usr/lib/systemd/system/hello.service",
                "usr/lib/systemd/system/multi-user.target.wants/",
                "usr/lib/systemd/system/multi-user.target.wants/hello.service",
            ],
            "{names:#?}"
        );
        // Then the rest, sorted by name as GNU tar --sort=name does.
        let rest: Vec<&str> = names[5..].iter().map(String::as_str).collect();
        let i = |n: &str| rest.iter().position(|x| *x == n).unwrap_or_else(|| panic!("{n} missing: {rest:#?}"));
        assert!(i("a/") < i("a/z") && i("a/z") < i("a-z") && i("a-z") < i("etc/"), "{rest:#?}");
        assert!(i("usr/bin/hello") < i("usr/bin/hello-again"));
        // Every entry once, owned by 0/0, at time 0.
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "duplicate entries: {names:#?}");
        for l in tar_list(&dest, compress) {
            assert!(l.contains(" 0/0 ") && l.contains("1970-01-01 00:00"), "{l}");
            if l.contains("usr/bin/hello-again") {
                assert!(l.starts_with('h') && l.ends_with("link to usr/bin/hello"), "{l}");
            }
        }
    }
}

#[test]
fn a_manifest_is_generated_when_missing_and_the_directory_is_untouched() {
    let t = TestRoot::new();
    let img = Image::new(&t, "b", "1");
    img.exec("usr/bin/bee", "#!/bin/sh\necho bee\n")
        .exec("usr/sbin/beectl", "#!/bin/sh\n")
        .file("usr/lib/systemd/system/bee.service", "[Service]\nExecStart=/run/torcx/bin/bee\n")
        .file("usr/lib/systemd/system/bee.socket", "[Socket]\nListenStream=/run/bee.sock\n")
        .symlink("usr/lib/systemd/system/sockets.target.wants/bee.socket", "../bee.socket")
        .file("usr/share/doc/bee", "doc\n");
    let before = listing(&img.dir);
    let times: Vec<(i64, i64)> = before
        .keys()
        .map(|k| {
            let m = std::fs::symlink_metadata(img.dir.join(k)).unwrap();
            (m.mtime(), m.ctime())
        })
        .collect();
    let dest = t.scratch("out").join("b:1.torcx.tgz");
    let v = pack(&img.dir, &dest, &[]);
    assert_eq!(v["manifest_generated"], true, "{v:#}");
    assert_eq!(listing(&img.dir), before, "the packed directory changed");
    let after: Vec<(i64, i64)> = before
        .keys()
        .map(|k| {
            let m = std::fs::symlink_metadata(img.dir.join(k)).unwrap();
            (m.mtime(), m.ctime())
        })
        .collect();
    assert_eq!(after, times, "times in the packed directory changed");
    assert!(!img.dir.join(".torcx").exists());

    let x = t.scratch("x");
    let st = Command::new("tar").arg("-xzf").arg(&dest).arg("-C").arg(&x).status().unwrap();
    assert!(st.success());
    let m = read_json(&x.join(".torcx/manifest.json"));
    assert_eq!(
        m,
        json!({"kind": "image-manifest-v0", "value": {
            "bin": ["/usr/bin", "/usr/sbin"],
            "units": ["/usr/lib/systemd/system/bee.service", "/usr/lib/systemd/system/bee.socket",
                      "/usr/lib/systemd/system/sockets.target.wants"],
        }})
    );
    assert_eq!(v["manifest"]["bin"], json!(["/usr/bin", "/usr/sbin"]));
    let names = tar_names(&dest, "--gzip");
    assert_eq!(names[..3], [".torcx/", ".torcx/manifest.json", "usr/lib/systemd/system/bee.service"]);

    // squashfs and erofs get it too.
    for (fmt, suffix) in [("squashfs", "torcx.squashfs"), ("erofs", "torcx.erofs")] {
        if !format_usable(fmt, "a_manifest_is_generated_when_missing") {
            continue;
        }
        let dest = t.scratch("out").join(format!("b:1.{suffix}"));
        pack(&img.dir, &dest, &[]);
        let (code, out, err) = torcx(&["image", "inspect", "--json", dest.to_str().unwrap()]);
        let doc: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
        assert_eq!(doc["value"]["manifest_source"], "image", "{fmt}: {doc:#}");
        assert_eq!(doc["value"]["manifest"], m["value"].clone().as_object().map(|o| {
            let mut full = json!({"bin": [], "network": [], "units": [], "sysusers": [], "tmpfiles": [], "udev_rules": []});
            for (k, v) in o {
                full[k] = v.clone();
            }
            full
        }).unwrap());
        assert_eq!(code, 0, "{fmt}: {doc:#}");
        assert_eq!(listing(&img.dir), before, "{fmt}: the packed directory changed");
    }
}

/// Packs `dir`, expecting a refusal naming `path`; no archive is written.
#[track_caller]
fn assert_refused(t: &TestRoot, dir: &Path, path: &str, why: &str) {
    let out = t.scratch("refused");
    let dest = out.join("r:1.torcx.tgz");
    let (code, stdout, stderr) = torcx(&["image", "pack", dir.to_str().unwrap(), "-o", dest.to_str().unwrap()]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "not one line: {stderr}");
    let full = dir.join(path);
    assert!(lines[0].contains(full.to_str().unwrap()) && lines[0].contains(why), "{stderr}");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0, "something was written");
}

#[test]
fn refuses_what_the_confined_unpack_refuses() {
    let t = TestRoot::new();
    let fifo = Image::new(&t, "fifo", "1");
    fifo.exec("bin/x", "#!/bin/sh\n").dir("var/run");
    let st = Command::new("mkfifo").arg(fifo.dir.join("var/run/pipe")).status().unwrap();
    assert!(st.success());
    assert_refused(&t, &fifo.dir, "var/run/pipe", "FIFO");

    let abs = Image::new(&t, "abs", "1");
    abs.exec("bin/x", "#!/bin/sh\n").symlink("etc/passwd", "/etc/passwd");
    assert_refused(&t, &abs.dir, "etc/passwd", "absolute");

    let up = Image::new(&t, "up", "1");
    up.exec("bin/x", "#!/bin/sh\n").symlink("lib/escape", "../../outside");
    assert_refused(&t, &up.dir, "lib/escape", "leaves the image");

    // A chain that only the kernel sees leaving: `b -> a/..` with `a -> ..`.
    let chain = Image::new(&t, "chain", "1");
    chain.exec("bin/x", "#!/bin/sh\n").symlink("d/a", "..").symlink("d/b", "a/..");
    assert_refused(&t, &chain.dir, "d/b", "resolves outside");

    // Hard links and internal symlinks are fine.
    let ok = Image::new(&t, "ok", "1");
    ok.exec("bin/x", "#!/bin/sh\n").hardlink("bin/y", "bin/x").symlink("lib/l", "../bin/x");
    pack(&ok.dir, &t.scratch("ok").join("ok:1.torcx.tgz"), &[]);
}

#[test]
fn names_formats_and_output_directories() {
    let t = TestRoot::new();
    let img = image_a(&t);
    let out = t.scratch("out");
    // An output directory with --name/--reference names the archive.
    let v = pack(&img.dir, &out, &["--name", "a", "--reference", "2.0", "--format", "zst"]);
    assert_eq!(v["output"], out.join("a:2.0.torcx.tar.zst").to_str().unwrap());
    assert_eq!(v["image"], "a:2.0");
    assert!(out.join("a:2.0.torcx.tar.zst").is_file());
    // The name must match --name.
    let (code, _, err) = torcx(&[
        "image",
        "pack",
        img.dir.to_str().unwrap(),
        "-o",
        out.join("b:1.torcx.tgz").to_str().unwrap(),
        "--name",
        "a",
        "--reference",
        "1",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("must be named a:1.torcx.tgz"), "{err}");
    // Suffix and --format must agree.
    let (code, _, err) = torcx(&[
        "image",
        "pack",
        img.dir.to_str().unwrap(),
        "-o",
        out.join("a:1.torcx.tgz").to_str().unwrap(),
        "--format",
        "erofs",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("--format says erofs"), "{err}");
    // The name and --format must agree.
    let (code, _, err) = torcx(&[
        "image",
        "pack",
        img.dir.to_str().unwrap(),
        "-o",
        out.join("a:1.torcx.tgz").to_str().unwrap(),
        "--format",
        "oci",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("oci"), "{err}");
    // Never into the directory being packed.
    let (code, _, err) =
        torcx(&["image", "pack", img.dir.to_str().unwrap(), "-o", img.dir.join("a:1.torcx.tgz").to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("inside the directory being packed"), "{err}");
    assert!(!img.dir.join("a:1.torcx.tgz").exists());
}

#[test]
fn pack_prints_lint_findings() {
    let t = TestRoot::new();
    let img = Image::new(&t, "l", "1");
    img.manifest(json!({"bin": ["/bin/l", "/bin/missing"], "units": ["/lib/systemd/system/l.service"]}))
        .exec("bin/l", "#!/bin/sh\n")
        .file("lib/systemd/system/l.service", "[Service]\nExecStart=/run/torcx/bin/nothere\n");
    let v = pack(&img.dir, &t.scratch("out").join("l:1.torcx.tgz"), &[]);
    let msgs: Vec<String> =
        v["findings"].as_array().unwrap().iter().map(|f| f["message"].as_str().unwrap().into()).collect();
    assert!(msgs.iter().any(|m| m.contains("/bin/missing") && m.contains("does not exist")), "{msgs:#?}");
    assert!(msgs.iter().any(|m| m.contains("l.service") && m.contains("/run/torcx/bin/nothere")), "{msgs:#?}");
    assert_eq!(v["errors"], 2, "{v:#}");
}

/// An image without a manifest (GNU tar made): attach and the generator
/// use the scan of the standard directories (`scan::default_manifest`).
#[test]
fn an_image_without_a_manifest_applies() {
    require_root("an_image_without_a_manifest_applies");
    let t = TestRoot::new();
    let img = Image::new(&t, "plain", "1");
    img.exec("usr/bin/plain", "#!/bin/sh\necho plain\n")
        .exec("usr/sbin/plainctl", "#!/bin/sh\n")
        .file(
            "usr/lib/systemd/system/plain.service",
            "[Service]\nExecStart=/run/torcx/bin/plain\n[Install]\nWantedBy=multi-user.target\n",
        )
        .symlink("usr/lib/systemd/system/multi-user.target.wants/plain.service", "../plain.service")
        .file("usr/lib/plain/data", "data\n");
    img.pack(&t, USER_STORE, Fmt::Tgz);
    t.vendor_profile(&[("plain", "1")]);
    let s = apply_once(&t, &[]);
    assert_eq!(s.code, 0, "{}", s.describe());
    let link = |p: &str| std::fs::read_link(t.path(p)).unwrap_or_else(|e| panic!("{p}: {e}\n{}", s.describe()));
    assert_eq!(link("run/torcx/bin/plain"), PathBuf::from("/run/torcx/unpack/plain/usr/bin/plain"));
    assert_eq!(link("run/torcx/bin/plainctl"), PathBuf::from("/run/torcx/unpack/plain/usr/sbin/plainctl"));
    assert_eq!(
        read(&t.path("run/systemd/system/plain.service")),
        "[Service]\nExecStart=/run/torcx/bin/plain\n[Install]\nWantedBy=multi-user.target\n"
    );
    assert!(t.path("run/systemd/system/plain.service.d/10-torcx.conf").is_file());
    assert_eq!(link("run/systemd/system/multi-user.target.wants/plain.service"), PathBuf::from("../plain.service"));

    // The generator reads the same units out of the archive.
    let t2 = TestRoot::new();
    img.pack(&t2, USER_STORE, Fmt::Tgz);
    t2.vendor_profile(&[("plain", "1")]);
    let gen_dir = t2.scratch("gen");
    let mut ns = Ns::new(&t2);
    let g = ns.generator(&["--root", t2.root.to_str().unwrap(), gen_dir.to_str().unwrap()]);
    let s = ns.run().remove(g);
    assert_eq!(s.code, 0, "{}", s.describe());
    assert!(gen_dir.join("plain.service").is_file(), "{:#?}\n{}", listing(&gen_dir), s.describe());
}

#[test]
fn the_generator_stops_reading_after_the_units() {
    require_root("the_generator_stops_reading_after_the_units");
    // A big file sorted before the units: GNU tar puts it first, pack after.
    let t = TestRoot::new();
    let img = Image::new(&t, "g", "1");
    img.manifest(json!({"units": ["/usr/lib/systemd/system/g.service"]}))
        .file("aaa/big", noise(6 << 20))
        .file("usr/lib/systemd/system/g.service", "[Service]\nExecStart=/bin/true\n");
    let dest = t.path(USER_STORE).join("g:1.torcx.tgz");
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    pack(&img.dir, &dest, &[]);
    // Cut the archive in the middle of the big file: only what comes before
    // it can still be read.
    let len = std::fs::metadata(&dest).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&dest).unwrap().set_len(len / 2).unwrap();
    t.vendor_profile(&[("g", "1")]);
    let gen_dir = t.scratch("gen");
    let mut ns = Ns::new(&t);
    let g = ns.generator(&["--root", t.root.to_str().unwrap(), gen_dir.to_str().unwrap()]);
    let s = ns.run().remove(g);
    assert_eq!(s.code, 0, "{}", s.describe());
    assert_eq!(read(&gen_dir.join("g.service")), "[Service]\nExecStart=/bin/true\n", "{}", s.describe());

    // The same cut through a GNU tar archive loses the unit.
    let t2 = TestRoot::new();
    let dest = img.pack(&t2, USER_STORE, Fmt::Tgz);
    let len = std::fs::metadata(&dest).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&dest).unwrap().set_len(len / 2).unwrap();
    t2.vendor_profile(&[("g", "1")]);
    let gen_dir = t2.scratch("gen");
    let mut ns = Ns::new(&t2);
    let g = ns.generator(&["--root", t2.root.to_str().unwrap(), gen_dir.to_str().unwrap()]);
    let s = ns.run().remove(g);
    assert!(!gen_dir.join("g.service").exists(), "GNU tar put the unit first?\n{}", s.describe());
}
