//! `torcx image push SOURCE REF`: an image directory (packed as `image pack
//! --format oci` does), a tar, squashfs or erofs archive (unpacked with the
//! confined extractor, then packed), a bundle or a layout directory, published to a registry
//! with the torcx annotation; only the blobs the registry lacks are sent.

use crate::archive::{Format, parse_archive_name};
use crate::fetch::registry::{Ref, Registry};
use crate::model::config::Config;
use crate::sys::fsutil::ScratchDir;
use anyhow::{Context, Result, anyhow, bail};
use std::path::{Path, PathBuf};

#[derive(Debug, serde::Serialize)]
pub struct PushOutcome {
    pub source: PathBuf,
    pub reference: String,
    #[serde(flatten)]
    pub pushed: crate::fetch::push::Pushed,
    pub seconds: f64,
}

/// The OCI layout to push, and the tag in it: made in `scratch` unless
/// `source` is a layout already.
fn layout_of(cfg: &Config, source: &Path, tag: &str, scratch: &Path) -> Result<(PathBuf, String)> {
    let name = source.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let layout = scratch.join("layout");
    let bundle = scratch.join("image.torcx.oci.tgz");
    let meta = std::fs::metadata(source).with_context(|| format!("{}", source.display()))?;
    if meta.is_dir() && name.ends_with(Format::OciLayout.suffix()) {
        return Ok((source.to_path_buf(), tag.to_string()));
    }
    if meta.is_dir() {
        crate::image::pack::write_bundle(source, tag, &bundle)?;
    } else {
        let (format, id) = parse_archive_name(&name)
            .ok_or_else(|| anyhow!("{}: not an image directory or an archive name", source.display()))?;
        match format {
            Format::Oci => {
                // The bundle's own tags: the one the reference names, else its only one.
                let tags = crate::archive::oci::list_tags(source)?;
                let from = if tags.iter().any(|t| t == tag) {
                    tag.to_string()
                } else if let [only] = tags.as_slice() {
                    only.clone()
                } else {
                    bail!("{}: no tag {tag} (tags: {})", source.display(), tags.join(", "));
                };
                crate::archive::oci_layout::from_bundle(source, &layout)?;
                return Ok((layout, from));
            }
            Format::Tgz | Format::TarZst | Format::Squashfs | Format::Erofs => {
                let a = crate::archive::Archive {
                    id: id.unwrap_or_else(|_| crate::model::names::ImageId::new("image", tag).expect("a valid id")),
                    format,
                    path: source.to_path_buf(),
                    host: source.to_path_buf(),
                };
                let tree = scratch.join("tree");
                std::fs::create_dir(&tree)?;
                // squashfs and erofs are read without mounting (backhand, erofs-rs), as `image inspect` does.
                let findings = if format.mounted() {
                    crate::image::inspect::unpack_fsimage(cfg, &a, &tree)?
                } else {
                    crate::image::inspect::unpack_tar(cfg, &a, &tree)?
                };
                for f in findings {
                    if f.severity == crate::image::lint::Severity::Error {
                        bail!("{}", f.message);
                    }
                    log::warn!("{}: {}", source.display(), f.message);
                }
                crate::image::pack::write_bundle(&tree, tag, &bundle)?;
            }
            Format::OciLayout => bail!("{}: an OCI layout is a directory", source.display()),
        }
    }
    crate::archive::oci_layout::from_bundle(&bundle, &layout)?;
    Ok((layout, tag.to_string()))
}

pub fn push(
    cfg: &Config,
    source: &Path,
    reference: &str,
    plain_http: bool,
    timeout: std::time::Duration,
) -> Result<PushOutcome> {
    let started = std::time::Instant::now();
    let r: Ref = reference.parse()?;
    let tag = r.tag.clone().ok_or_else(|| anyhow!("{reference}: push to a tag (:TAG), not a digest"))?;
    let source = std::path::absolute(source)?;
    let scratch = ScratchDir::new_in(&std::env::temp_dir(), "torcx-push-")?;
    let (layout, from) = layout_of(cfg, &source, &tag, scratch.path())?;
    let http = crate::fetch::http::Client::new(timeout);
    let reg = Registry::connect_configured(cfg, &http, &r, plain_http)?;
    let pushed = crate::fetch::push::push_layout(&reg, &layout, &from, &r.repo, &tag)?;
    Ok(PushOutcome {
        source,
        reference: reference.to_string(),
        pushed,
        seconds: (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
    })
}
