//! Pulls (`torcx image pull`, and `oci://` remotes of `profile populate`):
//! a registry image into an OCI image layout directory in a store, whose
//! blobs every tag shares. Nothing is in the layout until it is verified.

use super::http::Client;
use super::registry::{Ref, Registry};
use crate::archive::oci::{ANNOTATION, Descriptor, MT_INDEX, REF_NAME, digest_hex, is_index_type, is_manifest_type};
use anyhow::{Context, Result, anyhow, bail};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The most layers an image may have (as a bundle may).
const MAX_LAYERS: usize = 256;

/// What a pull did.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Pulled {
    pub fetched_bytes: u64,
    pub reused_bytes: u64,
    pub blobs: usize,
}

/// `progress(digest, done, size)`, called as each blob arrives.
pub type Progress<'p> = &'p (dyn Fn(&str, u64, u64) + Sync);

/// Pulls `r` into the OCI image layout `layout` as tag `tag`: the manifest
/// (through an index, this machine's, the index kept too), its config and
/// layers, each checked; then `index.json` names the tag. An image without
/// the torcx annotation (or, in Docker's schema 2, the config's label) is
/// refused before any layer is fetched.
pub fn pull_to_layout(reg: &Registry, r: &Ref, tag: &str, layout: &Path, progress: Progress) -> Result<Pulled> {
    let (mut bytes, mut mt, mut digest) = reg.manifest(&r.repo, r.reference())?;
    let mut marked = false;
    // Through an index, the index is kept in the layout too and the tag
    // names it: a signed index may list the digest of either.
    let mut through = None;
    if is_index_type(&mt) {
        let index: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|_| anyhow!("{}: the index is not JSON", r.repo))?;
        marked |= annotated(&index);
        let ds: Vec<Descriptor> = serde_json::from_value(index.get("manifests").cloned().unwrap_or_default())
            .map_err(|e| anyhow!("{}: invalid index: {}", r.repo, crate::model::parse_error(e)))?;
        let d = pick_platform(&ds).with_context(|| format!("{}:{}", r.repo, r.reference()))?;
        marked |= d.annotations.get(ANNOTATION).is_some_and(|v| v == "yes");
        // By digest only: a tag here would let a pinned index lead to something mutable.
        digest_hex(&d.digest).with_context(|| format!("{}:{}: index entry", r.repo, r.reference()))?;
        let (b, m, dg) = reg.manifest(&r.repo, &d.digest)?;
        if b.len() as u64 != d.size {
            bail!("{}: manifest {}: {} bytes, the index says {}", r.repo, d.digest, b.len(), d.size);
        }
        through =
            Some((std::mem::replace(&mut bytes, b), std::mem::replace(&mut mt, m), std::mem::replace(&mut digest, dg)));
    }
    if !is_manifest_type(&mt) {
        bail!("{}:{}: media type {} is not an image manifest", r.repo, r.reference(), crate::model::quoted(&mt));
    }
    let m: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|_| anyhow!("{}: the manifest is not JSON", r.repo))?;
    marked |= annotated(&m);
    let config: Descriptor = serde_json::from_value(m.get("config").cloned().unwrap_or_default())
        .map_err(|e| anyhow!("{}: invalid manifest config: {}", r.repo, crate::model::parse_error(e)))?;
    // Docker's schema 2 has no annotations: the config's label says it then.
    let mut config_bytes = None;
    if !marked {
        let b = reg.small_blob(&r.repo, &config)?;
        if !crate::archive::oci::config_labelled(&b) {
            bail!(
                "{}:{}: not a torcx image (no \"{ANNOTATION}\": \"yes\" annotation, nor such a label in its config)",
                r.repo,
                r.reference()
            );
        }
        config_bytes = Some(b);
    }
    let layers: Vec<Descriptor> = serde_json::from_value(m.get("layers").cloned().unwrap_or_default())
        .map_err(|e| anyhow!("{}: invalid manifest layers: {}", r.repo, crate::model::parse_error(e)))?;
    if layers.len() > MAX_LAYERS {
        bail!("{}:{}: {} layers (at most {MAX_LAYERS})", r.repo, r.reference(), layers.len());
    }
    // Real directories only: a link planted in the store would send the blobs elsewhere.
    for d in [layout.to_path_buf(), layout.join("blobs"), layout.join("blobs/sha256")] {
        if std::fs::symlink_metadata(&d).is_ok_and(|m| !m.is_dir()) {
            bail!("{}: not a directory", d.display());
        }
    }
    let blobs = layout.join("blobs/sha256");
    let mut p = Pulled::default();
    if let Some(b) = &config_bytes {
        std::fs::create_dir_all(&blobs).with_context(|| format!("creating {}", blobs.display()))?;
        keep_document(&blobs, &config.digest, b)?;
    }
    let mut done = std::collections::BTreeSet::new();
    for d in std::iter::once(&config).chain(layers.iter()) {
        // A layer listed twice is one blob.
        if !done.insert(d.digest.as_str()) {
            continue;
        }
        let got = reg.blob(&r.repo, d, &blobs, &|n| progress(&d.digest, n, d.size))?;
        p.fetched_bytes = p.fetched_bytes.saturating_add(got);
        p.reused_bytes = p.reused_bytes.saturating_add(d.size.saturating_sub(got));
        p.blobs += 1;
    }
    if config_bytes.is_some() {
        // Fetched above, to read its label.
        p.reused_bytes = p.reused_bytes.saturating_sub(config.size);
        p.fetched_bytes = p.fetched_bytes.saturating_add(config.size);
    }
    // The manifest (and index) last: a layout never names what it does not hold.
    let (bytes, mt, digest) = match through {
        Some(top) => {
            keep_document(&blobs, &digest, &bytes)?;
            top
        }
        None => (bytes, mt, digest),
    };
    keep_document(&blobs, &digest, &bytes)?;
    crate::sys::fsutil::atomic_write(&layout.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#, 0o644)?;
    let entry = serde_json::json!({"mediaType": mt, "digest": digest, "size": bytes.len(),
        "annotations": {REF_NAME: tag, ANNOTATION: "yes"}});
    update_index(layout, |list| {
        list.retain(|d| d["annotations"][REF_NAME].as_str() != Some(tag));
        list.push(entry);
        Ok(())
    })?;
    Ok(p)
}

/// Rewrites the layout's `index.json` with `edit` applied to its entries,
/// under a lock on the layout: two pulls into one layout both keep their tag.
fn update_index(layout: &Path, edit: impl FnOnce(&mut Vec<serde_json::Value>) -> Result<()>) -> Result<()> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let dir =
        rustix::fs::open(layout, flags, Mode::empty()).with_context(|| format!("opening {}", layout.display()))?;
    rustix::fs::flock(&dir, rustix::fs::FlockOperation::LockExclusive)
        .with_context(|| format!("locking {}", layout.display()))?;
    let index_path = layout.join("index.json");
    // Bounded, a plain file only: what is there otherwise is replaced by a fresh index.
    let mut index: serde_json::Value = crate::archive::oci_layout::open_nofollow(&index_path)
        .ok()
        .and_then(|f| {
            let mut b = vec![];
            std::io::Read::read_to_end(&mut std::io::Read::take(f, 4 << 20), &mut b).ok().map(|_| b)
        })
        .and_then(|b| serde_json::from_slice(&b).ok())
        .filter(|v: &serde_json::Value| v["manifests"].is_array())
        .unwrap_or_else(|| serde_json::json!({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": []}));
    let list = index["manifests"].as_array_mut().ok_or_else(|| anyhow!("{}: invalid", index_path.display()))?;
    edit(list)?;
    crate::sys::fsutil::atomic_write(&index_path, &serde_json::to_vec_pretty(&index)?, 0o644)
}

/// Names what tag `tag` of the layout names as `also` too (`com.coreos.cl`
/// beside the version a signed index makes the default).
pub fn tag_also(layout: &Path, tag: &str, also: &str) -> Result<()> {
    update_index(layout, |list| {
        let d = list
            .iter()
            .find(|d| d["annotations"][REF_NAME].as_str() == Some(tag))
            .cloned()
            .ok_or_else(|| anyhow!("{}: no tag {tag}", layout.display()))?;
        list.retain(|d| d["annotations"][REF_NAME].as_str() != Some(also));
        let mut d = d;
        d["annotations"][REF_NAME] = also.into();
        list.push(d);
        Ok(())
    })
}

/// Writes a manifest, index or config (checked already) as its blob,
/// unless a plain file with those bytes is there.
fn keep_document(blobs: &Path, digest: &str, bytes: &[u8]) -> Result<()> {
    let p = blobs.join(digest_hex(digest)?);
    let same = crate::archive::oci_layout::open_nofollow(&p).ok().is_some_and(|f| {
        let mut have = vec![];
        f.take(bytes.len() as u64 + 1).read_to_end(&mut have).is_ok() && have == bytes
    });
    if !same {
        crate::sys::fsutil::atomic_write(&p, bytes, 0o644)?;
    }
    Ok(())
}

fn annotated(v: &serde_json::Value) -> bool {
    v.get("annotations").and_then(|a| a.get(ANNOTATION)).and_then(|a| a.as_str()) == Some("yes")
}

/// The index entry for linux on this machine's architecture; an error
/// listing what the index offers otherwise.
fn pick_platform(ds: &[Descriptor]) -> Result<&Descriptor> {
    let arch = crate::archive::oci::goarch();
    if let [d] = ds
        && d.platform.is_none()
    {
        return Ok(d);
    }
    ds.iter().find(|d| d.platform.as_ref().is_some_and(|p| p.architecture == arch && p.os == "linux")).ok_or_else(
        || {
            let offered: Vec<String> = ds
                .iter()
                .map(|d| d.platform.as_ref().map(|p| format!("{}/{}", p.os, p.architecture)).unwrap_or("(none)".into()))
                .collect();
            anyhow!("no image for linux/{arch} (the index offers {})", offered.join(", "))
        },
    )
}

/// Where a pull of `name` goes in the store directory `store`.
pub fn layout_dir(store: &Path, name: &str) -> PathBuf {
    store.join(format!("{name}.torcx.oci"))
}

/// That a registry has `reference` (a manifest or index), for
/// `profile check --remote-only`: nothing is stored.
pub fn check(cfg: &crate::model::config::Config, reference: &str, timeout: std::time::Duration) -> Result<()> {
    let r: Ref = reference.parse()?;
    let http = Client::new(timeout);
    let reg = Registry::connect_configured(cfg, &http, &r, false)?;
    reg.manifest(&r.repo, r.reference())?;
    Ok(())
}

/// What `torcx image pull` reports.
#[derive(Debug, serde::Serialize)]
pub struct PullOutcome {
    pub image: String,
    pub reference: String,
    pub path: PathBuf,
    #[serde(flatten)]
    pub pulled: Pulled,
    pub seconds: f64,
}

/// `torcx image pull`: `reference` into the user store (versioned with
/// `version`) as `NAME.torcx.oci`, tag `REF`. `name` (`NAME[:REF]`) names
/// the image; by default the repository's last component and the tag. A
/// pull by digest needs `NAME:REF`.
pub fn pull(
    cfg: &crate::model::config::Config,
    reference: &str,
    name: Option<&str>,
    version: Option<&str>,
    plain_http: bool,
    timeout: std::time::Duration,
    progress: Progress,
) -> Result<PullOutcome> {
    let started = std::time::Instant::now();
    let r: Ref = reference.parse()?;
    let (n, t) = match name.map(|n| n.split_once(':').map(|(a, b)| (a, Some(b))).unwrap_or((n, None))) {
        Some((n, t)) => (n.to_string(), t.map(String::from).or(r.tag.clone())),
        None => (r.name().to_string(), r.tag.clone()),
    };
    let t = t.ok_or_else(|| anyhow!("{reference}: a pull by digest needs --name NAME:REF"))?;
    let id = crate::model::names::ImageId::new(&n, &t)?;
    if let Some(v) = version {
        crate::model::names::validate_reference(v).context("-n")?;
    }
    let store = cfg.user_store(version);
    let http = Client::new(timeout);
    let reg = Registry::connect_configured(cfg, &http, &r, plain_http)?;
    let dir = layout_dir(&cfg.host(&store), &id.name);
    let pulled = pull_to_layout(&reg, &r, &id.reference, &dir, progress).with_context(|| format!("image {id}"))?;
    Ok(PullOutcome {
        image: id.to_string(),
        reference: reference.to_string(),
        path: layout_dir(&store, &id.name),
        pulled,
        seconds: (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
    })
}
