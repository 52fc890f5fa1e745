//! `torcx profile ...`: listing and editing profiles (checking one is the
//! boot's job: `boot::check`). Every write is atomic (a reader sees the old
//! file or the new one) and every name is validated before a path is built
//! from it.

use crate::model::config::{Config, SEAL_PATH};
use crate::model::manifest::{self, PROFILE_V0, PROFILE_V1, ProfileEntry};
use crate::model::names::{self, ImageId};
use crate::profile;
use crate::store;
use crate::sys::fsutil::atomic_write;
use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// `torcx-profile-list-v0`, upstream's shape.
#[derive(Serialize, Debug)]
pub struct ProfileList {
    pub lower_profile_names: Vec<String>,
    pub user_profile_name: Option<String>,
    pub current_profile_path: Option<PathBuf>,
    pub next_profile_name: Option<String>,
    pub profiles: Vec<String>,
}

/// The `KEY="value"` pairs of the seal.
pub fn read_seal(cfg: &Config) -> Option<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(cfg.host(Path::new(SEAL_PATH))).ok()?;
    Some(
        text.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| {
                (k.trim().to_string(), v.trim().trim_matches('"').replace("\\\"", "\"").replace("\\\\", "\\"))
            })
            .collect(),
    )
}

pub fn list(cfg: &Config) -> Result<ProfileList> {
    let seal = read_seal(cfg).unwrap_or_default();
    let get = |k: &str| seal.get(k).filter(|v| !v.is_empty()).cloned();
    let mut profiles = vec![];
    for d in cfg.profile_dirs() {
        let Ok(rd) = std::fs::read_dir(cfg.host(&d)) else { continue };
        for e in rd.flatten() {
            let f = e.file_name().to_string_lossy().into_owned();
            if let Some(n) = f.strip_suffix(".json")
                && names::validate_profile_name(n).is_ok()
                && e.path().is_file()
                && !profiles.contains(&n.to_string())
            {
                profiles.push(n.to_string());
            }
        }
    }
    profiles.sort();
    let next = profile::next_profile_name(cfg).ok().flatten().filter(|n| profiles.contains(n));
    Ok(ProfileList {
        // Upstream turned an empty value into [""]; an empty list is meant.
        lower_profile_names: get("TORCX_LOWER_PROFILES")
            .map(|v| v.split(':').map(String::from).collect())
            .unwrap_or_default(),
        user_profile_name: get("TORCX_UPPER_PROFILE"),
        current_profile_path: get("TORCX_PROFILE_PATH").map(PathBuf::from),
        next_profile_name: next,
        profiles,
    })
}

/// Which profile a command works on: `--name` (a user profile), `--file`, or
/// (for edits) the next profile.
pub enum Target {
    Name(String),
    File(PathBuf),
}

impl Target {
    pub fn from_args(name: Option<&str>, file: Option<&Path>) -> Result<Option<Target>> {
        Ok(match (name, file) {
            (Some(_), Some(_)) => bail!("give --name or --file, not both"),
            (Some(n), None) => {
                names::validate_profile_name(n)?;
                Some(Target::Name(n.to_string()))
            }
            (None, Some(f)) => {
                if f.extension().is_none_or(|e| e != "json") {
                    bail!("{}: a profile file name must end in .json", f.display());
                }
                Some(Target::File(std::path::absolute(f)?))
            }
            (None, None) => None,
        })
    }

    /// The file to write (host path) and how to name it in messages.
    pub fn paths(&self, cfg: &Config) -> (PathBuf, String) {
        match self {
            Target::Name(n) => {
                let l = cfg.user_profile_dir_path().join(format!("{n}.json"));
                (cfg.host(&l), l.display().to_string())
            }
            Target::File(f) => (f.clone(), f.display().to_string()),
        }
    }
}

fn write_profile(host: &Path, kind: &str, entries: &[ProfileEntry]) -> Result<()> {
    let mode = std::fs::metadata(host).map(|m| m.permissions().mode() & 0o7777).unwrap_or(0o644);
    let images: Vec<serde_json::Value> = entries
        .iter()
        .map(|e| {
            let mut v = serde_json::json!({"name": e.name, "reference": e.reference});
            if kind == PROFILE_V1 {
                v["remote"] = serde_json::Value::String(e.remote.clone().unwrap_or_default());
            }
            v
        })
        .collect();
    let mut b = serde_json::to_vec_pretty(&serde_json::json!({"kind": kind, "value": {"images": images}}))?;
    b.push(b'\n');
    atomic_write(host, &b, mode)
}

pub fn new(cfg: &Config, target: &Target, from: Option<&str>, from_next: bool) -> Result<PathBuf> {
    let (host, shown) = target.paths(cfg);
    if let Target::Name(n) = target
        && let Some(p) = profile::find(cfg, n)?
    {
        bail!("profile {n} already exists ({})", p.display());
    }
    if std::fs::symlink_metadata(&host).is_ok() {
        bail!("{shown} already exists");
    }
    let source = match (from, from_next) {
        (Some(_), true) => bail!("give --from or --from-next, not both"),
        (Some(n), false) => Some(profile::find(cfg, n)?.ok_or_else(|| anyhow!("profile {n} not found"))?),
        (None, true) => {
            let n = profile::next_profile_name(cfg)?.ok_or_else(|| anyhow!("no next profile is set"))?;
            Some(profile::find(cfg, &n)?.ok_or_else(|| anyhow!("the next profile {n} does not exist"))?)
        }
        (None, false) => None,
    };
    match source {
        Some(src) => {
            // Parsed first, so a broken profile is not copied.
            profile::load(cfg, &src)?;
            let b = std::fs::read(cfg.host(&src)).with_context(|| format!("reading {}", src.display()))?;
            atomic_write(&host, &b, 0o644)?;
        }
        None => write_profile(&host, PROFILE_V1, &[])?,
    }
    Ok(PathBuf::from(shown))
}

pub fn set_next(cfg: &Config, name: &str) -> Result<()> {
    names::validate_profile_name(name)?;
    if profile::find(cfg, name)?.is_none() {
        bail!("profile {name} not found in {}", dirs(cfg));
    }
    atomic_write(&cfg.host(&cfg.next_profile_path()), format!("{name}\n").as_bytes(), 0o644)
}

fn dirs(cfg: &Config) -> String {
    cfg.profile_dirs().iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
}

/// The file `use-image`/`remove-image` edit: the target, or the next profile
/// (which must be a user profile: /usr is read-only).
fn edit_target(cfg: &Config, t: Option<Target>) -> Result<(PathBuf, String)> {
    if let Some(t) = t {
        if let Target::Name(n) = &t
            && !cfg.host(&cfg.user_profile_dir_path().join(format!("{n}.json"))).is_file()
        {
            bail!("profile {n} is not in {}", cfg.user_profile_dir_path().display());
        }
        return Ok(t.paths(cfg));
    }
    let n =
        profile::next_profile_name(cfg)?.ok_or_else(|| anyhow!("no --name or --file, and no next profile is set"))?;
    edit_target(cfg, Some(Target::Name(n)))
}

fn read_for_edit(host: &Path, shown: &str) -> Result<(String, Vec<ProfileEntry>)> {
    let text = std::fs::read_to_string(host).with_context(|| format!("profile {shown}"))?;
    if text.trim().is_empty() {
        return Ok((PROFILE_V1.into(), vec![]));
    }
    let (kind, _) =
        manifest::parse_envelope(&text, &[PROFILE_V0, PROFILE_V1]).with_context(|| format!("profile {shown}"))?;
    let entries = manifest::parse_profile(&text).with_context(|| format!("profile {shown}"))?;
    Ok((kind, entries))
}

pub fn use_image(cfg: &Config, t: Option<Target>, image: &str, allow_missing: bool) -> Result<PathBuf> {
    let (n, r) = image.split_once(':').ok_or_else(|| anyhow!("{image}: give the image as NAME:REF"))?;
    let id = ImageId::new(n, r)?;
    if !allow_missing && !store::scan(cfg).iter().any(|a| a.id == id) {
        bail!("image {id}: no archive in any store (use --allow=missing to name it anyway)");
    }
    let (host, shown) = edit_target(cfg, t)?;
    let (kind, mut entries) = read_for_edit(&host, &shown)?;
    match entries.iter_mut().find(|e| e.name == id.name) {
        // The remote of the entry stays (upstream dropped it).
        Some(e) => e.reference = id.reference.clone(),
        None => entries.push(ProfileEntry { name: id.name.clone(), reference: id.reference.clone(), remote: None }),
    }
    write_profile(&host, &kind, &entries)?;
    Ok(PathBuf::from(shown))
}

/// Removes an image from a profile. When a lower profile (vendor, oem) names
/// it too, an entry with an empty reference stays, which removes it from the
/// boot (upstream's merge rule). Returns whether that mask was written.
pub fn remove_image(cfg: &Config, t: Option<Target>, name: &str) -> Result<(PathBuf, bool)> {
    names::validate_name(name)?;
    let (host, shown) = edit_target(cfg, t)?;
    let (kind, mut entries) = read_for_edit(&host, &shown)?;
    let mut in_lower = false;
    for l in profile::LOWER_PROFILES {
        if let Some(p) = profile::find(cfg, l)?
            && cfg.host(&p) != host
        {
            in_lower |= profile::load(cfg, &p)?.iter().any(|e| e.name == name);
        }
    }
    let had = entries.iter().any(|e| e.name == name);
    if !had && !in_lower {
        bail!("profile {shown} does not name image {name}");
    }
    entries.retain(|e| e.name != name);
    if in_lower {
        entries.push(ProfileEntry { name: name.into(), reference: String::new(), remote: None });
    }
    write_profile(&host, &kind, &entries)?;
    Ok((PathBuf::from(shown), in_lower))
}
