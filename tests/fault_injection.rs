//! Fault injection is for the tests only: the shipped binary (a release
//! build, without the `fault-injection` feature the tests turn on) ignores
//! `TORCX_TEST_FAIL_AT` and `TORCX_TEST_CRASH_AT`.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `cargo build --release` as `make`, `make deb` and the demo do: no dev-dependencies, so no test features.
fn shipped_binary() -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = repo.join("target");
    let out = Command::new(env!("CARGO"))
        .args(["build", "--release", "--locked", "--bin", "torcx"])
        .current_dir(repo)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("running cargo");
    assert!(out.status.success(), "cargo build --release failed:\n{}", String::from_utf8_lossy(&out.stderr));
    target.join("release/torcx")
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
