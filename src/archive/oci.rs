//! OCI bundles (seed 001): a gzip tar of an OCI image layout (`oci-layout`,
//! `index.json`, `blobs/sha256/HEX`) annotated
//! `"com.coreos.torcx.bundle.v0": "yes"`; its tags are references.
//!
//! Blobs come in the bundle in any order and the bundle is a gzip stream, so
//! reading one is done in passes: the small JSON documents first (index,
//! manifests, buffered as they go by), then the blobs a tag needs, each
//! checked against its descriptor (size and sha256) before it is used.
//! `unpack` stages the layer blobs inside the tree being unpacked, then
//! applies them in order with the confined extractor; `read_units` (for the
//! read-only generator) decompresses the layers on the fly and merges just
//! the entries the generator needs.

use crate::archive::barren;
use crate::archive::{Archive, Format};
use crate::model::names::ImageId;
use anyhow::{Context, Result, bail};
use sha2::Digest;
use std::collections::HashMap;
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};

pub use super::oci_doc::*;

/// Largest `index.json` or manifest read (the OCI distribution limit).
const MAX_JSON: u64 = 4 << 20;
/// JSON-looking blobs buffered on the way to `index.json`, in all.
const MAX_SPECULATIVE: u64 = 16 << 20;
const MAX_LAYERS: usize = 256;

/// Whether the config of `m` is labelled; its blob is needed first.
fn labelled(s: &Small, m: &Manifest) -> Result<Step<bool>> {
    match s.blob(&m.config)? {
        Some(b) => Ok(Step::Done(config_labelled(b))),
        None => Ok(Step::Need(vec![Item::Blob(digest_hex(&m.config.digest)?.into())])),
    }
}

// ---------------------------------------------------------------------------
// Reading the bundle.

/// What a bundle entry is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Item {
    Layout,
    Index,
    /// `blobs/sha256/HEX`
    Blob(String),
}

fn classify(raw: &[u8]) -> Option<Item> {
    let comps: Vec<&[u8]> = raw.split(|b| *b == b'/').filter(|c| !c.is_empty() && *c != b".").collect();
    match comps.as_slice() {
        [b"oci-layout"] => Some(Item::Layout),
        [b"index.json"] => Some(Item::Index),
        [b"blobs", b"sha256", h] => {
            let h = std::str::from_utf8(h).ok()?;
            digest_hex(&format!("sha256:{h}")).ok()?;
            Some(Item::Blob(h.to_string()))
        }
        _ => None,
    }
}

fn describe(i: &Item) -> String {
    match i {
        Item::Layout => "the bundle has no oci-layout file".into(),
        Item::Index => "the bundle has no index.json".into(),
        Item::Blob(h) => format!("blob sha256:{h}: missing from the bundle"),
    }
}

/// The bundle's tar stream, inflated on a thread of its own.
fn open_bundle(path: &Path) -> Result<crate::archive::stream::Pipe> {
    if path.is_dir() {
        return crate::archive::oci_layout::open(path);
    }
    let a = Archive {
        id: ImageId { name: "bundle".into(), reference: "oci".into() },
        format: Format::Tgz,
        path: path.to_path_buf(),
        host: path.to_path_buf(),
    };
    crate::archive::stream::open_tar(&a)
}

/// Calls `f` with every regular-file entry of the bundle that is one of its
/// layout files or blobs, until `f` says stop.
pub fn walk(
    path: &Path,
    mut f: impl FnMut(Item, &mut tar::Entry<'_, crate::archive::stream::Pipe>) -> Result<bool>,
) -> Result<()> {
    let mut ar = tar::Archive::new(open_bundle(path)?);
    for e in ar.entries().context("reading bundle")? {
        let mut e = e.context("reading bundle")?;
        if !matches!(e.header().entry_type(), tar::EntryType::Regular | tar::EntryType::Continuous) {
            continue;
        }
        let Some(item) = classify(&e.path_bytes()) else { continue };
        if !f(item, &mut e)? {
            break;
        }
    }
    Ok(())
}

/// The small documents read so far.
#[derive(Default)]
struct Small {
    layout: Option<Vec<u8>>,
    index: Option<Vec<u8>>,
    blobs: HashMap<String, Vec<u8>>,
    speculative: u64,
    /// A whole pass over the bundle was made.
    complete: bool,
}

impl Small {
    fn has(&self, i: &Item) -> bool {
        match i {
            Item::Layout => self.layout.is_some(),
            Item::Index => self.index.is_some(),
            Item::Blob(h) => self.blobs.contains_key(h),
        }
    }

    /// The JSON blob `d` points at, checked against it; `None` when not read yet.
    fn blob(&self, d: &Descriptor) -> Result<Option<&[u8]>> {
        let hex = digest_hex(&d.digest)?;
        match self.blobs.get(hex) {
            None => Ok(None),
            Some(b) => {
                verify_bytes(d, b)?;
                Ok(Some(b))
            }
        }
    }
}

enum Step<T> {
    Done(T),
    Need(Vec<Item>),
}

fn read_entry(e: &mut impl Read, size: u64, max: u64, what: &str) -> Result<Vec<u8>> {
    if size > max {
        bail!("{what}: {size} bytes is too large for a JSON document (at most {max})");
    }
    let mut v = Vec::with_capacity(size as usize);
    e.read_to_end(&mut v).with_context(|| format!("reading {what}"))?;
    Ok(v)
}

/// Reads the bundle until `resolve` is satisfied with the small documents
/// read so far. On the way, every blob that looks like JSON is kept (within
/// a bound), since a manifest often comes before `index.json`: most bundles
/// take one pass, stopping as soon as they can. What was read is kept for
/// the process, so the store scan's `list_tags` spares `unpack` or
/// `read_units` a pass.
fn fetch<T>(path: &Path, resolve: impl FnMut(&Small) -> Result<Step<T>>) -> Result<T> {
    let key = file_key(path);
    let mut s = CACHE
        .lock()
        .ok()
        .and_then(|mut c| {
            let i = c.iter().position(|(p, k, _)| p == path && Some(k) == key.as_ref())?;
            Some(c.swap_remove(i).2)
        })
        .unwrap_or_default();
    let res = fetch_into(&mut s, path, resolve);
    if let (Some(key), Ok(mut c)) = (key, CACHE.lock()) {
        c.retain(|(p, _, _)| p != path);
        if c.len() >= 16 {
            c.remove(0);
        }
        c.push((path.to_path_buf(), key, s));
    }
    res
}

type FileKey = (u64, u64, u64, i64, i64);

static CACHE: std::sync::Mutex<Vec<(PathBuf, FileKey, Small)>> = std::sync::Mutex::new(Vec::new());

fn file_key(path: &Path) -> Option<FileKey> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec()))
}

fn fetch_into<T>(s: &mut Small, path: &Path, mut resolve: impl FnMut(&Small) -> Result<Step<T>>) -> Result<T> {
    let mut need = match resolve(s)? {
        Step::Done(t) => return Ok(t),
        Step::Need(n) => n,
    };
    // A nested index costs at most one more pass.
    for _ in 0..4 {
        let at_start = need.clone();
        let mut done = None;
        walk(path, |item, e| {
            if s.has(&item) {
                return Ok(true);
            }
            let size = e.size();
            match &item {
                Item::Layout => s.layout = Some(read_entry(e, size, 64 << 10, "oci-layout")?),
                Item::Index => s.index = Some(read_entry(e, size, MAX_JSON, "index.json")?),
                Item::Blob(h) if need.contains(&item) => {
                    let v = read_entry(e, size, MAX_JSON, &format!("blob sha256:{h}"))?;
                    s.blobs.insert(h.clone(), v);
                }
                Item::Blob(h) => {
                    if size > MAX_JSON || s.speculative + size > MAX_SPECULATIVE {
                        return Ok(true);
                    }
                    // Peek: layers start with a compression magic or a tar name.
                    let mut head = vec![];
                    e.take(512).read_to_end(&mut head).context("reading bundle")?;
                    if head.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
                        return Ok(true);
                    }
                    e.read_to_end(&mut head).context("reading bundle")?;
                    s.speculative += size;
                    s.blobs.insert(h.clone(), head);
                }
            }
            match resolve(s)? {
                Step::Done(t) => {
                    done = Some(t);
                    Ok(false)
                }
                Step::Need(n) => {
                    need = n;
                    Ok(true)
                }
            }
        })?;
        if let Some(t) = done {
            return Ok(t);
        }
        // Every entry has gone by once: what is still missing is not there.
        s.complete = true;
        match resolve(s)? {
            Step::Done(t) => return Ok(t),
            Step::Need(n) => need = n,
        }
        if let Some(missing) = need.iter().find(|i| at_start.contains(i)) {
            bail!("{}", describe(missing));
        }
    }
    bail!("too many nested indexes")
}

/// The layer compressions supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comp {
    Tar,
    Gzip,
    Zstd,
}

#[derive(Debug, Clone)]
pub struct Layer {
    pub digest: String,
    pub hex: String,
    pub size: u64,
    pub comp: Comp,
}

/// A tag resolved to its manifest, checked.
#[derive(Debug)]
pub struct Resolved {
    pub config: Descriptor,
    pub layers: Vec<Layer>,
    /// The digests on the way, each checked: the tag's descriptor's, and
    /// the manifest's when the tag names an index. A signed index may list
    /// either.
    pub path: Vec<String>,
}

/// Approves a resolved tag before its layers are read (`verify: signed`).
pub type Check<'a> = &'a dyn Fn(&Resolved) -> Result<()>;

fn layer_of(d: &Descriptor) -> Result<Layer> {
    let comp = match d.media_type.strip_prefix(MT_LAYER) {
        Some("") => Comp::Tar,
        Some("+gzip") => Comp::Gzip,
        Some("+zstd") => Comp::Zstd,
        _ if d.media_type == MT_DOCKER_LAYER => Comp::Tar,
        _ if d.media_type == format!("{MT_DOCKER_LAYER}.gzip") => Comp::Gzip,
        _ if d.media_type == format!("{MT_DOCKER_FOREIGN_LAYER}.gzip") => Comp::Gzip,
        _ => bail!(
            "layer {}: media type {:?} is not supported (tar, tar+gzip or tar+zstd layers are)",
            d.digest,
            d.media_type
        ),
    };
    Ok(Layer { digest: d.digest.clone(), hex: digest_hex(&d.digest)?.to_string(), size: d.size, comp })
}

/// Follows the manifest descriptor `d` of `tag` (through one nested index)
/// to its manifest; says whether anything on the way carries the annotation.
fn follow(s: &Small, tag: &str, d: &Descriptor) -> Result<Step<(bool, Manifest, String)>> {
    let mut marked = annotated(&d.annotations);
    let md = match d.media_type.as_str() {
        mt if is_manifest_type(mt) => d.clone(),
        mt if is_index_type(mt) => {
            let Some(b) = s.blob(d)? else { return Ok(Step::Need(vec![Item::Blob(digest_hex(&d.digest)?.into())])) };
            let nested = parse_index(&format!("index {} of tag {tag:?}", d.digest), b)?;
            marked |= annotated(&nested.annotations);
            let ms: Vec<&Descriptor> = nested.manifests.iter().filter(|m| is_manifest_type(&m.media_type)).collect();
            let m = pick(&format!("index {} of tag {tag:?}", d.digest), &ms)?;
            marked |= annotated(&m.annotations);
            m.clone()
        }
        other => bail!("tag {tag:?}: manifest {}: media type {other:?} is not supported", d.digest),
    };
    let Some(b) = s.blob(&md)? else { return Ok(Step::Need(vec![Item::Blob(digest_hex(&md.digest)?.into())])) };
    let m = parse_manifest(&format!("manifest {} of tag {tag:?}", md.digest), b)?;
    marked |= annotated(&m.annotations);
    Ok(Step::Done((marked, m, md.digest)))
}

fn tags_of(index: &Index) -> Vec<&str> {
    let mut v: Vec<&str> = vec![];
    for t in index.manifests.iter().filter_map(tag_of) {
        if !v.contains(&t) {
            v.push(t);
        }
    }
    v
}

fn resolve_tag(s: &Small, tag: &str) -> Result<Step<Resolved>> {
    let (Some(layout), Some(index)) = (&s.layout, &s.index) else {
        let need = [Item::Layout, Item::Index].into_iter().filter(|i| !s.has(i)).collect();
        return Ok(Step::Need(need));
    };
    let layout: Layout = parse_json("oci-layout", layout)?;
    if !layout.image_layout_version.starts_with("1.") {
        bail!("oci-layout: imageLayoutVersion {:?} is not supported (1.x is)", layout.image_layout_version);
    }
    let index = parse_index("index.json", index)?;
    let ds: Vec<&Descriptor> = index.manifests.iter().filter(|d| tag_of(d) == Some(tag)).collect();
    if ds.is_empty() {
        let tags = tags_of(&index);
        let tags = if tags.is_empty() { "none".to_string() } else { tags.join(", ") };
        bail!("tag {tag:?} not found (tags: {tags})");
    }
    let d = pick(&format!("tag {tag:?}"), &ds)?;
    let (marked, m, manifest) = match follow(s, tag, d)? {
        Step::Done(x) => x,
        Step::Need(n) => return Ok(Step::Need(n)),
    };
    if !(marked || annotated(&index.annotations)) {
        match labelled(s, &m)? {
            Step::Done(true) => {}
            Step::Done(false) => return Err(lacks_annotation()),
            Step::Need(n) => return Ok(Step::Need(n)),
        }
    }
    digest_hex(&m.config.digest)?;
    // The config is JSON, read whole to check its digest: bounded as the
    // other documents are, before any of it is read.
    if m.config.size > MAX_JSON {
        bail!("config {}: {} bytes (at most {MAX_JSON})", m.config.digest, m.config.size);
    }
    if m.layers.len() > MAX_LAYERS {
        bail!("tag {tag:?}: {} layers (at most {MAX_LAYERS})", m.layers.len());
    }
    let layers = m.layers.iter().map(layer_of).collect::<Result<Vec<_>>>()?;
    let mut path = vec![d.digest.clone()];
    if manifest != d.digest {
        path.push(manifest);
    }
    Ok(Step::Done(Resolved { config: m.config, layers, path }))
}

/// The tags (references) a bundle offers: those annotated as torcx bundles.
pub fn list_tags(path: &Path) -> Result<Vec<String>> {
    fetch(path, |s| {
        // `oci-layout` is not needed here, but usually comes next to
        // `index.json`: reading it now spares `unpack` a pass.
        let Some(index) = &s.index else {
            let mut need = vec![Item::Index];
            if s.layout.is_none() && !s.complete {
                need.push(Item::Layout);
            }
            return Ok(Step::Need(need));
        };
        if s.layout.is_none() && !s.complete {
            return Ok(Step::Need(vec![Item::Layout]));
        }
        let index = parse_index("index.json", index)?;
        if tags_of(&index).is_empty() {
            bail!("index.json names no image: no manifest has a {REF_NAME:?} annotation");
        }
        let all = annotated(&index.annotations);
        let mut tags = vec![];
        let mut need = vec![];
        for t in tags_of(&index) {
            let ds: Vec<&Descriptor> = index.manifests.iter().filter(|d| tag_of(d) == Some(t)).collect();
            if all || ds.iter().any(|d| annotated(&d.annotations)) {
                tags.push(t.to_string());
                continue;
            }
            // Only the manifests can tell.
            match follow(s, t, pick(&format!("tag {t:?}"), &ds)?)? {
                Step::Done((true, ..)) => tags.push(t.to_string()),
                Step::Done((false, m, _)) => match labelled(s, &m)? {
                    Step::Done(true) => tags.push(t.to_string()),
                    Step::Done(false) => {}
                    Step::Need(n) => need.extend(n),
                },
                Step::Need(n) => need.extend(n),
            }
        }
        if !need.is_empty() {
            return Ok(Step::Need(need));
        }
        if tags.is_empty() {
            return Err(lacks_annotation());
        }
        Ok(Step::Done(tags))
    })
}

/// A layer's tar stream, decompressed and bounded as every tar stream is
/// (`archive::guard`).
pub fn decoder<'a>(comp: Comp, r: impl BufRead + 'a) -> Result<Box<dyn Read + 'a>> {
    let inner: Box<dyn Read + 'a> = match comp {
        Comp::Tar => Box::new(r),
        Comp::Gzip => Box::new(barren::bounded(r, "gzip", |i| Ok(crate::archive::gunzip::decoder(i)))?),
        Comp::Zstd => Box::new(barren::bounded(r, "zstd", crate::archive::stream::zstd_decoder)?),
    };
    Ok(Box::new(crate::archive::guard::TarGuard::new(inner)))
}

/// Hashes and counts what is read through it.
pub struct HashRead<R> {
    inner: R,
    h: sha2::Sha256,
    n: u64,
}

impl<R: Read> Read for HashRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.h.update(&buf[..k]);
        self.n += k as u64;
        Ok(k)
    }
}

impl<R: Read> HashRead<R> {
    pub fn new(inner: R) -> Self {
        HashRead { inner, h: sha2::Sha256::new(), n: 0 }
    }

    /// Reads to the end and checks size and digest against `digest`/`size`.
    /// The bytes read so far.
    pub fn count(&self) -> u64 {
        self.n
    }

    pub fn finish(mut self, digest: &str, size: u64) -> Result<()> {
        std::io::copy(&mut self, &mut std::io::sink()).with_context(|| format!("blob {digest}: reading"))?;
        if self.n != size {
            return Err(corrupt(format!(
                "blob {digest}: size mismatch (the descriptor says {size} bytes, the bundle holds {})",
                self.n
            )));
        }
        let got = crate::sys::fsutil::hex(&self.h.finalize());
        if Some(got.as_str()) != digest.strip_prefix("sha256:") {
            return Err(corrupt(format!("blob {digest}: digest mismatch (got sha256:{got})")));
        }
        Ok(())
    }
}

/// The blobs a tag needs, by hex digest, with the descriptor size and whether
/// it is a layer (else only the config, checked and dropped).
pub fn wanted(r: &Resolved) -> HashMap<String, (String, u64, bool)> {
    let mut w = HashMap::new();
    w.insert(digest_hex(&r.config.digest).unwrap().to_string(), (r.config.digest.clone(), r.config.size, false));
    for l in &r.layers {
        w.insert(l.hex.clone(), (l.digest.clone(), l.size, true));
    }
    w
}

pub fn check_entry_size(digest: &str, want: u64, e: &tar::Entry<'_, crate::archive::stream::Pipe>) -> Result<()> {
    let have = e.size();
    if have != want {
        bail!("blob {digest}: size mismatch (the descriptor says {want} bytes, the bundle holds {have})");
    }
    Ok(())
}

/// `tag` of the bundle at `path`, resolved to its checked manifest.
pub fn resolve(path: &Path, tag: &str) -> Result<Resolved> {
    fetch(path, |s| resolve_tag(s, tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let h = "a".repeat(64);
        assert_eq!(classify(b"./index.json"), Some(Item::Index));
        assert_eq!(classify(b"oci-layout"), Some(Item::Layout));
        assert_eq!(classify(format!("blobs/sha256/{h}").as_bytes()), Some(Item::Blob(h.clone())));
        assert_eq!(classify(b"blobs/sha256/../../x"), None);
        assert_eq!(classify(b"blobs/sha512/abc"), None);
        assert!(digest_hex("sha512:00").is_err());
        assert!(digest_hex(&format!("sha256:{}", "A".repeat(64))).is_err());
    }
}
