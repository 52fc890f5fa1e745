//! `torcx image inspect`: format, size, digest, manifest (or the scanned
//! default), the attach plan, and lint findings: libraries found neither in
//! the image (through `$ORIGIN` rpaths) nor on the host, absolute rpaths,
//! foreign ELF, missing manifest paths, units running binaries that do not
//! exist, units clashing with the host's. Exit 1 on any error finding.

mod common;

use common::*;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

fn torcx(args: &[&str]) -> (i32, String, String) {
    torcx_in(None, args)
}

/// Packs `dir` to `dest` with torcx (which must succeed).
#[track_caller]
fn pack(dir: &Path, dest: &Path) {
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    let (code, out, err) = torcx(&["image", "pack", dir.to_str().unwrap(), "-o", dest.to_str().unwrap()]);
    assert_eq!(code, 0, "pack failed:\n{out}\n{err}");
}

/// `torcx [--root ROOT] image inspect TARGET --json`: (exit code, value).
#[track_caller]
fn inspect(root: Option<&Path>, target: &str) -> (i32, Value) {
    let mut args = vec![];
    if let Some(r) = root {
        args.extend(["--root", r.to_str().unwrap()]);
    }
    args.extend(["image", "inspect", "--json", target]);
    let (code, out, err) = torcx(&args);
    let doc: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}\n{err}"));
    assert_eq!(doc["kind"], "torcx-image-inspect-v0", "{doc:#}");
    (code, doc["value"].clone())
}

/// `(severity, message)` of every finding.
fn findings(v: &Value) -> Vec<(String, String)> {
    v["findings"]
        .as_array()
        .unwrap_or_else(|| panic!("no findings in {v:#}"))
        .iter()
        .map(|f| (f["severity"].as_str().unwrap().to_string(), f["message"].as_str().unwrap().to_string()))
        .collect()
}

#[track_caller]
fn assert_finding(v: &Value, severity: &str, needles: &[&str]) {
    let f = findings(v);
    assert!(
        f.iter().any(|(s, m)| s == severity && needles.iter().all(|n| m.contains(n))),
        "no {severity} finding with {needles:?} in {f:#?}"
    );
}

fn have_gcc(test: &str) -> bool {
    require_tool(test, "gcc", "gcc");
    true
}

/// Builds `libfoo.so` and `hello` (linked against it, with `link_args`) in
/// a scratch directory; returns their paths.
fn build_hello(t: &TestRoot, label: &str, link_args: &[&str]) -> (PathBuf, PathBuf) {
    let b = t.scratch(&format!("build-{label}"));
    write(&b.join("foo.c"), "int foo(void) { return 42; }\n");
    write(&b.join("main.c"), "int foo(void);\nint main(void) { return foo() == 42 ? 0 : 1; }\n");
    let run = |c: &mut Command| {
        let out = c.current_dir(&b).output().expect("running gcc");
        assert!(out.status.success(), "{c:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(Command::new("gcc").args(["-shared", "-fPIC", "-o", "libfoo.so", "foo.c"]));
    run(Command::new("gcc").args(["-o", "hello", "main.c", "-L.", "-lfoo"]).args(link_args));
    (b.join("libfoo.so"), b.join("hello"))
}

fn copy_exec(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, to).unwrap();
}

#[test]
fn a_library_missing_from_the_image_is_an_error_naming_the_binary() {
    if !have_gcc("a_library_missing_from_the_image_is_an_error_naming_the_binary") {
        return;
    }
    let t = TestRoot::new();
    let (_, hello) = build_hello(&t, "nolib", &["-Wl,-rpath,$ORIGIN/../lib"]);
    let img = Image::new(&t, "nolib", "1");
    copy_exec(&hello, &img.dir.join("bin/hello"));
    let a = t.scratch("out").join("nolib:1.torcx.tgz");
    pack(&img.dir, &a);
    let (code, v) = inspect(None, a.to_str().unwrap());
    assert_eq!(code, 1, "{v:#}");
    assert_finding(&v, "error", &["/bin/hello", "needs libfoo.so", "$ORIGIN/../lib"]);
    let f = &v["findings"].as_array().unwrap().iter().find(|f| f["severity"] == "error").unwrap();
    assert_eq!(f["path"], "/bin/hello");
    assert_eq!(v["errors"], 1, "libc is on the host: {v:#}");
}

#[test]
fn a_library_found_through_origin_is_clean_in_every_format() {
    if !have_gcc("a_library_found_through_origin_is_clean_in_every_format") {
        return;
    }
    let t = TestRoot::new();
    let (lib, hello) = build_hello(&t, "origin", &["-Wl,-rpath,$ORIGIN/../lib"]);
    let img = Image::new(&t, "withlib", "1");
    copy_exec(&hello, &img.dir.join("bin/hello"));
    copy_exec(&lib, &img.dir.join("lib/libfoo.so"));
    // It really runs from the tree.
    let st = Command::new(img.dir.join("bin/hello")).status().unwrap();
    assert!(st.success());
    for suffix in ["torcx.tgz", "torcx.tar.zst", "torcx.squashfs", "torcx.erofs"] {
        let a = t.scratch("out").join(format!("withlib:1.{suffix}"));
        pack(&img.dir, &a);
        let (code, v) = inspect(None, a.to_str().unwrap());
        assert_eq!(code, 0, "{suffix}: {v:#}");
        assert_eq!(findings(&v), vec![], "{suffix}");
        assert_eq!(v["manifest"]["bin"], json!(["/bin"]), "{suffix}");
        let bins: Vec<&str> = v["placements"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["class"] == "bin")
            .map(|p| p["path"].as_str().unwrap())
            .collect();
        assert_eq!(bins, ["/run/torcx/bin/hello"], "{suffix}");
    }
    // A directory is inspected in place, with the same verdict.
    let (code, v) = inspect(None, img.dir.to_str().unwrap());
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["format"], "directory");
    assert_finding(&v, "warning", &["manifest.json", "missing"]);
}

#[test]
fn an_absolute_rpath_is_a_warning() {
    if !have_gcc("an_absolute_rpath_is_a_warning") {
        return;
    }
    let t = TestRoot::new();
    let (lib, hello) = build_hello(&t, "abs", &["-Wl,-rpath,/opt/foo/lib:$ORIGIN/../lib"]);
    let img = Image::new(&t, "abs", "1");
    copy_exec(&hello, &img.dir.join("usr/bin/hello"));
    copy_exec(&lib, &img.dir.join("usr/lib/libfoo.so"));
    let a = t.scratch("out").join("abs:1.torcx.tgz");
    pack(&img.dir, &a);
    let (code, v) = inspect(None, a.to_str().unwrap());
    assert_eq!(code, 0, "{v:#}");
    assert_finding(&v, "warning", &["/usr/bin/hello", "/opt/foo/lib", "absolute"]);
    assert_eq!(v["errors"], 0, "{v:#}");
}

#[test]
fn elf_for_another_architecture_is_an_error() {
    let t = TestRoot::new();
    let img = Image::new(&t, "foreign", "1");
    // A small host binary (or this very one), claiming another machine.
    let mut b = std::fs::read("/bin/true").or_else(|_| std::fs::read(TORCX)).unwrap();
    let other: u16 = if cfg!(target_arch = "aarch64") { 62 } else { 183 };
    b[18..20].copy_from_slice(&other.to_le_bytes());
    img.exec("usr/bin/foreign", b);
    let a = t.scratch("out").join("foreign:1.torcx.tgz");
    pack(&img.dir, &a);
    let (code, v) = inspect(None, a.to_str().unwrap());
    assert_eq!(code, 1, "{v:#}");
    assert_finding(&v, "error", &["/usr/bin/foreign", "ELF for", "this machine is"]);
}

#[test]
fn units_running_missing_binaries_and_missing_manifest_paths_are_errors() {
    let t = TestRoot::new();
    let img = Image::new(&t, "u", "1");
    img.manifest(json!({
        "bin": ["/usr/bin/tool", "/usr/bin/gone"],
        "units": ["/usr/lib/systemd/system/u.service", "/usr/lib/systemd/system/missing.service"],
        "tmpfiles": ["/usr/lib/tmpfiles.d/nope.conf"],
    }))
    .exec("usr/bin/tool", "#!/bin/sh\n")
    .exec("usr/libexec/u/helper", "#!/bin/sh\n")
    .file(
        "usr/lib/systemd/system/u.service",
        "[Service]\n\
         ExecStartPre=/run/torcx/unpack/u/usr/libexec/u/helper\n\
         ExecStartPre=-/bin/sh -c true\n\
         ExecStart=/run/torcx/bin/tool --flag\n\
         ExecStartPost=/run/torcx/bin/nothere\n\
         ExecReload=/usr/bin/tool\n\
         ExecStop=@/opt/not/there stop\n",
    );
    let a = t.scratch("out").join("u:1.torcx.tgz");
    pack(&img.dir, &a);
    let (code, v) = inspect(None, a.to_str().unwrap());
    assert_eq!(code, 1, "{v:#}");
    assert_finding(&v, "error", &["/usr/bin/gone", "does not exist in the image"]);
    assert_finding(&v, "error", &["/usr/lib/systemd/system/missing.service", "does not exist in the image"]);
    assert_finding(&v, "error", &["/usr/lib/tmpfiles.d/nope.conf", "does not exist in the image"]);
    assert_finding(&v, "error", &["u.service", "ExecStartPost=/run/torcx/bin/nothere"]);
    assert_finding(&v, "error", &["u.service", "ExecStop=/opt/not/there", "neither in the image nor on the host"]);
    // The image's own path, not where it is once attached.
    assert_finding(&v, "error", &["u.service", "ExecReload=/usr/bin/tool", "/run/torcx/bin/tool"]);
    let f = findings(&v);
    assert!(!f.iter().any(|(_, m)| m.contains("helper") || m.contains("ExecStart=/run/torcx/bin/tool")), "{f:#?}");
    assert!(!f.iter().any(|(_, m)| m.contains("/bin/sh")), "{f:#?}");
    assert_eq!(v["errors"], 6, "{f:#?}");
    // What exists is still planned.
    let paths: Vec<&str> = v["placements"].as_array().unwrap().iter().map(|p| p["path"].as_str().unwrap()).collect();
    assert!(paths.contains(&"/run/torcx/bin/tool") && paths.contains(&"/run/systemd/system/u.service"), "{paths:?}");
}

#[test]
fn units_clashing_with_the_host_are_warnings() {
    let t = TestRoot::new();
    t.write("etc/systemd/system/clash.service", "[Service]\nExecStart=/bin/true\n");
    let img = Image::new(&t, "c", "1");
    img.manifest(json!({"bin": ["/bin/c"], "units": ["/lib/systemd/system/clash.service"]}))
        .exec("bin/c", "#!/bin/sh\n")
        .file("lib/systemd/system/clash.service", "[Service]\nExecStart=/run/torcx/bin/c\n");
    let a = t.scratch("out").join("c:1.torcx.tgz");
    pack(&img.dir, &a);
    let (code, v) = inspect(Some(&t.root), a.to_str().unwrap());
    assert_eq!(code, 0, "{v:#}");
    assert_finding(&v, "warning", &["clash.service", "/etc/systemd/system/clash.service"]);
    assert_eq!(findings(&v).len(), 1, "{v:#}");
}

fn sha256(p: &Path) -> String {
    let out = Command::new("sha256sum").arg(p).output().unwrap();
    format!("sha256:{}", String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap())
}

#[test]
fn inspects_store_images_by_name() {
    let t = TestRoot::new();
    let img = Image::new(&t, "s", "2.0");
    img.manifest(json!({"bin": ["/bin/s"], "units": ["/lib/systemd/system/s.service", "/lib/systemd/system/multi-user.target.wants"]}))
        .exec("bin/s", "#!/bin/sh\n")
        .file("lib/systemd/system/s.service", "[Service]\nExecStart=/run/torcx/bin/s\n")
        .symlink("lib/systemd/system/multi-user.target.wants/s.service", "../s.service");
    let a = img.pack(&t, USER_STORE, Fmt::Tgz);
    for target in ["s:2.0", "s"] {
        let (code, v) = inspect(Some(&t.root), target);
        assert_eq!(code, 0, "{v:#}");
        assert_eq!(v["image"], "s:2.0");
        assert_eq!(v["path"], "/var/lib/torcx/store/s:2.0.torcx.tgz");
        assert_eq!(v["format"], "tgz");
        assert_eq!(v["size"], std::fs::metadata(&a).unwrap().len());
        assert_eq!(v["digest"], sha256(&a));
        assert_eq!(v["manifest_source"], "image");
        assert_eq!(v["manifest"]["bin"], json!(["/bin/s"]));
        let got: Vec<(String, String, String)> = v["placements"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["class"].as_str().unwrap().into(),
                    p["path"].as_str().unwrap().into(),
                    p["target"].as_str().unwrap_or("").into(),
                )
            })
            .collect();
        let s = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
        assert_eq!(
            got,
            vec![
                s("bin", "/run/torcx/bin/s", "/run/torcx/unpack/s/bin/s"),
                s("unit", "/run/systemd/system/s.service", ""),
                s("drop_in", "/run/systemd/system/s.service.d", ""),
                s("drop_in", "/run/systemd/system/s.service.d/10-torcx.conf", ""),
                s("unit", "/run/systemd/system/multi-user.target.wants", ""),
                s("unit", "/run/systemd/system/multi-user.target.wants/s.service", "../s.service"),
            ]
        );
        assert_eq!(findings(&v), vec![]);
    }
    // Nothing left in the temporary directory.
    let left: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("torcx-inspect-"))
        .collect();
    assert!(left.iter().all(|n| !n.contains(&format!("-{}-", std::process::id()))), "{left:?}");
    let (code, _, err) = torcx(&["--root", t.root.to_str().unwrap(), "image", "inspect", "nope:1"]);
    assert_eq!(code, 1);
    assert!(err.contains("nope:1"), "{err}");
}

/// A bare word is an image name in the stores even when the current
/// directory holds a directory of that name; `./NAME` is the directory.
#[test]
fn a_bare_word_is_a_store_image_even_beside_a_directory_of_that_name() {
    let t = TestRoot::new();
    let img = Image::new(&t, "s", "2.0");
    img.manifest(json!({"bin": ["/bin/s"]})).exec("bin/s", "#!/bin/sh\n");
    img.pack(&t, USER_STORE, Fmt::Tgz);
    let cwd = t.scratch("cwd");
    let dir = cwd.join("s");
    std::fs::create_dir_all(dir.join(".torcx")).unwrap();
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::write(dir.join("bin/other"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(dir.join("bin/other"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let manifest = json!({"kind": "image-manifest-v0", "value": {"bin": ["/bin/other"]}});
    std::fs::write(dir.join(".torcx/manifest.json"), manifest.to_string()).unwrap();
    let root = t.root.to_str().unwrap();
    let run = |target: &str| -> Value {
        let (code, out, err) = torcx_in(Some(&cwd), &["--root", root, "image", "inspect", "--json", target]);
        assert_eq!(code, 0, "{target}:\n{out}\n{err}");
        serde_json::from_str::<Value>(&out).unwrap()["value"].clone()
    };
    let v = run("s");
    assert_eq!(v["image"], "s:2.0", "{v:#}");
    assert_eq!(v["path"], "/var/lib/torcx/store/s:2.0.torcx.tgz", "{v:#}");
    let v = run("./s");
    assert_eq!((v["format"].as_str(), v["path"].as_str()), (Some("directory"), cwd.join("s").to_str()), "{v:#}");
    assert_eq!(v["manifest"]["bin"], json!(["/bin/other"]), "{v:#}");
}

#[test]
fn an_image_without_a_manifest_shows_the_scanned_default() {
    let t = TestRoot::new();
    let img = Image::new(&t, "plain", "1");
    img.exec("usr/bin/plain", "#!/bin/sh\n")
        .file("usr/lib/systemd/system/plain.service", "[Service]\nExecStart=/run/torcx/bin/plain\n");
    let a = t.scratch("out").join("plain:1.torcx.tgz");
    img.pack_to(&a, Fmt::Tgz);
    let (code, v) = inspect(None, a.to_str().unwrap());
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["manifest_source"], "default");
    assert_eq!(v["manifest"]["bin"], json!(["/usr/bin"]));
    assert_eq!(v["manifest"]["units"], json!(["/usr/lib/systemd/system/plain.service"]));
    assert_finding(&v, "warning", &["/.torcx/manifest.json", "missing"]);
    assert!(v["placements"].as_array().unwrap().iter().any(|p| p["path"] == "/run/torcx/bin/plain"), "{v:#}");
}

#[test]
fn what_the_unpack_refuses_is_an_error() {
    let t = TestRoot::new();
    let a = t.scratch("out").join("bad:1.torcx.tgz");
    py_tar(&a, Fmt::Tgz, &[e_dir("bin"), e_file("bin/x", b"x"), e_symlink("bin/evil", "/etc/passwd")]);
    let (code, v) = inspect(None, a.to_str().unwrap());
    assert_eq!(code, 1, "{v:#}");
    assert_finding(&v, "error", &["bin/evil", "refuses"]);
}

#[test]
fn a_table_for_people() {
    require_tool("a_table_for_people", "script", "bsdutils");
    let t = TestRoot::new();
    let img = Image::new(&t, "p", "1");
    img.manifest(json!({"bin": ["/bin/p", "/bin/q"]})).exec("bin/p", "#!/bin/sh\n");
    let a = t.scratch("out").join("p:1.torcx.tgz");
    pack(&img.dir, &a);
    let cmd = format!("'{TORCX}' image inspect '{}'", a.display());
    let out = Command::new("script").args(["-qec", &cmd, "/dev/null"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    assert_eq!(out.status.code(), Some(1), "{text}");
    for l in ["image        p:1", "format       tgz", "manifest     /.torcx/manifest.json", "  bin        /bin/p"] {
        assert!(text.lines().any(|x| x.starts_with(l)), "{l:?} missing:\n{text}");
    }
    assert!(text.contains("/run/torcx/bin/p -> /run/torcx/unpack/p/bin/p"), "{text}");
    assert!(text.contains("lint         1 error(s), 0 warning(s)"), "{text}");
    assert!(text.contains("error   /bin/q: manifest bin entry does not exist in the image"), "{text}");
}

/// Issue 9, class 4: names from an image reach the terminal escaped. A
/// binary whose name holds a newline, a forged `torcx:` line and an ANSI
/// sequence is shown on one line, as `\x0a` and `\x1b`, by `image inspect`
/// (manifest, placements, findings); JSON keeps the name exact.
#[test]
fn names_from_an_image_are_escaped_on_the_terminal() {
    let t = TestRoot::new();
    let evil = "bin/x\ntorcx: error: forged\x1b[2J";
    let img = Image::new(&t, "evil", "1");
    img.exec(evil, "#!/bin/sh\n").manifest(json!({"bin": [format!("/{evil}"), "/bin/missing\n\x1b[31m"]}));
    let dest = t.scratch("store").join("evil:1.torcx.tgz");
    img.pack_to(&dest, Fmt::Tgz);

    // Human output is for terminals (JSON otherwise): run under a pty.
    require_tool("names_from_an_image_are_escaped_on_the_terminal", "script", "util-linux");
    let cmd = format!("{} image inspect '{}'", env!("CARGO_BIN_EXE_torcx"), dest.display());
    let o = Command::new("script").args(["-qec", &cmd, "/dev/null"]).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout).replace("\r\n", "\n");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(out.contains("manifest"), "not the human form:\n{out}");
    for text in [&out, &err] {
        assert!(!text.contains('\x1b'), "raw escape on the terminal:\n{text}");
        assert!(!text.lines().any(|l| l.starts_with("torcx: error: forged")), "forged line:\n{text}");
    }
    assert!(out.contains("x\\x0atorcx: error: forged\\x1b[2J"), "{out}");

    let (_, v) = inspect(None, dest.to_str().unwrap());
    assert!(v["manifest"]["bin"].as_array().unwrap().iter().any(|b| b == &json!(format!("/{evil}"))), "{v:#}");
}

/// An archive that does not unpack is not hashed whole either: a valid tgz
/// followed by a 1 TiB sparse hole is refused at 64 MiB, and the digest of
/// the terabyte is not waited for (found by an outside attack: inspect ran
/// until its timeout, 53 GiB read). `timeout` ends it if it ever waits.
#[test]
fn an_archive_that_does_not_unpack_is_not_hashed_whole() {
    let t = TestRoot::new();
    let img = Image::new(&t, "h", "1");
    img.manifest(json!({"bin": ["/bin/h"]})).exec("bin/h", "#!/bin/sh\n");
    let a = img.pack(&t, USER_STORE, Fmt::Tgz);
    let f = std::fs::OpenOptions::new().append(true).open(&a).unwrap();
    f.set_len(f.metadata().unwrap().len() + (1 << 40)).unwrap();
    let out = Command::new("timeout")
        .args(["60", TORCX, "image", "inspect", "--json", a.to_str().unwrap()])
        .output()
        .expect("running timeout");
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_finding(&doc["value"], "error", &["corrupt gzip stream: 64 MiB more read than it gave"]);
    assert_eq!(doc["value"]["digest"], Value::Null);
}
