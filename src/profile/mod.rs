//! Profiles: finding them, reading them, and merging the lower (vendor, oem)
//! profiles with the upper one named by `/etc/torcx/next-profile`.

pub mod edit;

use crate::model::config::Config;
use crate::model::manifest::{self, ProfileEntry};
use crate::model::names::{self, ImageId};
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::collections::HashSet;
use std::path::PathBuf;

pub const LOWER_PROFILES: [&str; 2] = ["vendor", "oem"];

/// The profile a boot applies.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Resolved {
    pub lower_profiles: Vec<String>,
    pub upper_profile: Option<String>,
    pub images: Vec<ImageId>,
    /// Things an operator should know that did not stop the apply.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The next-profile could not be read: the lower profiles' images are
    /// still applied, but the boot is not sealed, and this names the file.
    #[serde(skip)]
    pub upper_error: Option<String>,
}

/// The logical path of profile `name`: the last profile directory holding
/// `name.json` wins (user over oem over vendor).
pub fn find(cfg: &Config, name: &str) -> Result<Option<PathBuf>> {
    names::validate_profile_name(name)?;
    for dir in cfg.profile_dirs().iter().rev() {
        let p = dir.join(format!("{name}.json"));
        if cfg.host(&p).is_file() {
            return Ok(Some(p));
        }
    }
    Ok(None)
}

/// Reads one profile file. Entries with an empty reference are kept (in an
/// upper profile they remove the image); a name twice is an error.
pub fn load(cfg: &Config, logical: &std::path::Path) -> Result<Vec<ProfileEntry>> {
    let ctx = || format!("profile {}", logical.display());
    let text = std::fs::read_to_string(cfg.host(logical)).with_context(ctx)?;
    let entries = manifest::parse_profile(&text).with_context(ctx)?;
    let mut seen = HashSet::new();
    for e in &entries {
        names::validate_name(&e.name).with_context(ctx)?;
        if !e.reference.is_empty() {
            names::validate_reference(&e.reference)
                .with_context(|| format!("profile {}: image {}", logical.display(), e.name))?;
        }
        if !seen.insert(e.name.as_str()) {
            bail!("profile {}: image {:?} is listed more than once", logical.display(), e.name);
        }
    }
    Ok(entries)
}

/// The profile `/etc/torcx/next-profile` selects, if the file exists.
pub fn next_profile_name(cfg: &Config) -> Result<Option<String>> {
    let path = cfg.next_profile_path();
    // A name, not a document: a FIFO or a device there is refused, not
    // waited on or read without end.
    let text = crate::sys::fsutil::read_bounded_io(&cfg.host(&path), 4096)
        .and_then(|t| String::from_utf8(t).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)));
    let text = match text {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("next profile {}", path.display())),
    };
    let name = text.trim();
    let name = name.strip_suffix(".json").unwrap_or(name);
    if name.is_empty() {
        return Ok(None);
    }
    names::validate_profile_name(name).with_context(|| format!("next profile {}", path.display()))?;
    Ok(Some(name.to_string()))
}

/// Upstream's merge: each later profile first drops every image it names
/// (even with an empty reference), then appends its own entries.
pub fn merge(layers: &[Vec<ProfileEntry>]) -> Vec<ImageId> {
    let mut acc: Vec<ImageId> = vec![];
    for layer in layers {
        let named: HashSet<&str> = layer.iter().map(|e| e.name.as_str()).collect();
        acc.retain(|i| !named.contains(i.name.as_str()));
        for e in layer.iter().filter(|e| !e.name.is_empty() && !e.reference.is_empty()) {
            acc.push(ImageId { name: e.name.clone(), reference: e.reference.clone() });
        }
    }
    acc
}

/// Finds and merges the profiles of this boot.
pub fn resolve(cfg: &Config) -> Result<Resolved> {
    let mut layers = vec![];
    let mut lower_profiles = vec![];
    let mut warnings = vec![];
    for name in LOWER_PROFILES {
        if let Some(p) = find(cfg, name)? {
            layers.push(load(cfg, &p)?);
            lower_profiles.push(name.to_string());
        }
    }
    let mut upper_profile = None;
    let mut upper_error = None;
    // A next-profile that names no valid profile is a leftover too: it
    // behaves like one naming a missing profile.
    let next = next_profile_name(cfg).unwrap_or_else(|e| {
        warnings.push(format!("{e:#}; applying the lower profiles only"));
        None
    });
    if let Some(name) = next {
        match find(cfg, &name)? {
            Some(p) => match load(cfg, &p) {
                Ok(l) => {
                    layers.push(l);
                    upper_profile = Some(name);
                }
                Err(e) => upper_error = Some(format!("{e:#}")),
            },
            // A leftover next-profile must not stop the boot (Flatcar#1217):
            // apply the lower profiles and say so loudly.
            None => warnings.push(format!(
                "{} names profile {name:?}, which is in none of {}; applying the lower profiles only",
                cfg.next_profile_path().display(),
                cfg.profile_dirs().iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
            )),
        }
    }
    Ok(Resolved { lower_profiles, upper_profile, images: merge(&layers), warnings, upper_error })
}

/// The images of this boot's run profile, once sealed.
pub fn run_profile(cfg: &Config) -> Option<Vec<ImageId>> {
    let text = std::fs::read_to_string(cfg.host(&cfg.run_profile_path())).ok()?;
    let entries = crate::model::manifest::parse_profile(&text).ok()?;
    Some(entries.into_iter().map(|e| ImageId { name: e.name, reference: e.reference }).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(n: &str, r: &str) -> ProfileEntry {
        ProfileEntry { name: n.into(), reference: r.into(), remote: None }
    }
    fn ids(v: &[ImageId]) -> Vec<String> {
        v.iter().map(|i| i.to_string()).collect()
    }

    #[test]
    fn merge_as_upstream() {
        let lower = vec![e("docker", "18.06"), e("zfs", "1"), e("socat", "1")];
        let upper = vec![e("docker", "20.10"), e("zfs", ""), e("agent", "2")];
        assert_eq!(ids(&merge(&[lower.clone(), upper])), ["socat:1", "docker:20.10", "agent:2"]);
        assert_eq!(ids(&merge(&[lower, vec![]])), ["docker:18.06", "zfs:1", "socat:1"]);
        assert!(merge(&[]).is_empty());
    }

    #[test]
    fn resolve_files() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let w = |p: &str, s: &str| {
            let p = root.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, s).unwrap();
        };
        w(
            "usr/share/torcx/profiles/vendor.json",
            r#"{"kind":"profile-manifest-v0","value":{"images":[{"name":"docker","reference":"com.coreos.cl"}]}}"#,
        );
        w(
            "etc/torcx/profiles/mine.json",
            r#"{"kind":"profile-manifest-v1","value":{"images":[{"name":"docker","reference":""},{"name":"socat","reference":"1.7","remote":"r"}]}}"#,
        );
        let cfg = Config::load_with_env(
            &crate::model::config::Overrides { root: Some(root.into()), stores: vec![] },
            &|_| None,
        )
        .unwrap();
        let r = resolve(&cfg).unwrap();
        assert_eq!(r.lower_profiles, ["vendor"]);
        assert_eq!(ids(&r.images), ["docker:com.coreos.cl"]);
        w("etc/torcx/next-profile", "mine.json\n");
        let r = resolve(&cfg).unwrap();
        assert_eq!(r.upper_profile.as_deref(), Some("mine"));
        assert_eq!(ids(&r.images), ["socat:1.7"]);
        // A user profile named vendor replaces the vendor one.
        w("etc/torcx/profiles/vendor.json", r#"{"kind":"profile-manifest-v0","value":{"images":[]}}"#);
        w("etc/torcx/next-profile", "gone\n");
        let r = resolve(&cfg).unwrap();
        assert!(r.images.is_empty() && r.upper_profile.is_none());
        assert_eq!(r.warnings.len(), 1);
        w(
            "etc/torcx/profiles/dup.json",
            r#"{"kind":"profile-manifest-v0","value":{"images":[{"name":"a","reference":"1"},{"name":"a","reference":"2"}]}}"#,
        );
        w("etc/torcx/next-profile", "dup");
        let err = resolve(&cfg).unwrap().upper_error.unwrap();
        assert!(err.contains("/etc/torcx/profiles/dup.json") && err.contains("more than once"), "{err}");
        w(
            "etc/torcx/profiles/bad.json",
            r#"{"kind":"profile-manifest-v0","value":{"images":[{"name":"../x","reference":"1"}]}}"#,
        );
        w("etc/torcx/next-profile", "bad");
        let err = resolve(&cfg).unwrap().upper_error.unwrap();
        assert!(err.contains("/etc/torcx/profiles/bad.json") && err.contains("invalid image name"), "{err}");
        w("etc/torcx/next-profile", "../../etc/passwd");
        let r = resolve(&cfg).unwrap();
        assert!(r.upper_profile.is_none() && r.warnings[0].starts_with("next profile /etc/torcx/next-profile: "));
    }
}
