//! The Debian package (`make deb`), installed with dpkg into the harness's
//! Debian rootfs, boots with a vendor profile and runs the example addon.

mod common;

fn package(rootfs: &str) {
    common::run_e2e(&format!("package_{rootfs}"), "package.sh", rootfs, &[]);
}

#[test]
fn package_installs_and_boots_on_bookworm() {
    package("bookworm");
}

#[test]
fn package_installs_and_boots_on_trixie() {
    package("trixie");
}
