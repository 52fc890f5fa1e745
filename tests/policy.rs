//! One entry policy: every hostile entry of the hostile suite, fed to every
//! reader of tar entries (the confined extractor, the generator's tar
//! reader, the OCI layers unpacked and read for the generator), is refused
//! by each with the same words. No root, no mount: readers run on temporary
//! directories. Adding a reader is one line of `READERS`.

use std::path::Path;
use torcx::archive::testkit;
use torcx::archive::{Archive, Format};
use torcx::model::names::ImageId;
use torcx::tree::policy::{Limits, MAX_ENTRIES};
use torcx::tree::{extract, oci, source::Mem};

/// One reader: the uncompressed tar, a scratch directory, the limits.
type Reader = fn(&[u8], &Path, Limits) -> anyhow::Result<()>;

fn extractor(tar: &[u8], dir: &Path, lim: Limits) -> anyhow::Result<()> {
    let dest = dir.join("tree");
    std::fs::create_dir(&dest)?;
    // As apply reads an archive: through the bounded stream.
    extract::extract(torcx::archive::guard::TarGuard::new(tar), &dest, lim).map(|_| ())
}

fn generator_tar(tar: &[u8], dir: &Path, lim: Limits) -> anyhow::Result<()> {
    let path = dir.join("evil:1.torcx.tgz");
    std::fs::write(&path, testkit::gz(tar))?;
    let a = Archive { id: ImageId::new("evil", "1")?, format: Format::Tgz, path: path.clone(), host: path };
    Mem::from_archive_with(&a, &lim).map(|_| ())
}

fn bundle(tar: &[u8], dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    let path = dir.join("evil.torcx.oci.tgz");
    std::fs::write(&path, testkit::oci_bundle(&[tar.to_vec()], false))?;
    Ok(path)
}

fn oci_unpack(tar: &[u8], dir: &Path, lim: Limits) -> anyhow::Result<()> {
    let path = bundle(tar, dir)?;
    let dest = dir.join("tree");
    std::fs::create_dir(&dest)?;
    oci::unpack(&path, "1", &dest, lim).map(|_| ())
}

fn oci_generator(tar: &[u8], dir: &Path, lim: Limits) -> anyhow::Result<()> {
    oci::read_units_with(&bundle(tar, dir)?, "1", &lim).map(|_| ())
}

/// `(name, reader, is an OCI layer reader)`.
const READERS: &[(&str, Reader, bool)] = &[
    ("extractor", extractor, false),
    ("generator tar reader", generator_tar, false),
    ("OCI unpack", oci_unpack, true),
    ("OCI generator reader", oci_generator, true),
];

/// A tar entry, written with its name and link bytes as they are (the
/// `tar` builder would refuse `..` and rewrite absolute names).
enum E<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8]),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    Other(&'a str, tar::EntryType),
    /// A PAX extended header (`key=value` records) for the entry after it.
    Pax(&'a [(&'a str, &'a [u8])]),
}

/// A PAX header setting `key` for the next entry.
fn pax(key: &'static str, value: &'static [u8]) -> E<'static> {
    E::Pax(Box::leak(Box::new([(key, value)])))
}

/// A PAX record: `LEN key=value\n`, LEN counting itself.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = [key.as_bytes(), b"=", value, b"\n"].concat();
    let mut len = body.len() + 1;
    while format!("{len} ").len() + body.len() != len {
        len += 1;
    }
    [format!("{len} ").into_bytes(), body].concat()
}

fn tar_of(es: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(vec![]);
    for e in es {
        let mut h = tar::Header::new_old();
        h.set_mtime(0);
        h.set_mode(0o644);
        h.set_size(0);
        if let E::Pax(records) = e {
            let data: Vec<u8> = records.iter().flat_map(|(k, v)| pax_record(k, v)).collect();
            let mut h = tar::Header::new_ustar();
            h.set_mtime(0);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::XHeader);
            h.set_size(data.len() as u64);
            h.as_old_mut().name[..9].copy_from_slice(b"PaxHeader");
            h.set_cksum();
            b.append(&h, &data[..]).unwrap();
            continue;
        }
        let (name, ty, link, data): (&str, _, &str, &[u8]) = match e {
            E::Dir(n) => (n, tar::EntryType::Directory, "", &[]),
            E::File(n, d) => (n, tar::EntryType::Regular, "", d),
            E::Symlink(n, t) => (n, tar::EntryType::Symlink, t, &[]),
            E::Hardlink(n, t) => (n, tar::EntryType::Link, t, &[]),
            E::Other(n, ty) => (n, *ty, "", &[]),
            E::Pax(_) => unreachable!(),
        };
        h.set_entry_type(ty);
        h.set_size(data.len() as u64);
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

/// What comes first, so readers have done some work before the hostile entry.
fn prelude() -> Vec<E<'static>> {
    vec![E::Dir("bin"), E::File("bin/tool", b"#!/bin/sh\n"), E::Dir("lib/"), E::Dir("lib/systemd/system/")]
}

struct Case {
    what: &'static str,
    entries: Vec<E<'static>>,
    /// The refused entry and the cause, as `entry "PATH": CAUSE`.
    entry: &'static str,
    cause: String,
    /// A path twice in one OCI layer: the later entry replaces the earlier,
    /// as a later layer's does (see `policy::duplicate_err`), so the OCI
    /// readers accept it.
    layers_replace: bool,
}

fn case(what: &'static str, entries: Vec<E<'static>>, entry: &'static str, cause: impl Into<String>) -> Case {
    Case { what, entries, entry, cause: cause.into(), layers_replace: false }
}

/// Paths past the policy's bounds (PATH_MAX, depth, NAME_MAX).
static LONG: std::sync::LazyLock<&'static str> =
    std::sync::LazyLock::new(|| Box::leak(format!("{}f", "a/".repeat(2100)).into_boxed_str()));
static DEEP: std::sync::LazyLock<&'static str> =
    std::sync::LazyLock::new(|| Box::leak(format!("{}f", "a/".repeat(300)).into_boxed_str()));
static NAME: std::sync::LazyLock<&'static str> =
    std::sync::LazyLock::new(|| Box::leak("n".repeat(300).into_boxed_str()));

/// A file too large to be a unit: the generator does not read it.
static BIG: [u8; (1 << 20) + 1] = [b'#'; (1 << 20) + 1];

fn cases() -> Vec<Case> {
    let unit = "lib/systemd/system/x.service";
    vec![
        case("absolute path", vec![E::File("/etc/passwd", b"x")], "/etc/passwd", "absolute path refused"),
        case(
            "dot-dot file",
            vec![E::File("../canary/pwned", b"x")],
            "../canary/pwned",
            "path traversal ('..') refused",
        ),
        case(
            "nested dot-dot",
            vec![E::File("bin/../../canary/pwned", b"x")],
            "bin/../../canary/pwned",
            "path traversal ('..') refused",
        ),
        case("dot-dot directory", vec![E::Dir("../newdir/")], "../newdir/", "path traversal ('..') refused"),
        case(
            "symlink to an absolute path",
            vec![E::Symlink("link", "/etc"), E::File("link/pwned", b"x")],
            "link",
            "symlink to absolute path \"/etc\" points outside the image",
        ),
        case(
            "symlink climbing out",
            vec![E::Symlink("up", "../../canary")],
            "up",
            "symlink to \"../../canary\" points outside the image",
        ),
        case(
            "symlink one level too high",
            vec![E::Symlink("bin/up", "../../canary")],
            "bin/up",
            "symlink to \"../../canary\" points outside the image",
        ),
        case("symlink without a target", vec![E::Symlink("l", "")], "l", "symlink without a target"),
        case(
            "hard link to an absolute path",
            vec![E::Hardlink("hl", "/etc/passwd")],
            "hl",
            "hard link to \"/etc/passwd\" points outside the image",
        ),
        case(
            "hard link climbing out",
            vec![E::Hardlink("bin/hl", "../../canary/file")],
            "bin/hl",
            "hard link to \"../../canary/file\" points outside the image",
        ),
        case("hard link to the root", vec![E::Hardlink("hl", "./")], "hl", "hard link to the image root"),
        case(
            "char device",
            vec![E::Dir("dev"), E::Other("dev/null", tar::EntryType::Char)],
            "dev/null",
            "device node refused",
        ),
        case("block device", vec![E::Other("loop0", tar::EntryType::Block)], "loop0", "device node refused"),
        case("FIFO", vec![E::Other("bin/pipe", tar::EntryType::Fifo)], "bin/pipe", "FIFO refused"),
        case("unsupported type", vec![E::Other("odd", tar::EntryType::new(b'Z'))], "odd", "unsupported entry type 'Z'"),
        case("a file with an empty path", vec![E::File("./", b"x")], "./", "empty path"),
        // What is already at the path: the extractor asks its tree, the
        // generator's tar reader asks `policy::Paths`. In an OCI layer an
        // entry replaces what is at its path (below or in its own layer).
        Case {
            layers_replace: true,
            ..case(
                "a directory over a file",
                vec![E::Dir("etc/"), E::File("etc/x", b"x"), E::Dir("etc/x/")],
                "etc/x/",
                "a directory over an existing symlink or file is refused",
            )
        },
        Case {
            layers_replace: true,
            ..case(
                "a directory over a symlink",
                vec![E::Dir("etc/"), E::Symlink("etc/l", "x"), E::Dir("etc/l/")],
                "etc/l/",
                "a directory over an existing symlink or file is refused",
            )
        },
        Case {
            layers_replace: true,
            ..case(
                "a file over a directory",
                vec![E::Dir("etc/d/"), E::File("etc/d", b"x")],
                "etc/d",
                "a file over an existing directory or symlink is refused",
            )
        },
        Case {
            layers_replace: true,
            ..case(
                "a hard link over a file",
                vec![E::File("etc/a", b"a"), E::File("etc/b", b"b"), E::Hardlink("etc/b", "etc/a")],
                "etc/b",
                "duplicate entry: the path already exists",
            )
        },
        Case {
            layers_replace: true,
            ..case(
                "a large unit, then a small one at the same path",
                vec![E::File(unit, &BIG), E::File(unit, b"[Service]\nExecStart=/b\n")],
                unit,
                "duplicate entry: the path is already in the archive",
            )
        },
        case(
            "a NUL byte in a path",
            vec![pax("path", b"zz\0y"), E::File("placeholder", b"x")],
            "zz\0y",
            "a NUL byte in the path refused",
        ),
        case(
            "a path longer than PATH_MAX",
            vec![pax("path", LONG.as_bytes()), E::File("placeholder", b"x")],
            &LONG[..64],
            format!("path of {} bytes refused (at most 4096)", LONG.len()),
        ),
        case(
            "a path 301 deep",
            vec![pax("path", DEEP.as_bytes()), E::File("placeholder", b"x")],
            &DEEP[..64],
            "path 301 deep refused (at most 256)",
        ),
        case(
            "a name longer than NAME_MAX",
            vec![pax("path", NAME.as_bytes()), E::File("placeholder", b"x")],
            *NAME,
            "a name of 300 bytes refused (at most 255)",
        ),
        case(
            "a symlink target longer than PATH_MAX",
            vec![pax("linkpath", LONG.as_bytes()), E::Symlink("l", "placeholder")],
            "l",
            format!("symlink target of {} bytes, or with a NUL byte, refused", LONG.len()),
        ),
        case(
            "writing through a file",
            vec![E::File("opt/f", b"x"), E::File("opt/f/x", b"y")],
            "opt/f/x",
            "\"f\" is a symlink or a file, not a directory: writing through it is refused",
        ),
        case(
            "a unit path through a file",
            vec![E::File("usr/lib/systemd", b"x"), E::File("usr/lib/systemd/system/x.service", b"y")],
            "usr/lib/systemd/system/x.service",
            "\"systemd\" is a symlink or a file, not a directory: writing through it is refused",
        ),
        case(
            "writing through an inner symlink",
            vec![E::Symlink("opt/l", "f"), E::File("opt/l/x", b"y")],
            "opt/l/x",
            "\"l\" is a symlink or a file, not a directory: writing through it is refused",
        ),
        case(
            "a hard link taken through a symlink",
            vec![E::Symlink("opt/l", "../bin"), E::Hardlink("stolen", "opt/l/tool")],
            "stolen",
            "\"l\" is a symlink or a file, not a directory: writing through it is refused",
        ),
        case(
            "a hard link to a missing directory's file",
            vec![E::Hardlink("stolen", "nodir/f")],
            "stolen",
            "\"nodir\" does not exist",
        ),
        case(
            "hard link to a directory",
            vec![E::Dir("etc/"), E::Hardlink("bin/hd", "etc")],
            "bin/hd",
            "hard link to \"etc\", which is not a regular file already in the image",
        ),
        case(
            "hard link to a later entry",
            vec![E::Hardlink("bin/early", "bin/late"), E::File("bin/late", b"x")],
            "bin/early",
            "hard link to \"bin/late\", which is not a regular file already in the image",
        ),
        Case {
            layers_replace: true,
            ..case(
                "duplicate entry",
                vec![E::File(unit, b"[Service]\nExecStart=/a\n"), E::File(unit, b"[Service]\nExecStart=/b\n")],
                unit,
                "duplicate entry: the path is already in the archive",
            )
        },
    ]
}

/// Every reader refuses every hostile entry, with the same words.
#[test]
fn every_reader_refuses_every_hostile_entry_alike() {
    let lim = Limits::unpack(1 << 30);
    let mut problems = vec![];
    for c in cases() {
        let mut entries = prelude();
        entries.extend(c.entries);
        let tar = tar_of(&entries);
        let want = format!("entry {}: {}", torcx::tree::policy::shown_path(c.entry.as_bytes()), c.cause);
        for (name, read, oci_layer) in READERS {
            let dir = tempfile::tempdir().unwrap();
            let res = read(&tar, dir.path(), lim);
            match res {
                Ok(()) if c.layers_replace && *oci_layer => {}
                Ok(()) => problems.push(format!("{}: the {name} accepted it", c.what)),
                Err(e) if c.layers_replace && *oci_layer => {
                    problems.push(format!("{}: the {name} refused what a layer may do: {e:#}", c.what))
                }
                Err(e) => {
                    let got = format!("{e:#}");
                    if !got.ends_with(&want) {
                        problems.push(format!("{}: the {name} said {got:?}, not {want:?}", c.what));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "readers disagree:\n{}", problems.join("\n"));
}

/// A unit that is a hard link to a file outside the unit directories has
/// that file's contents for the generator too (apply attaches it).
#[test]
fn a_unit_hard_linked_to_a_file_elsewhere_is_read() {
    let mut entries = prelude();
    entries.extend([
        E::Dir("data/"),
        E::File("data/x.service", b"[Service]\nExecStart=/bin/tool\n"),
        E::Hardlink("lib/systemd/system/x.service", "data/x.service"),
    ]);
    let tar = tar_of(&entries);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x:1.torcx.tgz");
    std::fs::write(&path, testkit::gz(&tar)).unwrap();
    let a = Archive { id: ImageId::new("x", "1").unwrap(), format: Format::Tgz, path: path.clone(), host: path };
    use torcx::tree::source::ImageSource;
    let unit = Path::new("lib/systemd/system/x.service");
    let want = b"[Service]\nExecStart=/bin/tool\n";
    assert_eq!(Mem::from_archive(&a).unwrap().read(unit).unwrap(), want, "the generator's tar reader");
    let mem = oci::read_units(&bundle(&tar, dir.path()).unwrap(), "1").unwrap();
    assert_eq!(mem.read(unit).unwrap(), want, "the OCI generator reader");
}

/// Past the entry limit every reader stops at the same entry, same words.
#[test]
fn every_reader_stops_an_entry_bomb_alike() {
    let lim = Limits { max_bytes: 1 << 30, max_entries: 5, ..Limits::MEM };
    let mut entries = prelude();
    entries.extend([E::File("bin/a", b""), E::File("bin/b", b""), E::File("bin/c", b"")]);
    let tar = tar_of(&entries);
    // bin, bin/tool, lib, lib/systemd/system and lib/systemd (implied by
    // it, with no entry of its own): five; bin/a is the sixth.
    let want = "entry \"bin/a\": more than 5 entries: refused as an archive bomb";
    for (name, read, _) in READERS {
        let dir = tempfile::tempdir().unwrap();
        let got = format!("{:#}", read(&tar, dir.path(), lim).unwrap_err());
        assert!(got.ends_with(want), "the {name} said {got:?}, not {want:?}");
    }
    // The default is the same for all.
    assert_eq!(Limits::MEM.max_entries, MAX_ENTRIES);
    assert_eq!(Limits::unpack(1).max_entries, MAX_ENTRIES);
}

/// The same archive, harmless, is accepted by every reader: the refusals
/// above are the entries', not the harness's.
#[test]
fn every_reader_accepts_a_harmless_archive() {
    let mut entries = prelude();
    entries.extend([
        E::File("lib/systemd/system/x.service", b"[Service]\nExecStart=/bin/tool\n"),
        E::Symlink("lib/systemd/system/y.service", "x.service"),
        E::Hardlink("bin/tool2", "bin/tool"),
        E::Symlink("bin/up", "../lib"),
    ]);
    let tar = tar_of(&entries);
    for (name, read, _) in READERS {
        let dir = tempfile::tempdir().unwrap();
        if let Err(e) = read(&tar, dir.path(), Limits::unpack(1 << 30)) {
            panic!("the {name} refused a harmless archive: {e:#}");
        }
    }
}

/// Across layers (a bundle whose blobs come last layer first), the OCI
/// unpack and the OCI generator reader agree: whiteouts, the root's opaque
/// whiteout, hard links that replace their own target or a directory above
/// it, and chains of hard links.
#[test]
fn oci_readers_agree_across_layers() {
    let unit = "lib/systemd/system/x.service";
    let text: &[u8] = b"[Service]\nExecStart=/bin/tool\n";
    // (what, layer 1, layer 2, the refusal both give, if any)
    type Case<'a> = (&'a str, Vec<E<'a>>, Vec<E<'a>>, Option<&'a str>);
    let cases: Vec<Case> = vec![
        (
            "the root emptied, then a path through a former file",
            vec![E::File("ff", b"x")],
            vec![E::File(".wh..wh..opq", b""), E::File("ff/x", b"y")],
            None,
        ),
        (
            "the root emptied, then a hard link to what was there",
            vec![E::File("data", b"x")],
            vec![E::File(".wh..wh..opq", b""), E::Hardlink("other", "data")],
            Some("entry \"other\": hard link to \"data\", which is not a regular file already in the image"),
        ),
        (
            "a hard link over its own target",
            vec![E::File(unit, text)],
            vec![E::Hardlink(unit, unit)],
            Some(
                "entry \"lib/systemd/system/x.service\": hard link to \"lib/systemd/system/x.service\", which is not a regular file already in the image",
            ),
        ),
        (
            "a hard link over a directory above its target",
            vec![E::Dir("d/"), E::File("d/f", b"x")],
            vec![E::Hardlink("d", "d/f")],
            Some("entry \"d\": \"d\" does not exist"),
        ),
        (
            "a whiteout, then the path again",
            vec![E::File("etc/a", b"x")],
            vec![E::File("etc/.wh.a", b""), E::Dir("etc/a/"), E::File("etc/a/b", b"y")],
            None,
        ),
        (
            "a whiteout of a directory, then a hard link below it",
            vec![E::Dir("etc/"), E::File("etc/a", b"x")],
            vec![E::File(".wh.etc", b""), E::Hardlink("h", "etc/a")],
            Some("entry \"h\": \"etc\" does not exist"),
        ),
        (
            "a chain of hard links to a unit",
            vec![E::File("data", text), E::Hardlink("h1", "data")],
            vec![E::Hardlink(unit, "h1")],
            None,
        ),
    ];
    let mut problems = vec![];
    for (what, l1, l2, want) in cases {
        let (mut one, two) = (prelude(), tar_of(&l2));
        one.extend(l1);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("evil.torcx.oci.tgz");
        std::fs::write(&path, testkit::oci_bundle(&[tar_of(&one), two], false)).unwrap();
        let dest = dir.path().join("tree");
        std::fs::create_dir(&dest).unwrap();
        let unpacked = oci::unpack(&path, "1", &dest, Limits::unpack(1 << 30)).map(|_| ());
        let read = oci::read_units(&path, "1");
        for (name, res) in [
            ("OCI unpack", unpacked),
            ("OCI generator reader", read.as_ref().map(|_| ()).map_err(|e| anyhow::anyhow!("{e:#}"))),
        ] {
            match (res, want) {
                (Ok(()), None) => {}
                (Err(e), Some(w)) if format!("{e:#}").ends_with(w) => {}
                (got, _) => problems.push(format!("{what}: the {name} gave {got:?}, not {want:?}")),
            }
        }
        if what.starts_with("a chain") {
            use torcx::tree::source::ImageSource;
            assert_eq!(read.unwrap().read(Path::new(unit)).unwrap(), text, "{what}");
            assert_eq!(std::fs::read(dest.join(unit)).unwrap(), text, "{what}");
        }
    }
    assert!(problems.is_empty(), "the OCI readers disagree:\n{}", problems.join("\n"));
}

/// The same chain in a tar: the generator's second pass follows it.
#[test]
fn a_unit_hard_linked_through_a_chain_is_read() {
    let mut entries = prelude();
    entries.extend([
        E::File("data", b"[Service]\nExecStart=/bin/tool\n"),
        E::Hardlink("h1", "data"),
        E::Hardlink("h2", "h1"),
        E::Hardlink("lib/systemd/system/x.service", "h2"),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x:1.torcx.tgz");
    std::fs::write(&path, testkit::gz(&tar_of(&entries))).unwrap();
    let a = Archive { id: ImageId::new("x", "1").unwrap(), format: Format::Tgz, path: path.clone(), host: path };
    use torcx::tree::source::ImageSource;
    let mem = Mem::from_archive(&a).unwrap();
    assert_eq!(mem.read(Path::new("lib/systemd/system/x.service")).unwrap(), b"[Service]\nExecStart=/bin/tool\n");
}

/// A tar extension record past its bound (a long name of a few hundred MB
/// costs a few hundred KB of gzip) is refused by every reader before the
/// tar crate reads it into memory.
#[test]
fn every_reader_refuses_a_huge_long_name_alike() {
    let max = torcx::archive::guard::MAX_EXTENSION;
    let mut h = tar::Header::new_gnu();
    h.set_size(max + 1);
    h.set_entry_type(tar::EntryType::GNULongName);
    h.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
    h.set_cksum();
    let mut tar = tar_of(&prelude());
    tar.truncate(tar.len() - 1024);
    tar.extend(h.as_bytes());
    tar.extend(vec![b'a'; (max + 1).div_ceil(512) as usize * 512]);
    tar.extend(tar_of(&[E::File("after", b"x")]));
    let want = format!("a tar long name of {} bytes refused (at most {max})", max + 1);
    for (name, read, _) in READERS {
        let dir = tempfile::tempdir().unwrap();
        let got = format!("{:#}", read(&tar, dir.path(), Limits::unpack(1 << 30)).unwrap_err());
        assert!(got.ends_with(&want), "the {name} said {got:?}, not {want:?}");
    }
}

/// A manifest over the in-memory bound is refused by every reader, apply's
/// too, instead of the generator scanning the image (and planning units
/// apply would not place) because it skipped the manifest.
#[test]
fn every_reader_refuses_an_oversized_manifest_alike() {
    let big = format!("{{\"kind\":\"image-manifest-v0\",\"value\":{{\"bin\":[]}}}}{}", " ".repeat(1 << 20));
    let big: &'static str = Box::leak(big.into_boxed_str());
    let mut entries = prelude();
    entries.extend([E::Dir(".torcx/"), E::File(".torcx/manifest.json", big.as_bytes())]);
    let tar = tar_of(&entries);
    let want = format!(".torcx/manifest.json: {} bytes refused (at most 1048576)", big.len());
    for (name, read, _) in READERS {
        let dir = tempfile::tempdir().unwrap();
        let res = read(&tar, dir.path(), Limits::unpack(1 << 30));
        // The unpackers write it; apply then refuses it when it reads the
        // manifest of the tree (below).
        if matches!(*name, "extractor" | "OCI unpack") {
            assert!(res.is_ok(), "the {name}: {res:?}");
            let tree = torcx::tree::source::Tree::open(&dir.path().join("tree")).unwrap();
            let got = format!("{:#}", torcx::tree::source::read_manifest(&tree).unwrap_err());
            assert_eq!(got, want, "apply after the {name}");
            continue;
        }
        let got = format!("{:#}", res.unwrap_err());
        assert!(got.ends_with(&want), "the {name} said {got:?}, not {want:?}");
    }
}

/// The manifest is read at its own path only, by every reader: reached
/// through a symlinked `.torcx`, the generator (which stops reading early)
/// might not have it and would scan the image instead.
#[test]
fn a_manifest_behind_a_symlink_is_refused_alike() {
    let mut entries = prelude();
    entries.extend([
        E::Dir("meta/"),
        E::File("meta/manifest.json", br#"{"kind":"image-manifest-v0","value":{"bin":["/bin/tool"]}}"#),
        E::Symlink(".torcx", "meta"),
    ]);
    let tar = tar_of(&entries);
    let want = ".torcx is a symlink: the manifest must be a regular file at .torcx/manifest.json";
    let dir = tempfile::tempdir().unwrap();
    extractor(&tar, dir.path(), Limits::unpack(1 << 30)).unwrap();
    let tree = torcx::tree::source::Tree::open(&dir.path().join("tree")).unwrap();
    assert_eq!(format!("{:#}", torcx::tree::source::read_manifest(&tree).unwrap_err()), want, "apply");
    let path = dir.path().join("x:1.torcx.tgz");
    std::fs::write(&path, testkit::gz(&tar)).unwrap();
    let a = Archive { id: ImageId::new("x", "1").unwrap(), format: Format::Tgz, path: path.clone(), host: path };
    let mem = Mem::from_archive(&a).unwrap();
    assert_eq!(format!("{:#}", torcx::tree::source::read_manifest(&mem).unwrap_err()), want, "generator");
}
