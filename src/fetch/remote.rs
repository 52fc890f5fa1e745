//! Finding a remote: `NAME/remote.json` in the remote directories (the
//! later directory wins), its base URL expanded, its keys read.

use super::sig;
use crate::model::config::{Config, read_os_release};
use crate::model::names;
use crate::model::remote::{self, CONTENTS_FILE};
use anyhow::{Context, Result, anyhow, bail};
use pgp::composed::SignedPublicKey;
use std::path::{Component, Path, PathBuf};

/// A remote, ready to fetch from.
pub struct Remote {
    pub name: String,
    /// `remote.json`, as the booted system sees it.
    pub manifest: PathBuf,
    /// The expanded base URL, always ending in `/`: a base URL names a
    /// directory even without its trailing slash (upstream lost the last
    /// segment then).
    pub base_url: String,
    /// `index_url`, expanded, when `remote.json` gives one.
    pub index: Option<String>,
    pub keys: Vec<SignedPublicKey>,
}

/// Loads remote `name`. `version_id` replaces `${VERSION_ID}` (populating
/// for the next OS version fetches that version's images).
pub fn load(cfg: &Config, name: &str, version_id: Option<&str>) -> Result<Remote> {
    let (manifest, m) = read(cfg, name)?;
    let ctx = || format!("remote {name}: {}", manifest.display());
    let os_release = cfg.host(&cfg.usr_dir.join("lib/os-release"));
    let vars = |v: &str| -> Option<String> {
        match v {
            "VERSION_ID" => version_id.map(String::from).or_else(|| cfg.version_id.clone()),
            "COREOS_USR" => Some(cfg.usr_dir.display().to_string()),
            "ID" | "COREOS_BOARD" | "FLATCAR_BOARD" => read_os_release(&os_release, v),
            _ => None,
        }
    };
    let mut base_url = remote::expand(&m.base_url, &vars).with_context(ctx)?;
    check_scheme(&base_url).with_context(ctx)?;
    if !base_url.ends_with('/') {
        base_url.push('/');
    }
    let index = match &m.index_url {
        Some(u) => {
            let u = remote::expand(u, &vars).with_context(ctx)?;
            if u.starts_with("oci://") {
                bail!(
                    "{}: index_url {}: an index is fetched by http://, https:// or file:///",
                    ctx(),
                    crate::model::quoted(&u)
                );
            }
            check_scheme(&u).with_context(ctx)?;
            Some(u)
        }
        None => None,
    };
    let keys = keys(cfg, name, &manifest, &m)?;
    if index.is_none() && base_url.starts_with("oci://") && !keys.is_empty() {
        bail!("{}: a registry remote with keys needs index_url (where the index they sign is)", ctx());
    }
    Ok(Remote { name: name.to_string(), manifest, base_url, index, keys })
}

/// Only the keys of remote `name`, for checking a kept index at boot: its
/// base URL may name a variable this boot cannot expand, and only `/usr`
/// (verified by the OS) and `/etc` are trusted with keys. The OEM partition
/// is as writable as the OEM store, so its remotes can fetch, but what they
/// sign vouches for nothing unless `/usr` or `/etc` has that remote too.
pub fn load_trusted_keys(cfg: &Config) -> impl Fn(&str) -> Result<Vec<SignedPublicKey>> + '_ {
    move |name| {
        let dirs = [cfg.vendor_dir().join("remotes"), cfg.conf_dir.join("remotes")];
        let (manifest, m) = read_in(cfg, name, &dirs)?;
        keys(cfg, name, &manifest, &m)
    }
}

fn read(cfg: &Config, name: &str) -> Result<(PathBuf, remote::RemoteManifest)> {
    read_in(cfg, name, &cfg.remote_dirs())
}

fn read_in(cfg: &Config, name: &str, dirs: &[PathBuf]) -> Result<(PathBuf, remote::RemoteManifest)> {
    names::validate_name(name).context("remote name")?;
    let manifest =
        dirs.iter().rev().map(|d| d.join(name).join("remote.json")).find(|p| cfg.host(p).is_file()).ok_or_else(
            || {
                let dirs: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
                anyhow!("no remote.json for remote {name} (searched {})", dirs.join(", "))
            },
        )?;
    let ctx = || format!("remote {name}: {}", manifest.display());
    let text = crate::sys::fsutil::read_bounded(&cfg.host(&manifest), 1 << 20).with_context(ctx)?;
    let m = remote::parse_remote(&String::from_utf8_lossy(&text)).with_context(ctx)?;
    Ok((manifest, m))
}

fn keys(cfg: &Config, name: &str, manifest: &Path, m: &remote::RemoteManifest) -> Result<Vec<SignedPublicKey>> {
    let dir = manifest.parent().unwrap_or(Path::new("/"));
    let mut keys = vec![];
    for k in &m.keys {
        let rel = Path::new(&k.armored_keyring);
        if rel.is_absolute() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            bail!(
                "remote {name}: keyring {}: must be a path inside {}",
                crate::model::quoted(&k.armored_keyring),
                dir.display()
            );
        }
        let p = dir.join(rel);
        keys.extend(sig::read_keyring(&cfg.host(&p), &p).with_context(|| format!("remote {name}"))?);
    }
    Ok(keys)
}

fn check_scheme(url: &str) -> Result<()> {
    let shown = || crate::model::quoted(&super::http::redact(url));
    let ok = ["http://", "https://", "file:///", "oci://"].iter().any(|s| url.starts_with(s));
    if !ok {
        bail!("base_url {}: only http://, https://, file:/// and oci:// URLs", shown());
    }
    // They would be shown in every error and log line naming the URL.
    if super::http::has_userinfo(url) {
        bail!("URL {}: credentials do not belong in a URL (a registry's go in auth.json)", shown());
    }
    Ok(())
}

impl Remote {
    /// An `oci://HOST[:PORT]/PREFIX` remote is a registry: `NAME:REF` is
    /// pulled from `PREFIX/NAME:REF`; with no index, digests verify the
    /// transfer. With one (`index_url`), from `PREFIX/NAME@DIGEST`, the
    /// digest the signed index lists.
    pub fn registry_ref(&self, name: &str, reference: &str) -> Option<String> {
        self.is_registry().then(|| format!("{}{name}:{reference}", self.base_url))
    }

    pub fn registry_digest_ref(&self, name: &str, sha256_hex: &str) -> String {
        format!("{}{name}@sha256:{sha256_hex}", self.base_url)
    }

    /// Whether the remote has a signed index: every HTTP remote, a registry
    /// with `index_url`.
    pub fn has_index(&self) -> bool {
        !self.is_registry() || self.index.is_some()
    }

    pub fn is_registry(&self) -> bool {
        self.base_url.starts_with("oci://")
    }

    pub fn index_url(&self) -> String {
        self.index.clone().unwrap_or_else(|| format!("{}{CONTENTS_FILE}", self.base_url))
    }

    /// Where an index entry's archive is: `location` relative to the base
    /// URL, or an absolute URL of its own.
    pub fn archive_url(&self, location: &str) -> Result<String> {
        if location.contains("://") {
            check_scheme(location)?;
            return Ok(location.to_string());
        }
        if location.is_empty() || location.starts_with('/') {
            bail!("location {}: must be relative to the base URL or a URL", crate::model::quoted(location));
        }
        Ok(format!("{}{location}", self.base_url))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_directory_wins_and_base_url_is_a_directory() {
        let t = tempfile::tempdir().unwrap();
        let w = |p: &str, s: &str| {
            let p = t.path().join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, s).unwrap();
        };
        w("usr/lib/os-release", "ID=flatcar\nVERSION_ID=1.2.3\nCOREOS_BOARD=\"amd64-usr\"\n");
        let doc = |u: &str| format!(r#"{{"kind":"remote-manifest-v0","value":{{"base_url":"{u}"}}}}"#);
        w("usr/share/torcx/remotes/r/remote.json", &doc("https://vendor/"));
        w("etc/torcx/remotes/r/remote.json", &doc("https://e/${ID}/${VERSION_ID}/${COREOS_BOARD}"));
        let cfg = crate::model::config::Config::load_with_env(
            &crate::model::config::Overrides { root: Some(t.path().into()), stores: vec![] },
            &|_| None,
        )
        .unwrap();
        let r = load(&cfg, "r", None).unwrap();
        assert_eq!(r.base_url, "https://e/flatcar/1.2.3/amd64-usr/");
        assert_eq!(r.index_url(), "https://e/flatcar/1.2.3/amd64-usr/torcx_remote_contents.json.asc");
        assert_eq!(
            load(&cfg, "r", Some("9.9")).unwrap().archive_url("a:1.torcx.tgz").unwrap(),
            "https://e/flatcar/9.9/amd64-usr/a:1.torcx.tgz"
        );
        assert!(r.archive_url("/etc/shadow").is_err());
        assert!(r.archive_url("ftp://x/a").is_err());
        w(
            "etc/torcx/remotes/k/remote.json",
            r#"{"kind":"remote-manifest-v0","value":{"base_url":"file:///m","keys":[{"armored_keyring":"../x.asc"}]}}"#,
        );
        assert!(format!("{:#}", load(&cfg, "k", None).err().unwrap()).contains("must be a path inside"));
        w("etc/torcx/remotes/g/remote.json", &doc("gopher://x/"));
        assert!(load(&cfg, "g", None).is_err());
        assert!(format!("{:#}", load(&cfg, "none", None).err().unwrap()).contains("no remote.json for remote none"));
    }
}
