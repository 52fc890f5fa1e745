//! What a command names: an archive or image directory by path, or an image
//! in the stores by `NAME[:REF]`. One rule for every command: a path has a
//! `/` or is an archive's file name; a bare word is always an image name.

use crate::archive::Archive;
use crate::model::config::Config;
use crate::model::names::{self, ImageId};
use crate::profile;
use crate::store;
use anyhow::{Result, anyhow, bail};
use std::path::{Path, PathBuf};

/// Where an image comes from when attaching.
pub enum ImageFrom {
    Archive(Archive),
    /// An unpacked image directory on this machine.
    Dir {
        id: ImageId,
        path: PathBuf,
    },
}

impl ImageFrom {
    pub fn id(&self) -> &ImageId {
        match self {
            ImageFrom::Archive(a) => &a.id,
            ImageFrom::Dir { id, .. } => id,
        }
    }
    pub fn path(&self) -> &Path {
        match self {
            ImageFrom::Archive(a) => &a.path,
            ImageFrom::Dir { path, .. } => path,
        }
    }
    pub fn format(&self) -> super::record::RecordFormat {
        match self {
            ImageFrom::Archive(a) => a.format.into(),
            ImageFrom::Dir { .. } => super::record::RecordFormat::Directory,
        }
    }
}

/// Whether a command's argument names a path: it has a slash, or is an
/// archive's file name. A bare word is always a name in the stores, whatever
/// the current directory holds.
pub fn is_path(arg: &str) -> bool {
    arg.contains('/') || crate::archive::parse_archive_name(arg).is_some()
}

/// `NAME`, `NAME:REF`, or a path (see [`is_path`]).
pub fn resolve(cfg: &Config, arg: &str, allow_bare_name: bool) -> Result<ImageFrom> {
    let p = Path::new(arg);
    if is_path(arg) {
        let abs = std::path::absolute(p)?;
        let meta = std::fs::metadata(&abs).map_err(|e| anyhow!("{}: {e}", abs.display()))?;
        let file = abs.file_name().ok_or_else(|| anyhow!("{arg}: not an image path"))?.to_string_lossy().into_owned();
        if meta.is_dir() {
            let (n, r) = file.split_once(':').unwrap_or((&file, "local"));
            return Ok(ImageFrom::Dir { id: ImageId::new(n, r)?, path: abs });
        }
        let Some((format, id)) = crate::archive::parse_archive_name(&file) else {
            bail!("{}: not an archive name (NAME:REF.torcx.tgz or .torcx.tar.zst)", abs.display());
        };
        return Ok(ImageFrom::Archive(crate::archive::Archive { id: id?, format, path: abs.clone(), host: abs }));
    }
    let (name, reference) = match arg.split_once(':') {
        Some((n, r)) => (n, Some(r)),
        None if allow_bare_name => (arg, None),
        None => bail!("{arg}: name the reference, as NAME:REF"),
    };
    names::validate_name(name)?;
    let all = store::scan(cfg);
    if let Some(r) = reference {
        let id = ImageId::new(name, r)?;
        return all.into_iter().find(|a| a.id == id).map(ImageFrom::Archive).ok_or_else(|| {
            let dirs: Vec<String> = store::store_dirs(cfg).iter().map(|d| d.logical.display().to_string()).collect();
            anyhow!("image {id}: no archive in any store (searched {})", dirs.join(", "))
        });
    }
    // The reference the active profile names, else the only one in the stores.
    let profile_ref = profile::run_profile(cfg)
        .or_else(|| profile::resolve(cfg).ok().map(|r| r.images))
        .and_then(|imgs| imgs.into_iter().find(|i| i.name == name).map(|i| i.reference));
    let candidates: Vec<crate::archive::Archive> = all.into_iter().filter(|a| a.id.name == name).collect();
    if let Some(r) = profile_ref
        && let Some(a) = candidates.iter().find(|a| a.id.reference == r)
    {
        return Ok(ImageFrom::Archive(a.clone()));
    }
    match candidates.len() {
        0 => bail!("image {name}: no archive in any store"),
        1 => Ok(ImageFrom::Archive(candidates.into_iter().next().unwrap())),
        _ => {
            let refs: Vec<String> = candidates.iter().map(|a| a.id.to_string()).collect();
            bail!("image {name}: several references in the stores ({}); name one as NAME:REF", refs.join(", "))
        }
    }
}
