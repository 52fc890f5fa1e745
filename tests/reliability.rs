//! Reliability under faults (issue 12): boot apply killed at every step
//! reaches, on the next apply or the next boot, exactly the state an
//! uninterrupted apply reaches.

mod common;

use common::*;
use serde_json::json;
use std::path::Path;

/// Two images with units, binaries and runtime files, in the vendor profile.
fn machine() -> TestRoot {
    let t = TestRoot::new();
    let a = Image::new(&t, "a", "1");
    a.manifest(json!({
        "bin": ["/bin/hello"],
        "units": ["/lib/systemd/system/a.service", "/lib/systemd/system/multi-user.target.wants"],
        "tmpfiles": ["/lib/tmpfiles.d/a.conf"],
    }))
    .exec("bin/hello", "#!/bin/sh\necho hello\n")
    .file("lib/systemd/system/a.service", "[Service]\nExecStart=/run/torcx/bin/hello\n")
    .symlink("lib/systemd/system/multi-user.target.wants/a.service", "../a.service")
    .file("lib/tmpfiles.d/a.conf", "d /run/a 0755 root root -\n");
    a.pack(&t, VENDOR_STORE, Fmt::Tgz);
    let b = Image::new(&t, "b", "1");
    b.manifest(json!({"bin": ["/usr/bin/bee"], "units": ["/usr/lib/systemd/system/b.socket"]}))
        .exec("usr/bin/bee", "#!/bin/sh\necho bee\n")
        .file("usr/lib/systemd/system/b.socket", "[Socket]\nListenStream=/run/b.sock\n");
    b.pack(&t, VENDOR_STORE, Fmt::Zst);
    t.vendor_profile(&[("a", "1"), ("b", "1")]);
    std::fs::create_dir_all(t.path("run")).unwrap();
    t
}

/// Adds to the session a listing of everything under `ROOT/run` (type,
/// mode, link target, content hash) and of the mounts under `ROOT`, to `dir/label`.
fn snapshot(ns: &mut Ns, dir: &Path, label: &str) {
    // The status file is compared without its clock (when apply started and
    // finished) and without what this run did (an image a killed run
    // attached is "unchanged" now, and unpacked nothing); a tree's tmpfs
    // without its size, which is what the limit left when it was mounted.
    ns.sh(&format!(
        "( cd \"$ROOT\" && find run -printf '%p|%y|%m|%l|' -exec sh -c 'if [ -f \"$1\" ] && [ ! -L \"$1\" ] && [ \"$1\" != run/torcx/status.json ]; then md5sum < \"$1\"; else echo; fi' _ {{}} \\; | sort; \
         sed -E -e 's/\"(started|finished|unpacked_bytes)\": [0-9]+/\"\\1\": N/' -e 's/\"state\": \"(attached|unchanged)\"/\"state\": \"attached\"/' run/torcx/status.json; \
         grep -F \" $ROOT/\" /proc/self/mountinfo | cut -d' ' -f5,6,9- | sed -E -e 's/,size=[0-9]+k//' -e 's/,nr_inodes=[0-9]+//' | sort ) > '{}'",
        dir.join(label).display()
    ));
}

/// A reboot: the mounts went with the last session; `/run` is a fresh tmpfs.
const REBOOT: &str = "rm -rf \"$ROOT/run\" && mkdir \"$ROOT/run\"";

#[test]
fn apply_killed_at_every_step_ends_as_an_uninterrupted_apply() {
    require_root("apply_killed_at_every_step_ends_as_an_uninterrupted_apply");
    let t = machine();
    let snaps = t.scratch("snaps");
    // The reference: one apply, uninterrupted.
    let mut ns = Ns::new(&t);
    let reference = ns.apply();
    snapshot(&mut ns, &snaps, "reference");
    let steps = ns.run();
    assert_eq!(steps[reference].code, 0, "{}", steps[reference].describe());
    let want = std::fs::read_to_string(snaps.join("reference")).unwrap();
    assert!(want.contains("run/metadata/torcx|f|"), "{want}");
    let mut killed = 0;
    for n in 1.. {
        // Killed at step n, then applied again in the same boot.
        let mut ns = Ns::new(&t);
        ns.sh(REBOOT);
        let k = ns.torcx_env(&[("TORCX_TEST_CRASH_AT", &n.to_string())], &["apply"]);
        let again = ns.apply();
        snapshot(&mut ns, &snaps, &format!("again-{n}"));
        let steps = ns.run();
        // Killed at step n, then the next boot (what persists is /var and /etc).
        let mut ns = Ns::new(&t);
        ns.sh(REBOOT);
        let k2 = ns.torcx_env(&[("TORCX_TEST_CRASH_AT", &n.to_string())], &["apply"]);
        let killed2 = ns.run();
        let mut boot = Ns::new(&t);
        boot.sh(REBOOT);
        let next = boot.apply();
        snapshot(&mut boot, &snaps, &format!("boot-{n}"));
        let booted = boot.run();
        if steps[k].code == 0 {
            // Past the last step.
            assert!(n > 1, "apply has no step");
            break;
        }
        killed += 1;
        assert_eq!(steps[k].code, 137, "step {n}: {}", steps[k].describe());
        assert_eq!(killed2[k2].code, 137, "step {n}: {}", killed2[k2].describe());
        assert_eq!(steps[again].code, 0, "apply after a kill at step {n}: {}", steps[again].describe());
        assert_eq!(booted[next].code, 0, "boot after a kill at step {n}: {}", booted[next].describe());
        let got = std::fs::read_to_string(snaps.join(format!("again-{n}"))).unwrap();
        assert_eq!(got, want, "apply again after a kill at step {n}");
        let got = std::fs::read_to_string(snaps.join(format!("boot-{n}"))).unwrap();
        assert_eq!(got, want, "the next boot after a kill at step {n}");
        assert!(n < 200, "apply never finished");
    }
    eprintln!("apply killed at {killed} steps");
    assert!(killed >= 20, "only {killed} kill points");
}
