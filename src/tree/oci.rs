//! OCI bundles become trees: `unpack` stages the layer blobs inside the
//! tree being unpacked, then applies them in order with the confined
//! extractor; `read_units` (for the read-only generator) decompresses the
//! layers on the fly and merges just the entries the generator needs. The
//! bundle format itself is `archive::oci`.

use crate::archive::oci::{self, HashRead, Item, Layer, Resolved, check_entry_size, decoder, walk, wanted};
use crate::sys::fsutil;
use crate::tree::extract::{self, Stats};
use crate::tree::layer::{self, LayerPass, Whiteout};
use crate::tree::policy::{self, Kind, Limits};
use crate::tree::source::{self, ImageSource, MANIFEST_PATH, Mem};
use anyhow::{Context, Result, bail};
use rustix::fs::{AtFlags, Mode, OFlags};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::io::{BufReader, Read, Seek, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Where `unpack` stages layer blobs, inside the tree, until they are applied.
pub const STAGING: &str = ".torcx-oci-staging";

// ---------------------------------------------------------------------------
// unpack

/// Applies the layers of `tag` in order into the empty directory `dest`.
pub fn unpack(path: &Path, tag: &str, dest: &Path, limits: Limits) -> Result<Stats> {
    let r = oci::resolve(path, tag)?;
    let root = fsutil::open_dir(dest)?;
    let (mut staged, mut live) = stage(path, &r, &root, limits)?;
    let mut stats = Stats::default();
    for (i, l) in r.layers.iter().enumerate() {
        let file = &staged[&l.hex].0;
        // The first layer has nothing below it for whiteouts to remove.
        let passes: &[LayerPass] =
            if i == 0 { &[LayerPass::Entries] } else { &[LayerPass::Whiteouts, LayerPass::Entries] };
        for pass in passes {
            let mut f = file.try_clone().context("staged blob")?;
            f.rewind().context("staged blob")?;
            let lim = Limits { max_bytes: limits.max_bytes.saturating_sub(live), max_entries: limits.max_entries };
            let res = decoder(l.comp, BufReader::with_capacity(128 << 10, f))
                .and_then(|d| layer::extract_layer(d, dest, lim, &mut stats, *pass));
            res.with_context(|| format!("layer {} ({})", i + 1, l.digest))?;
        }
        if !r.layers[i + 1..].iter().any(|x| x.hex == l.hex)
            && let Some((file, charged)) = staged.remove(&l.hex)
        {
            // Closing the unlinked file frees its space for the tree.
            drop(file);
            live -= charged;
        }
    }
    extract::check_symlinks(dest)?;
    Ok(stats)
}

/// Staged layer blobs by hex digest: the open (unlinked) file and the space charged.
type Staged = HashMap<String, (std::fs::File, u64)>;

/// Copies the layer blobs of `r` into `dest/.torcx-oci-staging`, checking
/// each against its descriptor (and the config blob too), and returns them
/// open. Each staged file is unlinked as soon as it is created, so nothing a
/// layer writes can reach it and nothing is left if unpacking stops; the
/// directory goes once staging is done. The space used is charged against
/// `limits.max_bytes`; also returned, as it stays used until applied.
fn stage(path: &Path, r: &Resolved, root: &OwnedFd, limits: Limits) -> Result<(Staged, u64)> {
    rustix::fs::mkdirat(root, STAGING, Mode::from_raw_mode(0o700))
        .with_context(|| format!("creating {STAGING} in the image tree"))?;
    let res = (|| -> Result<(Staged, u64)> {
        let dir = rustix::fs::openat(
            root,
            STAGING,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut want = wanted(r);
        let mut staged = HashMap::new();
        let mut total = 0u64;
        let mut buf = vec![0u8; 256 << 10];
        walk(path, |item, e| {
            let Item::Blob(h) = item else { return Ok(true) };
            let Some((digest, size, layer)) = want.remove(&h) else { return Ok(true) };
            check_entry_size(&digest, size, e)?;
            let mut hr = HashRead::new(e);
            if layer {
                let charge = policy::unpack_cost(size);
                total += charge;
                if total > limits.max_bytes {
                    bail!(
                        "blob {digest}: staging the layers exceeds the unpack limit of {} bytes (TORCX_UNPACK_LIMIT or unpack_limit in the config)",
                        limits.max_bytes
                    );
                }
                let fd = rustix::fs::openat(
                    &dir,
                    h.as_str(),
                    OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .with_context(|| format!("blob {digest}: staging"))?;
                let _ = rustix::fs::unlinkat(&dir, h.as_str(), AtFlags::empty());
                let mut f = std::fs::File::from(fd);
                loop {
                    let n = hr.read(&mut buf).with_context(|| format!("blob {digest}: reading"))?;
                    if n == 0 {
                        break;
                    }
                    f.write_all(&buf[..n]).with_context(|| format!("blob {digest}: staging"))?;
                }
                hr.finish(&digest, size)?;
                staged.insert(h, (f, charge));
            } else {
                hr.finish(&digest, size)?;
            }
            Ok(!want.is_empty())
        })?;
        if let Some((digest, _, _)) = want.values().next() {
            bail!("blob {digest}: missing from the bundle");
        }
        Ok((staged, total))
    })();
    let rm = rustix::fs::unlinkat(root, STAGING, AtFlags::REMOVEDIR);
    let out = res?;
    rm.with_context(|| format!("removing {STAGING}"))?;
    Ok(out)
}

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

/// What one layer does to the ones below it.
#[derive(Default, Debug)]
struct Rec {
    /// `(path, opaque)`: remove `path`, or empty it when opaque.
    whiteouts: Vec<(PathBuf, bool)>,
    ops: Vec<Op>,
}

#[derive(Debug)]
enum Op {
    Dir(PathBuf),
    Link(PathBuf, PathBuf),
    File(PathBuf, Vec<u8>),
    Hardlink(PathBuf, PathBuf),
    /// A file not kept: it still replaces what was at its path.
    Gone(PathBuf),
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

fn has_at_or_below(t: &Tree, p: &Path) -> bool {
    t.range::<Path, _>((std::ops::Bound::Included(p), std::ops::Bound::Unbounded))
        .next()
        .is_some_and(|(k, _)| k.starts_with(p))
}

fn merge(t: &mut Tree, rec: &Rec) {
    for (p, opaque) in &rec.whiteouts {
        remove_below(t, p, *opaque);
    }
    for op in &rec.ops {
        match op {
            Op::Dir(p) => {
                if !matches!(t.get(p), Some(Node::Dir)) {
                    remove_below(t, p, false);
                    t.insert(p.clone(), Node::Dir);
                }
            }
            Op::Link(p, target) => {
                remove_below(t, p, false);
                t.insert(p.clone(), Node::Link(target.clone()));
            }
            Op::File(p, data) => {
                remove_below(t, p, false);
                t.insert(p.clone(), Node::File(data.clone()));
            }
            Op::Hardlink(p, target) => {
                let data = match t.get(target) {
                    Some(Node::File(d)) => Some(d.clone()),
                    _ => None,
                };
                remove_below(t, p, false);
                if let Some(d) = data {
                    t.insert(p.clone(), Node::File(d));
                }
            }
            Op::Gone(p) => remove_below(t, p, false),
        }
    }
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
    entries: u64,
    bytes: u64,
}

/// Reads one layer (decompressing on the fly) into what it does to the
/// layers below, with the extractor's path rules. With `lower` (the merged
/// layers below, when this layer is merged next), files not kept are only
/// recorded when they replace something recorded below.
fn read_layer(src: impl Read, l: &Layer, lower: Option<&Tree>, extra: &[PathBuf], budget: &mut Budget) -> Result<Rec> {
    let mut hr = HashRead::new(src);
    let parsed = (|| -> Result<Rec> {
        let dec = decoder(l.comp, BufReader::with_capacity(64 << 10, &mut hr))?;
        let mut ar = tar::Archive::new(dec);
        let mut rec = Rec::default();
        let mut here: HashSet<PathBuf> = HashSet::new();
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
                policy::check_tar(&raw, ty, None)?;
                continue;
            };
            policy::count_entry(&raw, &mut budget.entries, &budget.limits)?;
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
            let Some(checked) = policy::check_tar(&raw, ty, link.as_deref())? else { continue };
            let rel = dir.join(name);
            let replaces = |rel: &Path, here: &HashSet<PathBuf>| {
                here.contains(rel) || lower.is_none_or(|t| has_at_or_below(t, rel))
            };
            match checked.kind {
                Kind::Dir => {
                    here.insert(rel.clone());
                    rec.ops.push(Op::Dir(rel));
                }
                // The policy checked the target.
                Kind::Symlink => {
                    let t = PathBuf::from(OsStr::from_bytes(&link.unwrap_or_default()));
                    here.insert(rel.clone());
                    rec.ops.push(Op::Link(rel, t));
                }
                Kind::File => {
                    let size = e.size();
                    if keep(&rel, extra) && policy::fits_in_memory(size) {
                        policy::charge_mem(&mut budget.bytes, size, &budget.limits)?;
                        let mut v = Vec::with_capacity(size as usize);
                        e.read_to_end(&mut v).context("reading layer")?;
                        here.insert(rel.clone());
                        rec.ops.push(Op::File(rel, v));
                    } else if replaces(&rel, &here) {
                        rec.ops.push(Op::Gone(rel));
                    }
                }
                Kind::HardLink => {
                    let t = link.unwrap_or_default();
                    let tc = policy::hardlink_target(&raw, &t)?;
                    if keep(&rel, extra) {
                        here.insert(rel.clone());
                        rec.ops.push(Op::Hardlink(rel, tc.iter().collect()));
                    } else if replaces(&rel, &here) {
                        rec.ops.push(Op::Gone(rel));
                    }
                }
                // Refused by the policy above.
                other => policy::check_kind(&raw, &other)?,
            }
        }
        Ok(rec)
    })();
    // A corrupt blob is reported as such, rather than by what it made the
    // decompressor or the tar reader say.
    hr.finish(&l.digest, l.size)?;
    parsed.with_context(|| format!("layer {}", l.digest))
}

/// Streams the bundle once, reading every layer of `r` and merging them in
/// manifest order.
fn collect(path: &Path, r: &Resolved, extra: &[PathBuf], limits: &Limits) -> Result<Tree> {
    let mut want = wanted(r);
    let mut tree = Tree::new();
    let mut next = 0;
    let mut recs: HashMap<String, Rec> = HashMap::new();
    let mut budget = Budget { limits: *limits, entries: 0, bytes: 0 };
    walk(path, |item, e| {
        let Item::Blob(h) = item else { return Ok(true) };
        let Some((digest, size, layer)) = want.remove(&h) else { return Ok(true) };
        check_entry_size(&digest, size, e)?;
        if !layer {
            HashRead::new(e).finish(&digest, size)?;
            return Ok(!want.is_empty());
        }
        let l = r.layers.iter().find(|l| l.hex == h).unwrap();
        // Merged right away, and used once: what it does not keep can be
        // dropped unless it replaces something below.
        let now = r.layers.get(next).is_some_and(|l| l.hex == h) && r.layers.iter().filter(|l| l.hex == h).count() == 1;
        let rec = read_layer(e, l, now.then_some(&tree), extra, &mut budget)?;
        recs.insert(h, rec);
        while next < r.layers.len()
            && let Some(rec) = recs.get(&r.layers[next].hex)
        {
            merge(&mut tree, rec);
            let h = &r.layers[next].hex;
            if !r.layers[next + 1..].iter().any(|l| &l.hex == h) {
                recs.remove(&h.clone());
            }
            next += 1;
        }
        Ok(!want.is_empty())
    })?;
    if let Some((digest, _, _)) = want.values().next() {
        bail!("blob {digest}: missing from the bundle");
    }
    Ok(tree)
}

fn to_mem(t: &Tree) -> Mem {
    let mut m = Mem::default();
    for (p, n) in t {
        match n {
            Node::Dir => m.insert_dir(p.clone()),
            Node::Link(target) => m.insert_link(p.clone(), target.clone()),
            Node::File(d) => m.insert_file(p.clone(), d.clone()),
        }
    }
    m
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
    let r = oci::resolve(path, tag)?;
    let mut extra: Vec<PathBuf> = vec![];
    loop {
        let mem = to_mem(&collect(path, &r, &extra, limits)?);
        let more: Vec<PathBuf> = missed(&mem, &extra).into_iter().filter(|p| !extra.contains(p)).collect();
        if more.is_empty() || !extra.is_empty() {
            return Ok(mem);
        }
        extra.extend(more);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::oci::list_tags;

    #[test]
    fn merging() {
        let mut t = Tree::new();
        let p = |s: &str| PathBuf::from(s);
        merge(
            &mut t,
            &Rec {
                whiteouts: vec![],
                ops: vec![
                    Op::Dir(p("a")),
                    Op::File(p("a/x"), b"x".to_vec()),
                    Op::File(p("a/y"), b"y".to_vec()),
                    Op::Dir(p("b")),
                    Op::File(p("b/z"), b"z".to_vec()),
                    Op::Link(p("c"), p("a")),
                ],
            },
        );
        merge(
            &mut t,
            &Rec {
                whiteouts: vec![(p("a/x"), false), (p("b"), true), (p("c"), false)],
                ops: vec![Op::File(p("b/new"), b"n".to_vec()), Op::Hardlink(p("a/h"), p("a/y")), Op::Gone(p("a/y"))],
            },
        );
        let keys: Vec<String> = t.keys().map(|k| k.display().to_string()).collect();
        assert_eq!(keys, ["a", "a/h", "b", "b/new"]);
        assert!(matches!(&t[&p("a/h")], Node::File(d) if d == b"y"));
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
        let lim = Limits { max_bytes: 1 << 30, max_entries: 1000 };
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
