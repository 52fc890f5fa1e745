//! Hostile archives: each must fail its image with the entry named, leave no
//! mount and no file of the image behind, and write nothing outside the
//! image tree (a canary directory sits next to the root, and the root is
//! compared before and after).

mod common;

use common::*;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

const ARCHIVE: &str = "/var/lib/torcx/store/evil:1.torcx.tgz";
const ARCHIVE_ZST: &str = "/var/lib/torcx/store/evil:1.torcx.tar.zst";

/// Ordinary entries first, so the extractor has written part of the tree
/// (and the manifest would place a binary and a unit) before the hostile
/// entries come.
fn prelude() -> Vec<Value> {
    vec![
        e_dir(".torcx"),
        e_file(
            ".torcx/manifest.json",
            json!({"kind": "image-manifest-v0", "value": {
                "bin": ["/bin/tool"], "units": ["/lib/systemd/system/evil.service"]}})
            .to_string()
            .as_bytes(),
        ),
        e_dir("bin"),
        e_file_mode("bin/tool", b"#!/bin/sh\necho tool\n", 0o755),
        e_dir("lib"),
        e_dir("lib/systemd"),
        e_dir("lib/systemd/system"),
        e_file("lib/systemd/system/evil.service", b"[Service]\nExecStart=/run/torcx/bin/tool\n"),
    ]
}

/// A root whose vendor profile lists `evil:1`, stored as `fmt` with the
/// prelude and then `hostile`.
fn hostile_root(fmt: Fmt, hostile: &[Value]) -> TestRoot {
    let t = TestRoot::new();
    let mut entries = prelude();
    entries.extend_from_slice(hostile);
    let archive = if fmt == Fmt::Tgz { ARCHIVE } else { ARCHIVE_ZST };
    py_tar(&t.path(archive), fmt, &entries);
    t.vendor_profile(&[("evil", "1")]);
    t
}

/// What apply may add to a root where the only image failed.
const RUN_SKELETON: [&str; 7] = [
    "run",
    "run/torcx",
    "run/torcx/.lock",
    "run/torcx/attached",
    "run/torcx/bin",
    "run/torcx/status.json",
    "run/torcx/unpack",
];

/// The image failed with `entry "ENTRY": ...CAUSE...` and left nothing.
#[track_caller]
fn assert_refused(t: &TestRoot, before: &BTreeMap<String, String>, s: &Step, archive: &str, entry: &str, cause: &str) {
    assert_eq!(s.code, 1, "{}", s.describe());
    let prefix = format!("torcx: error: image evil:1 ({archive}): entry \"{entry}\": ");
    let line = s
        .stderr
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix:?}\n{}", s.describe()));
    assert!(line.contains(cause), "expected {cause:?} in {line:?}");

    // No mount, no tree, no record, nothing placed, no seal.
    assert!(s.mounts_under(&t.root).is_empty(), "still mounted: {:?}", s.mounts_under(&t.root));
    assert!(s.unpack.is_empty(), "files left in the unpack dir: {:?}", s.unpack);
    let after = listing(&t.root);
    let new: BTreeSet<&str> = after.keys().filter(|k| !before.contains_key(*k)).map(String::as_str).collect();
    assert_eq!(new, RUN_SKELETON.into_iter().collect(), "unexpected files under the root");
    for d in ["run/torcx/attached", "run/torcx/bin", "run/torcx/unpack"] {
        assert_eq!(std::fs::read_dir(t.path(d)).unwrap().count(), 0, "{d} is not empty");
    }
    for (k, v) in before {
        assert_eq!(after.get(k), Some(v), "{k} changed");
    }

    // The status says so too.
    let st = read_json(&t.path("run/torcx/status.json"));
    assert_eq!(status_states(&st), pairs(&[("evil:1", "failed")]));
    assert_eq!(st["value"]["sealed"], false);
    let err = status_error(&st, "evil:1");
    assert!(err.contains(&format!("entry \"{entry}\"")) && err.contains(cause), "{err}");

    // Nothing next to the root either.
    t.assert_canary();
    let top: BTreeSet<String> = std::fs::read_dir(&t.base)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("ns-out-"))
        .collect();
    let allowed: BTreeSet<String> = ["root", "canary", "stage", "gen-bin"].iter().map(|s| s.to_string()).collect();
    assert!(top.is_subset(&allowed), "written next to the root: {top:?}");
}

/// Builds the hostile root, applies it once and checks the refusal.
fn refuse(fmt: Fmt, hostile: &[Value], env: &[(&str, &str)], entry: &str, cause: &str) {
    let t = hostile_root(fmt, hostile);
    check(&t, fmt, env, entry, cause);
}

fn check(t: &TestRoot, fmt: Fmt, env: &[(&str, &str)], entry: &str, cause: &str) {
    let before = listing(&t.root);
    let s = apply_once(t, env);
    let archive = if fmt == Fmt::Tgz { ARCHIVE } else { ARCHIVE_ZST };
    assert_refused(t, &before, &s, archive, entry, cause);
}

/// `../../../../../canary` from `ROOT/run/torcx/unpack/evil` is the canary.
const UP_TO_CANARY: &str = "../../../../../canary";

#[test]
fn dotdot_entries_are_refused() {
    require_root("dotdot_entries_are_refused");
    let file = format!("{UP_TO_CANARY}/pwned");
    refuse(Fmt::Tgz, &[e_file(&file, b"x")], &[], &file, "path traversal ('..') refused");
    let nested = "bin/../../../../../../canary/pwned".to_string();
    refuse(Fmt::Zst, &[e_file(&nested, b"x")], &[], &nested, "path traversal ('..') refused");
    let dir = format!("{UP_TO_CANARY}/newdir");
    refuse(Fmt::Tgz, &[e_dir(&dir)], &[], &format!("{dir}/"), "path traversal ('..') refused");
}

#[test]
fn absolute_entries_are_refused() {
    require_root("absolute_entries_are_refused");
    // The name is the canary's own path: harmless if it were ever followed.
    let t = hostile_root(Fmt::Tgz, &[]);
    let file = t.canary.join("pwned-abs").display().to_string();
    let mut entries = prelude();
    entries.push(e_file(&file, b"x"));
    py_tar(&t.path(ARCHIVE), Fmt::Tgz, &entries);
    check(&t, Fmt::Tgz, &[], &file, "absolute path refused");
}

#[test]
fn absolute_symlink_and_a_file_through_it_are_refused() {
    require_root("absolute_symlink_and_a_file_through_it_are_refused");
    // The link points at the canary (not at this machine's /etc, which a
    // broken extractor would then write into): the same attack, harmless.
    let t = hostile_root(Fmt::Tgz, &[]);
    let target = t.canary.display().to_string();
    let mut entries = prelude();
    entries.push(e_symlink("link", &target));
    entries.push(e_file("link/pwned", b"x"));
    py_tar(&t.path(ARCHIVE), Fmt::Tgz, &entries);
    check(&t, Fmt::Tgz, &[], "link", &format!("symlink to absolute path \"{target}\" points outside the image"));
}

#[test]
fn relative_symlink_escapes_are_refused() {
    require_root("relative_symlink_escapes_are_refused");
    refuse(
        Fmt::Tgz,
        &[e_symlink("up", UP_TO_CANARY), e_file("up/pwned", b"x")],
        &[],
        "up",
        &format!("symlink to \"{UP_TO_CANARY}\" points outside the image"),
    );
    // One level too many from a subdirectory.
    refuse(
        Fmt::Zst,
        &[e_symlink("bin/up", "../../canary")],
        &[],
        "bin/up",
        "symlink to \"../../canary\" points outside the image",
    );
    refuse(Fmt::Tgz, &[e_symlink("up", "../../..")], &[], "up", "points outside the image");
}

/// `x/y -> .` makes `x/y/y/...` stay in `x`, so `x/y/y/y/y/y/../../../../../..`
/// passes a lexical count of components yet climbs five levels above the tree.
fn chain() -> Vec<Value> {
    vec![e_dir("x"), e_symlink("x/y", "."), e_symlink("esc", "x/y/y/y/y/y/../../../../../../canary")]
}

#[test]
fn symlink_chain_escape_is_refused() {
    require_root("symlink_chain_escape_is_refused");
    // Alone: the kernel-checked resolution after unpacking catches it.
    refuse(Fmt::Tgz, &chain(), &[], "esc", "symlink resolves outside the image");
    // With a file written through it: refused at that entry.
    let mut h = chain();
    h.push(e_file("esc/pwned", b"x"));
    refuse(Fmt::Tgz, &h, &[], "esc/pwned", "writing through it is refused");
    // With a hard link taken through it.
    let mut h = chain();
    h.push(e_hardlink("stolen", &format!("esc/{CANARY_FILE}")));
    refuse(Fmt::Zst, &h, &[], "stolen", "writing through it is refused");
}

#[test]
fn writing_through_or_over_an_inner_symlink_is_refused() {
    require_root("writing_through_or_over_an_inner_symlink_is_refused");
    refuse(
        Fmt::Tgz,
        &[e_symlink("lnk", "bin"), e_file("lnk/other", b"x")],
        &[],
        "lnk/other",
        "writing through it is refused",
    );
    refuse(
        Fmt::Tgz,
        &[e_symlink("lnk", "bin/tool"), e_file("lnk", b"replaced")],
        &[],
        "lnk",
        "a file over an existing directory or symlink is refused",
    );
    refuse(
        Fmt::Tgz,
        &[e_symlink("lnk", "bin"), e_dir("lnk")],
        &[],
        "lnk/",
        "a directory over an existing symlink or file is refused",
    );
}

#[test]
fn hardlinks_out_of_the_image_are_refused() {
    require_root("hardlinks_out_of_the_image_are_refused");
    refuse(
        Fmt::Tgz,
        &[e_hardlink("hl", "/etc/passwd")],
        &[],
        "hl",
        "hard link to \"/etc/passwd\" points outside the image",
    );
    let up = format!("{UP_TO_CANARY}/{CANARY_FILE}");
    refuse(
        Fmt::Zst,
        &[e_hardlink("bin/hl", &up)],
        &[],
        "bin/hl",
        &format!("hard link to \"{up}\" points outside the image"),
    );
}

#[test]
fn hardlink_to_a_symlink_is_refused() {
    require_root("hardlink_to_a_symlink_is_refused");
    refuse(
        Fmt::Tgz,
        &[e_symlink("s", "bin/tool"), e_hardlink("hl", "s")],
        &[],
        "hl",
        "hard link to \"s\", which is not a regular file already in the image",
    );
    // Nor to a directory, nor to something that is not there.
    refuse(Fmt::Tgz, &[e_hardlink("hl", "bin")], &[], "hl", "not a regular file already in the image");
    refuse(Fmt::Tgz, &[e_hardlink("hl", "bin/later")], &[], "hl", "not a regular file already in the image");
}

#[test]
fn device_nodes_and_fifos_are_refused() {
    require_root("device_nodes_and_fifos_are_refused");
    refuse(Fmt::Tgz, &[e_dir("dev"), e_char("dev/null")], &[], "dev/null", "device node refused");
    refuse(Fmt::Zst, &[e_block("loop0")], &[], "loop0", "device node refused");
    refuse(Fmt::Tgz, &[e_fifo("bin/pipe")], &[], "bin/pipe", "FIFO refused");
}

/// Only a regular file carries data: a directory or a link declaring some
/// is refused, by name. The tar crate skipped that data, uncharged, where
/// GNU tar reads it as the next headers (found by an outside attack: 16 GiB
/// of a directory's "data", in a 1.5 MB file, passed a 1 MiB unpack limit).
#[test]
fn a_directory_or_a_link_with_data_is_refused() {
    require_root("a_directory_or_a_link_with_data_is_refused");
    let with_data = |mut e: Value| {
        e["data"] = json!("00".repeat(1024));
        e
    };
    let why = |kind: &str| format!("a {kind} with 1024 bytes of data: only a regular file carries data");
    refuse(Fmt::Tgz, &[with_data(e_dir("big"))], &[], "big/", &why("directory"));
    refuse(Fmt::Zst, &[with_data(e_symlink("s", "bin/tool"))], &[], "s", &why("symlink"));
    refuse(Fmt::Tgz, &[with_data(e_hardlink("h", "bin/tool"))], &[], "h", &why("hard link"));
}

#[test]
fn decompression_bomb_stops_at_the_limit() {
    require_root("decompression_bomb_stops_at_the_limit");
    for fmt in [Fmt::Tgz, Fmt::Zst] {
        let t = TestRoot::new();
        let img = Image::new(&t, "evil", "1");
        img.manifest(json!({"bin": ["/bin/tool"]})).exec("bin/tool", "#!/bin/sh\n").file("zeros", "");
        // 64 MiB of zeros (sparse here; tar stores every byte, gzip/zstd squash them).
        std::fs::OpenOptions::new().write(true).open(img.dir.join("zeros")).unwrap().set_len(64 << 20).unwrap();
        let archive = img.pack(&t, USER_STORE, fmt);
        assert!(std::fs::metadata(&archive).unwrap().len() < 1 << 20, "not a bomb");
        t.vendor_profile(&[("evil", "1")]);
        check(&t, fmt, &[("TORCX_UNPACK_LIMIT", "4M")], "./zeros", "unpacked size exceeds the limit");
    }
}

#[test]
fn setuid_and_setgid_bits_are_dropped() {
    require_root("setuid_and_setgid_bits_are_dropped");
    let mut h = vec![
        e_file_mode("bin/su-ish", b"#!/bin/sh\nid\n", 0o4755),
        e_file_mode("bin/sg-ish", b"#!/bin/sh\nid\n", 0o2711),
        e_file_mode("bin/both", b"#!/bin/sh\n", 0o6755),
    ];
    h.push(json!({"type": "dir", "name": "shared", "mode": 0o3777}));
    h.push(e_file_mode("shared/file", b"x", 0o1644));
    let t = hostile_root(Fmt::Tgz, &h);
    let s = apply_once(&t, &[]);
    assert_eq!(s.code, 0, "{}", s.describe());
    let tree = s.tree("evil");
    for (p, perm) in [
        ("bin/su-ish", 0o755),
        ("bin/sg-ish", 0o711),
        ("bin/both", 0o755),
        ("shared", 0o777),
        ("shared/file", 0o644),
        ("bin/tool", 0o755),
    ] {
        let e = tree.get(p).unwrap_or_else(|| panic!("{p} missing: {tree:?}"));
        assert_eq!(e.mode & 0o7000, 0, "{p} kept a special bit: {:o}", e.mode);
        assert_eq!(e.mode & 0o777, perm, "{p}: {:o}", e.mode);
    }
    let m = s.mount_at(&t.path("run/torcx/unpack/evil")).expect("not mounted");
    assert!(m.options.iter().any(|o| o == "nosuid"), "{m:?}");
    t.assert_canary();
}

#[test]
fn long_names_are_checked_too() {
    require_root("long_names_are_checked_too");
    // Names and link targets over 100 bytes live in extension records
    // (GNU `././@LongLink`, PAX `path`/`linkpath`), not in the header.
    let long = "d".repeat(120);
    let file = format!("{UP_TO_CANARY}/{long}");
    let target = format!("{UP_TO_CANARY}/{long}");
    for format in ["GNU", "PAX"] {
        for (h, entry, cause) in [
            (e_file(&file, b"x"), file.clone(), "path traversal ('..') refused".to_string()),
            (
                e_symlink(&format!("bin/{long}"), &target),
                format!("bin/{long}"),
                format!("symlink to \"{target}\" points outside the image"),
            ),
            (
                e_hardlink("hl", &target),
                "hl".to_string(),
                format!("hard link to \"{target}\" points outside the image"),
            ),
        ] {
            let t = hostile_root(Fmt::Tgz, &[]);
            let mut entries = prelude();
            entries.push(h);
            py_tar_format(&t.path(ARCHIVE), Fmt::Tgz, &entries, format);
            check(&t, Fmt::Tgz, &[], &entry, &cause);
        }
    }
}

#[test]
fn a_long_symlink_chain_out_of_the_tree_is_refused() {
    require_root("a_long_symlink_chain_out_of_the_tree_is_refused");
    // `d/s -> ..` is the root itself; twenty of them, then ten `..`, pass
    // the lexical check (depth 30), but leave the tree. The kernel's scoped
    // lookup counts such a chain twice and answers ELOOP, not EXDEV: that
    // must be refused too, not taken for a dangling link.
    let target = format!("{}{}etc", "d/s/".repeat(20), "../".repeat(10));
    refuse(Fmt::Tgz, &[e_dir("d"), e_symlink("d/s", ".."), e_symlink("hostetc", &target)], &[], "hostetc", "symlink");
}

#[test]
fn a_duplicate_entry_is_refused() {
    require_root("a_duplicate_entry_is_refused");
    // The generator would plan the first copy; tar would unpack the second.
    refuse(
        Fmt::Tgz,
        &[
            e_file("lib/systemd/system/x.service", b"[Service]\nExecStart=/a\n"),
            e_file("lib/systemd/system/x.service", b"[Service]\nExecStart=/b\n"),
        ],
        &[],
        "lib/systemd/system/x.service",
        "duplicate entry",
    );
}

/// A PAX `path` record holding a newline (found by an outside attack): the
/// tar crate dropped the record and used the 100-byte short name, so torcx
/// unpacked a different tree than Python or GNU tar show. Refused, by apply
/// and the generator alike, before the entry is read.
#[test]
fn a_pax_path_with_a_newline_is_refused() {
    require_root("a_pax_path_with_a_newline_is_refused");
    let t = hostile_root(Fmt::Tgz, &[]);
    let mut entries = prelude();
    entries.push(e_file(&format!("bin/{}\nother", "x".repeat(120)), b"x"));
    py_tar_format(&t.path(ARCHIVE), Fmt::Tgz, &entries, "PAX");
    let out = t.scratch("gen");
    let mut ns = Ns::new(&t);
    ns.generator(&["--root", t.root.to_str().unwrap(), out.to_str().unwrap()]);
    ns.apply();
    let steps = ns.run();
    let want = "a PAX path or link name with a newline (tar readers disagree on it): refused";
    assert_eq!(steps[0].code, 1, "{}", steps[0].describe());
    assert_contains(&steps[0].log, want, &steps[0]);
    assert_eq!(steps[1].code, 1, "{}", steps[1].describe());
    assert_contains(&steps[1].stderr, want, &steps[1]);
    assert!(steps[1].unpack.is_empty(), "{:?}", steps[1].unpack);
    assert!(!t.exists("run/systemd/system/evil.service"));
    t.assert_canary();
}

/// A FIFO where an archive, a record, the status or a cache entry should be
/// is refused (or passed over) at once, never waited on: archives named on
/// the command line (`attach`, `image inspect`, with or without an archive
/// name), a cache entry the generator and `apply` look at, a record under
/// `apply --force` (and `detach --force` then takes it away, as the error
/// says), and the status file under `status`.
#[test]
fn fifos_in_place_of_an_archive_or_a_record_are_refused_not_waited_on() {
    require_root("fifos_in_place_of_an_archive_or_a_record_are_refused_not_waited_on");
    let t = TestRoot::new();
    let dir = t.scratch("fifos");
    let names = ["f:1.torcx.tgz", "g:1.torcx.tar.zst", "h:1.torcx.squashfs", "i:1.torcx.erofs", "thing"];
    for f in names {
        assert!(std::process::Command::new("mkfifo").arg(dir.join(f)).status().unwrap().success());
    }
    let img = Image::new(&t, "a", "1");
    img.manifest(json!({"bin": ["/bin/a"], "units": ["/lib/systemd/system/a.service"]}))
        .exec("bin/a", "#!/bin/sh\n")
        .file("lib/systemd/system/a.service", "[Service]\nExecStart=/run/torcx/bin/a\n");
    img.pack(&t, VENDOR_STORE, Fmt::Tgz);
    t.vendor_profile(&[("a", "1")]);
    let cache = t.path("var/lib/torcx/cache/generator");
    std::fs::create_dir_all(&cache).unwrap();
    assert!(std::process::Command::new("mkfifo").arg(cache.join("a:1.json")).status().unwrap().success());
    let out = t.scratch("gen");
    let mut ns = Ns::new(&t);
    // A hang would end here, as exit 124.
    ns.wrap("timeout 30");
    let mut steps = vec![];
    for f in names {
        let p = dir.join(f).display().to_string();
        steps.push((p.clone(), ns.torcx(&["image", "inspect", &p])));
        if f != "thing" {
            steps.push((p.clone(), ns.torcx(&["attach", &p, "--no-reload"])));
        }
    }
    let generator = ns.generator(&["--root", t.root.to_str().unwrap(), out.to_str().unwrap()]);
    let first = ns.apply();
    ns.sh("rm \"$ROOT/run/torcx/attached/a.json\" && mkfifo \"$ROOT/run/torcx/attached/a.json\"");
    let again = ns.torcx(&["apply", "--force"]);
    let detach = ns.torcx(&["detach", "--force", "a"]);
    ns.sh("test ! -e \"$ROOT/run/torcx/attached/a.json\"");
    ns.sh("rm \"$ROOT/run/torcx/status.json\" && mkfifo \"$ROOT/run/torcx/status.json\"");
    let status = ns.torcx(&["status"]);
    let out = ns.run();
    for (p, i) in &steps {
        let s = &out[*i];
        assert_eq!(s.code, 1, "{}", s.describe());
        assert_contains(&s.stderr, &format!("{p}: not a regular file"), s);
    }
    // The cache entry is passed over: the image is planned from its archive.
    assert_eq!(out[generator].code, 0, "{}", out[generator].describe());
    assert!(t.scratch("gen").join("a.service").is_file());
    assert_eq!(out[first].code, 0, "{}", out[first].describe());
    let s = &out[again];
    assert_eq!(s.code, 1, "{}", s.describe());
    assert_contains(&s.stdout, "record /run/torcx/attached/a.json: not a regular file", s);
    assert_contains(&format!("{}{}", s.stdout, s.stderr), "`torcx detach --force a` removes it", s);
    assert_eq!(out[detach].code, 0, "{}", out[detach].describe());
    assert_eq!(out[status].code, 0, "{}", out[status].describe());
}

/// A root whose vendor profile selects one image, `a:1`: one binary.
fn root_with_one_binary() -> TestRoot {
    let t = TestRoot::new();
    let img = Image::new(&t, "a", "1");
    img.manifest(json!({"bin": ["/bin/a"]})).exec("bin/a", "#!/bin/sh\n");
    img.pack(&t, VENDOR_STORE, Fmt::Tgz);
    t.vendor_profile(&[("a", "1")]);
    t
}

/// `next-profile` names a profile: a FIFO there (or a link to a device) is
/// refused at once with what it is, by apply and by the generator alike,
/// as any unreadable `next-profile` is (a warning), and the lower profiles'
/// images are applied all the same.
#[test]
fn a_fifo_or_a_device_as_next_profile_is_refused_not_read() {
    require_root("a_fifo_or_a_device_as_next_profile_is_refused_not_read");
    let t = root_with_one_binary();
    let next = t.path("etc/torcx/next-profile");
    std::fs::create_dir_all(next.parent().unwrap()).unwrap();
    assert!(std::process::Command::new("mkfifo").arg(&next).status().unwrap().success());
    let out = t.scratch("gen");
    let mut ns = Ns::new(&t);
    // A hang would end here, as exit 124.
    ns.wrap("timeout 30");
    let generator = ns.generator(&["--root", t.root.to_str().unwrap(), out.to_str().unwrap()]);
    let fifo = ns.apply();
    ns.sh("rm \"$ROOT/etc/torcx/next-profile\" && ln -s /dev/zero \"$ROOT/etc/torcx/next-profile\"");
    let zero = ns.torcx(&["apply", "--force"]);
    let steps = ns.run();
    let why = "next profile /etc/torcx/next-profile: not a regular file; applying the lower profiles only";
    for i in [generator, fifo, zero] {
        let s = &steps[i];
        assert_eq!(s.code, 0, "{}", s.describe());
        assert_contains(&format!("{}{}", s.log, s.stderr), why, s);
    }
    assert!(t.scratch("gen").join("sysinit.target.wants").is_dir());
    assert!(t.path("run/torcx/bin/a").symlink_metadata().is_ok(), "the lower profile's image is applied");
}

/// A record is read up to 64 MiB: a larger one (sparse, so cheap to make)
/// is named with the limit, not read whole.
#[test]
fn a_record_over_the_limit_is_refused_with_the_limit_named() {
    require_root("a_record_over_the_limit_is_refused_with_the_limit_named");
    let t = root_with_one_binary();
    let mut ns = Ns::new(&t);
    ns.wrap("timeout 60");
    let first = ns.apply();
    ns.sh("truncate -s 65M \"$ROOT/run/torcx/attached/a.json\"");
    let again = ns.torcx(&["apply", "--force"]);
    let out = ns.run();
    assert_eq!(out[first].code, 0, "{}", out[first].describe());
    let s = &out[again];
    assert_eq!(s.code, 1, "{}", s.describe());
    assert_contains(&s.stdout, "record /run/torcx/attached/a.json: larger than the limit of 67108864 bytes", s);
}

/// A valid archive followed by a hole of 1 TiB in a sparse file (4 KB on
/// disk): zeros after the last gzip member, or endless empty zstd blocks
/// in a frame after the last. Neither gives a byte of output, and apply
/// read the whole hole to check the stream's end, about 7 minutes (found
/// by an outside attack). Now the image fails as corrupt, with the file
/// named, once 64 MiB more was read than given: in apply, and in the
/// generator, which reads to the end an image whose units it has not met.
#[test]
fn a_hole_after_a_valid_archive_is_refused_at_64_mib() {
    require_root("a_hole_after_a_valid_archive_is_refused_at_64_mib");
    for fmt in [Fmt::Tgz, Fmt::Zst] {
        let t = TestRoot::new();
        let img = Image::new(&t, "evil", "1");
        img.manifest(json!({"bin": ["/bin/tool"]})).exec("bin/tool", "#!/bin/sh\n");
        let archive = img.pack(&t, USER_STORE, fmt);
        let mut f = std::fs::OpenOptions::new().append(true).open(&archive).unwrap();
        if fmt == Fmt::Zst {
            // A frame header (no content size, 1 KiB window); zeros then
            // read as raw blocks of no bytes, none of them the last.
            std::io::Write::write_all(&mut f, &[0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x00]).unwrap();
        }
        f.set_len(f.metadata().unwrap().len() + (1 << 40)).unwrap();
        t.vendor_profile(&[("evil", "1")]);
        let mut ns = Ns::new(&t);
        ns.wrap("timeout 120");
        let out_dir = t.scratch("gen");
        let generator = ns.generator(&["--root", t.root.to_str().unwrap(), out_dir.to_str().unwrap()]);
        let apply = ns.apply();
        let attach = ns.torcx(&["attach", "evil:1"]);
        let out = ns.run();
        let what = if fmt == Fmt::Tgz { "gzip" } else { "zstd" };
        let why = format!("reading archive: corrupt {what} stream: 64 MiB more read than it gave");
        let file = archive.strip_prefix(&t.root).unwrap().display().to_string();
        // The image ships no unit, so the generator reads to the end too.
        let g = &out[generator];
        assert_eq!(g.code, 1, "{}", g.describe());
        assert_contains(&g.log, &format!("image evil:1: reading /{file}: {why}"), g);
        let s = &out[apply];
        assert_eq!(s.code, 1, "{}", s.describe());
        assert_contains(&s.stderr, &format!("torcx: error: image evil:1 (/{file}): {why}"), s);
        assert!(s.mounts_under(&t.root).is_empty(), "{}", s.describe());
        // `attach` names the image and its file the same way.
        let s = &out[attach];
        assert_eq!(s.code, 1, "{}", s.describe());
        assert_eq!(s.stderr, format!("torcx: error: image evil:1 (/{file}): {why}\n"), "{}", s.describe());
        assert!(s.mounts_under(&t.root).is_empty(), "{}", s.describe());
        for d in ["run/torcx/attached", "run/torcx/bin", "run/torcx/unpack"] {
            assert_eq!(std::fs::read_dir(t.path(d)).unwrap().count(), 0, "{d} is not empty");
        }
        t.assert_canary();
    }
}

/// The generator passes a file it does not keep only as far as apply
/// would unpack it: a file over the unpack limit before the units fails
/// the image in both, with the same words. Before, the generator
/// decompressed all of it (a 32 MB archive of a zstd-compressed 1 TiB file
/// kept it busy for about 90 s), where apply stopped at the limit.
#[test]
fn the_generator_stops_at_the_unpack_limit_as_apply_does() {
    require_root("the_generator_stops_at_the_unpack_limit_as_apply_does");
    for fmt in [Fmt::Tgz, Fmt::Zst] {
        let why = "entry \"./a/big\": unpacked size exceeds the limit of 4194304 bytes (TORCX_UNPACK_LIMIT or unpack_limit in the config): stopped";
        let (t, archive, out, generator, apply) = big_file_before_the_units(fmt, 8 << 20);
        let file = archive.strip_prefix(&t.root).unwrap().display().to_string();
        let g = &out[generator];
        assert_eq!(g.code, 1, "{}", g.describe());
        assert_contains(&g.log, &format!("image big:1: reading /{file}: {why}"), g);
        assert!(!t.scratch("gen").join("big.service").exists());
        let s = &out[apply];
        assert_eq!(s.code, 1, "{}", s.describe());
        assert_contains(&s.stderr, why, s);
        // Within the limit, both take it.
        let (t, _, out, generator, apply) = big_file_before_the_units(fmt, 2 << 20);
        assert_eq!(out[generator].code, 0, "{}", out[generator].describe());
        assert!(t.scratch("gen").join("big.service").exists());
        assert_eq!(out[apply].code, 0, "{}", out[apply].describe());
    }
}

/// An image whose file `a/big` of `size` bytes comes before its unit, run
/// through the generator (into scratch `gen`) and apply, under a limit of
/// 4 MiB for the image and for all images alike (equal, as by default: apply
/// must still name the image's own limit).
fn big_file_before_the_units(fmt: Fmt, size: usize) -> (TestRoot, std::path::PathBuf, Vec<Step>, usize, usize) {
    let t = TestRoot::new();
    let img = Image::new(&t, "big", "1");
    img.manifest(json!({"units": ["/lib/systemd/system/big.service"]}))
        .file("a/big", vec![0u8; size])
        .file("lib/systemd/system/big.service", "[Service]\nExecStart=/bin/true\n");
    let archive = img.pack(&t, USER_STORE, fmt);
    t.vendor_profile(&[("big", "1")]);
    let out_dir = t.scratch("gen");
    let mut ns = Ns::new(&t);
    ns.sh("export TORCX_UNPACK_LIMIT=4M TORCX_UNPACK_TOTAL_LIMIT=4M");
    let generator = ns.generator(&["--root", t.root.to_str().unwrap(), out_dir.to_str().unwrap()]);
    let apply = ns.apply();
    let out = ns.run();
    (t, archive, out, generator, apply)
}
