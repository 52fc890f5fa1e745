//! Every command's output for people (tables, on a terminal) and for programs
//! (JSON, field by field against upstream's shapes), error lines and exit
//! codes, and profile files written atomically. These need no mount, so they
//! run as any user on a temporary root.

mod common;

use common::{TORCX, TestRoot, profile_json, read, write};
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Command, Output};

fn torcx(t: &TestRoot, args: &[&str]) -> Output {
    Command::new(TORCX).arg("--root").arg(&t.root).args(args).env_remove("TORCX_STOREPATH").output().unwrap()
}

fn ok_json(o: &Output) -> Value {
    assert!(o.status.success(), "exit {:?}\n{}", o.status.code(), String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&o.stdout)))
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs torcx on a pseudo-terminal (util-linux `script`), so it prints its
/// table; the root's path is redacted to `ROOT`.
fn table(t: &TestRoot, args: &str) -> String {
    let cmd = format!("{TORCX} --root {} {args}", t.root.display());
    let o = Command::new("script").args(["-q", "-e", "-c", &cmd, "/dev/null"]).env("COLUMNS", "200").output().unwrap();
    assert!(o.status.success(), "{cmd}: {}", String::from_utf8_lossy(&o.stdout));
    String::from_utf8_lossy(&o.stdout).replace("\r\n", "\n").replace(t.root.to_str().unwrap(), "ROOT")
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort();
    k
}

/// A store with two images, and a vendor profile.
fn machine() -> TestRoot {
    let t = TestRoot::new();
    for (n, r) in [("socat", "1.7"), ("docker", "20.10")] {
        write(&t.path(&format!("var/lib/torcx/store/{n}:{r}.torcx.tgz")), b"not read by list");
    }
    write(&t.path("usr/lib/os-release"), "ID=flatcar\nVERSION_ID=\"3815.2.0\"\n");
    write(&t.path("var/lib/torcx/store/3815.2.0/socat:1.8.torcx.tgz"), b"x");
    write(&t.path("var/lib/torcx/store/3850.0.0/socat:1.9.torcx.tgz"), b"x");
    t.vendor_profile(&[("docker", "20.10")]);
    t
}

#[test]
fn image_list_has_upstreams_shape_and_a_table() {
    let t = machine();
    let v = ok_json(&torcx(&t, &["image", "list"]));
    assert_eq!(v["kind"], "torcx-image-list-v0");
    let rows = v["value"].as_array().unwrap();
    // Upstream's fields, then torcx's; sorted by name and reference.
    assert_eq!(keys(&rows[0]), ["filepath", "format", "name", "reference", "size", "store"]);
    let ids: Vec<String> =
        rows.iter().map(|r| format!("{}:{}", r["name"].as_str().unwrap(), r["reference"].as_str().unwrap())).collect();
    assert_eq!(ids, ["docker:20.10", "socat:1.7", "socat:1.8"]);
    assert_eq!(rows[2]["filepath"], "/var/lib/torcx/store/3815.2.0/socat:1.8.torcx.tgz");
    assert_eq!(rows[2]["store"], "/var/lib/torcx/store/3815.2.0");
    let only = ok_json(&torcx(&t, &["image", "list", "socat", "-n", "3850.0.0"]));
    let ids: Vec<&str> = only["value"].as_array().unwrap().iter().map(|r| r["reference"].as_str().unwrap()).collect();
    assert_eq!(ids, ["1.7", "1.9"]);
    let empty = TestRoot::new();
    assert_eq!(ok_json(&torcx(&empty, &["image", "list"])), json!({"kind": "torcx-image-list-v0", "value": []}));
    assert_eq!(
        table(&t, "image list"),
        "NAME                     REFERENCE        FORMAT            SIZE  PATH\n\
         docker                   20.10            tgz                 16  /var/lib/torcx/store/docker:20.10.torcx.tgz\n\
         socat                    1.7              tgz                 16  /var/lib/torcx/store/socat:1.7.torcx.tgz\n\
         socat                    1.8              tgz                  1  /var/lib/torcx/store/3815.2.0/socat:1.8.torcx.tgz\n"
    );
}

#[test]
fn clear_versioned_keeps_what_it_is_told_and_never_the_unversioned_store() {
    let t = machine();
    let o = torcx(&t, &["image", "clear-versioned"]);
    assert_eq!(o.status.code(), Some(2), "no -k is a usage error");
    let v = ok_json(&torcx(&t, &["image", "clear-versioned", "-k", "3815.2.0", "socat"]));
    assert_eq!(v["value"]["removed"], json!(["/var/lib/torcx/store/3850.0.0/socat:1.9.torcx.tgz"]));
    assert!(t.exists("var/lib/torcx/store/3850.0.0") && t.exists("var/lib/torcx/store/socat:1.7.torcx.tgz"));
    let v = ok_json(&torcx(&t, &["image", "clear-versioned", "-k", "3815.2.0"]));
    assert_eq!(v["value"]["removed"], json!(["/var/lib/torcx/store/3850.0.0"]));
    assert!(!t.exists("var/lib/torcx/store/3850.0.0") && t.exists("var/lib/torcx/store/3815.2.0/socat:1.8.torcx.tgz"));
    assert!(t.exists("var/lib/torcx/store/docker:20.10.torcx.tgz"));
}

#[test]
fn profile_list_has_upstreams_shape() {
    let t = machine();
    let v = ok_json(&torcx(&t, &["profile", "list"]));
    assert_eq!(v["kind"], "torcx-profile-list-v0");
    assert_eq!(
        v["value"],
        json!({"lower_profile_names": [], "user_profile_name": null, "current_profile_path": null,
               "next_profile_name": null, "profiles": ["vendor"]})
    );
    // After a sealed boot, the seal says what was applied.
    write(
        &t.path("run/metadata/torcx"),
        "TORCX_LOWER_PROFILES=\"vendor\"\nTORCX_UPPER_PROFILE=\"mine\"\nTORCX_PROFILE_PATH=\"/run/torcx/profile.json\"\nTORCX_BINDIR=\"/run/torcx/bin\"\nTORCX_UNPACKDIR=\"/run/torcx/unpack\"\n",
    );
    t.next_profile("mine", &[("socat", "1.7")]);
    let v = ok_json(&torcx(&t, &["profile", "list"]));
    assert_eq!(
        v["value"],
        json!({"lower_profile_names": ["vendor"], "user_profile_name": "mine", "current_profile_path": "/run/torcx/profile.json",
               "next_profile_name": "mine", "profiles": ["mine", "vendor"]})
    );
    assert_eq!(
        table(&t, "profile list"),
        "booted lower profiles: vendor\nbooted upper profile:  mine\nrun profile:           /run/torcx/profile.json\nnext profile:          mine\nprofiles:              mine vendor\n"
    );
}

/// Real archives of `docker:20.10` and `socat:1.7`, each with a unit;
/// `clash:1` ships a unit named like docker's.
fn real_archives(t: &TestRoot) {
    for (n, r, unit) in [("docker", "20.10", "docker"), ("socat", "1.7", "socat"), ("clash", "1", "docker")] {
        let img = common::Image::new(t, n, r);
        img.file(&format!("lib/systemd/system/{unit}.service"), "[Service]\nExecStart=/bin/true\n")
            .manifest(json!({"units": [format!("/lib/systemd/system/{unit}.service")]}));
        img.pack(t, common::USER_STORE, common::Fmt::Tgz);
    }
}

#[test]
fn profile_editing_workflow() {
    let t = machine();
    real_archives(&t);
    let v = ok_json(&torcx(&t, &["profile", "new", "--name", "mine", "--from", "vendor"]));
    assert_eq!(v["value"]["path"], "/etc/torcx/profiles/mine.json");
    assert_eq!(read(&t.path("etc/torcx/profiles/mine.json")), read(&t.path("usr/share/torcx/profiles/vendor.json")));
    let o = torcx(&t, &["profile", "new", "--name", "mine"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(err(&o), "torcx: error: profile mine already exists (/etc/torcx/profiles/mine.json)\n");
    ok_json(&torcx(&t, &["profile", "use-image", "socat:1.7", "--name", "mine"]));
    ok_json(&torcx(&t, &["profile", "set-next", "mine"]));
    assert_eq!(read(&t.path("etc/torcx/next-profile")), "mine\n");
    // The next profile is the default target from now on.
    ok_json(&torcx(&t, &["profile", "use-image", "docker:20.10"]));
    let v = ok_json(&torcx(&t, &["profile", "check"]));
    assert_eq!(v["kind"], "torcx-profile-check-v0");
    assert_eq!(v["value"]["images"], json!(["docker:20.10", "socat:1.7"]));
    assert_eq!(v["value"]["problems"], json!([]), "{v}");
    // Check reads the archives as a boot would, and finds clashes between images.
    ok_json(&torcx(&t, &["profile", "use-image", "clash:1"]));
    let o = torcx(&t, &["profile", "check"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        err(&o),
        "torcx: error: image clash:1: /run/systemd/system/docker.service is provided by image docker:20.10 too\n"
    );
    ok_json(&torcx(&t, &["profile", "remove-image", "clash"]));
    let o = torcx(&t, &["profile", "use-image", "nope:1"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        err(&o),
        "torcx: error: image nope:1: no archive in any store (use --allow=missing to name it anyway)\n"
    );
    ok_json(&torcx(&t, &["profile", "use-image", "nope:1", "--allow=missing"]));
    let v = ok_json(&torcx(&t, &["profile", "remove-image", "docker"]));
    assert_eq!(v["value"]["masked_lower"], true, "vendor names docker: an empty reference must mask it");
    let doc: Value = serde_json::from_str(&read(&t.path("etc/torcx/profiles/mine.json"))).unwrap();
    let images = &doc["value"]["images"];
    // Copied from the (v0) vendor profile, so still v0.
    assert_eq!(
        images,
        &json!([{"name": "socat", "reference": "1.7"}, {"name": "nope", "reference": "1"}, {"name": "docker", "reference": ""}])
    );
    let o = torcx(&t, &["profile", "set-next", "gone"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).starts_with("torcx: error: profile gone not found in /usr/share/torcx/profiles, "), "{}", err(&o));
}

/// `profile check` plans as the generator does, so a unit that would shadow
/// one of the host's is reported as the boot would refuse it.
#[test]
fn profile_check_reports_a_unit_of_the_host() {
    let t = machine();
    real_archives(&t);
    t.next_profile("mine", &[("socat", "1.7")]);
    let v = ok_json(&torcx(&t, &["profile", "check"]));
    assert_eq!(v["value"]["problems"], json!([]), "{v}");
    write(&t.path("usr/lib/systemd/system/socat.service"), "[Service]\nExecStart=/usr/bin/socat\n");
    let o = torcx(&t, &["--json", "profile", "check"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let problem = "unit socat.service (from /lib/systemd/system/socat.service) conflicts with \
                   /usr/lib/systemd/system/socat.service on the host";
    assert_eq!(v["value"]["problems"], json!([{"image": "socat:1.7", "error": problem}]), "{v}");
    assert_eq!(err(&o), format!("torcx: error: image socat:1.7: {problem}\n"));
}

#[test]
fn use_image_keeps_the_remote_of_v1_profiles() {
    let t = machine();
    write(
        &t.path("etc/torcx/profiles/r.json"),
        r#"{"kind":"profile-manifest-v1","value":{"images":[{"name":"socat","reference":"1.6","remote":"flatcar"}]}}"#,
    );
    ok_json(&torcx(&t, &["profile", "use-image", "socat:1.7", "--name", "r"]));
    let doc: Value = serde_json::from_str(&read(&t.path("etc/torcx/profiles/r.json"))).unwrap();
    assert_eq!(doc["kind"], "profile-manifest-v1");
    assert_eq!(doc["value"]["images"], json!([{"name": "socat", "reference": "1.7", "remote": "flatcar"}]));
    // A v0 profile stays v0 (no remote field).
    write(&t.path("etc/torcx/profiles/old.json"), profile_json(&[("socat", "1.6")]).replace("-v1", "-v0"));
    ok_json(&torcx(&t, &["profile", "use-image", "socat:1.7", "--name", "old"]));
    let doc: Value = serde_json::from_str(&read(&t.path("etc/torcx/profiles/old.json"))).unwrap();
    assert_eq!(doc["kind"], "profile-manifest-v0");
    assert_eq!(doc["value"]["images"], json!([{"name": "socat", "reference": "1.7"}]));
}

#[test]
fn usage_errors_exit_2_and_failures_exit_1_with_one_line() {
    let t = machine();
    for args in [
        &["frobnicate"][..],
        &["profile", "new"],
        &["profile", "new", "--name", "a", "--file", "b.json"],
        &["attach"],
        &["attach", "x", "--copy=sideways"],
        &["attach", "x", "--portable=lax"],
        &["image", "clear-versioned"],
    ] {
        let o = torcx(&t, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", err(&o));
    }
    for (args, msg) in [
        (
            &["detach", "nothere"][..],
            "torcx: error: image nothere is not attached (no /run/torcx/attached/nothere.json)\n",
        ),
        (
            &["profile", "set-next", "../etc"],
            "torcx: error: invalid profile name \"../etc\": must start with a letter or digit and contain only letters, digits and '.', '_', '-' (at most 255 characters)\n",
        ),
        (
            &["image", "list", "a/b"],
            "torcx: error: invalid image name \"a/b\": must start with a letter or digit and contain only letters, digits and '.', '_', '-' (at most 255 characters)\n",
        ),
        (&["profile", "new", "--file", "x.txt"], "torcx: error: x.txt: a profile file name must end in .json\n"),
    ] {
        let o = torcx(&t, args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert_eq!(err(&o), msg, "{args:?}");
    }
    // A broken config stops every command, naming the file and the field.
    write(&t.path("etc/torcx/config.json"), r#"{"kind":"torcx-config-v0","value":{"store_paths":["relative"]}}"#);
    let o = torcx(&t, &["image", "list"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        err(&o),
        "torcx: error: config /etc/torcx/config.json: field store_paths: \"relative\" is not an absolute path\n"
    );
}

#[test]
fn quiet_and_verbose() {
    let t = machine();
    write(&t.path("var/lib/torcx/store/a:b:c.torcx.tgz"), b"x");
    let o = torcx(&t, &["image", "list"]);
    assert!(
        err(&o).contains("torcx: warning: ignoring archive /var/lib/torcx/store/a:b:c.torcx.tgz: invalid image name"),
        "{}",
        err(&o)
    );
    assert_eq!(err(&torcx(&t, &["-q", "image", "list"])), "");
    write(&t.path("var/lib/torcx/store/docker:20.10.torcx.tar.zst"), b"x");
    let v = torcx(&t, &["-v", "image", "list"]);
    assert!(err(&v).contains("torcx: info: "), "{}", err(&v));
}

#[test]
fn profile_writes_are_atomic() {
    let t = machine();
    ok_json(&torcx(&t, &["profile", "new", "--name", "mine"]));
    let file = t.path("etc/torcx/profiles/mine.json");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (file, stop) = (file.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut reads = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let text = std::fs::read_to_string(&file).unwrap();
                let v: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("a reader saw a partial file ({e}): {text:?}"));
                assert_eq!(v["kind"], "profile-manifest-v1");
                reads += 1;
            }
            reads
        })
    };
    for i in 0..60 {
        let img = if i % 2 == 0 { "socat:1.7" } else { "docker:20.10" };
        ok_json(&torcx(&t, &["profile", "use-image", img, "--name", "mine"]));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads = reader.join().unwrap();
    assert!(reads > 60, "only {reads} reads");
    // No temporary file is left next to it.
    let names: Vec<_> =
        std::fs::read_dir(t.path("etc/torcx/profiles")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 1, "{names:?}");
    let _ = Path::new("");
}
