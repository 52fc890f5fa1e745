//! End to end, at runtime: a real systemd boots in a container
//! (../shared/harness) with torcx as its generator and an empty profile; then
//! on the running system torcx attaches the example image with --now, refuses
//! a second attach and the detach of an active unit, reattaches another
//! reference, detaches with --now, runs a portable image (--portable=strict)
//! inside its own tree, and refuses --portable for an image that is not
//! portable. Run on systemd 252 (bookworm) and 257 (trixie).

mod common;

fn runtime(rootfs: &str) {
    common::run_e2e(&format!("runtime_{rootfs}"), "runtime.sh", rootfs, &[]);
}

#[test]
fn runtime_bookworm() {
    runtime("bookworm");
}

#[test]
fn runtime_trixie() {
    runtime("trixie");
}
