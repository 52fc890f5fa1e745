//! Fault injection is for the tests only: the shipped binary (a release
//! build, without the `fault-injection` feature the tests turn on) ignores
//! `TORCX_TEST_FAIL_AT` and `TORCX_TEST_CRASH_AT`.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The binary `make` builds and `make deb` ships (a release build, linked
/// statically): no dev-dependencies, so no test features.
fn shipped_binary() -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("make")
        .args(["-s", "build"])
        .arg(format!("CARGO={}", env!("CARGO")))
        .current_dir(repo)
        .output()
        .expect("running make");
    assert!(out.status.success(), "make build failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let rustc = Command::new("rustc").arg("-vV").output().expect("running rustc");
    let host = String::from_utf8_lossy(&rustc.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .expect("rustc -vV names the host");
    let bin = repo.join("target").join(host).join("release/torcx");
    // Linked statically: it runs on an image whatever its libraries.
    let ldd = Command::new("ldd").arg(&bin).output().expect("running ldd");
    let said = String::from_utf8_lossy(&ldd.stdout) + String::from_utf8_lossy(&ldd.stderr);
    assert!(said.contains("statically linked"), "ldd {}: {said}", bin.display());
    bin
}

/// `torcx --root ROOT attach ARCHIVE` with `TORCX_TEST_FAIL_AT=1` in a private mount namespace.
fn attach_with_fault(bin: &Path, t: &TestRoot, archive: &Path) -> (i32, String) {
    let mut c = Command::new("unshare");
    clean_env(&mut c);
    let out = c
        .args(["--mount", "--propagation", "private", "--"])
        .arg(bin)
        .arg("--root")
        .arg(&t.root)
        .args(["attach", "--no-reload"])
        .arg(archive)
        .env("TORCX_TEST_FAIL_AT", "1")
        .env("TORCX_TEST_CRASH_AT", "2")
        .output()
        .expect("running unshare");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn release_build_ignores_fault_injection() {
    require_root("release_build_ignores_fault_injection");
    let t = TestRoot::new();
    let img = Image::new(&t, "demo", "1");
    img.exec("bin/demo", "#!/bin/sh\necho demo\n").manifest(serde_json::json!({"bin": ["/bin/demo"]}));
    let archive = t.scratch("archives").join("demo:1.torcx.tgz");
    img.pack_to(&archive, Fmt::Tgz);
    std::fs::create_dir_all(t.root.join("run")).unwrap();

    // The test build obeys the variable: the first step fails.
    let (code, err) = attach_with_fault(Path::new(TORCX), &t, &archive);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("injected failure at step 1"), "{err}");

    // The shipped build attaches as if the variables were not there.
    let (code, err) = attach_with_fault(&shipped_binary(), &t, &archive);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("injected"), "{err}");
}
