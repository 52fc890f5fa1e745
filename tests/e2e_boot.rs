//! End to end: a real systemd boots in a container (../shared/harness) with
//! torcx as its generator and torcx-apply.service installed, and the example
//! image's service, whose binary needs a library shipped only in the image,
//! becomes active. Run on systemd 252 (bookworm) and 257 (trixie).

use std::path::Path;
use std::process::Command;

fn boot(rootfs: &str, format: &str) {
    if !rustix::process::geteuid().is_root() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "the boot tests must run in CI: run them as root");
        eprintln!("skipped: needs root");
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .arg(repo.join("tests/e2e/boot.sh"))
        .arg(env!("CARGO_BIN_EXE_torcx"))
        .arg(rootfs)
        .env("ARCHIVE_FORMAT", format)
        .output()
        .expect("running tests/e2e/boot.sh");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "boot on {rootfs} with a {format} image failed:\n{text}");
    assert!(text.contains("PASS"), "{text}");
}

#[test]
fn boot_bookworm_tgz() {
    boot("bookworm", "tgz");
}

#[test]
fn boot_bookworm_zst() {
    boot("bookworm", "zst");
}

#[test]
fn boot_trixie_tgz() {
    boot("trixie", "tgz");
}

#[test]
fn boot_trixie_zst() {
    boot("trixie", "zst");
}

/// The generator reads a squashfs image's units without mounting it (systemd
/// 257 sandboxes generators), and torcx-apply.service mounts it.
#[test]
fn boot_trixie_squashfs() {
    boot("trixie", "squashfs");
}

#[test]
fn boot_bookworm_erofs() {
    boot("bookworm", "erofs");
}
