//! `image pack --format oci`: the bundle (seed 001), written byte for byte
//! the same for the same input.

use super::layout::*;
use crate::model::manifest::ImageManifest;
use crate::sys::fsutil;
use anyhow::{Context, Result};
use serde_json::json;
use std::io::Write;
use std::path::Path;

/// Counts and hashes what goes through it.
struct Hashed<W> {
    inner: W,
    hash: sha2::Sha256,
    len: u64,
}

impl<W: Write> Write for Hashed<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        sha2::Digest::update(&mut self.hash, &buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn hex(h: sha2::Sha256) -> String {
    fsutil::hex(&sha2::Digest::finalize(h))
}

/// Writes a torcx OCI bundle (seed 001): a gzip tar of an OCI image layout
/// with one tar+gzip layer holding the tree, the bundle annotation and the
/// tag `tag`. `index.json` comes first, so listing its tags reads little.
pub fn write_oci(
    dir: &Path,
    entries: &[Entry],
    m: &ImageManifest,
    generated: Option<&[u8]>,
    tag: &str,
    tmp: &Path,
    dest: &Path,
) -> Result<usize> {
    // The layer goes to a file of its own first: its digest names it.
    let layer_tmp = crate::sys::fsutil::temp_file_beside(dest, "layer")
        .with_context(|| format!("creating a file beside {}", dest.display()))?;
    let f = layer_tmp.reopen().with_context(|| format!("opening {}", layer_tmp.path().display()))?;
    let outer = Hashed { inner: std::io::BufWriter::new(f), hash: Default::default(), len: 0 };
    let gz = flate2::GzBuilder::new().mtime(0).operating_system(3).write(outer, flate2::Compression::new(GZIP_LEVEL));
    let inner = Hashed { inner: gz, hash: Default::default(), len: 0 };
    let (inner, n) = write_tar(inner, dir, entries, m, generated)?;
    let diff_id = hex(inner.hash);
    let mut outer = inner.inner.finish()?;
    outer.flush()?;
    let (layer_digest, layer_size) = (hex(outer.hash), outer.len);

    let blob = |v: serde_json::Value| -> (Vec<u8>, String) {
        let b = serde_json::to_vec(&v).unwrap();
        let d = fsutil::sha256_hex(&b);
        (b, d)
    };
    let (config, config_digest) = blob(json!({
        "architecture": crate::archive::oci::goarch(),
        "os": "linux",
        // Docker's schema 2 keeps no annotations: a copy into it keeps this label.
        "config": {"Labels": {crate::archive::oci::ANNOTATION: "yes"}},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff_id}")]},
    }));
    let (manifest, manifest_digest) = blob(json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{config_digest}"), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": format!("sha256:{layer_digest}"), "size": layer_size}],
        "annotations": {"com.coreos.torcx.bundle.v0": "yes"},
    }));
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{manifest_digest}"),
            "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag, "com.coreos.torcx.bundle.v0": "yes"},
        }],
        "annotations": {"com.coreos.torcx.bundle.v0": "yes"},
    }))?;

    // An empty file made for this run (fsutil::temp_file_beside).
    let f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(tmp)
        .with_context(|| format!("opening {}", tmp.display()))?;
    let gz = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(3)
        .write(std::io::BufWriter::new(f), flate2::Compression::new(GZIP_LEVEL));
    let mut b = tar::Builder::new(gz);
    let add = |b: &mut tar::Builder<_>, path: &str, data: &[u8]| -> Result<()> {
        b.append_data(&mut header(tar::EntryType::Regular, 0o644, data.len() as u64), path, data)?;
        Ok(())
    };
    add(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    add(&mut b, "index.json", &index)?;
    for d in ["blobs/", "blobs/sha256/"] {
        b.append_data(&mut header(tar::EntryType::Directory, 0o755, 0), d, std::io::empty())?;
    }
    add(&mut b, &format!("blobs/sha256/{manifest_digest}"), &manifest)?;
    add(&mut b, &format!("blobs/sha256/{config_digest}"), &config)?;
    let layer = std::fs::File::open(layer_tmp.path())?;
    b.append_data(
        &mut header(tar::EntryType::Regular, 0o644, layer_size),
        format!("blobs/sha256/{layer_digest}"),
        layer,
    )?;
    let gz = b.into_inner()?;
    let w = gz.finish()?;
    w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(n)
}
