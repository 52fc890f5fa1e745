//! squashfs and erofs images: mounted read-only, `nodev,nosuid`, from a loop
//! device set up with LOOP_CONFIGURE (erofs straight from the file where the
//! kernel can), released on detach; every squashfs compressor; squashfs
//! winning over a tar of the same image; and the generator reading their
//! units from a read-only root, without a mount.

mod common;

use common::*;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The tree of image `demo`: a binary, a unit enabled by a `.wants` link, a
/// hard link, an internal symlink.
fn demo_tree(t: &TestRoot, reference: &str) -> Image {
    let img = Image::new(t, "demo", reference);
    img.exec("bin/demo", format!("#!/bin/sh\necho demo {reference}\n"))
        .file("lib/systemd/system/demo.service", "[Service]\nExecStart=/run/torcx/bin/demo\n")
        .symlink("lib/systemd/system/multi-user.target.wants/demo.service", "../demo.service")
        .file("share/data", "data\n")
        .hardlink("share/data-again", "share/data")
        .symlink("share/link", "data")
        .manifest(json!({"bin": ["/bin/demo"], "units": ["/lib/systemd/system/demo.service", "/lib/systemd/system/multi-user.target.wants"]}));
    img
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn squashfs(dir: &Path, dest: &Path, comp: &str) {
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    run(Command::new("mksquashfs").arg(dir).arg(dest).args([
        "-comp",
        comp,
        "-noappend",
        "-all-root",
        "-quiet",
        "-no-progress",
    ]));
}

fn erofs(dir: &Path, dest: &Path, compress: bool) {
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    let mut c = Command::new("mkfs.erofs");
    if compress {
        c.arg("-zlz4hc");
    }
    run(c.args(["--all-root", "-T0", "--quiet"]).arg(dest).arg(dir));
}

fn store_file(t: &TestRoot, name: &str) -> PathBuf {
    t.path(USER_STORE).join(name)
}

/// Applies, checks the mount and the tree, then detaches and checks the
/// mount and the loop device are gone.
fn apply_and_detach(t: &TestRoot, archive: &Path, fstype: &str) {
    t.vendor_profile(&[("demo", "1")]);
    let mut ns = Ns::new(t);
    let ap = ns.apply();
    // What only exists while the namespace does, checked inside it.
    ns.sh("test \"$(\"$ROOT/run/torcx/unpack/demo/bin/demo\")\" = 'demo 1'");
    ns.sh("test \"$(readlink \"$ROOT/run/torcx/bin/demo\")\" = /run/torcx/unpack/demo/bin/demo");
    ns.sh("test -f \"$ROOT/run/systemd/system/demo.service.d/10-torcx.conf\" && test -f \"$ROOT/run/metadata/torcx\"");
    ns.sh(&format!("grep -q '\"format\": \"{fstype}\"' \"$ROOT/run/torcx/attached/demo.json\""));
    ns.sh(&format!("losetup -j '{}' | grep -q . || [ {fstype} = erofs ]", archive.display()));
    let det = ns.torcx(&["detach", "demo"]);
    let steps = ns.run();
    let s = &steps[ap];
    assert_eq!(s.code, 0, "{}", s.describe());
    let m = s.mount_at(&t.path("run/torcx/unpack/demo")).unwrap_or_else(|| panic!("no mount: {}", s.describe()));
    assert_eq!(m.fstype, fstype);
    for o in ["ro", "nodev", "nosuid"] {
        assert!(m.options.contains(&o.to_string()), "{o} missing from {:?}", m.options);
    }
    let tree = s.tree("demo");
    assert_eq!(tree["share/link"].target, "data");
    assert_eq!(tree["share/data"].ino, tree["share/data-again"].ino, "the hard link became two files");
    let s = &steps[det];
    assert_eq!(s.code, 0, "{}", s.describe());
    assert!(s.mount_at(&t.path("run/torcx/unpack/demo")).is_none());
    assert!(!t.exists("run/torcx/bin/demo") && !t.exists("run/systemd/system/demo.service"));
}

#[test]
fn squashfs_with_every_compressor_mounts_read_only_and_detaches() {
    require_root("squashfs_with_every_compressor_mounts_read_only_and_detaches");
    for comp in ["gzip", "xz", "lz4", "zstd"] {
        let t = TestRoot::new();
        let img = demo_tree(&t, "1");
        let a = store_file(&t, "demo:1.torcx.squashfs");
        squashfs(&img.dir, &a, comp);
        apply_and_detach(&t, &a, "squashfs");
        loop_released(&a);
    }
}

#[test]
fn erofs_plain_and_compressed_mount_read_only_and_detach() {
    require_root("erofs_plain_and_compressed_mount_read_only_and_detach");
    for compress in [false, true] {
        let t = TestRoot::new();
        let img = demo_tree(&t, "1");
        let a = store_file(&t, "demo:1.torcx.erofs");
        erofs(&img.dir, &a, compress);
        apply_and_detach(&t, &a, "erofs");
        loop_released(&a);
    }
}

/// No loop device is left over the archive.
fn loop_released(archive: &Path) {
    let out = Command::new("losetup").arg("-j").arg(archive).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "", "a loop device is still attached to {}", archive.display());
}

#[test]
fn squashfs_wins_over_a_tar_of_the_same_image() {
    require_root("squashfs_wins_over_a_tar_of_the_same_image");
    let t = TestRoot::new();
    let tar_img = demo_tree(&t, "1");
    tar_img.pack(&t, VENDOR_STORE, Fmt::Tgz);
    let t2 = TestRoot::new();
    let sq = demo_tree(&t2, "1");
    sq.file("share/data", "from squashfs\n");
    squashfs(&sq.dir, &store_file(&t, "demo:1.torcx.squashfs"), "gzip");
    t.vendor_profile(&[("demo", "1")]);
    let s = apply_once(&t, &[]);
    assert_eq!(s.code, 0, "{}", s.describe());
    let m = s.mount_at(&t.path("run/torcx/unpack/demo")).unwrap();
    assert_eq!(m.fstype, "squashfs");
    let rec = read_json(&t.path("run/torcx/attached/demo.json"));
    assert_eq!(rec["value"]["archive"], "/var/lib/torcx/store/demo:1.torcx.squashfs");
}

/// Tar and squashfs images attached side by side at a first boot: the
/// squashfs index readers are child processes, and a child holds a copy of
/// every open file from fork until its exec is done, those being written
/// into a tar image's tree included. A tree remounted read-only then was
/// busy: 4 boots in 40 failed an image ("remounting ... read-only: Device
/// or resource busy"). Now remounting waits for children being started,
/// and gives the kernel's release of their copies a moment.
#[test]
fn tar_and_squashfs_images_side_by_side_always_remount_read_only() {
    require_root("tar_and_squashfs_images_side_by_side_always_remount_read_only");
    require_tool("tar_and_squashfs_images_side_by_side_always_remount_read_only", "mksquashfs", "squashfs-tools");
    let t = TestRoot::new();
    let mut profile = vec![];
    for i in 0..6 {
        let name = format!("t{i}");
        let img = Image::new(&t, &name, "1");
        img.manifest(json!({"bin": [format!("/bin/{name}")]})).exec(&format!("bin/{name}"), "#!/bin/sh\n");
        // Many small files: the unpack has files open most of its time.
        for f in 0..800 {
            img.file(&format!("data/d{}/f{f}", f % 40), format!("{f:0>200}"));
        }
        img.pack(&t, USER_STORE, Fmt::Tgz);
        let sq_name = format!("s{i}");
        let t2 = TestRoot::new();
        let sq = Image::new(&t2, &sq_name, "1");
        sq.manifest(json!({"bin": [format!("/bin/{sq_name}")]})).exec(&format!("bin/{sq_name}"), "#!/bin/sh\n");
        squashfs(&sq.dir, &store_file(&t, &format!("{sq_name}:1.torcx.squashfs")), "gzip");
        profile.push(sq_name);
        profile.push(name);
    }
    let pairs: Vec<(&str, &str)> = profile.iter().map(|n| (n.as_str(), "1")).collect();
    t.vendor_profile(&pairs);
    for round in 0..60 {
        let mut ns = Ns::new(&t);
        // A first boot every time: an empty /run, and no cache entry to
        // vouch for the squashfs images, so each is read by a child.
        ns.sh("mount -t tmpfs -o mode=755 run \"$ROOT/run\" && rm -rf \"$ROOT/var/lib/torcx/cache\"");
        let ap = ns.apply();
        let steps = ns.run();
        let s = &steps[ap];
        assert_eq!(s.code, 0, "round {round}: {}", s.describe());
        assert!(!s.stderr.contains("busy") && !s.stderr.contains("still in use"), "round {round}: {}", s.describe());
    }
}

#[test]
fn device_nodes_in_a_squashfs_stay_unusable() {
    require_root("device_nodes_in_a_squashfs_stay_unusable");
    let t = TestRoot::new();
    let img = demo_tree(&t, "1");
    // /dev/null's numbers: harmless, and openable only where devices are allowed.
    run(Command::new("mknod").arg(img.dir.join("share/null")).args(["c", "1", "3"]));
    let a = store_file(&t, "demo:1.torcx.squashfs");
    squashfs(&img.dir, &a, "gzip");
    std::fs::remove_file(img.dir.join("share/null")).unwrap();
    t.vendor_profile(&[("demo", "1")]);
    let mut ns = Ns::new(&t);
    let ap = ns.apply();
    ns.sh("if cat \"$ROOT/run/torcx/unpack/demo/share/null\" 2>/dev/null; then echo 'device opened' >&2; exit 1; fi");
    ns.sh("test -c \"$ROOT/run/torcx/unpack/demo/share/null\"");
    let steps = ns.run();
    assert_eq!(steps[ap].code, 0, "{}", steps[ap].describe());
    let m = steps[ap].mount_at(&t.path("run/torcx/unpack/demo")).unwrap();
    assert!(m.options.contains(&"nodev".to_string()));
}

#[test]
fn generator_reads_squashfs_and_erofs_units_from_a_read_only_root() {
    require_root("generator_reads_squashfs_and_erofs_units_from_a_read_only_root");
    for fmt in ["squashfs", "erofs"] {
        let t = TestRoot::new();
        let img = demo_tree(&t, "1");
        let a = store_file(&t, &format!("demo:1.torcx.{fmt}"));
        if fmt == "squashfs" {
            squashfs(&img.dir, &a, "zstd");
        } else {
            erofs(&img.dir, &a, true);
        }
        t.vendor_profile(&[("demo", "1")]);
        let out = t.scratch("gen-out");
        let mut ns = Ns::new(&t);
        ns.sh("mount --bind \"$ROOT\" \"$ROOT\" && mount -o remount,bind,ro \"$ROOT\"");
        ns.generator(&["--root", t.root.to_str().unwrap(), out.to_str().unwrap()]);
        let s = ns.run().pop().unwrap();
        assert_eq!(s.code, 0, "{fmt}: {}", s.describe());
        assert_eq!(s.mounts_before, s.mounts_after, "{fmt}: the generator mounted something");
        assert_eq!(read(&out.join("demo.service")), "[Service]\nExecStart=/run/torcx/bin/demo\n");
        assert!(
            read(&out.join("demo.service.d/10-torcx.conf"))
                .contains(&format!("(/var/lib/torcx/store/demo:1.torcx.{fmt})"))
        );
        assert_eq!(
            std::fs::read_link(out.join("multi-user.target.wants/demo.service")).unwrap(),
            Path::new("../demo.service")
        );
        assert!(std::fs::symlink_metadata(out.join("sysinit.target.wants/torcx-apply.service")).is_ok());
    }
}

#[test]
fn runtime_attach_of_a_squashfs_by_path_and_detach_releases_the_loop() {
    require_root("runtime_attach_of_a_squashfs_by_path_and_detach_releases_the_loop");
    let t = TestRoot::new();
    let img = demo_tree(&t, "1");
    let a = t.scratch("archives").join("demo:1.torcx.squashfs");
    squashfs(&img.dir, &a, "gzip");
    let mut ns = Ns::new(&t);
    let att = ns.torcx(&["attach", a.to_str().unwrap()]);
    let det = ns.torcx(&["detach", "demo"]);
    let steps = ns.run();
    let s = &steps[att];
    assert_eq!(s.code, 0, "{}", s.describe());
    let rec = &s.json()["value"]["attachment"];
    assert!(rec["loop_device"].as_str().unwrap().starts_with("/dev/loop"), "{rec}");
    assert_eq!(steps[det].code, 0, "{}", steps[det].describe());
    loop_released(&a);
}

#[test]
fn a_squashfs_with_a_symlink_out_of_the_tree_is_refused() {
    require_root("a_squashfs_with_a_symlink_out_of_the_tree_is_refused");
    let t = TestRoot::new();
    let img = demo_tree(&t, "1");
    img.symlink("share/hostetc", "../../../../../../etc");
    let a = store_file(&t, "demo:1.torcx.squashfs");
    squashfs(&img.dir, &a, "gzip");
    t.vendor_profile(&[("demo", "1")]);
    let s = apply_once(&t, &[]);
    assert_eq!(s.code, 1, "{}", s.describe());
    assert!(s.stderr.contains("entry \"share/hostetc\": symlink resolves outside the image"), "{}", s.describe());
    assert!(s.mount_at(&t.path("run/torcx/unpack/demo")).is_none());
    loop_released(&a);
}

/// A later boot mounts an image an earlier apply checked without checking
/// it again (the generator cache vouches for the very file), but only that
/// file: the same name, inode, size and mtime with other bytes (written in
/// place, the mtime put back) changes its ctime, and the next apply reads
/// and walks it again, and refuses its escaping link.
#[test]
fn an_image_is_checked_again_when_its_file_changes_in_place() {
    require_root("an_image_is_checked_again_when_its_file_changes_in_place");
    let t = TestRoot::new();
    let good = demo_tree(&t, "1");
    let a = store_file(&t, "demo:1.torcx.squashfs");
    squashfs(&good.dir, &a, "gzip");
    // (Another reference only for a directory of its own to build in.)
    let evil = demo_tree(&t, "2");
    evil.symlink("share/hostetc", "../../../../../../etc");
    let bad = t.scratch("evil").join("demo.squashfs");
    squashfs(&evil.dir, &bad, "gzip");
    assert_eq!(
        std::fs::metadata(&a).unwrap().len(),
        std::fs::metadata(&bad).unwrap().len(),
        "mksquashfs pads to 4 KiB"
    );
    t.vendor_profile(&[("demo", "1")]);
    std::fs::create_dir_all(t.path("run")).unwrap();
    let first = apply_once(&t, &[]);
    assert_eq!(first.code, 0, "{}", first.describe());
    let reboot = "rm -rf \"$ROOT/run\" && mkdir \"$ROOT/run\"";
    let mut ns = Ns::new(&t);
    ns.sh(reboot);
    let later = ns.apply();
    let later = &ns.run()[later];
    assert_eq!(later.code, 0, "{}", later.describe());
    // The same inode, size and mtime; other bytes, so another ctime.
    let keep = t.scratch("evil").join("mtime");
    run(Command::new("touch").arg("-r").arg(&a).arg(&keep));
    run(Command::new("dd")
        .arg(format!("if={}", bad.display()))
        .arg(format!("of={}", a.display()))
        .args(["conv=notrunc", "status=none"]));
    run(Command::new("touch").arg("-r").arg(&keep).arg(&a));
    let mut ns = Ns::new(&t);
    ns.sh(reboot);
    let changed = ns.apply();
    let s = &ns.run()[changed];
    assert_eq!(s.code, 1, "{}", s.describe());
    assert_contains(&s.stderr, "entry \"share/hostetc\": symlink resolves outside the image", s);
    loop_released(&a);
}

/// A later boot plans a squashfs image from what its first apply looked up
/// in the mounted tree (kept in the generator cache with its units), not
/// from the tree: the same file, the same answers, the same attachment.
/// Answers the tree could not have given are not used.
#[test]
fn a_later_boot_plans_a_squashfs_image_from_its_cached_lookups() {
    require_root("a_later_boot_plans_a_squashfs_image_from_its_cached_lookups");
    let t = TestRoot::new();
    let img = demo_tree(&t, "1");
    let a = store_file(&t, "demo:1.torcx.squashfs");
    squashfs(&img.dir, &a, "gzip");
    t.vendor_profile(&[("demo", "1")]);
    std::fs::create_dir_all(t.path("run")).unwrap();
    let first = apply_once(&t, &[]);
    assert_eq!(first.code, 0, "{}", first.describe());
    let placed = |_: &Step| {
        let mut files = read_json(&t.path("run/torcx/attached/demo.json"))["value"]["files"].clone();
        files.as_array_mut().unwrap().sort_by_key(|f| f["path"].to_string());
        files
    };
    let first_files = placed(&first);
    let cache = t.path("var/lib/torcx/cache/generator/demo:1.json");
    let mut entry = read_json(&cache);
    assert_eq!(entry["lookups"]["stat"]["bin/demo"], "file", "{entry:#}");
    assert_eq!(entry["lookups"]["lstat"][".torcx/manifest.json"], "file", "{entry:#}");
    let reboot = "rm -rf \"$ROOT/run\" && mkdir \"$ROOT/run\"";
    let later = |t: &TestRoot| {
        let mut ns = Ns::new(t);
        ns.sh(reboot);
        // Verbose: a cache entry (or part) not used is said at info level.
        let i = ns.torcx(&["-v", "apply"]);
        ns.run().swap_remove(i)
    };
    let s = later(&t);
    assert_eq!(s.code, 0, "{}", s.describe());
    assert_eq!(placed(&s), first_files);
    // The answers are the ones used: the cache saying the binary is gone
    // fails the image as the tree would...
    entry["lookups"]["stat"]["bin/demo"] = serde_json::Value::Null;
    std::fs::write(&cache, entry.to_string()).unwrap();
    let s = later(&t);
    assert_eq!(s.code, 1, "{}", s.describe());
    assert_contains(&s.stderr, "/bin/demo", &s);
    assert_contains(&s.stderr, "does not exist in the image", &s);
    // ...but a name no directory can hold is not believed: the tree answers.
    entry["lookups"]["stat"]["bin/demo"] = "file".into();
    entry["lookups"]["list"]["bin"] = json!([["../../../etc/evil", "file"]]);
    std::fs::write(&cache, entry.to_string()).unwrap();
    let s = later(&t);
    assert_eq!(s.code, 0, "{}", s.describe());
    assert_eq!(placed(&s), first_files);
    assert!(!t.path("etc/evil").exists() && !t.path("run/etc/evil").exists());
    assert_contains(&s.stderr, "image demo:1: cached lookups not used: ", &s);
    assert_contains(&s.stderr, "is not a name in a directory", &s);
    // Nor a symlink where symlinks are followed (it once stopped the boot).
    entry["lookups"]["list"] = json!({});
    entry["lookups"]["stat"]["bin/demo"] = json!({"symlink": "demo2"});
    std::fs::write(&cache, entry.to_string()).unwrap();
    let s = later(&t);
    assert_eq!(s.code, 0, "{}", s.describe());
    assert_eq!(placed(&s), first_files);
    assert_contains(&s.stderr, "a symlink where symlinks are followed", &s);
    // A truncated entry is no entry: the image is checked and planned from
    // its file again, the same.
    let text = std::fs::read(&cache).unwrap();
    std::fs::write(&cache, &text[..text.len() / 2]).unwrap();
    let s = later(&t);
    assert_eq!(s.code, 0, "{}", s.describe());
    assert_eq!(placed(&s), first_files);
    loop_released(&a);
}

/// Archives over 8 MiB are read ahead on a thread of their own: a tar.zst
/// and a tgz made by GNU tar unpack byte for byte, and the same archives cut
/// short fail as corrupt, naming the archive, with nothing of them left.
#[test]
fn large_tar_archives_read_ahead_unpack_whole_and_cut_short_fail_cleanly() {
    require_root("large_tar_archives_read_ahead_unpack_whole_and_cut_short_fail_cleanly");
    let t = TestRoot::new();
    let blob = noise(9 << 20);
    let mut names = vec![];
    for (name, fmt) in [("bigzst", Fmt::Zst), ("bigtgz", Fmt::Tgz), ("cutzst", Fmt::Zst), ("cuttgz", Fmt::Tgz)] {
        let img = Image::new(&t, name, "1");
        img.manifest(json!({"bin": [format!("/bin/{name}")]})).exec(&format!("bin/{name}"), "#!/bin/sh\n");
        img.file("share/blob", &blob);
        let p = img.pack(&t, USER_STORE, fmt);
        assert!(std::fs::metadata(&p).unwrap().len() > 8 << 20, "{name}: not over the read-ahead size");
        if name.starts_with("cut") {
            // Cut in the middle of the blob: past the first read-ahead chunks.
            let bytes = std::fs::read(&p).unwrap();
            std::fs::write(&p, &bytes[..bytes.len() * 2 / 3]).unwrap();
        }
        names.push((name, img));
    }
    let profile: Vec<(&str, &str)> = names.iter().map(|(n, _)| (*n, "1")).collect();
    t.vendor_profile(&profile);
    let staged = t.base.join("stage/bigzst:1/share/blob");
    let mut ns = Ns::new(&t);
    let ap = ns.apply();
    for n in ["bigzst", "bigtgz"] {
        ns.sh(&format!("cmp \"$ROOT/run/torcx/unpack/{n}/share/blob\" '{}'", staged.display()));
    }
    let steps = ns.run();
    let s = &steps[ap];
    assert_eq!(s.code, 1, "{}", s.describe());
    let doc = s.json();
    let images = doc["value"]["images"].as_array().unwrap_or_else(|| panic!("{doc:#}"));
    for (name, fmt) in [("cutzst", "tar.zst"), ("cuttgz", "tgz")] {
        let i = images.iter().find(|i| i["name"] == name).unwrap_or_else(|| panic!("{name}: {doc:#}"));
        assert_eq!(i["kind"], "corrupt", "{name}: {i:#}");
        let err = i["error"].as_str().unwrap();
        assert!(err.starts_with(&format!("image {name}:1 (/var/lib/torcx/store/{name}:1.torcx.{fmt})")), "{err}");
        assert!(!t.exists(&format!("run/torcx/bin/{name}")) && !t.exists(&format!("run/torcx/attached/{name}.json")));
    }
    for name in ["bigzst", "bigtgz"] {
        let i = images.iter().find(|i| i["name"] == name).unwrap();
        assert_eq!(i["state"], "attached", "{name}: {i:#}");
    }
    assert!(s.mount_at(&t.path("run/torcx/unpack/cutzst")).is_none() && !t.exists("run/torcx/unpack/cutzst"));
}
