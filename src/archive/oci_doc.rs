//! The documents of an OCI image layout (`index.json`, image indexes,
//! manifests, Docker's schema 2 too) and the checks on them; read by
//! `archive::oci`, which re-exports what others use.

use anyhow::{Result, anyhow, bail};
use serde::Deserialize;
use sha2::Digest;
use std::collections::BTreeMap;

pub const ANNOTATION: &str = "com.coreos.torcx.bundle.v0";
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
pub const MT_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MT_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MT_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// Docker's schema 2, which registries and `skopeo --format v2s2` still write.
pub const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub(crate) const MT_DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
pub(crate) const MT_DOCKER_FOREIGN_LAYER: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar";

/// An image manifest's media type, OCI's or Docker's.
pub fn is_manifest_type(mt: &str) -> bool {
    mt == MT_MANIFEST || mt == MT_DOCKER_MANIFEST
}

/// An image index's media type, OCI's or Docker's manifest list.
pub fn is_index_type(mt: &str) -> bool {
    mt == MT_INDEX || mt == MT_DOCKER_LIST
}

// ---------------------------------------------------------------------------
// The documents of an image layout.

#[derive(Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub platform: Option<Platform>,
}

#[derive(Deserialize, Clone, Debug)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Index {
    pub(crate) schema_version: u32,
    #[serde(default)]
    pub(crate) media_type: Option<String>,
    pub(crate) manifests: Vec<Descriptor>,
    #[serde(default)]
    pub(crate) annotations: BTreeMap<String, String>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Manifest {
    pub(crate) schema_version: u32,
    #[serde(default)]
    pub(crate) media_type: Option<String>,
    pub(crate) config: Descriptor,
    pub(crate) layers: Vec<Descriptor>,
    #[serde(default)]
    pub(crate) annotations: BTreeMap<String, String>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Layout {
    pub(crate) image_layout_version: String,
}

pub(crate) fn annotated(a: &BTreeMap<String, String>) -> bool {
    a.get(ANNOTATION).is_some_and(|v| v == "yes")
}

pub(crate) fn lacks_annotation() -> anyhow::Error {
    anyhow!(
        "bundle lacks the \"{ANNOTATION}\": \"yes\" annotation (on index.json, a manifest descriptor or a manifest, or as a label of the image config)"
    )
}

/// Whether an image config carries the annotation as a label: Docker's
/// schema 2 has no annotations, so a torcx image in it says so there (as
/// `LABEL` in a Dockerfile, and `image pack` writes both).
pub fn config_labelled(config: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(config)
        .ok()
        .and_then(|v| v.get("config")?.get("Labels")?.get(ANNOTATION)?.as_str().map(|l| l == "yes"))
        .unwrap_or(false)
}

pub(crate) fn tag_of(d: &Descriptor) -> Option<&str> {
    d.annotations.get(REF_NAME).map(String::as_str)
}

/// The hex part of a `sha256:HEX` digest; other algorithms are refused.
pub fn digest_hex(digest: &str) -> Result<&str> {
    let Some(hex) = digest.strip_prefix("sha256:") else {
        bail!("blob {digest}: unsupported digest algorithm (only sha256 is)")
    };
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        bail!("blob {digest}: malformed digest");
    }
    Ok(hex)
}

/// Checks a blob read whole against its descriptor.
/// A blob that is not what its descriptor says.
pub(crate) fn corrupt(msg: String) -> anyhow::Error {
    crate::model::failure::error(crate::model::failure::Kind::Corrupt, msg)
}

pub(crate) fn verify_bytes(d: &Descriptor, data: &[u8]) -> Result<()> {
    if data.len() as u64 != d.size {
        return Err(corrupt(format!(
            "blob {}: size mismatch (the descriptor says {} bytes, the bundle holds {})",
            d.digest,
            d.size,
            data.len()
        )));
    }
    let got = crate::sys::fsutil::hex(&sha2::Sha256::digest(data));
    if Some(got.as_str()) != d.digest.strip_prefix("sha256:") {
        return Err(corrupt(format!("blob {}: digest mismatch (got sha256:{got})", d.digest)));
    }
    Ok(())
}

pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(what: &str, data: &[u8]) -> Result<T> {
    serde_json::from_slice(data).map_err(|e| anyhow!("{what}: invalid: {e}"))
}

pub(crate) fn parse_index(what: &str, data: &[u8]) -> Result<Index> {
    let i: Index = parse_json(what, data)?;
    if i.schema_version != 2 {
        bail!("{what}: schemaVersion {} is not supported (2 is)", i.schema_version);
    }
    if let Some(mt) = &i.media_type
        && !is_index_type(mt)
    {
        bail!("{what}: media type {mt:?} is not an image index");
    }
    Ok(i)
}

pub(crate) fn parse_manifest(what: &str, data: &[u8]) -> Result<Manifest> {
    let m: Manifest = parse_json(what, data)?;
    if m.schema_version != 2 {
        bail!("{what}: schemaVersion {} is not supported (2 is)", m.schema_version);
    }
    if let Some(mt) = &m.media_type
        && !is_manifest_type(mt)
    {
        bail!("{what}: media type {mt:?} is not an image manifest");
    }
    Ok(m)
}

/// This machine's architecture as OCI (GOARCH) names it.
pub fn goarch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "loongarch64" => "loong64",
        a => a,
    }
}

/// One of several descriptors: the only one, else the one for this machine.
pub(crate) fn pick<'a>(what: &str, ds: &[&'a Descriptor]) -> Result<&'a Descriptor> {
    match ds {
        [] => bail!("{what}: no manifest"),
        [d] => Ok(d),
        _ => {
            let arch = goarch();
            ds.iter()
                .find(|d| d.platform.as_ref().is_some_and(|p| p.architecture == arch && p.os == "linux"))
                .or_else(|| ds.iter().find(|d| d.platform.is_none()))
                .copied()
                .ok_or_else(|| anyhow!("{what}: none of its {} manifests is for linux/{arch}", ds.len()))
        }
    }
}
