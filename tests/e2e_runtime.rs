//! End to end, at runtime: a real systemd boots in a container
//! (../shared/harness) with torcx as its generator and an empty profile; then
//! on the running system torcx attaches the example image with --now, refuses
//! a second attach and the detach of an active unit, reattaches another
//! reference, detaches with --now, runs a portable image (--portable=strict)
//! inside its own tree, and refuses --portable for an image that is not
//! portable. Run on systemd 252 (bookworm) and 257 (trixie).

use std::path::Path;
use std::process::Command;

fn runtime(rootfs: &str) {
    if !rustix::process::geteuid().is_root() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "the runtime tests must run in CI: run them as root");
        eprintln!("skipped: needs root");
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .arg(repo.join("tests/e2e/runtime.sh"))
        .arg(env!("CARGO_BIN_EXE_torcx"))
        .arg(rootfs)
        .output()
        .expect("running tests/e2e/runtime.sh");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "runtime attach/detach on {rootfs} failed:\n{text}");
    assert!(text.contains("PASS"), "{text}");
}

#[test]
fn runtime_bookworm() {
    runtime("bookworm");
}

#[test]
fn runtime_trixie() {
    runtime("trixie");
}
