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

/// Adds to the session the state of `/run` ([`run_snapshot_sh`]), to `dir/label`.
fn snapshot(ns: &mut Ns, dir: &Path, label: &str) {
    ns.sh(&run_snapshot_sh(&format!("'{}'", dir.join(label).display())));
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

/// A snapshot without a's record and its file count: a re-attach records
/// only the directories it creates, and those b's files keep in place
/// (`/run/systemd/system`) were made by the first attach of a.
fn same_but_shared_dirs(snap: &str) -> String {
    let mut in_a = false;
    snap.lines()
        .filter(|l| !l.starts_with("run/torcx/attached/a.json|"))
        .map(|l| {
            if l.contains("\"name\": \"") {
                in_a = l.contains("\"name\": \"a\"");
            }
            if in_a && l.trim_start().starts_with("\"files\"") { "files: N".to_string() } else { l.to_string() }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A `reattach` killed at every step, then `apply --force`: the boot ends
/// exactly as an apply without the reattach (the profile's reference,
/// every file placed), never "unchanged" over an attachment the kill left
/// half-removed. Retrying the reattach says what happened and what to run.
#[test]
fn a_killed_reattach_is_redone_by_the_next_apply() {
    require_root("a_killed_reattach_is_redone_by_the_next_apply");
    let t = machine();
    let two = Image::new(&t, "a", "2");
    two.manifest(json!({"bin": ["/bin/hello"], "units": ["/lib/systemd/system/a.service"]}))
        .exec("bin/hello", "#!/bin/sh\necho two\n")
        .file("lib/systemd/system/a.service", "[Service]\nExecStart=/run/torcx/bin/hello two\n");
    let two = two.pack(&t, USER_STORE, Fmt::Tgz);
    let two = two.to_str().unwrap();
    let snaps = t.scratch("snaps");
    let mut ns = Ns::new(&t);
    ns.apply();
    let reference = ns.torcx(&["apply", "--force"]);
    snapshot(&mut ns, &snaps, "reference");
    let steps = ns.run();
    assert_eq!(steps[reference].code, 0, "{}", steps[reference].describe());
    let want = read(&snaps.join("reference"));
    let mut killed = 0;
    for n in 1.. {
        let mut ns = Ns::new(&t);
        ns.sh(REBOOT);
        ns.apply();
        let k = ns.torcx_env(&[("TORCX_TEST_CRASH_AT", &n.to_string())], &["reattach", two]);
        let again = ns.torcx(&["apply", "--force"]);
        snapshot(&mut ns, &snaps, &format!("again-{n}"));
        // Killed again at the same step; then the reattach retried.
        ns.torcx_env(&[("TORCX_TEST_CRASH_AT", &n.to_string())], &["reattach", two]);
        let retry = ns.torcx(&["reattach", two]);
        let steps = ns.run();
        if steps[k].code == 0 {
            // Past the last step.
            break;
        }
        assert_eq!(steps[again].code, 0, "apply after a kill at step {n}: {}", steps[again].describe());
        assert_eq!(
            same_but_shared_dirs(&read(&snaps.join(format!("again-{n}")))),
            same_but_shared_dirs(&want),
            "apply after a reattach killed at step {n}"
        );
        killed += 1;
        assert_eq!(steps[k].code, 137, "step {n}: {}", steps[k].describe());
        let r = &steps[retry];
        assert!(
            r.code == 0 || r.stderr.contains("was interrupted; `torcx attach a:2` cleans it up and attaches"),
            "reattach again after a kill at step {n}: {}",
            r.describe()
        );
        assert!(n < 100, "reattach never finished");
    }
    assert!(killed >= 10, "only {killed} kill points");
}

/// The `kind` of an image in the status document.
fn kind(doc: &serde_json::Value, name: &str) -> String {
    let images = doc["value"]["images"].as_array().unwrap();
    let i = images.iter().find(|i| i["name"] == name).unwrap_or_else(|| panic!("no image {name} in {doc:#}"));
    i["kind"].as_str().unwrap_or("(none)").to_string()
}

/// Every failed image carries the kind of its cause, in status.json and in
/// `torcx status`; the others attach.
#[test]
fn each_failure_has_a_kind() {
    require_root("each_failure_has_a_kind");
    let t = TestRoot::new();
    let simple = |name: &str| {
        let img = Image::new(&t, name, "1");
        img.manifest(json!({"bin": [format!("/bin/{name}-tool")]})).exec(&format!("bin/{name}-tool"), "#!/bin/sh\n");
        img
    };
    simple("ok").pack(&t, VENDOR_STORE, Fmt::Tgz);
    // Over the unpack limit the test sets (1 MiB).
    simple("big").file("share/blob", noise(2 << 20)).pack(&t, VENDOR_STORE, Fmt::Tgz);
    // A unit the host has.
    let c = Image::new(&t, "clash", "1");
    c.manifest(json!({"units": ["/lib/systemd/system/sshd.service"]}))
        .file("lib/systemd/system/sshd.service", "[Service]\nExecStart=/bin/true\n");
    c.pack(&t, VENDOR_STORE, Fmt::Tgz);
    t.write("usr/lib/systemd/system/sshd.service", "[Service]\nExecStart=/usr/sbin/sshd\n");
    // An entry out of the tree.
    let evil = t.path(VENDOR_STORE).join("evil:1.torcx.tgz");
    let py = format!(
        "import tarfile,io\nwith tarfile.open('{}','w:gz') as t:\n  i=tarfile.TarInfo('../escape'); d=b'x'; i.size=1; t.addfile(i,io.BytesIO(d))\n",
        evil.display()
    );
    assert!(std::process::Command::new("python3").args(["-c", &py]).status().unwrap().success());
    // A truncated archive.
    let cut = simple("cut");
    cut.file("share/blob", noise(300_000));
    let p = cut.pack(&t, VENDOR_STORE, Fmt::Tgz);
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let names = ["ok", "big", "clash", "evil", "cut", "none"];
    let profile: Vec<(&str, &str)> = names.iter().map(|n| (*n, "1")).collect();
    t.vendor_profile(&profile);
    std::fs::create_dir_all(t.path("run")).unwrap();
    let mut ns = Ns::new(&t);
    let apply = ns.torcx_env(&[("TORCX_UNPACK_LIMIT", "1M")], &["apply"]);
    let status = ns.torcx(&["status"]);
    let steps = ns.run();
    let s = &steps[apply];
    assert_eq!(s.code, 1, "{}", s.describe());
    let doc = s.json();
    let kinds: Vec<(String, String)> = names.iter().map(|n| (n.to_string(), kind(&doc, n))).collect();
    let want = [
        ("ok", "(none)"),
        ("big", "limit"),
        ("clash", "conflict"),
        ("evil", "refused"),
        ("cut", "corrupt"),
        ("none", "missing"),
    ];
    assert_eq!(kinds, want.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>(), "{doc:#}");
    let file = read_json(&t.path("run/torcx/status.json"));
    assert_eq!(kind(&file, "clash"), "conflict");
    assert!(t.exists("run/torcx/bin/ok-tool"));
    // `torcx status --json` carries the same.
    let last = json!({"value": steps[status].json()["value"]["last_apply"].clone()});
    assert_eq!((kind(&last, "big"), kind(&last, "none")), ("limit".to_string(), "missing".to_string()), "{last:#}");
}

/// `/run` full while apply writes units and records: the image fails with
/// kind `space`, naming the path; nothing of it is half-placed; after space
/// is freed, the next apply succeeds.
#[test]
fn a_full_run_fails_the_image_with_kind_space_and_the_next_apply_succeeds() {
    require_root("a_full_run_fails_the_image_with_kind_space_and_the_next_apply_succeeds");
    let t = TestRoot::new();
    let img = Image::new(&t, "u", "1");
    // Units that need more room than /run has.
    img.manifest(json!({"bin": ["/bin/u-tool"], "units": ["/lib/systemd/system/u.service", "/lib/systemd/system/u-big.service"]}))
        .exec("bin/u-tool", "#!/bin/sh\n")
        .file("lib/systemd/system/u.service", "[Service]\nExecStart=/run/torcx/bin/u-tool\n")
        .file("lib/systemd/system/u-big.service", format!("[Service]\nExecStart=/run/torcx/bin/u-tool\n# {}\n", "x".repeat(200_000)));
    img.pack(&t, VENDOR_STORE, Fmt::Tgz);
    t.vendor_profile(&[("u", "1")]);
    std::fs::create_dir_all(t.path("run")).unwrap();
    let probe = t.scratch("probe").join("after-full");
    let mut ns = Ns::new(&t);
    ns.sh("mount -t tmpfs -o size=96k torcx-test-run \"$ROOT/run\"");
    let full = ns.apply();
    ns.sh(&format!(
        "( cd \"$ROOT\" && find run/systemd run/torcx/bin run/torcx/attached -mindepth 1 2>/dev/null | sort ) > '{}' || true",
        probe.display()
    ));
    ns.sh("mount -o remount,size=4m \"$ROOT/run\"");
    let freed = ns.apply();
    let probe2 = t.scratch("probe").join("after-freed");
    ns.sh(&format!("( cd \"$ROOT\" && ls run/torcx/bin run/systemd/system ) > '{}' 2>&1 || true", probe2.display()));
    let steps = ns.run();
    let s = &steps[full];
    assert_eq!(s.code, 1, "{}", s.describe());
    assert_eq!(kind(&s.json(), "u"), "space", "{}", s.describe());
    assert_contains(&s.stderr, "No space left on device", s);
    assert_contains(&s.stderr, "image u:1", s);
    // Nothing of it is half-placed: no unit, drop-in, binary link or record.
    assert_eq!(read(&probe), "", "left after the failure");
    assert_eq!(steps[freed].code, 0, "{}", steps[freed].describe());
    let placed = read(&probe2);
    assert!(placed.contains("u-tool") && placed.contains("u-big.service"), "{placed}");
}

/// `/run` full when apply writes an image's record (600 binaries: links
/// cost no blocks, their record does): kind `space`, the message names the
/// record, no link is left, the image beside it attaches, and with room the
/// next apply attaches both.
#[test]
fn a_record_that_does_not_fit_fails_with_kind_space() {
    require_root("a_record_that_does_not_fit_fails_with_kind_space");
    let t = TestRoot::new();
    let many = Image::new(&t, "many", "1");
    let bins: Vec<String> = (0..600).map(|i| format!("/bin/tool-{i:03}")).collect();
    many.manifest(json!({ "bin": bins }));
    for i in 0..600 {
        many.exec(&format!("bin/tool-{i:03}"), "#!/bin/sh\n");
    }
    many.pack(&t, VENDOR_STORE, Fmt::Tgz);
    let one = Image::new(&t, "one", "1");
    one.manifest(json!({"bin": ["/bin/single"]})).exec("bin/single", "#!/bin/sh\n");
    one.pack(&t, VENDOR_STORE, Fmt::Tgz);
    t.vendor_profile(&[("many", "1"), ("one", "1")]);
    std::fs::create_dir_all(t.path("run")).unwrap();
    let probe = t.scratch("probe").join("bin");
    let mut ns = Ns::new(&t);
    ns.sh("mount -t tmpfs -o size=64k torcx-test-run \"$ROOT/run\"");
    let full = ns.apply();
    ns.sh(&format!("ls \"$ROOT/run/torcx/bin\" > '{}'", probe.display()));
    ns.sh("mount -o remount,size=4m \"$ROOT/run\"");
    let freed = ns.apply();
    let steps = ns.run();
    let s = &steps[full];
    assert_eq!(s.code, 1, "{}", s.describe());
    let doc = s.json();
    assert_eq!(status_states(&doc), pairs(&[("many:1", "failed"), ("one:1", "attached")]), "{doc:#}");
    assert_eq!(kind(&doc, "many"), "space", "{doc:#}");
    let line = s.stderr.lines().find(|l| l.contains("image many:1")).unwrap_or_default();
    assert!(line.contains("/run/torcx/attached/many") && line.contains("No space left on device"), "{}", s.describe());
    assert_eq!(read(&probe), "single\n");
    assert_eq!(steps[freed].code, 0, "{}", steps[freed].describe());
}

/// What stops an apply as a whole (a file where `/run/torcx/bin` or
/// `/run/metadata` must be, a directory where `status.json` goes) is in the
/// status when it can be written, and the boot is never sealed without its
/// status; with the obstacle gone, the next apply seals.
#[test]
fn an_apply_that_fails_as_a_whole_says_so_and_is_not_sealed() {
    require_root("an_apply_that_fails_as_a_whole_says_so_and_is_not_sealed");
    let t = machine();
    let cases = [
        (
            "mkdir -p \"$ROOT/run/torcx\" && : > \"$ROOT/run/torcx/bin\"",
            "rm \"$ROOT/run/torcx/bin\"",
            "/run/torcx/bin: it (or a directory above it) exists and is not a directory",
        ),
        (
            "mkdir -p \"$ROOT/run\" && : > \"$ROOT/run/metadata\"",
            "rm \"$ROOT/run/metadata\"",
            "/run/metadata: it (or a directory above it) exists and is not a directory",
        ),
        (
            "mkdir -p \"$ROOT/run/torcx/status.json\"",
            "rmdir \"$ROOT/run/torcx/status.json\"",
            "status.json: Is a directory",
        ),
    ];
    for (i, (block, unblock, said)) in cases.iter().enumerate() {
        let probe = t.scratch(&format!("probe-{i}"));
        let mut ns = Ns::new(&t);
        ns.sh(REBOOT).sh(block);
        let failed = ns.apply();
        ns.sh(&format!(
            "cp \"$ROOT/run/torcx/status.json\" '{p}/status' 2>/dev/null || true; [ -e \"$ROOT/run/metadata/torcx\" ] && echo sealed > '{p}/seal' || true",
            p = probe.display()
        ));
        ns.sh(unblock);
        let again = ns.apply();
        let steps = ns.run();
        let f = &steps[failed];
        assert_eq!(f.code, 1, "case {i}: {}", f.describe());
        assert_contains(&f.stderr, said, f);
        assert!(!probe.join("seal").exists(), "case {i}: sealed without a status: {}", f.describe());
        if i < 2 {
            let doc = read_json(&probe.join("status"));
            assert!(doc["value"]["error"].as_str().unwrap_or_default().contains(said), "case {i}: {doc:#}");
            assert_eq!(doc["value"]["sealed"], false, "case {i}: {doc:#}");
        }
        assert_eq!(steps[again].code, 0, "case {i}: {}", steps[again].describe());
        assert_eq!(steps[again].json()["value"]["sealed"], true);
    }
}

/// Damaged archives are kind `corrupt` whatever their format (random bytes
/// as squashfs, erofs or zstd; a squashfs magic and nothing after), a store
/// entry that is no archive says what it is, and an unreadable record hides
/// no other image from `status` and goes with `detach --force`.
#[test]
fn damaged_archives_and_records_are_named_and_have_their_kind() {
    require_root("damaged_archives_and_records_are_named_and_have_their_kind");
    let t = machine();
    let store = t.path(VENDOR_STORE.trim_start_matches('/'));
    write(&store.join("rs:1.torcx.squashfs"), noise(8192));
    write(&store.join("re:1.torcx.erofs"), noise(8192));
    write(&store.join("rz:1.torcx.tar.zst"), noise(8192));
    let mut magic = b"hsqs".to_vec();
    magic.extend(vec![0u8; 4092]);
    write(&store.join("ms:1.torcx.squashfs"), magic);
    std::fs::create_dir_all(store.join("dir:1.torcx.tgz")).unwrap();
    std::os::unix::fs::symlink("/nowhere/x.tgz", store.join("dl:1.torcx.tgz")).unwrap();
    let names = ["rs", "re", "rz", "ms", "dir", "dl"];
    let mut profile: Vec<(&str, &str)> = vec![("a", "1"), ("b", "1")];
    profile.extend(names.iter().map(|n| (*n, "1")));
    t.vendor_profile(&profile);
    let mut ns = Ns::new(&t);
    let applied = ns.apply();
    ns.sh(": > \"$ROOT/run/torcx/attached/a.json\"");
    let status = ns.torcx(&["status", "--json"]);
    let detach = ns.torcx(&["detach", "a", "--force", "--no-reload"]);
    let after = ns.torcx(&["status", "--json"]);
    let steps = ns.run();
    let doc = steps[applied].json();
    let want = [
        ("rs", "corrupt", "not a squashfs image: no magic number"),
        ("re", "corrupt", "not a erofs image: no magic number"),
        ("rz", "corrupt", "corrupt zstd stream"),
        ("ms", "corrupt", "not a squashfs image: corrupted or invalid"),
        ("dir", "corrupt", "dir:1.torcx.tgz: a directory, not an archive"),
        ("dl", "missing", "dl:1.torcx.tgz: a link to /nowhere/x.tgz, which does not exist"),
    ];
    for (name, k, said) in want {
        assert_eq!(kind(&doc, name), k, "{name}: {doc:#}");
        assert!(status_error(&doc, &format!("{name}:1")).contains(said), "{name}: {doc:#}");
    }
    let s = &steps[status];
    assert_eq!(s.code, 0, "{}", s.describe());
    let sdoc = s.json();
    let listed: Vec<&str> =
        sdoc["value"]["attachments"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(listed, ["b"], "{}", s.describe());
    assert_contains(&s.stderr, "torcx detach --force a", s);
    let d = &steps[detach];
    assert_eq!(d.code, 0, "{}", d.describe());
    assert!(!steps[after].stderr.contains("a.json"), "{}", steps[after].describe());
}

/// A read-only `/var/lib/torcx` (the user store and the generator cache):
/// the boot still plans, applies and seals. A read-only `/etc/torcx`:
/// a profile edit fails naming the path and the cause.
#[test]
fn read_only_var_and_etc() {
    require_root("read_only_var_and_etc");
    let t = machine();
    std::fs::create_dir_all(t.path("var/lib/torcx/store")).unwrap();
    std::fs::create_dir_all(t.path("etc/torcx/profiles")).unwrap();
    let gen_out = t.scratch("gen");
    let dirs: Vec<String> = ["normal", "early", "late"]
        .iter()
        .map(|d| {
            std::fs::create_dir_all(gen_out.join(d)).unwrap();
            gen_out.join(d).to_str().unwrap().to_string()
        })
        .collect();
    let mut ns = Ns::new(&t);
    for d in ["var/lib/torcx", "etc/torcx"] {
        ns.sh(&format!("mount --bind \"$ROOT/{d}\" \"$ROOT/{d}\" && mount -o remount,bind,ro \"$ROOT/{d}\""));
    }
    let root = t.root.to_str().unwrap();
    let generator = ns.generator(&["--root", root, &dirs[0], &dirs[1], &dirs[2]]);
    let apply = ns.apply();
    let edit = ns.torcx(&["profile", "new", "--name", "mine", "--from", "vendor"]);
    let steps = ns.run();
    assert_eq!(steps[generator].code, 0, "{}", steps[generator].describe());
    assert!(gen_out.join("normal/a.service").exists());
    assert_eq!(steps[apply].code, 0, "{}", steps[apply].describe());
    assert_eq!(steps[apply].json()["value"]["sealed"], true);
    let e = &steps[edit];
    assert_eq!(e.code, 1, "{}", e.describe());
    assert_contains(&e.stderr, "/etc/torcx/profiles", e);
    assert_contains(&e.stderr, "Read-only file system", e);
    assert_eq!(e.stderr.lines().count(), 1, "{}", e.describe());
}

/// `/run` out of inodes: the image fails with kind `space`, and the next
/// apply, with inodes to spare, succeeds.
#[test]
fn run_out_of_inodes_fails_with_kind_space() {
    require_root("run_out_of_inodes_fails_with_kind_space");
    let t = TestRoot::new();
    let img = Image::new(&t, "many", "1");
    let units: Vec<String> = (0..40).map(|i| format!("/lib/systemd/system/m{i}.service")).collect();
    img.manifest(json!({"units": units}));
    for i in 0..40 {
        img.file(&format!("lib/systemd/system/m{i}.service"), "[Service]\nExecStart=/bin/true\n");
    }
    img.pack(&t, VENDOR_STORE, Fmt::Tgz);
    t.vendor_profile(&[("many", "1")]);
    std::fs::create_dir_all(t.path("run")).unwrap();
    let mut ns = Ns::new(&t);
    ns.sh("mount -t tmpfs -o nr_inodes=40 torcx-test-run \"$ROOT/run\"");
    let full = ns.apply();
    ns.sh("mount -o remount,nr_inodes=10000 \"$ROOT/run\"");
    let freed = ns.apply();
    let steps = ns.run();
    let s = &steps[full];
    assert_eq!(s.code, 1, "{}", s.describe());
    assert_eq!(kind(&s.json(), "many"), "space", "{}", s.describe());
    assert_eq!(steps[freed].code, 0, "{}", steps[freed].describe());
}

/// Eight writers attach, reattach and detach images of their own while
/// readers poll `status --json`, `is-attached` and the records: every
/// document read parses, every record (read under a shared lock) names
/// files that exist as recorded, and every writer's command succeeds.
#[test]
fn readers_never_see_half_written_state() {
    require_root("readers_never_see_half_written_state");
    let seconds: u64 = std::env::var("TORCX_TEST_CONCURRENCY_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let t = TestRoot::new();
    let archives = t.scratch("archives");
    for i in 0..8 {
        for r in ["1", "2"] {
            let img = Image::new(&t, &format!("w{i}"), r);
            img.manifest(
                json!({"bin": [format!("/bin/w{i}-tool")], "units": [format!("/lib/systemd/system/w{i}.service")]}),
            )
            .exec(&format!("bin/w{i}-tool"), format!("#!/bin/sh\necho {r}\n"))
            .file(
                &format!("lib/systemd/system/w{i}.service"),
                format!("[Service]\nExecStart=/run/torcx/bin/w{i}-tool {r}\n"),
            );
            img.pack_to(&archives.join(format!("w{i}:{r}.torcx.tgz")), Fmt::Tgz);
        }
    }
    std::fs::create_dir_all(t.path("run/torcx")).unwrap();
    let results = t.scratch("results");
    let checker = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/check_records.py");
    let script = format!(
        r#"A={archives}; R={results}; END=$(( $(date +%s) + {seconds} ))
for i in 0 1 2 3 4 5 6 7; do
  ( n=0; while [ $(date +%s) -lt $END ]; do
      for step in "attach $A/w$i:1.torcx.tgz" "reattach $A/w$i:2.torcx.tgz" "detach w$i"; do
        if "$TORCX" --root "$ROOT" $step > /dev/null 2>> $R/w$i.err; then n=$((n+1)); else echo "$step" >> $R/w$i.fail; fi
      done
    done; echo $n > $R/w$i.ops ) &
done
for j in 1 2; do
  ( n=0; while [ $(date +%s) -lt $END ]; do
      "$TORCX" --root "$ROOT" --json status > $R/s$j.json 2> /dev/null || echo "status failed" >> $R/bad
      python3 -c 'import json,sys; json.load(open(sys.argv[1]))' $R/s$j.json 2>> $R/bad || cp $R/s$j.json $R/bad-status-$n
      "$TORCX" --root "$ROOT" --json is-attached w$j > $R/i$j.json 2> /dev/null || true
      python3 -c 'import json,sys; json.load(open(sys.argv[1]))' $R/i$j.json 2>> $R/bad || cp $R/i$j.json $R/bad-is-$n
      flock -s "$ROOT/run/torcx/.lock" python3 {checker} "$ROOT" >> $R/bad || true
      n=$((n+1))
    done; echo $n > $R/r$j.reads ) &
done
wait"#,
        archives = archives.display(),
        results = results.display(),
        checker = checker.display(),
    );
    let mut ns = Ns::new(&t);
    ns.sh(&script);
    ns.run();
    let r = |f: &str| std::fs::read_to_string(results.join(f)).unwrap_or_default();
    assert_eq!(r("bad"), "", "a reader saw a broken document or record");
    let mut ops = 0;
    for i in 0..8 {
        assert_eq!(r(&format!("w{i}.fail")), "", "writer {i}: {}", r(&format!("w{i}.err")));
        ops += r(&format!("w{i}.ops")).trim().parse::<u64>().unwrap();
    }
    let reads: u64 = (1..=2).map(|j| r(&format!("r{j}.reads")).trim().parse::<u64>().unwrap()).sum();
    eprintln!("{seconds} s: {ops} writer commands, {reads} reader rounds");
    assert!(ops >= 24 && reads >= 2, "{ops} writes, {reads} reads");
}

/// What a power cut must not lose is written to a temporary file, fsynced,
/// renamed into place, and its directory fsynced: profile edits, the next
/// profile, and a downloaded archive with its `com.coreos.cl` link (the
/// syscalls, as strace records them; this kernel has no device-mapper for
/// dm-log-writes to replay them).
#[test]
fn writes_that_must_survive_a_power_cut_are_synced() {
    require_tool("writes_that_must_survive_a_power_cut_are_synced", "strace", "strace");
    let t = TestRoot::new();
    Image::new(&t, "v", "1").manifest(json!({})).pack(&t, VENDOR_STORE, Fmt::Tgz);
    t.vendor_profile(&[("v", "1")]);
    let trace = t.scratch("trace").join("log");
    let root = t.root.to_str().unwrap();
    let traced = |args: &[&str]| {
        let out = std::process::Command::new("strace")
            .args(["-f", "-o"])
            .arg(&trace)
            .args([
                "-e",
                "trace=open,openat,fsync,fdatasync,rename,renameat,renameat2,close,symlink,symlinkat",
                TORCX,
                "--root",
                root,
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let check = |paths: &[&str]| {
        let checker = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/check_durable.py");
        let full: Vec<String> = paths.iter().map(|p| t.path(p).display().to_string()).collect();
        let out = std::process::Command::new("/usr/bin/python3").arg(checker).arg(&trace).args(&full).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    };
    traced(&["profile", "new", "--name", "mine", "--from", "vendor"]);
    check(&["etc/torcx/profiles/mine.json"]);
    traced(&["profile", "use-image", "w:2", "--name", "mine", "--allow=missing"]);
    check(&["etc/torcx/profiles/mine.json"]);
    traced(&["profile", "set-next", "mine"]);
    check(&["etc/torcx/next-profile"]);
    // populate from a file:// remote: the archive, and the default's link.
    let media = t.scratch("media");
    let img = Image::new(&t, "p", "7");
    img.manifest(json!({}));
    img.pack_to(&media.join("p:7.torcx.tgz"), Fmt::Tgz);
    let sha = std::process::Command::new("sha512sum").arg(media.join("p:7.torcx.tgz")).output().unwrap();
    let sha = String::from_utf8_lossy(&sha.stdout).split_whitespace().next().unwrap().to_string();
    let doc = json!({"kind": "torcx-remote-contents-v1", "value": {"images": [{"name": "p", "defaultVersion": "7",
        "versions": [{"version": "7", "format": "tgz", "location": "p:7.torcx.tgz", "hash": format!("sha512-{sha}")}]}]}});
    write(&media.join("torcx_remote_contents.json.asc"), doc.to_string());
    t.write(
        "etc/torcx/remotes/m/remote.json",
        json!({"kind": "remote-manifest-v0", "value": {"base_url": format!("file://{}", media.display())}}).to_string(),
    );
    t.write(
        "etc/torcx/profiles/mine.json",
        json!({"kind": "profile-manifest-v1", "value": {"images": [{"name": "p", "reference": "com.coreos.cl", "remote": "m"}]}})
            .to_string(),
    );
    traced(&["profile", "populate", "--allow-unsigned"]);
    check(&[&format!("{USER_STORE}/p:7.torcx.tgz"), &format!("{USER_STORE}/p:com.coreos.cl.torcx.tgz")]);
}

/// Runs `tests/fixtures/power_cut.py` (see there: a loop-device ext4 disk,
/// a writer stopped at random points, each cut's disk copied and mounted)
/// in a private namespace; its result document.
fn power_cuts(t: &TestRoot, cuts: usize, preload: Option<&Path>) -> serde_json::Value {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let media = t.scratch("media");
    let img = Image::new(t, "p", "1");
    img.manifest(json!({})).file("share/p/data", noise(4096));
    img.pack_to(&media.join("p.tgz"), Fmt::Tgz);
    let work = t.scratch("power-cut");
    let result = work.join("result.json");
    let mut ns = Ns::new(t);
    ns.sh(&format!(
        "/usr/bin/python3 '{}' \"$TORCX\" \"$ROOT\" '{}' '{}' {cuts} '{}' {}",
        fixtures.join("power_cut.py").display(),
        work.display(),
        media.join("p.tgz").display(),
        result.display(),
        preload.map(|p| format!("'{}'", p.display())).unwrap_or_default()
    ));
    ns.run();
    read_json(&result)
}

/// Power cuts at random points while profiles are edited, the next profile
/// switched and archives downloaded: after each, every profile parses,
/// torcx reads the state, and no edit that returned 0 is lost or torn. The
/// same run with fsync made a no-op (LD_PRELOAD) loses edits: the
/// simulation tells a synced write from an unsynced one.
#[test]
fn no_profile_or_archive_is_lost_or_torn_by_a_power_cut() {
    require_root("no_profile_or_archive_is_lost_or_torn_by_a_power_cut");
    require_tool("no_profile_or_archive_is_lost_or_torn_by_a_power_cut", "mkfs.ext4", "e2fsprogs");
    require_tool("no_profile_or_archive_is_lost_or_torn_by_a_power_cut", "cc", "gcc");
    let cuts: usize = std::env::var("TORCX_POWER_CUTS").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    let t = TestRoot::new();
    Image::new(&t, "v", "1").manifest(json!({})).pack(&t, VENDOR_STORE, Fmt::Tgz);
    t.vendor_profile(&[("v", "1")]);
    let r = power_cuts(&t, cuts, None);
    eprintln!("{cuts} cuts over {} edits ({} copies redone)", r["edits"], r["recopies"]);
    assert_eq!(r["problems"], json!([]), "{r:#}");
    assert!(r["edits"].as_u64().unwrap() >= cuts as u64, "{r:#}");

    let c = TestRoot::new();
    Image::new(&c, "v", "1").manifest(json!({})).pack(&c, VENDOR_STORE, Fmt::Tgz);
    c.vendor_profile(&[("v", "1")]);
    let lib = c.scratch("lib").join("nosync.so");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nosync.c");
    let cc = std::process::Command::new("cc").args(["-shared", "-fPIC", "-o"]).arg(&lib).arg(src).output().unwrap();
    assert!(cc.status.success(), "{}", String::from_utf8_lossy(&cc.stderr));
    let control = power_cuts(&c, 5, Some(&lib));
    let lost = control["problems"].as_array().unwrap();
    eprintln!(
        "control (fsync a no-op): {} findings over {} edits, first: {}",
        lost.len(),
        control["edits"],
        lost.first().unwrap_or(&json!(""))
    );
    assert!(lost.iter().any(|p| p.as_str().unwrap().contains("exit 0")), "{control:#}");
}

/// No `/run/systemd/system` (systemd has not made it yet): apply makes it
/// and places the units. `/run/systemd` a plain file: each image that ships
/// units fails on one line naming the image, the path and the cause, with
/// nothing of it placed; an image without units attaches; once the file is
/// gone, the next apply succeeds.
#[test]
fn a_missing_run_systemd_system_is_made_and_a_blocked_one_fails_only_its_images() {
    require_root("a_missing_run_systemd_system_is_made_and_a_blocked_one_fails_only_its_images");
    let t = machine();
    let c = Image::new(&t, "c", "1");
    c.manifest(json!({"bin": ["/bin/cee"]})).exec("bin/cee", "#!/bin/sh\n");
    c.pack(&t, VENDOR_STORE, Fmt::Tgz);
    t.vendor_profile(&[("a", "1"), ("b", "1"), ("c", "1")]);
    let probe = t.scratch("probe");
    let mut ns = Ns::new(&t);
    let made = ns.apply();
    ns.sh(&format!("stat -c '%F %a' \"$ROOT/run/systemd/system\" > '{}'", probe.join("made").display()));
    let first = ns.run();
    // The next boot, with /run/systemd in the way.
    let mut ns = Ns::new(&t);
    ns.sh(REBOOT).sh("echo not a directory > \"$ROOT/run/systemd\"");
    let blocked = ns.apply();
    ns.sh(&format!(
        "( cd \"$ROOT\" && find run/torcx/bin run/torcx/attached run/tmpfiles.d -mindepth 1 2>/dev/null | sort ) > '{}' || true",
        probe.join("left").display()
    ));
    ns.sh("rm \"$ROOT/run/systemd\"");
    let again = ns.apply();
    let steps = ns.run();
    assert_eq!(first[made].code, 0, "{}", first[made].describe());
    assert_eq!(read(&probe.join("made")).trim(), "directory 755");
    let s = &steps[blocked];
    assert_eq!(s.code, 1, "{}", s.describe());
    let doc = s.json();
    assert_eq!(status_states(&doc), pairs(&[("a:1", "failed"), ("b:1", "failed"), ("c:1", "attached")]), "{doc:#}");
    for name in ["a", "b"] {
        let line = s.stderr.lines().find(|l| l.contains(&format!("image {name}:1"))).unwrap_or_default();
        assert!(line.contains("placing /run/systemd: it exists and is not a directory"), "{}", s.describe());
        assert_eq!(kind(&doc, name), "conflict", "{doc:#}");
    }
    // Only c is placed: its binary link and its record.
    let left = read(&probe.join("left"));
    assert!(
        left.contains("cee") && !left.contains("hello") && !left.contains("bee") && !left.contains("a.conf"),
        "{left}"
    );
    assert_eq!(steps[again].code, 0, "{}", steps[again].describe());
}
