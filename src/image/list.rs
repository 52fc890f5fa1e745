//! `torcx image list` and `torcx image clear-versioned`.

use crate::archive::Archive;
use crate::model::config::Config;
use crate::model::names;
use crate::store;
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// One row of `image list`: upstream's fields, then torcx's.
#[derive(Serialize, Debug)]
pub struct Listed {
    pub name: String,
    pub reference: String,
    pub filepath: PathBuf,
    pub store: PathBuf,
    pub format: &'static str,
    pub size: u64,
}

/// Archives in the stores, sorted by name and reference. With `os_version`,
/// the versioned stores of that version are searched, and the vendor store
/// only if it is this system's version (as upstream: its /usr would differ).
pub fn list(cfg: &Config, name: Option<&str>, os_version: Option<&str>) -> Result<Vec<Listed>> {
    let mut cfg = cfg.clone();
    if let Some(v) = os_version {
        if v.is_empty() || v.contains('/') || v == "." || v == ".." {
            bail!("invalid OS version {v:?}");
        }
        cfg.vendor_store = cfg.version_id.as_deref() == Some(v);
        cfg.version_id = Some(v.to_string());
    }
    if let Some(n) = name {
        names::validate_name(n)?;
    }
    let mut out: Vec<Listed> = store::scan(&cfg)
        .into_iter()
        .filter(|a| name.is_none_or(|n| a.id.name == n))
        .map(|a: Archive| Listed {
            name: a.id.name.clone(),
            reference: a.id.reference.clone(),
            store: a.path.parent().map(Path::to_path_buf).unwrap_or_default(),
            filepath: a.path.clone(),
            format: a.format.name(),
            size: std::fs::metadata(&a.host).map(|m| m.len()).unwrap_or(0),
        })
        .collect();
    out.sort_by(|a, b| (&a.name, &a.reference).cmp(&(&b.name, &b.reference)));
    Ok(out)
}

/// Removes versioned user stores (`BASEDIR/store/VERSION/`) other than the
/// kept ones, or only image `name`'s archives in them. The unversioned store
/// is never touched. Returns what was removed.
pub fn clear_versioned(cfg: &Config, keep: &[String], name: Option<&str>) -> Result<Vec<PathBuf>> {
    if keep.is_empty() {
        bail!("no store versions to keep: give at least one -k VERSION");
    }
    if let Some(n) = name {
        names::validate_name(n)?;
    }
    let base = cfg.base_dir.join("store");
    let mut removed = vec![];
    let Ok(rd) = std::fs::read_dir(cfg.host(&base)) else { return Ok(removed) };
    let mut dirs: Vec<_> = rd.flatten().collect();
    dirs.sort_by_key(|e| e.file_name());
    for e in dirs {
        let ver = e.file_name().to_string_lossy().into_owned();
        // Only real directories: a symlink is never followed out of the store.
        if !e.file_type().is_ok_and(|t| t.is_dir()) || keep.contains(&ver) {
            continue;
        }
        let logical = base.join(&ver);
        match name {
            None => {
                std::fs::remove_dir_all(e.path()).with_context(|| format!("removing {}", logical.display()))?;
                removed.push(logical);
            }
            Some(n) => {
                let mut files: Vec<_> = std::fs::read_dir(e.path())?.flatten().collect();
                files.sort_by_key(|f| f.file_name());
                for f in files {
                    let file = f.file_name().to_string_lossy().into_owned();
                    let ours = crate::archive::parse_archive_name(&file)
                        .is_some_and(|(_, id)| id.is_ok_and(|id| id.name == n));
                    if ours && f.file_type().is_ok_and(|t| t.is_file() || t.is_symlink()) {
                        std::fs::remove_file(f.path())
                            .with_context(|| format!("removing {}", logical.join(&file).display()))?;
                        removed.push(logical.join(&file));
                    }
                }
            }
        }
    }
    for r in &removed {
        log::info!("removed {}", r.display());
    }
    Ok(removed)
}
