//! Runtime attach, detach, reattach and is-attached on a temporary root in a
//! private mount namespace: every refusal, the record, detach symmetry (the
//! `/run` tree and the mounts after attach + detach equal those before), the
//! kept-file case, reattach rollback at every step, and `kill -9` at every
//! step of attach.

mod common;

use common::*;
use serde_json::json;
use std::path::{Path, PathBuf};

/// An image with a binary, a unit enabled through a `.wants` link, a
/// tmpfiles entry and a data file that tells references apart.
fn image(t: &TestRoot, name: &str, reference: &str) -> PathBuf {
    let img = Image::new(t, name, reference);
    img.exec(&format!("bin/{name}"), format!("#!/bin/sh\necho {name} {reference}\n"))
        .file(&format!("lib/systemd/system/{name}.service"), format!("[Service]\nExecStart=/run/torcx/bin/{name}\n"))
        .symlink(&format!("lib/systemd/system/multi-user.target.wants/{name}.service"), &format!("../{name}.service"))
        .file(&format!("usr/lib/tmpfiles.d/{name}.conf"), "d /run/demo 0755 root root -\n")
        .file("VERSION", reference)
        .manifest(json!({
            "bin": [format!("/bin/{name}")],
            "units": [format!("/lib/systemd/system/{name}.service"), "/lib/systemd/system/multi-user.target.wants"],
            "tmpfiles": [format!("/usr/lib/tmpfiles.d/{name}.conf")],
        }));
    let dest = t.scratch("archives").join(format!("{name}:{reference}.torcx.tgz"));
    img.pack_to(&dest, Fmt::Tgz);
    dest
}

/// Appends to the session a listing of `ROOT/run` (type, mode, link target,
/// content digest) and of the mounts under ROOT, read back with [`snap`].
fn snapshot(ns: &mut Ns, dir: &Path, label: &str) {
    let f = dir.join(label);
    ns.sh(&format!(
        "( cd \"$ROOT\" && find run -printf '%p|%y|%m|%l|' -exec sh -c 'if [ -f \"$1\" ] && [ ! -L \"$1\" ]; then md5sum < \"$1\"; else echo; fi' _ {{}} \\; | sort; \
         grep -F \" $ROOT/\" /proc/self/mountinfo | cut -d' ' -f5,6,9- ) > '{}' || true",
        f.display()
    ));
}

fn snap(dir: &Path, label: &str) -> String {
    std::fs::read_to_string(dir.join(label)).unwrap()
}

/// torcx's own state directories, which stay once made.
fn without_state(s: &str) -> String {
    s.lines()
        .filter(|l| {
            !["run/torcx|", "run/torcx/.lock|", "run/torcx/attached|", "run/torcx/unpack|"]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn attach_places_records_and_detach_restores_the_tree() {
    require_root("attach_places_records_and_detach_restores_the_tree");
    let t = TestRoot::new();
    let a = image(&t, "demo", "1");
    let snaps = t.scratch("snaps");
    t.write("run/systemd/system/multi-user.target.wants/host.service", "");
    let mut ns = Ns::new(&t);
    snapshot(&mut ns, &snaps, "before");
    let att = ns.torcx(&["attach", a.to_str().unwrap(), "--json"]);
    snapshot(&mut ns, &snaps, "attached");
    let is = ns.torcx(&["is-attached", "demo"]);
    let det = ns.torcx(&["detach", "demo"]);
    snapshot(&mut ns, &snaps, "after");
    let not = ns.torcx(&["is-attached", "demo"]);
    let again = ns.torcx(&["detach", "demo"]);
    let steps = ns.run();

    let s = &steps[att];
    assert_eq!(s.code, 0, "{}", s.describe());
    let rec = &s.json()["value"]["attachment"];
    assert_eq!(rec["name"], "demo");
    assert_eq!(rec["origin"], "runtime");
    assert_eq!(rec["state"], "attached");
    assert!(rec["digest"].as_str().unwrap().starts_with("sha256:"), "{rec}");
    let placed = snap(&snaps, "attached");
    assert!(placed.contains("run/torcx/bin/demo|l|777|/run/torcx/unpack/demo/bin/demo|"), "{placed}");
    assert!(placed.contains("run/systemd/system/demo.service.d/10-torcx.conf|f|"), "{placed}");
    assert!(
        placed.contains("run/systemd/system/multi-user.target.wants/demo.service|l|777|../demo.service|"),
        "{placed}"
    );
    assert!(placed.contains("run/tmpfiles.d/demo.conf|f|644|"), "{placed}");
    assert!(placed.contains(&format!("{}/run/torcx/unpack/demo ro,nosuid,nodev", t.root.display())), "{placed}");

    assert_eq!(steps[is].code, 0);
    assert_eq!(steps[is].json()["value"]["state"], "attached");
    assert_eq!(steps[det].code, 0, "{}", steps[det].describe());
    // Symmetry: what torcx placed is gone, mounts included; the host's
    // wants directory and its link stay.
    assert_eq!(without_state(&snap(&snaps, "after")), without_state(&snap(&snaps, "before")));
    assert!(snap(&snaps, "after").contains("run/systemd/system/multi-user.target.wants/host.service"));
    assert_eq!(steps[not].code, 1);
    assert_eq!(steps[not].json()["value"]["state"], "not-attached");
    assert_eq!(steps[again].code, 1);
    assert!(steps[again].stderr.contains("image demo is not attached"), "{}", steps[again].describe());
    t.assert_canary();
}

#[test]
fn refusals_change_nothing_and_name_both_owners() {
    require_root("refusals_change_nothing_and_name_both_owners");
    let t = TestRoot::new();
    let a = image(&t, "demo", "1");
    let other = image(&t, "other", "1");
    // `other` ships a binary named like demo's.
    let clash = Image::new(&t, "clash", "1");
    clash.exec("bin/demo", "x").manifest(json!({"bin": ["/bin/demo"]}));
    let clash_a = t.scratch("archives").join("clash:1.torcx.tgz");
    clash.pack_to(&clash_a, Fmt::Tgz);
    let escape = Image::new(&t, "escape", "1");
    escape.file("x", "").manifest(json!({"units": ["/../../../etc/passwd"]}));
    let escape_a = t.scratch("archives").join("escape:1.torcx.tgz");
    escape.pack_to(&escape_a, Fmt::Tgz);
    t.write("etc/systemd/system/other.service", "[Service]\nExecStart=/bin/true\n");

    let snaps = t.scratch("snaps");
    let mut ns = Ns::new(&t);
    let first = ns.torcx(&["attach", a.to_str().unwrap()]);
    snapshot(&mut ns, &snaps, "one");
    let twice = ns.torcx(&["attach", a.to_str().unwrap()]);
    let bin = ns.torcx(&["attach", clash_a.to_str().unwrap()]);
    let host = ns.torcx(&["attach", other.to_str().unwrap()]);
    let esc = ns.torcx(&["attach", escape_a.to_str().unwrap()]);
    snapshot(&mut ns, &snaps, "still-one");
    let forced = ns.torcx(&["attach", other.to_str().unwrap(), "--force"]);
    let steps = ns.run();

    assert_eq!(steps[first].code, 0, "{}", steps[first].describe());
    let s = &steps[twice];
    assert_eq!(s.code, 1);
    assert!(
        s.stderr.contains("image demo is already attached (demo:1 from")
            && s.stderr.contains("torcx reattach demo:REF"),
        "{}",
        s.describe()
    );
    let s = &steps[bin];
    assert_eq!(s.code, 1);
    assert!(
        s.stderr.contains("image clash:1: /run/torcx/bin/demo (from /bin/demo) conflicts with image demo:1"),
        "{}",
        s.describe()
    );
    let s = &steps[host];
    assert_eq!(s.code, 1);
    assert!(
        s.stderr.contains("unit other.service (from /lib/systemd/system/other.service) conflicts with /etc/systemd/system/other.service on the host; use --force"),
        "{}",
        s.describe()
    );
    let s = &steps[esc];
    assert_eq!(s.code, 1);
    assert!(
        s.stderr.contains("manifest units entry \"/../../../etc/passwd\" contains '..': outside the image"),
        "{}",
        s.describe()
    );
    // Every refusal left the system as it was.
    assert_eq!(snap(&snaps, "still-one"), snap(&snaps, "one"));
    assert_eq!(steps[forced].code, 0, "--force overrides the host-unit check: {}", steps[forced].describe());
    assert_eq!(read(&t.path("etc/systemd/system/other.service")), "[Service]\nExecStart=/bin/true\n");
    t.assert_canary();
}

#[test]
fn detach_keeps_and_reports_a_file_changed_since_attach() {
    require_root("detach_keeps_and_reports_a_file_changed_since_attach");
    let t = TestRoot::new();
    let a = image(&t, "demo", "1");
    let mut ns = Ns::new(&t);
    ns.torcx(&["attach", a.to_str().unwrap()]);
    ns.sh("echo '# my change' >> \"$ROOT/run/systemd/system/demo.service\"");
    let det = ns.torcx(&["detach", "demo"]);
    let steps = ns.run();
    let s = &steps[det];
    assert_eq!(s.code, 1, "{}", s.describe());
    assert!(
        s.stderr.contains("image demo: kept 1 file changed since attach: /run/systemd/system/demo.service"),
        "{}",
        s.describe()
    );
    assert!(read(&t.path("run/systemd/system/demo.service")).ends_with("# my change\n"));
    assert!(!t.exists("run/torcx/bin/demo") && !t.exists("run/systemd/system/demo.service.d"));
    assert!(!t.exists("run/torcx/attached/demo.json"));
    assert!(s.mount_at(&t.path("run/torcx/unpack/demo")).is_none());
}

/// Detach never follows a link to decide what is torcx's: a placed file an
/// admin replaced with a symlink, even to identical content, is kept.
#[test]
fn detach_keeps_a_file_replaced_by_a_symlink_to_the_same_content() {
    require_root("detach_keeps_a_file_replaced_by_a_symlink_to_the_same_content");
    let t = TestRoot::new();
    let a = image(&t, "demo", "1");
    let mut ns = Ns::new(&t);
    ns.torcx(&["attach", a.to_str().unwrap()]);
    ns.sh(
        "u=\"$ROOT/run/systemd/system/demo.service\"; mkdir -p \"$ROOT/etc/mine\"; cp \"$u\" \"$ROOT/etc/mine/demo.service\"; \
         rm \"$u\"; ln -s ../../../etc/mine/demo.service \"$u\"",
    );
    let det = ns.torcx(&["detach", "demo"]);
    let steps = ns.run();
    let s = &steps[det];
    assert_eq!(s.code, 1, "{}", s.describe());
    assert!(
        s.stderr.contains("image demo: kept 1 file changed since attach: /run/systemd/system/demo.service"),
        "{}",
        s.describe()
    );
    let link = std::fs::read_link(t.path("run/systemd/system/demo.service")).unwrap();
    assert_eq!(link, std::path::Path::new("../../../etc/mine/demo.service"));
    assert!(t.exists("etc/mine/demo.service"));
}

#[test]
fn reattach_switches_or_leaves_the_old_attachment_exactly_as_it_was() {
    require_root("reattach_switches_or_leaves_the_old_attachment_exactly_as_it_was");
    let t = TestRoot::new();
    let one = image(&t, "demo", "1");
    let two = Image::new(&t, "demo", "2");
    // Reference 2 drops the tmpfiles entry and adds a second binary.
    two.exec("bin/demo", "#!/bin/sh\necho demo 2\n")
        .exec("bin/demo-ctl", "x")
        .file("lib/systemd/system/demo.service", "[Service]\nExecStart=/run/torcx/bin/demo --two\n")
        .symlink("lib/systemd/system/multi-user.target.wants/demo.service", "../demo.service")
        .file("VERSION", "2")
        .manifest(json!({"bin": ["/bin"], "units": ["/lib/systemd/system/demo.service", "/lib/systemd/system/multi-user.target.wants"]}));
    let two_a = t.scratch("archives").join("demo:2.torcx.tgz");
    two.pack_to(&two_a, Fmt::Tgz);
    let snaps = t.scratch("snaps");
    std::fs::create_dir_all(t.path("run")).unwrap();
    let mut ns = Ns::new(&t);
    // As on a systemd host, /run is a shared mount: its children cannot be moved.
    ns.sh("mount --bind \"$ROOT/run\" \"$ROOT/run\" && mount --make-shared \"$ROOT/run\"");
    ns.torcx(&["attach", one.to_str().unwrap()]);
    snapshot(&mut ns, &snaps, "one");
    // Fail at every step of the reattach in turn: the old attachment must
    // come back byte for byte, the mount included.
    let mut fails = vec![];
    for n in 1..=16 {
        fails.push(ns.torcx_env(&[("TORCX_TEST_FAIL_AT", &n.to_string())], &["reattach", two_a.to_str().unwrap()]));
        snapshot(&mut ns, &snaps, &format!("after-fail-{n}"));
        ns.sh(&format!(
            "cat \"$ROOT/run/torcx/unpack/demo/VERSION\" > '{}'",
            snaps.join(format!("version-{n}")).display()
        ));
    }
    let ok = ns.torcx(&["reattach", two_a.to_str().unwrap()]);
    snapshot(&mut ns, &snaps, "two");
    let steps = ns.run();

    let mut injected = 0;
    for (i, n) in fails.iter().zip(1..) {
        let s = &steps[*i];
        if s.code == 0 {
            // Past the last step: this run switched; undo it is not the point.
            break;
        }
        injected += 1;
        assert!(s.stderr.contains(&format!("injected failure at step {n}")), "step {n}: {}", s.describe());
        assert_eq!(
            snap(&snaps, &format!("after-fail-{n}")),
            snap(&snaps, "one"),
            "failure at step {n} changed the old attachment"
        );
        assert_eq!(snap(&snaps, &format!("version-{n}")), "1", "failure at step {n}");
    }
    assert!(injected >= 8, "only {injected} steps were interrupted");
    // The first run that got past every step switched, and so did the last.
    let last = &steps[ok];
    assert!(last.code == 0 || last.stderr.contains("is not attached"), "{}", last.describe());
    let two_snap = snap(&snaps, "two");
    assert!(two_snap.contains("run/torcx/bin/demo-ctl|l|777|/run/torcx/unpack/demo/bin/demo-ctl|"), "{two_snap}");
    assert!(!two_snap.contains("run/tmpfiles.d/demo.conf"), "{two_snap}");
    assert!(!two_snap.contains(".demo.next") && !two_snap.contains(".demo.prev"), "{two_snap}");
    assert!(read(&t.path("run/torcx/attached/demo.json")).contains("\"reference\": \"2\""));
    t.assert_canary();
}

#[test]
fn reattach_refuses_a_unit_of_the_host_and_changes_nothing() {
    require_root("reattach_refuses_a_unit_of_the_host_and_changes_nothing");
    let t = TestRoot::new();
    let one = image(&t, "demo", "1");
    // Reference 2 also ships a unit that would shadow the host's sshd.
    let two = Image::new(&t, "demo", "2");
    two.exec("bin/demo", "#!/bin/sh\necho demo 2\n")
        .file("lib/systemd/system/demo.service", "[Service]\nExecStart=/run/torcx/bin/demo --two\n")
        .file("lib/systemd/system/sshd.service", "[Service]\nExecStart=/run/torcx/bin/demo\n")
        .file("VERSION", "2")
        .manifest(json!({"bin": ["/bin/demo"], "units": ["/lib/systemd/system/demo.service", "/lib/systemd/system/sshd.service"]}));
    let two_a = t.scratch("archives").join("demo:2.torcx.tgz");
    two.pack_to(&two_a, Fmt::Tgz);
    t.write("usr/lib/systemd/system/sshd.service", "[Service]\nExecStart=/usr/sbin/sshd -D\n");
    let snaps = t.scratch("snaps");
    let mut ns = Ns::new(&t);
    let first = ns.torcx(&["attach", one.to_str().unwrap()]);
    snapshot(&mut ns, &snaps, "one");
    let re = ns.torcx(&["reattach", two_a.to_str().unwrap()]);
    snapshot(&mut ns, &snaps, "after");
    let steps = ns.run();

    assert_eq!(steps[first].code, 0, "{}", steps[first].describe());
    let s = &steps[re];
    assert_eq!(s.code, 1, "{}", s.describe());
    assert!(
        s.stderr.contains(
            "image demo:2: unit sshd.service (from /lib/systemd/system/sshd.service) conflicts with /usr/lib/systemd/system/sshd.service on the host"
        ),
        "{}",
        s.describe()
    );
    // The old attachment, its record, tree and mount are exactly as they were.
    assert_eq!(snap(&snaps, "after"), snap(&snaps, "one"));
    assert!(snap(&snaps, "one").contains("run/torcx/attached/demo.json|f|"));
    assert_eq!(read(&t.path("usr/lib/systemd/system/sshd.service")), "[Service]\nExecStart=/usr/sbin/sshd -D\n");
    assert!(!t.path("run/systemd/system/sshd.service").exists());
    t.assert_canary();
}

#[test]
fn kill_at_every_step_of_attach_is_cleaned_up_by_detach_or_attach() {
    require_root("kill_at_every_step_of_attach_is_cleaned_up_by_detach_or_attach");
    let t = TestRoot::new();
    let a = image(&t, "demo", "1");
    let snaps = t.scratch("snaps");
    std::fs::create_dir_all(t.path("run")).unwrap();
    let mut ns = Ns::new(&t);
    snapshot(&mut ns, &snaps, "before");
    let mut runs = vec![];
    for n in 1..=20 {
        let killed = ns.torcx_env(&[("TORCX_TEST_CRASH_AT", &n.to_string())], &["attach", a.to_str().unwrap()]);
        snapshot(&mut ns, &snaps, &format!("killed-{n}"));
        // Odd steps are cleaned up by detach; even ones by attaching again
        // (which must finish the undo, then attach), then detach.
        let fix = if n % 2 == 1 {
            ns.torcx(&["detach", "demo"])
        } else {
            let i = ns.torcx(&["attach", a.to_str().unwrap()]);
            ns.torcx(&["detach", "demo"]);
            i
        };
        snapshot(&mut ns, &snaps, &format!("clean-{n}"));
        runs.push((n, killed, fix));
    }
    let steps = ns.run();
    let before = without_state(&snap(&snaps, "before"));
    let mut killed_runs = 0;
    for (n, killed, fix) in runs {
        let k = &steps[killed];
        if k.code == 0 {
            // Past the last step: attach finished.
            if n % 2 == 1 {
                assert_eq!(steps[fix].code, 0, "step {n}: {}", steps[fix].describe());
            } else {
                assert!(steps[fix].stderr.contains("already attached"), "step {n}: {}", steps[fix].describe());
            }
        } else {
            assert_eq!(k.code, 137, "step {n}: attach should have been killed: {}", k.describe());
            killed_runs += 1;
            if n % 2 == 0 {
                assert_eq!(steps[fix].code, 0, "attach after a kill at step {n}: {}", steps[fix].describe());
            }
        }
        assert_eq!(
            without_state(&snap(&snaps, &format!("clean-{n}"))),
            before,
            "kill at step {n} left something behind"
        );
    }
    assert!(killed_runs >= 10, "only {killed_runs} kill points");
    t.assert_canary();
}

#[test]
fn bare_name_takes_the_reference_from_the_profile_or_the_only_archive() {
    require_root("bare_name_takes_the_reference_from_the_profile_or_the_only_archive");
    let t = TestRoot::new();
    for (n, r) in [("solo", "3"), ("multi", "1"), ("multi", "2"), ("pinned", "1"), ("pinned", "2")] {
        let p = image(&t, n, r);
        let dest = t.path(USER_STORE).join(p.file_name().unwrap());
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&p, dest).unwrap();
    }
    t.vendor_profile(&[("pinned", "2")]);
    let mut ns = Ns::new(&t);
    let solo = ns.torcx(&["attach", "solo"]);
    let multi = ns.torcx(&["attach", "multi"]);
    let pinned = ns.torcx(&["attach", "pinned"]);
    let missing = ns.torcx(&["attach", "nothere:1"]);
    let steps = ns.run();
    assert_eq!(steps[solo].code, 0, "{}", steps[solo].describe());
    assert_eq!(steps[solo].json()["value"]["attachment"]["reference"], "3");
    assert_eq!(steps[multi].code, 1);
    assert!(
        steps[multi]
            .stderr
            .contains("image multi: several references in the stores (multi:1, multi:2); name one as NAME:REF"),
        "{}",
        steps[multi].describe()
    );
    assert_eq!(steps[pinned].code, 0, "{}", steps[pinned].describe());
    assert_eq!(steps[pinned].json()["value"]["attachment"]["reference"], "2");
    assert_eq!(steps[missing].code, 1);
    assert!(
        steps[missing].stderr.contains("image nothere:1: no archive in any store (searched /usr/share/torcx/store"),
        "{}",
        steps[missing].describe()
    );
}

#[test]
fn portable_attach_checks_the_image_and_roots_the_service_in_it() {
    require_root("portable_attach_checks_the_image_and_roots_the_service_in_it");
    let t = TestRoot::new();
    let plain = image(&t, "demo", "1");
    let p = Image::new(&t, "port", "1");
    p.exec("bin/port", "x")
        .file("lib/systemd/system/port.service", "[Service]\nExecStart=/bin/port\n")
        .file("etc/os-release", "ID=port\n")
        .file("etc/resolv.conf", "")
        .file("etc/machine-id", "")
        .dir("proc")
        .dir("sys")
        .dir("dev")
        .dir("run")
        .dir("tmp")
        .dir("var/tmp")
        .manifest(json!({"units": ["/lib/systemd/system/port.service"]}));
    let pa = t.scratch("archives").join("port:1.torcx.tgz");
    p.pack_to(&pa, Fmt::Tgz);
    let mut ns = Ns::new(&t);
    let refused = ns.torcx(&["attach", plain.to_str().unwrap(), "--portable"]);
    let ok = ns.torcx(&["attach", pa.to_str().unwrap(), "--portable=strict"]);
    let steps = ns.run();
    let s = &steps[refused];
    assert_eq!(s.code, 1);
    assert!(
        s.stderr.contains(
            "not a portable image: missing /etc/os-release or /usr/lib/os-release, /etc/resolv.conf, /etc/machine-id, /proc/, /sys/, /dev/, /run/, /tmp/, /var/tmp/"
        ),
        "{}",
        s.describe()
    );
    assert!(!t.exists("run/torcx/attached/demo.json"));
    assert_eq!(steps[ok].code, 0, "{}", steps[ok].describe());
    let dropin = read(&t.path("run/systemd/system/port.service.d/10-torcx.conf"));
    assert!(dropin.contains("RootDirectory=/run/torcx/unpack/port\n"), "{dropin}");
    assert!(dropin.contains("PrivateNetwork=yes\n") && dropin.contains("CapabilityBoundingSet=\n"), "{dropin}");
}

#[test]
fn a_second_command_waits_for_the_lock_and_status_reports() {
    require_root("a_second_command_waits_for_the_lock_and_status_reports");
    let t = TestRoot::new();
    let a = image(&t, "demo", "1");
    std::fs::create_dir_all(t.path("run/torcx")).unwrap();
    let mut ns = Ns::new(&t);
    // Another torcx command holds the lock for a moment.
    ns.sh("flock \"$ROOT/run/torcx/.lock\" sleep 1 &");
    // Until the lock is really held (a non-blocking take fails).
    ns.sh("while flock -n \"$ROOT/run/torcx/.lock\" true; do sleep 0.01; done");
    let att = ns.torcx(&["attach", a.to_str().unwrap()]);
    let st = ns.torcx(&["status", "--json"]);
    let one = ns.torcx(&["status", "demo", "--json"]);
    let none = ns.torcx(&["status", "nothere"]);
    let steps = ns.run();
    let s = &steps[att];
    assert_eq!(s.code, 0, "{}", s.describe());
    assert!(s.stderr.contains("waiting for another torcx command to release /"), "{}", s.describe());
    let v = steps[st].json();
    assert_eq!(v["kind"], "torcx-status-v0");
    let att = &v["value"]["attachments"][0];
    assert_eq!(
        (att["name"].as_str(), att["reference"].as_str(), att["origin"].as_str()),
        (Some("demo"), Some("1"), Some("runtime"))
    );
    assert_eq!(att["units"][0]["name"], "demo.service");
    assert_eq!(att["binaries"][0], "demo");
    assert!(att["digest"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(v["value"]["last_apply"], serde_json::Value::Null);
    assert_eq!(steps[one].json()["value"]["attachments"].as_array().unwrap().len(), 1);
    assert_eq!(steps[none].code, 1);
    assert!(steps[none].stderr.contains("image nothere is not attached"), "{}", steps[none].describe());
}

#[test]
fn kill_at_every_step_of_reattach_is_cleaned_up_by_detach() {
    require_root("kill_at_every_step_of_reattach_is_cleaned_up_by_detach");
    let t = TestRoot::new();
    let one = image(&t, "demo", "1");
    let two = image(&t, "demo", "2");
    let snaps = t.scratch("snaps");
    std::fs::create_dir_all(t.path("run")).unwrap();
    let mut ns = Ns::new(&t);
    ns.sh("mount --bind \"$ROOT/run\" \"$ROOT/run\" && mount --make-shared \"$ROOT/run\"");
    snapshot(&mut ns, &snaps, "before");
    let mut runs = vec![];
    for n in 1..=24 {
        ns.torcx(&["attach", one.to_str().unwrap()]);
        let killed = ns.torcx_env(&[("TORCX_TEST_CRASH_AT", &n.to_string())], &["reattach", two.to_str().unwrap()]);
        // Whatever state the kill left, detach takes the image away entirely.
        let det = ns.torcx(&["detach", "demo"]);
        snapshot(&mut ns, &snaps, &format!("clean-{n}"));
        runs.push((n, killed, det));
    }
    let steps = ns.run();
    let before = without_state(&snap(&snaps, "before"));
    let mut killed_runs = 0;
    for (n, killed, det) in runs {
        if steps[killed].code == 137 {
            killed_runs += 1;
        }
        assert_eq!(steps[det].code, 0, "detach after a kill at step {n}: {}", steps[det].describe());
        assert_eq!(
            without_state(&snap(&snaps, &format!("clean-{n}"))),
            before,
            "kill at step {n} of reattach left something behind"
        );
    }
    assert!(killed_runs >= 10, "only {killed_runs} kill points");
    t.assert_canary();
}

/// Readers of a record take a shared lock on it; the attaching command
/// writes a record over in place only with the exclusive one, taken without
/// waiting. While someone reads a version (here: holds the shared lock on
/// it through the whole attach), the next is a whole new file renamed in,
/// and the reader's copy stays the whole version it opened.
#[test]
fn a_record_being_read_is_replaced_whole_not_written_over() {
    require_root("a_record_being_read_is_replaced_whole_not_written_over");
    require_tool("a_record_being_read_is_replaced_whole_not_written_over", "strace", "strace");
    let t = TestRoot::new();
    let a = image(&t, "demo", "1");
    let out = t.scratch("lock");
    let o = out.display();
    let mut ns = Ns::new(&t);
    // The tmpfs mount of the tree is held back 1 s: the reader locks the
    // first version meanwhile, before the second is written.
    ns.sh(&format!(
        "R=\"$ROOT/run/torcx/attached/demo.json\"\n\
         strace -f -qq -o {o}/attach.strace -e trace=rename,pwrite64,mount -e inject=mount:delay_enter=1000000:when=1 \
           \"$TORCX\" --root \"$ROOT\" attach {a} --no-reload --json > {o}/attach.out 2>&1 &\n\
         P=$!\n\
         i=0; while [ ! -e \"$R\" ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i+1)); done\n\
         python3 -c 'import fcntl,json,os,sys,time\n\
f=open(sys.argv[1]); fcntl.flock(f, fcntl.LOCK_SH); open(sys.argv[2], \"w\").close()\n\
while not os.path.exists(sys.argv[3]): time.sleep(0.01)\n\
print(json.load(f)[\"value\"][\"state\"])' \"$R\" {o}/locked {o}/done > {o}/reader 2>&1 &\n\
         H=$!\n\
         rc=0; wait $P || rc=$?; echo $rc > {o}/attach.rc\n\
         test -e {o}/locked && echo locked-in-time > {o}/timely || true\n\
         touch {o}/done; wait $H || true\n\
         strace -qq -o {o}/status.strace -e trace=flock \"$TORCX\" --root \"$ROOT\" status --json > {o}/status.out\n\
         cp \"$R\" {o}/record",
        a = a.display()
    ));
    let steps = ns.run();
    assert!(steps.is_empty() || steps.iter().all(|s| s.code == 0));
    assert_eq!(read(&out.join("attach.rc")).trim(), "0", "{}", read(&out.join("attach.out")));
    assert_eq!(read(&out.join("timely")).trim(), "locked-in-time");
    let calls = read(&out.join("attach.strace"));
    let on_record: Vec<&str> = calls.lines().filter(|l| l.contains("attached/demo.json")).collect();
    // The first version renamed in (a runtime attach), the second too (the
    // first is being read), the third over the second (nobody reads that).
    assert_eq!(on_record.iter().filter(|l| l.contains("rename(")).count(), 2, "{calls}");
    assert_eq!(calls.lines().filter(|l| l.contains("pwrite64(")).count(), 1, "{calls}");
    // The reader's open file is the first version, whole.
    assert_eq!(read(&out.join("reader")).trim(), "attaching");
    let rec: serde_json::Value = serde_json::from_str(&read(&out.join("record"))).unwrap();
    assert_eq!(rec["value"]["state"], "attached");
    // status reads each record under the shared lock.
    let st = read(&out.join("status.strace"));
    assert!(st.contains("LOCK_SH"), "{st}");
}
