//! The pure planners, as values, runnable as any user: temporary
//! directories only, no mounts, no systemd. Profile resolution, the store
//! search (versioned stores), the attach plan and its conflict checks, and
//! the generator's plan of an archive built here.
//!
//! Run just these (and the other unprivileged tests) as any user with
//! `cargo test --lib --test planners --test policy --test record --test layout --test docs`.

use std::io::Write;
use std::path::{Path, PathBuf};
use torcx::archive::{Archive, Format};
use torcx::attach::{self, Action, Class, CopyMode, Origin, Placement};
use torcx::boot::generator;
use torcx::model::config::{Config, Overrides};
use torcx::model::names::ImageId;
use torcx::profile;
use torcx::store;
use torcx::tree::source::{Mem, Tree};

/// Writes `data` at `rel` under `root`, creating the parents.
fn put(root: &Path, rel: &str, data: impl AsRef<[u8]>) {
    let p = root.join(rel.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, data).unwrap_or_else(|e| panic!("writing {}: {e}", p.display()));
}

fn link(root: &Path, rel: &str, target: &str) {
    let p = root.join(rel.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(target, p).unwrap();
}

fn profile_json(images: &[(&str, &str)]) -> String {
    let images: Vec<serde_json::Value> =
        images.iter().map(|(n, r)| serde_json::json!({"name": n, "reference": r})).collect();
    serde_json::json!({"kind": "profile-manifest-v0", "value": {"images": images}}).to_string()
}

fn manifest_json(value: serde_json::Value) -> String {
    serde_json::json!({"kind": "image-manifest-v0", "value": value}).to_string()
}

/// A configuration for `root` that sees nothing of this process's environment.
fn config(root: &Path) -> Config {
    Config::load_with_env(&Overrides { root: Some(root.into()), stores: vec![] }, &|_| None).unwrap()
}

fn ids(v: &[ImageId]) -> Vec<String> {
    v.iter().map(|i| i.to_string()).collect()
}

fn id(name: &str, reference: &str) -> ImageId {
    ImageId::new(name, reference).unwrap()
}

/// A placement, summarized: `(class, destination, what)` where what is
/// `dir`, `-> TARGET` or `file N bytes`.
fn summary(plan: &[Placement]) -> Vec<(Class, String, String)> {
    plan.iter()
        .map(|p| {
            let what = match &p.action {
                Action::Dir => "dir".to_string(),
                Action::Symlink(t) => format!("-> {}", t.display()),
                Action::File(b) => format!("file {} bytes", b.len()),
            };
            (p.class, p.dest.display().to_string(), what)
        })
        .collect()
}

fn s(class: Class, dest: &str, what: &str) -> (Class, String, String) {
    (class, dest.to_string(), what.to_string())
}

/// The contents of the file placed at `dest`.
fn file_at(plan: &[Placement], dest: &str) -> String {
    let p = plan
        .iter()
        .find(|p| p.dest == Path::new(dest))
        .unwrap_or_else(|| panic!("nothing planned at {dest}: {:#?}", summary(plan)));
    match &p.action {
        Action::File(b) => String::from_utf8(b.clone()).unwrap(),
        other => panic!("{dest} is planned as {other:?}, not a file"),
    }
}

fn err_text<T>(r: anyhow::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => format!("{e:#}"),
    }
}

const VENDOR: &str = "usr/share/torcx/profiles";
const OEM: &str = "usr/share/oem/torcx/profiles";
const USER: &str = "etc/torcx/profiles";

// ---------------------------------------------------------------- profiles

/// vendor < oem < user: each layer first drops every image it names (an
/// empty reference only removes), then appends its own.
#[test]
fn profiles_vendor_oem_and_user_merge() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    put(root, &format!("{VENDOR}/vendor.json"), profile_json(&[("docker", "18.06"), ("zfs", "1")]));
    put(root, &format!("{OEM}/oem.json"), profile_json(&[("zfs", "2"), ("agent", "1")]));
    put(root, &format!("{USER}/mine.json"), profile_json(&[("docker", ""), ("socat", "1.7")]));
    let cfg = config(root);

    // Without next-profile, only the lower profiles.
    let r = profile::resolve(&cfg).unwrap();
    assert_eq!(r.lower_profiles, ["vendor", "oem"]);
    assert_eq!(r.upper_profile, None);
    assert_eq!(ids(&r.images), ["docker:18.06", "zfs:2", "agent:1"]);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);

    put(root, "etc/torcx/next-profile", "mine\n");
    let r = profile::resolve(&cfg).unwrap();
    assert_eq!(r.lower_profiles, ["vendor", "oem"]);
    assert_eq!(r.upper_profile.as_deref(), Some("mine"));
    assert_eq!(ids(&r.images), ["zfs:2", "agent:1", "socat:1.7"]);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    assert_eq!(profile::find(&cfg, "mine").unwrap(), Some(PathBuf::from("/etc/torcx/profiles/mine.json")));
    assert_eq!(profile::find(&cfg, "oem").unwrap(), Some(PathBuf::from("/usr/share/oem/torcx/profiles/oem.json")));

    // A user profile named like a lower one replaces it (user over oem over vendor).
    put(root, &format!("{USER}/oem.json"), profile_json(&[("agent", "9")]));
    let r = profile::resolve(&cfg).unwrap();
    assert_eq!(ids(&r.images), ["zfs:1", "agent:9", "socat:1.7"]);
    assert_eq!(profile::find(&cfg, "oem").unwrap(), Some(PathBuf::from("/etc/torcx/profiles/oem.json")));
}

/// `next-profile` picks one of several user profiles; a `.json` suffix and
/// surrounding white space are tolerated, an empty file selects none.
#[test]
fn next_profile_selects_the_upper_profile() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    put(root, &format!("{VENDOR}/vendor.json"), profile_json(&[("docker", "1")]));
    put(root, &format!("{USER}/a.json"), profile_json(&[("a", "1")]));
    put(root, &format!("{USER}/b.json"), profile_json(&[("docker", "2"), ("b", "1")]));
    let cfg = config(root);
    for (text, upper, images) in [
        ("a\n", Some("a"), vec!["docker:1", "a:1"]),
        ("  b.json  \n", Some("b"), vec!["docker:2", "b:1"]),
        ("\n", None, vec!["docker:1"]),
    ] {
        put(root, "etc/torcx/next-profile", text);
        assert_eq!(profile::next_profile_name(&cfg).unwrap().as_deref(), upper, "next-profile {text:?}");
        let r = profile::resolve(&cfg).unwrap();
        assert_eq!(r.upper_profile.as_deref(), upper, "next-profile {text:?}");
        assert_eq!(ids(&r.images), images, "next-profile {text:?}");
    }
    // A name that is not a profile name is a leftover like a missing
    // profile: a warning naming the file, and the lower profiles apply.
    put(root, "etc/torcx/next-profile", "../../etc/passwd\n");
    let r = profile::resolve(&cfg).unwrap();
    assert_eq!(r.upper_profile, None);
    assert!(r.warnings[0].starts_with("next profile /etc/torcx/next-profile: "), "{:?}", r.warnings);
    assert!(r.warnings[0].ends_with("; applying the lower profiles only"), "{:?}", r.warnings);
}

/// A next-profile naming a profile that does not exist does not stop the
/// boot: the lower profiles apply and a warning says why (Flatcar#1217).
#[test]
fn next_profile_naming_a_missing_profile_warns_and_applies_the_lower_ones() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    put(root, &format!("{VENDOR}/vendor.json"), profile_json(&[("docker", "1")]));
    put(root, &format!("{OEM}/oem.json"), profile_json(&[("agent", "1")]));
    put(root, "etc/torcx/next-profile", "gone\n");
    let r = profile::resolve(&config(root)).unwrap();
    assert_eq!(r.lower_profiles, ["vendor", "oem"]);
    assert_eq!(r.upper_profile, None);
    assert_eq!(ids(&r.images), ["docker:1", "agent:1"]);
    assert_eq!(
        r.warnings,
        ["/etc/torcx/next-profile names profile \"gone\", which is in none of /usr/share/torcx/profiles, \
             /usr/share/oem/torcx/profiles, /etc/torcx/profiles; applying the lower profiles only"]
    );
}

// ---------------------------------------------------------------- stores

/// `VERSION_ID` of the root's os-release (quotes stripped) adds versioned
/// stores, each searched before its unversioned one; the first archive of
/// an image wins. Without an os-release there are no versioned stores.
#[test]
fn versioned_stores_are_searched_before_the_unversioned_ones() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    put(root, "usr/lib/os-release", "NAME=\"Flatcar\"\nVERSION_ID=\"3510.2.0\"\n");
    let cfg = config(root);
    assert_eq!(cfg.version_id.as_deref(), Some("3510.2.0"));
    let dirs: Vec<String> = store::store_dirs(&cfg).iter().map(|d| d.logical.display().to_string()).collect();
    assert_eq!(
        dirs,
        [
            "/usr/share/torcx/store",
            "/usr/share/oem/torcx/store/3510.2.0",
            "/usr/share/oem/torcx/store",
            "/var/lib/torcx/store/3510.2.0",
            "/var/lib/torcx/store",
        ]
    );
    assert_eq!(store::store_dirs(&cfg)[3].host, root.join("var/lib/torcx/store/3510.2.0"));

    put(root, "var/lib/torcx/store/a:1.torcx.tgz", "x");
    put(root, "var/lib/torcx/store/3510.2.0/a:1.torcx.tgz", "x");
    put(root, "var/lib/torcx/store/b:1.torcx.tgz", "x");
    // Another version's store is not this boot's.
    put(root, "var/lib/torcx/store/1.0.0/c:1.torcx.tgz", "x");
    let found: Vec<(String, String)> =
        store::scan(&cfg).iter().map(|a| (a.id.to_string(), a.path.display().to_string())).collect();
    assert_eq!(
        found,
        [
            ("a:1".to_string(), "/var/lib/torcx/store/3510.2.0/a:1.torcx.tgz".to_string()),
            ("b:1".into(), "/var/lib/torcx/store/b:1.torcx.tgz".into()),
        ]
    );

    std::fs::remove_file(root.join("usr/lib/os-release")).unwrap();
    let cfg = config(root);
    assert_eq!(cfg.version_id, None);
    let found: Vec<String> = store::scan(&cfg).iter().map(|a| a.path.display().to_string()).collect();
    assert_eq!(found, ["/var/lib/torcx/store/a:1.torcx.tgz", "/var/lib/torcx/store/b:1.torcx.tgz"]);
}

// ---------------------------------------------------------------- attach plan

const X_SERVICE: &str = "[Unit]\nDescription=x\n\n[Service]\nExecStart=/run/torcx/bin/x\n";
const X_SOCKET: &str = "[Socket]\nListenStream=/run/x.sock\n";
const ARCHIVE: &str = "/var/lib/torcx/store/x:1.torcx.tgz";

const SERVICE_DROPIN: &str = "# Attached by torcx from x:1 (/var/lib/torcx/store/x:1.torcx.tgz); do not edit.\n\
    [Unit]\nRequires=torcx.target\nAfter=torcx.target\n\n\
    [Service]\nEnvironment=TORCX_IMAGE=x TORCX_REFERENCE=1 TORCX_IMAGEDIR=/run/torcx/unpack/x TORCX_BINDIR=/run/torcx/bin\n\
    Environment=PATH=/run/torcx/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n\
    LogExtraFields=TORCX_IMAGE=x:1\n";
const SOCKET_DROPIN: &str = "# Attached by torcx from x:1 (/var/lib/torcx/store/x:1.torcx.tgz); do not edit.\n\
    [Unit]\nRequires=torcx.target\nAfter=torcx.target\n";

/// Image `x`, unpacked at `dir`: every kind of asset the manifest can list.
fn tree_x(dir: &Path) {
    put(
        dir,
        ".torcx/manifest.json",
        manifest_json(serde_json::json!({
            "bin": ["/bin"],
            "units": [
                "/lib/systemd/system/x.service",
                "/lib/systemd/system/x.socket",
                "/lib/systemd/system/multi-user.target.wants",
            ],
            "network": ["/lib/systemd/network/10-x.network"],
            "sysusers": ["/lib/sysusers.d/x.conf"],
            "tmpfiles": ["/lib/tmpfiles.d"],
            "udev_rules": ["/lib/udev/rules.d/90-x.rules"],
        })),
    );
    put(dir, "bin/x", "#!/bin/sh\n");
    put(dir, "bin/sub/y", "#!/bin/sh\n");
    link(dir, "bin/z", "x");
    link(dir, "bin/dangling", "nowhere");
    put(dir, "lib/systemd/system/x.service", X_SERVICE);
    put(dir, "lib/systemd/system/x.socket", X_SOCKET);
    // However the image links it, the placed link is `../UNIT`.
    link(dir, "lib/systemd/system/multi-user.target.wants/x.service", "/lib/systemd/system/x.service");
    link(dir, "lib/systemd/system/multi-user.target.wants/x.socket", "../x.socket");
    put(dir, "lib/systemd/network/10-x.network", "[Match]\nName=x0\n");
    put(dir, "lib/sysusers.d/x.conf", "u x - \"x\"\n");
    put(dir, "lib/tmpfiles.d/a.conf", "d /run/x\n");
    put(dir, "lib/tmpfiles.d/b.conf", "d /run/y\n");
    put(dir, "lib/udev/rules.d/90-x.rules", "# x\n");
}

fn origin<'a>(id: &'a ImageId, copy: CopyMode) -> Origin<'a> {
    Origin { id, archive: Path::new(ARCHIVE), tree: PathBuf::from("/run/torcx/unpack/x"), copy, portable: None }
}

fn plan_tree(cfg: &Config, dir: &Path, copy: CopyMode, units_only: bool) -> anyhow::Result<Vec<Placement>> {
    let src = Tree::open(dir)?;
    let (m, scanned) = torcx::tree::scan::manifest_or_scan(&src)?;
    assert!(!scanned);
    let x = id("x", "1");
    attach::plan(cfg, &origin(&x, copy), &src, &m, units_only)
}

#[test]
fn attach_plan_places_every_asset_class() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let img = t.path().join("x");
    tree_x(&img);
    let cfg = config(&root);
    let plan = plan_tree(&cfg, &img, CopyMode::Copy, false).unwrap();
    let svc = format!("file {} bytes", X_SERVICE.len());
    let sock = format!("file {} bytes", X_SOCKET.len());
    let svc_dropin = format!("file {} bytes", SERVICE_DROPIN.len());
    let sock_dropin = format!("file {} bytes", SOCKET_DROPIN.len());
    assert_eq!(
        summary(&plan),
        [
            // Directories are flattened; a link to a file counts, a dangling one not.
            s(Class::Bin, "/run/torcx/bin/y", "-> /run/torcx/unpack/x/bin/sub/y"),
            s(Class::Bin, "/run/torcx/bin/x", "-> /run/torcx/unpack/x/bin/x"),
            s(Class::Bin, "/run/torcx/bin/z", "-> /run/torcx/unpack/x/bin/z"),
            s(Class::Unit, "/run/systemd/system/x.service", &svc),
            s(Class::DropIn, "/run/systemd/system/x.service.d", "dir"),
            s(Class::DropIn, "/run/systemd/system/x.service.d/10-torcx.conf", &svc_dropin),
            s(Class::Unit, "/run/systemd/system/x.socket", &sock),
            s(Class::DropIn, "/run/systemd/system/x.socket.d", "dir"),
            s(Class::DropIn, "/run/systemd/system/x.socket.d/10-torcx.conf", &sock_dropin),
            s(Class::Unit, "/run/systemd/system/multi-user.target.wants", "dir"),
            s(Class::Unit, "/run/systemd/system/multi-user.target.wants/x.service", "-> ../x.service"),
            s(Class::Unit, "/run/systemd/system/multi-user.target.wants/x.socket", "-> ../x.socket"),
            s(Class::Network, "/run/systemd/network/10-x.network", "file 16 bytes"),
            s(Class::Sysusers, "/run/sysusers.d/x.conf", "file 10 bytes"),
            s(Class::Tmpfiles, "/run/tmpfiles.d/a.conf", "file 9 bytes"),
            s(Class::Tmpfiles, "/run/tmpfiles.d/b.conf", "file 9 bytes"),
            s(Class::UdevRules, "/run/udev/rules.d/90-x.rules", "file 4 bytes"),
        ]
    );
    assert_eq!(file_at(&plan, "/run/systemd/system/x.service"), X_SERVICE);
    assert_eq!(file_at(&plan, "/run/systemd/system/x.service.d/10-torcx.conf"), SERVICE_DROPIN);
    assert_eq!(file_at(&plan, "/run/systemd/system/x.socket.d/10-torcx.conf"), SOCKET_DROPIN);
    assert_eq!(file_at(&plan, "/run/systemd/network/10-x.network"), "[Match]\nName=x0\n");
    assert_eq!(file_at(&plan, "/run/tmpfiles.d/b.conf"), "d /run/y\n");
    let sources: Vec<&str> = plan.iter().map(|p| p.source.as_deref().unwrap()).collect();
    assert_eq!(sources[0], "bin/sub/y");
    assert_eq!(sources[10], "lib/systemd/system/multi-user.target.wants/x.service");
    // Nothing was written anywhere: planning only reads.
    assert!(!root.exists());
}

/// `units_only` is what the generator writes; with `--copy symlink` units
/// are links into the tree (drop-ins are still written).
#[test]
fn attach_plan_units_only_and_symlinked_units() {
    let t = tempfile::tempdir().unwrap();
    let img = t.path().join("x");
    tree_x(&img);
    let cfg = config(&t.path().join("root"));
    let plan = plan_tree(&cfg, &img, CopyMode::Symlink, true).unwrap();
    let sock_dropin = format!("file {} bytes", SOCKET_DROPIN.len());
    let svc_dropin = format!("file {} bytes", SERVICE_DROPIN.len());
    assert_eq!(
        summary(&plan),
        [
            s(Class::Unit, "/run/systemd/system/x.service", "-> /run/torcx/unpack/x/lib/systemd/system/x.service"),
            s(Class::DropIn, "/run/systemd/system/x.service.d", "dir"),
            s(Class::DropIn, "/run/systemd/system/x.service.d/10-torcx.conf", &svc_dropin),
            s(Class::Unit, "/run/systemd/system/x.socket", "-> /run/torcx/unpack/x/lib/systemd/system/x.socket"),
            s(Class::DropIn, "/run/systemd/system/x.socket.d", "dir"),
            s(Class::DropIn, "/run/systemd/system/x.socket.d/10-torcx.conf", &sock_dropin),
            s(Class::Unit, "/run/systemd/system/multi-user.target.wants", "dir"),
            s(Class::Unit, "/run/systemd/system/multi-user.target.wants/x.service", "-> ../x.service"),
            s(Class::Unit, "/run/systemd/system/multi-user.target.wants/x.socket", "-> ../x.socket"),
        ]
    );
}

/// The same image read into memory (as the generator reads an archive)
/// plans the same units, links and drop-ins.
#[test]
fn archive_units_plan_from_memory() {
    let t = tempfile::tempdir().unwrap();
    let cfg = config(t.path());
    let mut mem = Mem::default();
    mem.insert_file(
        ".torcx/manifest.json".into(),
        manifest_json(serde_json::json!({
            "bin": ["/bin/x"],
            "units": ["/lib/systemd/system/x.service", "/lib/systemd/system/sockets.target.wants"],
        }))
        .into_bytes(),
    );
    mem.insert_file("lib/systemd/system/x.service".into(), X_SERVICE.as_bytes().to_vec());
    mem.insert_link("lib/systemd/system/sockets.target.wants/x.service".into(), "../x.service".into());
    let a = Archive {
        id: id("x", "1"),
        format: Format::Tgz,
        path: ARCHIVE.into(),
        host: t.path().join("var/lib/torcx/store/x:1.torcx.tgz"),
    };
    let (m, plan) = attach::plan_archive_units(&cfg, &a, &mem).unwrap();
    assert_eq!(m.bin, ["/bin/x"]);
    assert_eq!(
        summary(&plan),
        [
            s(Class::Unit, "/run/systemd/system/x.service", &format!("file {} bytes", X_SERVICE.len())),
            s(Class::DropIn, "/run/systemd/system/x.service.d", "dir"),
            s(
                Class::DropIn,
                "/run/systemd/system/x.service.d/10-torcx.conf",
                &format!("file {} bytes", SERVICE_DROPIN.len())
            ),
            s(Class::Unit, "/run/systemd/system/sockets.target.wants", "dir"),
            s(Class::Unit, "/run/systemd/system/sockets.target.wants/x.service", "-> ../x.service"),
        ]
    );
    assert_eq!(file_at(&plan, "/run/systemd/system/x.service.d/10-torcx.conf"), SERVICE_DROPIN);
}

/// Manifests the planner refuses, with the message an operator sees.
#[test]
fn attach_plan_refusals() {
    let t = tempfile::tempdir().unwrap();
    let cfg = config(&t.path().join("root"));
    let cases: [(serde_json::Value, &str); 5] = [
        (serde_json::json!({"bin": ["/bin/nope"]}), "manifest bin entry \"/bin/nope\": does not exist in the image"),
        (
            serde_json::json!({"bin": ["/bin/x", "/sbin/x"]}),
            "/run/torcx/bin/x is provided twice by the image: by /bin/x and by /sbin/x",
        ),
        (
            serde_json::json!({"units": ["/lib/systemd/system/sshd.service.d"]}),
            "manifest units entry /lib/systemd/system/sshd.service.d: drop-in directory sshd.service.d changes \
             sshd.service, which the image does not ship",
        ),
        (
            serde_json::json!({"units": ["/lib/systemd/system/bad.target.wants"]}),
            "manifest units entry \"/lib/systemd/system/bad.target.wants\": \
             /lib/systemd/system/bad.target.wants/passwd: link to /etc/passwd is not a unit",
        ),
        (
            serde_json::json!({"tmpfiles": ["/lib/../../etc"]}),
            "manifest tmpfiles entry \"/lib/../../etc\" contains '..': outside the image",
        ),
    ];
    for (i, (manifest, want)) in cases.into_iter().enumerate() {
        let img = t.path().join(format!("img{i}"));
        put(&img, ".torcx/manifest.json", manifest_json(manifest));
        put(&img, "bin/x", "x");
        put(&img, "sbin/x", "x");
        put(&img, "lib/systemd/system/sshd.service.d/override.conf", "[Service]\nExecStart=\n");
        link(&img, "lib/systemd/system/bad.target.wants/passwd", "/etc/passwd");
        let e = err_text(plan_tree(&cfg, &img, CopyMode::Copy, false));
        assert_eq!(e, want, "case {i}");
    }
}

/// An existing file where a placement goes is a conflict, named with its
/// owner; an existing directory where a directory goes is shared.
#[test]
fn conflicts_with_files_already_in_place() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let img = t.path().join("x");
    tree_x(&img);
    let cfg = config(&root);
    let x = id("x", "1");
    let plan = plan_tree(&cfg, &img, CopyMode::Copy, false).unwrap();
    attach::check_conflicts(&cfg, &x, &plan).unwrap();

    std::fs::create_dir_all(root.join("run/systemd/system/multi-user.target.wants")).unwrap();
    attach::check_conflicts(&cfg, &x, &plan).unwrap();

    put(&root, "run/tmpfiles.d/b.conf", "d /run/other\n");
    assert_eq!(
        err_text(attach::check_conflicts(&cfg, &x, &plan)),
        "image x:1: /run/tmpfiles.d/b.conf (from /lib/tmpfiles.d/b.conf) conflicts with a file torcx did not \
         place, already at /run/tmpfiles.d/b.conf"
    );
    std::fs::remove_file(root.join("run/tmpfiles.d/b.conf")).unwrap();

    // A link another image placed, as its record says.
    link(&root, "run/torcx/bin/x", "/run/torcx/unpack/y/bin/x");
    put(
        &root,
        "run/torcx/attached/y.json",
        serde_json::json!({"kind": "torcx-attachment-v0", "value": {
            "name": "y", "reference": "2", "archive": "/var/lib/torcx/store/y:2.torcx.tgz", "format": "tgz",
            "tree": "/run/torcx/unpack/y", "mounted": true, "origin": "runtime", "state": "attached",
            "files": [{"path": "/run/torcx/bin/x", "class": "bin", "type": "symlink",
                       "target": "/run/torcx/unpack/y/bin/x"}],
        }})
        .to_string(),
    );
    assert_eq!(
        err_text(attach::check_conflicts(&cfg, &x, &plan)),
        "image x:1: /run/torcx/bin/x (from /bin/x) conflicts with image y:2, already at /run/torcx/bin/x"
    );

    // A file where a directory goes is a conflict too.
    std::fs::remove_file(root.join("run/torcx/bin/x")).unwrap();
    put(&root, "run/systemd/system/x.service.d", "not a directory");
    assert_eq!(
        err_text(attach::check_conflicts(&cfg, &x, &plan)),
        "image x:1: /run/systemd/system/x.service.d (from /lib/systemd/system/x.service) conflicts with a file \
         torcx did not place, already at /run/systemd/system/x.service.d"
    );
}

/// A unit systemd already finds on the host refuses the image, in any
/// directory of the search path, except the image's own copies: the torcx
/// generator's (the same bytes, in /run/systemd/generator) and what its own
/// record placed in /run/systemd/system. `.wants` links are no units.
#[test]
fn conflicts_with_host_units() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let img = t.path().join("x");
    tree_x(&img);
    let cfg = config(&root);
    let x = id("x", "1");
    let plan = plan_tree(&cfg, &img, CopyMode::Copy, false).unwrap();
    attach::check_host_units(&cfg, &x, &plan).unwrap();

    // The torcx generator's copy of this very unit.
    put(&root, "run/systemd/generator/x.socket", X_SOCKET);
    attach::check_host_units(&cfg, &x, &plan).unwrap();
    // Another generator's unit of the same name.
    put(&root, "run/systemd/generator/x.socket", "[Socket]\nListenStream=/run/other\n");
    assert_eq!(
        err_text(attach::check_host_units(&cfg, &x, &plan)),
        "image x:1: unit x.socket (from /lib/systemd/system/x.socket) conflicts with \
         /run/systemd/generator/x.socket on the host"
    );
    std::fs::remove_file(root.join("run/systemd/generator/x.socket")).unwrap();
    put(&root, "run/systemd/generator.late/x.socket", X_SOCKET);
    assert_eq!(
        err_text(attach::check_host_units(&cfg, &x, &plan)),
        "image x:1: unit x.socket (from /lib/systemd/system/x.socket) conflicts with \
         /run/systemd/generator.late/x.socket on the host"
    );
    std::fs::remove_file(root.join("run/systemd/generator.late/x.socket")).unwrap();

    // In /run/systemd/system: the image's own record's file, or not.
    put(&root, "run/systemd/system/x.service", X_SERVICE);
    assert_eq!(
        err_text(attach::check_host_units(&cfg, &x, &plan)),
        "image x:1: unit x.service (from /lib/systemd/system/x.service) conflicts with \
         /run/systemd/system/x.service on the host"
    );
    record_of(&plan).write(&cfg).unwrap();
    attach::check_host_units(&cfg, &x, &plan).unwrap();

    put(&root, "usr/lib/systemd/system/x.service", X_SERVICE);
    assert_eq!(
        err_text(attach::check_host_units(&cfg, &x, &plan)),
        "image x:1: unit x.service (from /lib/systemd/system/x.service) conflicts with \
         /usr/lib/systemd/system/x.service on the host"
    );
    // check_conflicts looks only at the placements' own paths.
    std::fs::remove_file(root.join("usr/lib/systemd/system/x.service")).unwrap();
    std::fs::remove_file(root.join("run/systemd/system/x.service")).unwrap();
    attach::check_conflicts(&cfg, &x, &plan).unwrap();
}

// ---------------------------------------------------------------- reattach

/// The record an attach of `plan` would leave (runtime, attached).
fn record_of(plan: &[Placement]) -> attach::Record {
    let files = plan
        .iter()
        .map(|p| attach::RecordedFile {
            path: p.dest.clone(),
            class: p.class,
            kind: match &p.action {
                Action::Dir => attach::FileKind::Dir,
                Action::Symlink(_) => attach::FileKind::Symlink,
                Action::File(_) => attach::FileKind::File,
            },
            target: match &p.action {
                Action::Symlink(t) => Some(t.clone()),
                _ => None,
            },
            sha256: None,
            source: p.source.clone(),
        })
        .collect();
    attach::Record {
        name: "x".into(),
        reference: "1".into(),
        archive: PathBuf::from(ARCHIVE),
        format: attach::RecordFormat::Tgz,
        digest: None,
        copy: CopyMode::Copy,
        portable: None,
        loop_device: None,
        tree: PathBuf::from("/run/torcx/unpack/x"),
        mounted: true,
        origin: attach::RecordOrigin::Runtime,
        state: attach::RecordState::Attached,
        files,
    }
}

#[test]
fn reattach_plan_checks_only_what_the_new_reference_adds() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let cfg = config(&root);
    let x = id("x", "2");
    let one = t.path().join("x1");
    tree_x(&one);
    let old = record_of(&plan_tree(&cfg, &one, CopyMode::Copy, false).unwrap());
    // The prepared tree is built as the old attachment was.
    let opts = attach::options_of(&old);
    assert_eq!((opts.origin, opts.copy, opts.portable, opts.check_host_units), (old.origin, old.copy, None, false));

    // Version 2 drops the socket and adds a binary and a service.
    let two = t.path().join("x2");
    tree_x(&two);
    std::fs::remove_file(two.join("lib/systemd/system/x.socket")).unwrap();
    std::fs::remove_file(two.join("lib/systemd/system/multi-user.target.wants/x.socket")).unwrap();
    let m = two.join(".torcx/manifest.json");
    let text = std::fs::read_to_string(&m)
        .unwrap()
        .replace("\"/lib/systemd/system/x.socket\",", "\"/lib/systemd/system/x-extra.service\",");
    std::fs::write(&m, text).unwrap();
    put(&two, "lib/systemd/system/x-extra.service", "[Service]\nExecStart=/run/torcx/bin/w\n");
    put(&two, "bin/w", "#!/bin/sh\n");
    let new = plan_tree(&cfg, &two, CopyMode::Copy, false).unwrap();

    // The old attachment's own files are no conflict, even though they exist.
    for f in &old.files {
        if f.kind == attach::FileKind::File {
            put(&root, &f.path.display().to_string(), "placed by x:1");
        }
    }
    let sw = attach::plan_switch(&cfg, &old, &x, &new).unwrap();
    let added: Vec<String> = sw.added.iter().map(|p| p.dest.display().to_string()).collect();
    assert_eq!(
        added,
        [
            "/run/torcx/bin/w",
            "/run/systemd/system/x-extra.service",
            "/run/systemd/system/x-extra.service.d",
            "/run/systemd/system/x-extra.service.d/10-torcx.conf",
        ]
    );
    let dropped: Vec<String> = sw.dropped.iter().map(|p| p.display().to_string()).collect();
    assert_eq!(
        dropped,
        [
            "/run/systemd/system/x.socket",
            "/run/systemd/system/x.socket.d",
            "/run/systemd/system/x.socket.d/10-torcx.conf",
            "/run/systemd/system/multi-user.target.wants/x.socket",
        ]
    );

    // A unit the new reference adds may not shadow the host's...
    put(&root, "usr/lib/systemd/system/x-extra.service", "[Service]\n");
    assert_eq!(
        err_text(attach::plan_switch(&cfg, &old, &x, &new)),
        "image x:2: unit x-extra.service (from /lib/systemd/system/x-extra.service) conflicts with \
         /usr/lib/systemd/system/x-extra.service on the host"
    );
    std::fs::remove_file(root.join("usr/lib/systemd/system/x-extra.service")).unwrap();
    // Even for an image attached at boot, what another generator wrote is
    // the host's (only the torcx generator's copies of the old reference's
    // units are the image's, and those are not added).
    let mut boot = old.clone();
    boot.origin = attach::RecordOrigin::Boot;
    put(&root, "run/systemd/generator.late/x-extra.service", "[Service]\n");
    assert_eq!(
        err_text(attach::plan_switch(&cfg, &boot, &x, &new)),
        "image x:2: unit x-extra.service (from /lib/systemd/system/x-extra.service) conflicts with \
         /run/systemd/generator.late/x-extra.service on the host"
    );
    std::fs::remove_file(root.join("run/systemd/generator.late/x-extra.service")).unwrap();
    // ...nor overwrite a file torcx did not place.
    put(&root, "run/torcx/bin/w", "the administrator's");
    assert!(err_text(attach::plan_switch(&cfg, &old, &x, &new)).contains("/run/torcx/bin/w"));
}

// ---------------------------------------------------------------- generator

/// Packs entries into a gzip tar the way GNU tar does (`./` names).
enum E<'a> {
    Dir(&'a str),
    File(&'a str, &'a str, u32),
    Link(&'a str, &'a str),
}

fn tgz(dest: &Path, entries: &[E]) {
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    let f = std::fs::File::create(dest).unwrap();
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(f, flate2::Compression::default()));
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        match e {
            E::Dir(p) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, format!("./{p}/"), std::io::empty()).unwrap();
            }
            E::File(p, data, mode) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, format!("./{p}"), data.as_bytes()).unwrap();
            }
            E::Link(p, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, format!("./{p}"), target).unwrap();
            }
        }
    }
    b.into_inner().unwrap().finish().unwrap().flush().unwrap();
}

fn x_archive(dest: &Path) {
    let manifest = manifest_json(serde_json::json!({
        "bin": ["/bin/x"],
        "units": ["/lib/systemd/system/x.service", "/lib/systemd/system/multi-user.target.wants"],
        "tmpfiles": ["/lib/tmpfiles.d/x.conf"],
    }));
    tgz(
        dest,
        &[
            E::Dir(".torcx"),
            E::File(".torcx/manifest.json", &manifest, 0o644),
            E::Dir("bin"),
            E::File("bin/x", "#!/bin/sh\necho x\n", 0o755),
            E::Dir("lib"),
            E::Dir("lib/systemd"),
            E::Dir("lib/systemd/system"),
            E::File("lib/systemd/system/x.service", X_SERVICE, 0o644),
            E::Dir("lib/systemd/system/multi-user.target.wants"),
            E::Link("lib/systemd/system/multi-user.target.wants/x.service", "../x.service"),
            E::Dir("lib/tmpfiles.d"),
            E::File("lib/tmpfiles.d/x.conf", "d /run/x\n", 0o644),
        ],
    );
}

/// What the generator would write for a profile, as placements: the units,
/// their drop-ins and `.wants` links only (no binaries, no tmpfiles), from
/// the archive in the versioned store; an image without an archive is an
/// error of that image only.
#[test]
fn generator_plans_the_units_of_a_tgz_in_a_versioned_store() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    put(root, "usr/lib/os-release", "VERSION_ID=3510.2.0\n");
    put(root, &format!("{VENDOR}/vendor.json"), profile_json(&[("x", "1"), ("y", "1")]));
    x_archive(&root.join("var/lib/torcx/store/3510.2.0/x:1.torcx.tgz"));
    // An older copy in the unversioned store is shadowed.
    put(root, "var/lib/torcx/store/x:1.torcx.tgz", "not even an archive");
    let cfg = config(root);
    let resolved = profile::resolve(&cfg).unwrap();
    let planned = generator::plan(&cfg, &resolved.images);
    assert_eq!(planned.len(), 2);

    let (x, px) = &planned[0];
    assert_eq!(x.to_string(), "x:1");
    let px = px.as_ref().unwrap_or_else(|e| panic!("x:1: {e:#}"));
    assert_eq!(px.manifest.bin, ["/bin/x"]);
    assert_eq!(px.manifest.tmpfiles, ["/lib/tmpfiles.d/x.conf"]);
    let dropin = SERVICE_DROPIN.replace(ARCHIVE, "/var/lib/torcx/store/3510.2.0/x:1.torcx.tgz");
    assert_eq!(
        summary(&px.placements),
        [
            s(Class::Unit, "/run/systemd/system/x.service", &format!("file {} bytes", X_SERVICE.len())),
            s(Class::DropIn, "/run/systemd/system/x.service.d", "dir"),
            s(Class::DropIn, "/run/systemd/system/x.service.d/10-torcx.conf", &format!("file {} bytes", dropin.len())),
            s(Class::Unit, "/run/systemd/system/multi-user.target.wants", "dir"),
            s(Class::Unit, "/run/systemd/system/multi-user.target.wants/x.service", "-> ../x.service"),
        ]
    );
    assert_eq!(file_at(&px.placements, "/run/systemd/system/x.service"), X_SERVICE);
    assert_eq!(file_at(&px.placements, "/run/systemd/system/x.service.d/10-torcx.conf"), dropin);

    let (y, py) = &planned[1];
    assert_eq!(y.to_string(), "y:1");
    assert_eq!(format!("{:#}", py.as_ref().err().expect("y:1 has no archive")), "no archive in any store");

    // Planning wrote nothing: no cache, no units.
    assert!(!root.join("run").exists());
    assert!(!root.join("var/lib/torcx/cache").exists());
}

/// The generator refuses an image whose unit the host already has, except
/// in the directories a boot itself writes (an earlier, failed apply's
/// /run/systemd/system, the generator's own output).
#[test]
fn generator_plan_refuses_units_the_host_has() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    x_archive(&root.join("var/lib/torcx/store/x:1.torcx.tgz"));
    let cfg = config(root);
    let archives = store::scan(&cfg);
    let x = id("x", "1");

    // Its own generator copy, and its own unit placed by an earlier apply
    // of this boot (the generator runs again on a daemon-reload).
    put(root, "run/systemd/generator/x.service", X_SERVICE);
    let p = generator::plan_image(&cfg, &archives, &torcx::sys::systemd::UnitDirs::read(&cfg), &x).unwrap();
    assert_eq!(p.placements.len(), 5);
    put(root, "run/systemd/system/x.service", X_SERVICE);
    let mut rec = record_of(&p.placements);
    rec.name = "x".into();
    rec.write(&cfg).unwrap();
    generator::plan_image(&cfg, &archives, &torcx::sys::systemd::UnitDirs::read(&cfg), &x).unwrap();
    // What another generator wrote is the host's.
    put(root, "run/systemd/generator.late/x.service", X_SERVICE);
    assert_eq!(
        err_text(generator::plan_image(&cfg, &archives, &torcx::sys::systemd::UnitDirs::read(&cfg), &x)),
        "image x:1: unit x.service (from /lib/systemd/system/x.service) conflicts with \
         /run/systemd/generator.late/x.service on the host"
    );
    std::fs::remove_file(root.join("run/systemd/generator.late/x.service")).unwrap();

    put(root, "etc/systemd/system/x.service", "[Service]\nExecStart=/bin/true\n");
    assert_eq!(
        err_text(generator::plan_image(&cfg, &archives, &torcx::sys::systemd::UnitDirs::read(&cfg), &x)),
        "image x:1: unit x.service (from /lib/systemd/system/x.service) conflicts with \
         /etc/systemd/system/x.service on the host"
    );
}

// ------------------------------------------------ only the units it ships

/// The unit placements of an image tree made of `files` and `links`, whose
/// manifest lists `units`.
fn plan_of(
    cfg: &Config,
    dir: &Path,
    files: &[(&str, &str)],
    links: &[(&str, &str)],
    units: &[&str],
) -> anyhow::Result<Vec<Placement>> {
    put(dir, ".torcx/manifest.json", manifest_json(serde_json::json!({ "units": units })));
    for (p, d) in files {
        put(dir, p, d);
    }
    for (p, t) in links {
        link(dir, p, t);
    }
    let src = Tree::open(dir)?;
    let (m, _) = torcx::tree::scan::manifest_or_scan(&src)?;
    let x = id("x", "1");
    attach::plan(cfg, &origin(&x, CopyMode::Copy), &src, &m, true)
}

/// Every way an image could reach a unit it does not ship is refused, in
/// the plan the generator, apply, attach, reattach and profile check share.
#[test]
fn an_image_changes_only_the_units_it_ships() {
    const S: &str = "/lib/systemd/system";
    // (what, files, links, the manifest's units, the refusal)
    type Files<'a> = Vec<(&'a str, &'a str)>;
    let cases: Vec<(&str, Files, Files, Vec<&str>, &str)> = vec![
        (
            "a prefix unit",
            vec![
                ("lib/systemd/system/systemd-.service", "[Service]\n"),
                ("lib/systemd/system/systemd-.service.d/evil.conf", "[Service]\nExecStartPre=/evil\n"),
            ],
            vec![],
            vec!["/lib/systemd/system/systemd-.service", "/lib/systemd/system/systemd-.service.d"],
            "manifest units entry /lib/systemd/system/systemd-.service: systemd-.service ends in '-': systemd applies its drop-ins to every unit whose name starts so",
        ),
        (
            "a drop-in for a whole type",
            vec![("lib/systemd/system/service.d/evil.conf", "[Service]\nExecStartPre=/evil\n")],
            vec![],
            vec!["/lib/systemd/system/service.d"],
            "manifest units entry /lib/systemd/system/service.d: drop-in directory service.d changes service, which the image does not ship",
        ),
        (
            "a file named like a type, to ship a drop-in for it",
            vec![("lib/systemd/system/service", "x"), ("lib/systemd/system/service.d/evil.conf", "[Service]\n")],
            vec![],
            vec!["/lib/systemd/system/service", "/lib/systemd/system/service.d"],
            "manifest units entry /lib/systemd/system/service: service is not a unit name",
        ),
        (
            "dependencies for a host unit",
            vec![("lib/systemd/system/x.service", "[Service]\n")],
            vec![("lib/systemd/system/ssh.service.requires/x.service", "../x.service")],
            vec!["/lib/systemd/system/x.service", "/lib/systemd/system/ssh.service.requires"],
            "manifest units entry /lib/systemd/system/ssh.service.requires: dependency directory ssh.service.requires changes ssh.service, which the image does not ship",
        ),
        (
            "a host unit pulled in by a target",
            vec![("lib/systemd/system/x.service", "[Service]\n")],
            vec![("lib/systemd/system/multi-user.target.wants/debug-shell.service", "../debug-shell.service")],
            vec!["/lib/systemd/system/x.service", "/lib/systemd/system/multi-user.target.wants"],
            "manifest units entry /lib/systemd/system/multi-user.target.wants/debug-shell.service: multi-user.target.wants/debug-shell.service pulls in debug-shell.service, which the image does not ship",
        ),
        (
            "a host unit pulled in by its name through a link to the image's own",
            vec![("lib/systemd/system/x.service", "[Service]\n")],
            vec![("lib/systemd/system/multi-user.target.wants/debug-shell.service", "../x.service")],
            vec!["/lib/systemd/system/x.service", "/lib/systemd/system/multi-user.target.wants"],
            "manifest units entry /lib/systemd/system/multi-user.target.wants/debug-shell.service: multi-user.target.wants/debug-shell.service pulls in debug-shell.service, which the image does not ship",
        ),
        (
            "a unit name with an escape sequence",
            vec![("lib/systemd/system/x\u{1b}[2J.service", "[Service]\n")],
            vec![],
            vec!["/lib/systemd/system/x\u{1b}[2J.service"],
            "manifest units entry /lib/systemd/system/x\u{1b}[2J.service: x\u{1b}[2J.service holds characters systemd does not allow",
        ),
        (
            "an instance name with a newline, of the image's own template",
            vec![("lib/systemd/system/x@.service", "[Service]\n")],
            vec![("lib/systemd/system/multi-user.target.wants/x@a\nb.service", "../x@.service")],
            vec!["/lib/systemd/system/x@.service", "/lib/systemd/system/multi-user.target.wants"],
            "manifest units entry /lib/systemd/system/multi-user.target.wants/x@a\nb.service: multi-user.target.wants/x@a\nb.service holds characters",
        ),
        (
            "a directory that is neither",
            vec![("lib/systemd/system/x.service", "[Service]\n"), ("lib/systemd/system/stuff/a", "x")],
            vec![],
            vec!["/lib/systemd/system/x.service", "/lib/systemd/system/stuff"],
            "manifest units entry /lib/systemd/system/stuff: stuff is neither a drop-in nor a dependency directory",
        ),
    ];
    for (what, files, links, units, want) in cases {
        let t = tempfile::tempdir().unwrap();
        let cfg = config(&t.path().join("root"));
        let got = err_text(plan_of(&cfg, &t.path().join("img"), &files, &links, &units));
        assert!(got.starts_with(want), "{what}: {got}");
    }
    // What an image may do: enable its own units (and instances of its own
    // templates) from a target, and give its own units drop-ins and
    // dependencies.
    let t = tempfile::tempdir().unwrap();
    let cfg = config(&t.path().join("root"));
    let plan = plan_of(
        &cfg,
        &t.path().join("img"),
        &[
            ("lib/systemd/system/x.service", "[Service]\n"),
            ("lib/systemd/system/x@.service", "[Service]\n"),
            ("lib/systemd/system/x.service.d/more.conf", "[Service]\n"),
        ],
        &[
            ("lib/systemd/system/multi-user.target.wants/x.service", "../x.service"),
            ("lib/systemd/system/multi-user.target.wants/x@one.service", "../x@.service"),
            ("lib/systemd/system/x.service.wants/x@two.service", "../x@.service"),
        ],
        &[
            &format!("{S}/x.service"),
            &format!("{S}/x@.service"),
            &format!("{S}/x.service.d"),
            &format!("{S}/multi-user.target.wants"),
            &format!("{S}/x.service.wants"),
        ],
    )
    .unwrap();
    assert!(plan.iter().any(|p| p.dest == Path::new("/run/systemd/system/multi-user.target.wants/x@one.service")));
}

/// Shadowing is refused in the forms systemd resolves: the same name, an
/// instance of a host template, a host alias of that name.
#[test]
fn shadowing_a_host_template_or_alias_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let cfg = config(&root);
    let plan = plan_of(
        &cfg,
        &t.path().join("img"),
        &[("lib/systemd/system/getty@tty1.service", "[Service]\n"), ("lib/systemd/system/gdm.service", "[Service]\n")],
        &[],
        &["/lib/systemd/system/getty@tty1.service", "/lib/systemd/system/gdm.service"],
    )
    .unwrap();
    let x = id("x", "1");
    attach::check_host_units(&cfg, &x, &plan).unwrap();
    put(&root, "usr/lib/systemd/system/getty@.service", "[Service]\n");
    assert_eq!(
        err_text(attach::check_host_units(&cfg, &x, &plan)),
        "image x:1: unit getty@tty1.service (from /lib/systemd/system/getty@tty1.service) shadows an instance of \
         the host's template /usr/lib/systemd/system/getty@.service"
    );
    std::fs::remove_file(root.join("usr/lib/systemd/system/getty@.service")).unwrap();
    link(&root, "etc/systemd/system/display-manager.service", "/usr/lib/systemd/system/gdm.service");
    assert_eq!(
        err_text(attach::check_host_units(&cfg, &x, &plan)),
        "image x:1: unit gdm.service (from /lib/systemd/system/gdm.service) would become the host's alias \
         /etc/systemd/system/display-manager.service"
    );
}

// ------------------------------------------------------------- escaping

/// The seal is sourced by shells: what it holds comes back as it was, and
/// nothing in it runs.
#[test]
fn the_seal_expands_nothing_when_sourced() {
    let t = tempfile::tempdir().unwrap();
    let cfg = config(&t.path().join("root"));
    let canary = t.path().join("ran");
    let nasty = format!("a$(touch {c})`touch {c}`\"\\ $HOME\nb", c = canary.display());
    let seal = torcx::boot::apply::seal_text(&cfg, &["vendor".to_string()], Some(&nasty));
    let file = t.path().join("seal");
    std::fs::write(&file, &seal).unwrap();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(". \"$1\" && printf %s \"$TORCX_UPPER_PROFILE\"")
        .arg("sh")
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!canary.exists(), "sourcing the seal ran a command");
    assert_eq!(String::from_utf8_lossy(&out.stdout), nasty.replace('\n', "\\n"));
}

/// A run directory that would need quoting in a unit file is refused when
/// the configuration is read, naming it.
#[test]
fn a_run_dir_unit_files_cannot_hold_is_refused() {
    let t = tempfile::tempdir().unwrap();
    for bad in ["/run/tor cx", "/run/%n", "/run/x\ny"] {
        let env = |k: &str| (k == "TORCX_RUNDIR").then(|| bad.to_string());
        let e = Config::load_with_env(&Overrides { root: Some(t.path().into()), stores: vec![] }, &env).unwrap_err();
        assert!(format!("{e:#}").starts_with(&format!("run_dir {bad:?}: ")), "{e:#}");
    }
}

/// A unit over the generator's 1 MiB read bound is refused by apply's plan
/// too (the generator never reads it, so it could not plan it).
#[test]
fn a_unit_over_the_read_bound_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let cfg = config(&t.path().join("root"));
    let big = format!("[Service]\n#{}\n", "x".repeat(1 << 20));
    let e = err_text(plan_of(
        &cfg,
        &t.path().join("img"),
        &[("lib/systemd/system/x.service", big.as_str())],
        &[],
        &["/lib/systemd/system/x.service"],
    ));
    assert!(
        e.ends_with(&format!(
            "/lib/systemd/system/x.service: {} bytes refused for a unit (at most 1048576)",
            big.len()
        )),
        "{e}"
    );
}

/// The drop-in names the archive in a comment: a newline in its path (an
/// admin's `attach ./odd\ndir/x.torcx.tgz`) cannot start a directive.
#[test]
fn the_dropin_comment_cannot_inject_a_directive() {
    let t = tempfile::tempdir().unwrap();
    let cfg = config(&t.path().join("root"));
    let x = id("x", "1");
    let archive = PathBuf::from("/tmp/odd\n[Service]\nExecStartPre=/evil $X %n/x:1.torcx.tgz");
    let o = Origin {
        id: &x,
        archive: &archive,
        tree: PathBuf::from("/run/torcx/unpack/x"),
        copy: CopyMode::Copy,
        portable: None,
    };
    let d = attach::dropin(&cfg, &o, "x.service");
    let first = d.lines().next().unwrap();
    assert_eq!(
        first,
        "# Attached by torcx from x:1 (/tmp/odd\\x0a[Service]\\x0aExecStartPre=/evil $X %n/x:1.torcx.tgz); do not edit."
    );
    assert!(!d.contains("ExecStartPre=/evil\n") && !d.lines().any(|l| l.starts_with("ExecStartPre")), "{d}");
}
