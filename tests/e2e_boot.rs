//! End to end: a real systemd boots in a container (../shared/harness) with
//! torcx as its generator and torcx-apply.service installed, and the example
//! image's service, whose binary needs a library shipped only in the image,
//! becomes active. Run on systemd 252 (bookworm) and 257 (trixie).

mod common;

fn boot(rootfs: &str, format: &str) {
    common::run_e2e(&format!("boot_{rootfs}_{format}"), "boot.sh", rootfs, &[("ARCHIVE_FORMAT", format)]);
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
