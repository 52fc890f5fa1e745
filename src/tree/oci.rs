//! OCI bundles read for the generator: `read_units` decompresses the
//! layers on the fly and merges just the entries the generator needs.
//! Unpacking one is `tree::oci_unpack` (re-exported here); the bundle
//! format itself is `archive::oci`.

use crate::archive::oci::{self, HashRead, Item, Layer, Resolved, check_entry_size, decoder, walk, wanted};
use crate::sys::fsutil;
use crate::tree::layer::{self, Whiteout};
use crate::tree::policy::{self, Kind, Limits, Paths};
use crate::tree::source::{self, ImageSource, MANIFEST_PATH, Mem};
use anyhow::{Context, Result, bail};
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::io::{BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

pub use super::oci_unpack::{STAGING, unpack, unpack_checked};

/// How many times `read_units` reads a bundle at most (see there).
const MAX_READS: usize = 4;

// ---------------------------------------------------------------------------
// read_units

/// A path of the merged image, as far as the generator needs it.
#[derive(Debug, Clone)]
enum Node {
    Dir,
    Link(PathBuf),
    File(Vec<u8>),
}

type Tree = BTreeMap<PathBuf, Node>;

/// What one layer does to the ones below it: its whiteouts (which act on
/// the layers below only, so they are merged first, as the extractor
/// applies them in a pass of their own), then its entries in order.
#[derive(Default, Debug)]
struct Rec {
    /// `(path, opaque)`: remove `path`, or empty it when opaque.
    whiteouts: Vec<(PathBuf, bool)>,
    ops: Vec<Op>,
    /// What reading it counted: a layer listed again is counted again, as
    /// the unpack applies it again.
    counted: policy::Count,
}

/// One entry of a layer: its name as the archive wrote it (its path is
/// derived from it at merge time), what it is, and what the generator keeps.
#[derive(Debug)]
struct Op {
    raw: Vec<u8>,
    kind: Kind,
    /// A symlink's or hard link's target, as the archive wrote it.
    link: Option<Vec<u8>>,
    /// A regular file's contents, when kept.
    data: Option<Vec<u8>>,
}

/// Removes `p` (or only what is below it) and everything below it.
fn remove_below(t: &mut Tree, p: &Path, keep_self: bool) {
    let doomed: Vec<PathBuf> = t
        .range::<Path, _>((std::ops::Bound::Included(p), std::ops::Bound::Unbounded))
        .take_while(|(k, _)| k.starts_with(p))
        .filter(|(k, _)| !(keep_self && k.as_path() == p))
        .map(|(k, _)| k.clone())
        .collect();
    for k in doomed {
        t.remove(&k);
    }
}

fn comps_of(p: &Path) -> Vec<&OsStr> {
    p.iter().collect()
}

/// Merges one layer into the tree below it, refusing, in the extractor's
/// words, what unpacking the layers would refuse (`paths` knows every path
/// of the layers merged so far, kept or not).
fn merge(t: &mut Tree, paths: &mut Paths, rec: &Rec, extra: &[PathBuf], unread: &mut Vec<PathBuf>) -> Result<()> {
    for (p, opaque) in &rec.whiteouts {
        remove_below(t, p, *opaque);
        if *opaque { paths.clear(&comps_of(p)) } else { paths.remove(&comps_of(p)) }
    }
    for op in &rec.ops {
        let comps = policy::components(&op.raw)?;
        paths.replace(&op.raw, &comps, &op.kind, op.link.as_deref())?;
        let p = &comps.iter().collect::<PathBuf>();
        match &op.kind {
            Kind::Dir => match t.get(p) {
                Some(Node::Dir) => {}
                // A directory only implied so far (its entries came first,
                // as `image pack` writes a layer): what is below it stays.
                None => {
                    t.insert(p.clone(), Node::Dir);
                }
                Some(_) => {
                    remove_below(t, p, false);
                    t.insert(p.clone(), Node::Dir);
                }
            },
            Kind::Symlink => {
                remove_below(t, p, false);
                let target = PathBuf::from(OsStr::from_bytes(op.link.as_deref().unwrap_or_default()));
                t.insert(p.clone(), Node::Link(target));
            }
            Kind::HardLink => {
                let target: PathBuf =
                    policy::hardlink_target(&op.raw, op.link.as_deref().unwrap_or_default())?.iter().collect();
                let data = match t.get(&target) {
                    Some(Node::File(d)) => Some(d.clone()),
                    _ => None,
                };
                remove_below(t, p, false);
                match data {
                    Some(d) => {
                        t.insert(p.clone(), Node::File(d));
                    }
                    // A kept path linked to a file that was not kept: the
                    // next read keeps that file (or, for a link to a link,
                    // that link, and so on).
                    None if keep(p, extra) => unread.push(target),
                    None => {}
                }
            }
            _ => {
                remove_below(t, p, false);
                if let Some(d) = &op.data {
                    t.insert(p.clone(), Node::File(d.clone()));
                }
            }
        }
    }
    Ok(())
}

fn looks_like_unit_path(p: &Path) -> bool {
    p.components().any(|c| c.as_os_str() == "systemd")
}

/// Whether `read_units` keeps the contents of the regular file `p`.
fn keep(p: &Path, extra: &[PathBuf]) -> bool {
    p == Path::new(MANIFEST_PATH) || looks_like_unit_path(p) || extra.iter().any(|x| p.starts_with(x))
}

/// What `read_units` used of its limits, across layers.
struct Budget {
    limits: Limits,
    count: policy::Count,
    bytes: u64,
    /// File data read or passed, as the unpack charges it (`limits.data`).
    data: u64,
    /// The directories met so far, in any layer, by keyed hash of their
    /// path: a parent not among them is one the unpack creates, and counts.
    dirs: std::collections::HashSet<u64>,
    keys: std::collections::hash_map::RandomState,
}

impl Budget {
    /// Counts the parents of `comps` no entry made yet (as the unpack
    /// counts the directories it creates), and notes `comps` itself when it
    /// is a directory.
    fn implied(&mut self, raw: &[u8], comps: &[&std::ffi::OsStr], is_dir: bool) -> Result<()> {
        use std::hash::{BuildHasher, Hasher};
        let mut h = self.keys.build_hasher();
        let (mut n, mut bytes, mut len) = (0u64, 0u64, 0u64);
        for (i, c) in comps.iter().enumerate() {
            h.write(c.as_encoded_bytes());
            h.write_u8(0);
            len += c.len() as u64 + u64::from(i > 0);
            let new = self.dirs.insert(h.clone().finish());
            if new && i + 1 < comps.len() {
                n += 1;
                bytes += len;
            }
            if i + 1 == comps.len() && !is_dir && new {
                self.dirs.remove(&h.clone().finish());
            }
        }
        policy::count_implied(raw, n, bytes, &mut self.count, &self.limits)
    }
}

/// Reads one layer (decompressing on the fly) into what it does to the
/// layers below, with the extractor's rules for each entry alone; what
/// depends on the layers below is decided when it is merged.
fn read_layer(src: impl Read, l: &Layer, extra: &[PathBuf], budget: &mut Budget) -> Result<Rec> {
    let mut hr = HashRead::new(src);
    let parsed = (|| -> Result<Rec> {
        let dec = decoder(l.comp, BufReader::with_capacity(64 << 10, &mut hr))?;
        let mut ar = tar::Archive::new(dec);
        let mut rec = Rec::default();
        for e in ar.entries().context("reading layer")? {
            let mut e = e.context("reading layer")?;
            let ty = e.header().entry_type();
            if Kind::of_tar(ty).is_none() {
                continue;
            }
            let raw = e.path_bytes().into_owned();
            let comps = policy::components(&raw)?;
            let Some((name, parent)) = comps.split_last() else {
                // The root: a directory, or refused as the extractor does.
                policy::check_tar(&raw, ty, None, e.size())?;
                continue;
            };
            let link = e.link_name_bytes().map(|l| l.into_owned());
            policy::count_entry(&raw, link.as_deref(), &mut budget.count, &budget.limits)?;
            let dir: PathBuf = parent.iter().collect();
            match layer::whiteout_kind(&raw, name)? {
                Whiteout::Remove(n) => {
                    rec.whiteouts.push((dir.join(n), false));
                    continue;
                }
                Whiteout::Opaque => {
                    rec.whiteouts.push((dir, true));
                    continue;
                }
                Whiteout::Ignored => continue,
                Whiteout::No => {}
            }
            let link = e.link_name_bytes().map(|l| l.into_owned());
            let Some(checked) = policy::check_tar(&raw, ty, link.as_deref(), e.size())? else { continue };
            let path = dir.join(name);
            let kind = checked.kind;
            budget.implied(&raw, &checked.comps, kind == Kind::Dir)?;
            let mut data = None;
            if kind == Kind::File {
                policy::charge_data(&raw, &mut budget.data, e.size(), &budget.limits)?;
            }
            if kind == Kind::File && path == Path::new(MANIFEST_PATH) {
                policy::check_manifest_size(e.size())?;
            }
            if kind == Kind::File && keep(&path, extra) && policy::fits_in_memory(e.size()) {
                policy::charge_mem(&mut budget.bytes, e.size(), &budget.limits)?;
                let mut v = Vec::with_capacity(e.size() as usize);
                e.read_to_end(&mut v).context("reading layer")?;
                data = Some(v);
            }
            let link = matches!(kind, Kind::Symlink | Kind::HardLink).then_some(link).flatten();
            rec.ops.push(Op { raw, kind, link, data });
        }
        // To the end of the compressed stream (its trailer checked).
        std::io::copy(&mut ar.into_inner(), &mut std::io::sink()).context("reading layer")?;
        Ok(rec)
    })();
    // A corrupt blob is reported as such, rather than by what it made the
    // decompressor or the tar reader say; but a blob the reader gave up on
    // is not read on for that past the decompressors' own bound: what is
    // left of it may be a terabyte of sparse hole.
    if parsed.is_ok() || l.size.saturating_sub(hr.count()) <= crate::archive::barren::MAX_BARREN {
        hr.finish(&l.digest, l.size)?;
    }
    parsed.with_context(|| format!("layer {}", l.digest))
}

/// Streams the bundle once, reading every layer of `r` and merging them in
/// manifest order (what a layer may do depends on every layer below it): a
/// layer whose blob comes before the one below it waits, read, until it
/// can be merged.
fn collect(path: &Path, r: &Resolved, extra: &[PathBuf], limits: &Limits) -> Result<(Tree, Vec<PathBuf>)> {
    let mut want = wanted(r);
    let mut tree = Tree::new();
    let mut paths = Paths::default();
    let mut next = 0;
    let mut unread = vec![];
    let mut recs: HashMap<String, Rec> = HashMap::new();
    let mut budget = Budget {
        limits: *limits,
        count: Default::default(),
        bytes: 0,
        data: 0,
        dirs: Default::default(),
        keys: Default::default(),
    };
    walk(path, |item, e| {
        let Item::Blob(h) = item else { return Ok(true) };
        let Some((digest, size, layer)) = want.remove(&h) else { return Ok(true) };
        check_entry_size(&digest, size, e)?;
        if !layer {
            HashRead::new(e).finish(&digest, size)?;
            return Ok(!want.is_empty());
        }
        let l = r.layers.iter().find(|l| l.hex == h).unwrap();
        let before = budget.count;
        let mut rec = read_layer(e, l, extra, &mut budget)?;
        rec.counted =
            policy::Count { entries: budget.count.entries - before.entries, names: budget.count.names - before.names };
        recs.insert(h, rec);
        while next < r.layers.len()
            && let Some(rec) = recs.get(&r.layers[next].hex)
        {
            let l = &r.layers[next];
            if r.layers[..next].iter().any(|x| x.hex == l.hex) {
                budget.count.entries += rec.counted.entries;
                budget.count.names += rec.counted.names;
                if budget.count.entries > budget.limits.max_entries {
                    bail!(
                        "layer {} ({}): more than {} entries: refused as an archive bomb",
                        next + 1,
                        l.digest,
                        budget.limits.max_entries
                    );
                }
                if budget.count.names > policy::MAX_NAMES {
                    bail!(
                        "layer {} ({}): paths and link targets longer than {} bytes in all: refused",
                        next + 1,
                        l.digest,
                        policy::MAX_NAMES
                    );
                }
            }
            merge(&mut tree, &mut paths, rec, extra, &mut unread)
                .with_context(|| format!("layer {} ({})", next + 1, l.digest))?;
            // A layer listed again later is kept for then.
            if !r.layers[next + 1..].iter().any(|x| x.hex == l.hex) {
                recs.remove(&l.hex);
            }
            next += 1;
        }
        Ok(!want.is_empty())
    })?;
    if let Some((digest, _, _)) = want.values().next() {
        bail!("blob {digest}: missing from the bundle");
    }
    Ok((tree, unread))
}

/// The merged tree as the generator's `Mem`. The directories the kept
/// paths imply are counted against the limits as the unpack counts them.
fn to_mem(t: &Tree) -> Result<Mem> {
    let mut m = Mem::default();
    let mut count = policy::Count::default();
    for (p, n) in t {
        let (dirs, bytes) = match n {
            Node::Dir => m.insert_dir(p.clone()),
            Node::Link(target) => m.insert_link(p.clone(), target.clone()),
            Node::File(d) => m.insert_file(p.clone(), d.clone()),
        };
        policy::count_implied(p.as_os_str().as_bytes(), dirs, bytes, &mut count, &Limits::MEM)?;
    }
    Ok(m)
}

/// Paths the generator needs that `keep` did not keep: the manifest behind a
/// symlinked directory, units listed outside a `systemd` directory.
fn missed(m: &Mem, extra: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = vec![];
    let Ok(mp) = m.resolve_path(Path::new(MANIFEST_PATH)) else { return out };
    if !keep(&mp, extra) {
        out.push(mp);
        return out;
    }
    let Ok(Some(man)) = source::read_manifest(m) else { return out };
    for u in &man.units {
        let Ok(rel) = fsutil::relative_inside(u) else { continue };
        let Ok(p) = m.resolve_path(&rel) else { continue };
        if !keep(&p, extra) && !matches!(m.lstat(&p), Ok(Some(source::Kind::File))) {
            out.push(p);
        }
    }
    out
}

/// What the generator needs (manifest, unit files, links) of `tag`, without
/// unpacking: read-only, in memory, every blob used checked.
pub fn read_units(path: &Path, tag: &str) -> Result<Mem> {
    read_units_with(path, tag, &Limits::MEM)
}

/// [`read_units`] within `limits` (bytes read into memory, entries).
pub fn read_units_with(path: &Path, tag: &str, limits: &Limits) -> Result<Mem> {
    read_units_checked(path, tag, limits, &|_| Ok(()))
}

/// [`read_units_with`], with `check` approving the resolved tag (its
/// digests) before any layer is read.
pub fn read_units_checked(path: &Path, tag: &str, limits: &Limits, check: oci::Check) -> Result<Mem> {
    let r = oci::resolve(path, tag)?;
    check(&r)?;
    let mut extra: Vec<PathBuf> = vec![];
    // Each further read keeps what the last one found it needed: the
    // manifest or units behind a symlinked directory, the file a unit is a
    // hard link to. A few reads cover a chain of links; a longer chain is
    // left unread (the generator then reports the unit missing).
    for round in 0.. {
        let (tree, unread) = collect(path, &r, &extra, limits)?;
        let mem = to_mem(&tree)?;
        let more: Vec<PathBuf> =
            missed(&mem, &extra).into_iter().chain(unread).filter(|p| !extra.contains(p)).collect();
        if more.is_empty() || round == MAX_READS - 1 {
            return Ok(mem);
        }
        extra.extend(more);
    }
    unreachable!()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::oci::list_tags;

    #[test]
    fn merging() {
        let mut t = Tree::new();
        let mut paths = Paths::default();
        let p = |s: &str| PathBuf::from(s);
        let op = |path: &str, kind: Kind, link: Option<&str>, data: Option<&[u8]>| Op {
            raw: path.as_bytes().to_vec(),
            kind,
            link: link.map(|l| l.as_bytes().to_vec()),
            data: data.map(|d| d.to_vec()),
        };
        let rec1 = Rec {
            whiteouts: vec![],
            ops: vec![
                op("a", Kind::Dir, None, None),
                op("a/x", Kind::File, None, Some(b"x")),
                op("a/y", Kind::File, None, Some(b"y")),
                op("b", Kind::Dir, None, None),
                op("b/z", Kind::File, None, Some(b"z")),
                op("c", Kind::Symlink, Some("a"), None),
                op("d", Kind::File, None, None),
            ],
            counted: Default::default(),
        };
        merge(&mut t, &mut paths, &rec1, &[], &mut vec![]).unwrap();
        let rec2 = Rec {
            whiteouts: vec![(p("a/x"), false), (p("b"), true), (p("c"), false)],
            ops: vec![
                op("b/new", Kind::File, None, Some(b"n")),
                op("a/h", Kind::HardLink, Some("a/y"), None),
                // A file not kept still replaces what was at its path.
                op("a/y", Kind::File, None, None),
                // A file the generator did not keep is a file all the same.
                op("e", Kind::HardLink, Some("d"), None),
            ],
            counted: Default::default(),
        };
        merge(&mut t, &mut paths, &rec2, &[], &mut vec![]).unwrap();
        let keys: Vec<String> = t.keys().map(|k| k.display().to_string()).collect();
        assert_eq!(keys, ["a", "a/h", "b", "b/new"]);
        assert!(matches!(&t[&p("a/h")], Node::File(d) if d == b"y"));
        // What the whiteouts removed is gone for the layers above too.
        let rec3 = Rec {
            whiteouts: vec![],
            ops: vec![op("f", Kind::HardLink, Some("b/z"), None)],
            counted: Default::default(),
        };
        assert_eq!(
            format!("{}", merge(&mut t, &mut paths, &rec3, &[], &mut vec![]).unwrap_err()),
            "entry \"f\": hard link to \"b/z\", which is not a regular file already in the image"
        );
        let rec4 = Rec { whiteouts: vec![], ops: vec![op("d/x", Kind::File, None, None)], counted: Default::default() };
        assert_eq!(
            format!("{}", merge(&mut t, &mut paths, &rec4, &[], &mut vec![]).unwrap_err()),
            "entry \"d/x\": \"d\" is a symlink or a file, not a directory: writing through it is refused"
        );
    }

    enum E<'a> {
        Dir(&'a str),
        File(&'a str, &'a [u8]),
        Link(&'a str, &'a str),
    }

    fn tar_of(es: &[E]) -> Vec<u8> {
        let mut b = tar::Builder::new(vec![]);
        for e in es {
            let mut h = tar::Header::new_gnu();
            h.set_mtime(0);
            match e {
                E::Dir(p) => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(0o755);
                    h.set_size(0);
                    b.append_data(&mut h, p, &[][..]).unwrap();
                }
                E::File(p, d) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(0o644);
                    h.set_size(d.len() as u64);
                    b.append_data(&mut h, p, *d).unwrap();
                }
                E::Link(p, t) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_mode(0o777);
                    h.set_size(0);
                    b.append_link(&mut h, p, t).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    fn bundle(layers: &[Vec<u8>], tamper: bool) -> Vec<u8> {
        crate::archive::testkit::oci_bundle(layers, tamper)
    }

    fn layers() -> Vec<Vec<u8>> {
        let man = br#"{"kind":"image-manifest-v0","value":{"units":["/lib/systemd/system/u.service"]}}"#;
        vec![
            tar_of(&[
                E::Dir(".torcx"),
                E::File(".torcx/manifest.json", man),
                E::Dir("a"),
                E::File("a/x", b"1"),
                E::File("a/y", b"y"),
                E::Link("l", "a"),
                E::Dir("lib/systemd/system"),
                E::File("lib/systemd/system/u.service", b"v1"),
            ]),
            tar_of(&[E::File("a/.wh.y", b""), E::File("a/x", b"2"), E::File("lib/systemd/system/u.service", b"v2")]),
        ]
    }

    #[test]
    fn unpack_and_read_units() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("b.torcx.oci.tgz");
        std::fs::write(&path, bundle(&layers(), false)).unwrap();
        assert_eq!(list_tags(&path).unwrap(), ["1"]);
        let dest = t.path().join("tree");
        std::fs::create_dir(&dest).unwrap();
        let lim = Limits { max_bytes: 1 << 30, max_entries: 1000, ..Limits::MEM };
        unpack(&path, "1", &dest, lim).unwrap();
        assert_eq!(std::fs::read(dest.join("a/x")).unwrap(), b"2");
        assert!(!dest.join("a/y").exists());
        assert_eq!(std::fs::read_link(dest.join("l")).unwrap(), Path::new("a"));
        assert!(!dest.join(STAGING).exists());
        let mem = read_units(&path, "1").unwrap();
        assert_eq!(mem.read(Path::new("lib/systemd/system/u.service")).unwrap(), b"v2");
        assert_eq!(mem.lstat(Path::new("a/y")).unwrap(), None);
        let err = format!("{:#}", unpack(&path, "2", &dest, lim).unwrap_err());
        assert_eq!(err, "tag \"2\" not found (tags: 1)");

        std::fs::write(&path, bundle(&layers(), true)).unwrap();
        let dest = t.path().join("tree2");
        std::fs::create_dir(&dest).unwrap();
        let err = format!("{:#}", unpack(&path, "1", &dest, lim).unwrap_err());
        assert!(err.contains("digest mismatch"), "{err}");
        assert_eq!(std::fs::read_dir(&dest).unwrap().count(), 0, "staging left behind");
        let err = format!("{:#}", read_units(&path, "1").map(|_| ()).unwrap_err());
        assert!(err.contains("digest mismatch"), "{err}");
    }
}
