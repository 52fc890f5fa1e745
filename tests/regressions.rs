//! Cases a review found: the generator and apply agreeing on what an image
//! holds, host units and their drop-ins left alone, bare names, profile
//! files never overwritten.

mod common;

use common::*;
use serde_json::json;

/// Runs the generator and then apply on `t`; returns (generator step, apply step, NORMAL).
fn generate_and_apply(t: &TestRoot) -> (Step, Step, std::path::PathBuf) {
    let normal = t.scratch("normal");
    let mut ns = Ns::new(t);
    let g = ns.generator(&["--root", t.root.to_str().unwrap(), normal.to_str().unwrap()]);
    let a = ns.apply();
    let mut steps = ns.run();
    let apply = steps.remove(a);
    (steps.remove(g), apply, normal)
}

#[test]
fn generator_and_apply_agree_on_a_merged_usr_image_with_hard_linked_units() {
    require_root("generator_and_apply_agree_on_a_merged_usr_image_with_hard_linked_units");
    let t = TestRoot::new();
    let img = Image::new(&t, "m", "1");
    img.file("usr/lib/systemd/system/a.service", "[Service]\nExecStart=/bin/true\n")
        .hardlink("usr/lib/systemd/system/b.service", "usr/lib/systemd/system/a.service")
        .symlink("lib", "usr/lib")
        .manifest(json!({"units": ["/lib/systemd/system/a.service", "/lib/systemd/system/b.service"]}));
    img.pack(&t, USER_STORE, Fmt::Tgz);
    t.vendor_profile(&[("m", "1")]);
    let (g, a, normal) = generate_and_apply(&t);
    assert_eq!(g.code, 0, "{}", g.describe());
    assert_eq!(a.code, 0, "{}", a.describe());
    for u in ["a.service", "b.service"] {
        assert_eq!(read(&normal.join(u)), read(&t.path(&format!("run/systemd/system/{u}"))), "{u}");
        assert!(normal.join(format!("{u}.d/10-torcx.conf")).exists(), "{u}");
    }
}

#[test]
fn a_unit_the_host_has_fails_the_image_at_boot_and_the_generator_leaves_it_alone() {
    require_root("a_unit_the_host_has_fails_the_image_at_boot_and_the_generator_leaves_it_alone");
    let t = TestRoot::new();
    t.write("usr/lib/systemd/system/sshd.service", "[Service]\nExecStart=/usr/sbin/sshd\n");
    let img = Image::new(&t, "s", "1");
    img.file("lib/systemd/system/sshd.service", "[Service]\nExecStart=/evil\n")
        .manifest(json!({"units": ["/lib/systemd/system/sshd.service"]}));
    img.pack(&t, USER_STORE, Fmt::Tgz);
    t.vendor_profile(&[("s", "1")]);
    let (g, a, normal) = generate_and_apply(&t);
    assert_eq!(g.code, 1, "{}", g.describe());
    assert!(!normal.join("sshd.service").exists(), "the generator shadowed the host's unit");
    assert_eq!(a.code, 1, "{}", a.describe());
    assert!(
        a.stderr.contains("unit sshd.service (from /lib/systemd/system/sshd.service) conflicts with /usr/lib/systemd/system/sshd.service on the host"),
        "{}",
        a.describe()
    );
    assert!(!t.exists("run/systemd/system/sshd.service") && !t.exists("run/metadata/torcx"));
}

#[test]
fn a_drop_in_for_a_unit_the_image_does_not_ship_is_refused() {
    require_root("a_drop_in_for_a_unit_the_image_does_not_ship_is_refused");
    let t = TestRoot::new();
    let img = Image::new(&t, "d", "1");
    img.file("lib/systemd/system/sshd.service.d/override.conf", "[Service]\nExecStart=\nExecStart=/evil\n")
        .manifest(json!({"units": ["/lib/systemd/system/sshd.service.d"]}));
    img.pack(&t, USER_STORE, Fmt::Tgz);
    t.vendor_profile(&[("d", "1")]);
    let s = apply_once(&t, &[]);
    assert_eq!(s.code, 1, "{}", s.describe());
    assert!(
        s.stderr.contains("drop-in directory sshd.service.d changes sshd.service, which the image does not ship"),
        "{}",
        s.describe()
    );
    assert!(!t.exists("run/systemd/system/sshd.service.d"));
}

#[test]
fn profile_new_never_overwrites_a_file() {
    let t = TestRoot::new();
    t.next_profile("prod", &[("docker", "20.10")]);
    let before = read(&t.path("etc/torcx/profiles/prod.json"));
    let file = t.path("etc/torcx/profiles/prod.json");
    let (code, _, err) =
        torcx_in(None, &["--root", t.root.to_str().unwrap(), "profile", "new", "--file", file.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(err, format!("torcx: error: {} already exists\n", file.display()));
    assert_eq!(read(&file), before);
}

#[test]
fn a_bare_name_is_looked_up_in_the_stores_not_the_current_directory() {
    require_root("a_bare_name_is_looked_up_in_the_stores_not_the_current_directory");
    let t = TestRoot::new();
    let img = Image::new(&t, "hl", "1");
    img.file("x", "from the store\n").manifest(json!({}));
    img.pack(&t, USER_STORE, Fmt::Tgz);
    // A directory of the same name where the command runs.
    let cwd = t.scratch("cwd");
    std::fs::create_dir_all(cwd.join("hl")).unwrap();
    let mut ns = Ns::new(&t);
    ns.sh(&format!("cd '{}'", cwd.display()));
    let a = ns.torcx(&["attach", "hl"]);
    let s = ns.run().remove(a);
    assert_eq!(s.code, 0, "{}", s.describe());
    assert_eq!(s.json()["value"]["attachment"]["archive"], "/var/lib/torcx/store/hl:1.torcx.tgz");
}
