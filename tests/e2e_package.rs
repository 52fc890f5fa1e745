//! The Debian package (`make deb`), installed with dpkg into the harness's
//! Debian rootfs, boots with a vendor profile and runs the example addon.

use std::path::Path;
use std::process::Command;

fn package(rootfs: &str) {
    if !rustix::process::geteuid().is_root() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "the package tests must run in CI: run them as root");
        eprintln!("skipped: needs root");
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .arg(repo.join("tests/e2e/package.sh"))
        .arg(env!("CARGO_BIN_EXE_torcx"))
        .arg(rootfs)
        .output()
        .expect("running tests/e2e/package.sh");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("PASS"), "package boot on {rootfs} failed:\n{text}");
}

#[test]
fn package_installs_and_boots_on_bookworm() {
    package("bookworm");
}

#[test]
fn package_installs_and_boots_on_trixie() {
    package("trixie");
}
