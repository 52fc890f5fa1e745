//! Push: one tag of an OCI image layout to a registry, sending only the
//! blobs it lacks (`HEAD` first), then the manifest under the tag.

use super::registry::{Payload, Registry};
use crate::archive::oci::{ANNOTATION, Descriptor, REF_NAME, digest_hex, is_index_type, is_manifest_type};
use anyhow::{Context, Result, anyhow, bail};
use sha2::Digest as _;
use std::io::Read;
use std::path::Path;

/// What a push did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Pushed {
    pub manifest: String,
    pub blobs: usize,
    pub sent_bytes: u64,
    /// Blobs the registry had already.
    pub skipped_bytes: u64,
}

/// Pushes tag `from` of `layout` as `repo:tag`. The manifest must carry the
/// torcx annotation: a pull sees only what the manifest says.
pub fn push_layout(reg: &Registry, layout: &Path, from: &str, repo: &str, tag: &str) -> Result<Pushed> {
    let index: serde_json::Value =
        serde_json::from_slice(&crate::sys::fsutil::read_bounded(&layout.join("index.json"), 4 << 20)?)
            .map_err(|_| anyhow!("{}: index.json is not JSON", layout.display()))?;
    let ds: Vec<Descriptor> = serde_json::from_value(index["manifests"].clone())
        .map_err(|e| anyhow!("{}: index.json: {}", layout.display(), crate::model::parse_error(e)))?;
    let tags: Vec<&str> = ds.iter().filter_map(|d| d.annotations.get(REF_NAME).map(String::as_str)).collect();
    let d = ds.iter().find(|d| d.annotations.get(REF_NAME).map(String::as_str) == Some(from)).ok_or_else(|| {
        anyhow!("{}: no tag {} (tags: {})", layout.display(), crate::model::quoted(from), tags.join(", "))
    })?;
    let blobs = layout.join("blobs/sha256");
    let mut bytes = document(&blobs, &d.digest)?;
    let mut d = d.clone();
    // A tag pulled through an index: the manifest kept with it (this
    // machine's; the others were never fetched) is what is pushed.
    if is_index_type(&d.media_type) {
        let index: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|_| anyhow!("index {}: not JSON", d.digest))?;
        let ms: Vec<Descriptor> = serde_json::from_value(index["manifests"].clone())
            .map_err(|e| anyhow!("index {}: {}", d.digest, crate::model::parse_error(e)))?;
        let arch = crate::archive::oci::goarch();
        let kept = |m: &&Descriptor| {
            is_manifest_type(&m.media_type)
                && digest_hex(&m.digest)
                    .is_ok_and(|h| std::fs::symlink_metadata(blobs.join(h)).is_ok_and(|x| x.is_file()))
        };
        let m = ms
            .iter()
            .filter(kept)
            .find(|m| m.platform.as_ref().is_some_and(|p| p.architecture == arch))
            .or_else(|| ms.iter().find(kept))
            .ok_or_else(|| {
                anyhow!("{}: index {}: none of its manifests is in the layout", layout.display(), d.digest)
            })?;
        bytes = document(&blobs, &m.digest)?;
        d = m.clone();
    }
    let m: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|_| anyhow!("manifest {}: not JSON", d.digest))?;
    let config: Descriptor = serde_json::from_value(m["config"].clone())
        .map_err(|e| anyhow!("manifest {}: config: {}", d.digest, crate::model::parse_error(e)))?;
    // Marked as a pull wants it: annotated, or (Docker's schema 2) labelled.
    let marked = m["annotations"][ANNOTATION].as_str() == Some("yes")
        || document(&blobs, &config.digest).is_ok_and(|c| crate::archive::oci::config_labelled(&c));
    if !marked {
        bail!("manifest {}: no \"{ANNOTATION}\": \"yes\" annotation; pack the image with torcx image pack", d.digest);
    }
    let layers: Vec<Descriptor> = serde_json::from_value(m["layers"].clone())
        .map_err(|e| anyhow!("manifest {}: layers: {}", d.digest, crate::model::parse_error(e)))?;
    let mut p = Pushed { manifest: d.digest.clone(), ..Default::default() };
    for b in std::iter::once(&config).chain(layers.iter()) {
        let ctx = || format!("blob {}", b.digest);
        p.blobs += 1;
        let head =
            reg.request("HEAD", &format!("/v2/{repo}/blobs/{}", b.digest), &[], Payload::Empty).with_context(ctx)?;
        if head.status == 200 {
            p.skipped_bytes += b.size;
            continue;
        }
        // The blob itself (never through a link), checked before it is sent.
        let mut file =
            crate::archive::oci_layout::open_nofollow(&blobs.join(digest_hex(&b.digest)?)).with_context(ctx)?;
        if file.metadata()?.len() != b.size {
            bail!("blob {}: the file is not the {} bytes the manifest says", b.digest, b.size);
        }
        let got = crate::archive::digest::reader_digests(file.try_clone()?, &[crate::model::remote::Algo::Sha256])?;
        if got.first().map(|g| format!("sha256:{}", g.hex)).as_deref() != Some(b.digest.as_str()) {
            bail!("blob {}: the file's digest differs", b.digest);
        }
        use std::io::Seek;
        file.rewind()?;
        let started =
            reg.request("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], Payload::Empty).with_context(ctx)?;
        let location = match (started.status, started.location) {
            (202, Some(l)) => l,
            (s, _) => bail!("blob {}: HTTP {s} starting the upload", b.digest),
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let put = format!("{location}{sep}digest={}", b.digest);
        let headers =
            [("Content-Type", "application/octet-stream".to_string()), ("Content-Length", b.size.to_string())];
        let done = reg.request("PUT", &put, &headers, Payload::File(&file, b.size)).with_context(ctx)?;
        if done.status != 201 {
            bail!("blob {}: HTTP {} finishing the upload", b.digest, done.status);
        }
        p.sent_bytes += b.size;
    }
    let mt = m["mediaType"].as_str().unwrap_or(&d.media_type).to_string();
    let a = reg
        .request("PUT", &format!("/v2/{repo}/manifests/{tag}"), &[("Content-Type", mt)], Payload::Bytes(&bytes))
        .with_context(|| format!("manifest {repo}:{tag}"))?;
    if a.status != 201 {
        bail!("manifest {repo}:{tag}: HTTP {}", a.status);
    }
    Ok(p)
}

/// A manifest, index or config of the layout: at most 4 MiB, a plain file,
/// its digest checked.
fn document(blobs: &Path, digest: &str) -> Result<Vec<u8>> {
    let mut bytes = vec![];
    let f = crate::archive::oci_layout::open_nofollow(&blobs.join(digest_hex(digest)?))
        .with_context(|| format!("blob {digest}"))?;
    f.take(4 << 20).read_to_end(&mut bytes).with_context(|| format!("blob {digest}"))?;
    let got = format!("sha256:{}", crate::sys::fsutil::hex(&sha2::Sha256::digest(&bytes)));
    if got != digest {
        bail!("blob {digest}: digest mismatch (got {got})");
    }
    Ok(bytes)
}
