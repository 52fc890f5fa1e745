//! Where everything lives. Every path torcx uses comes from here, as a
//! *logical* path (what the booted system sees, e.g. `/run/torcx/bin`), and
//! `Config::host` turns it into the path to touch under `--root`.

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::path::{Path, PathBuf};

pub const DEFAULT_BASEDIR: &str = "/var/lib/torcx";
pub const DEFAULT_RUNDIR: &str = "/run/torcx";
pub const DEFAULT_CONFDIR: &str = "/etc/torcx";
pub const DEFAULT_USR: &str = "/usr";
pub const OEM_DIR: &str = "/usr/share/oem/torcx";
pub const SEAL_PATH: &str = "/run/metadata/torcx";
pub const CONFIG_PATH: &str = "/etc/torcx/config.json";
pub const UNITS_DIR: &str = "/run/systemd/system";
pub const NETWORK_DIR: &str = "/run/systemd/network";
pub const SYSUSERS_DIR: &str = "/run/sysusers.d";
pub const TMPFILES_DIR: &str = "/run/tmpfiles.d";
pub const UDEV_RULES_DIR: &str = "/run/udev/rules.d";
/// The reference of archives named without one, as upstream.
pub const DEFAULT_REFERENCE: &str = "com.coreos.cl";

#[derive(Debug, Clone)]
pub struct Config {
    /// The directory everything else is relative to (`--root`, default `/`).
    pub root: PathBuf,
    pub base_dir: PathBuf,
    pub run_dir: PathBuf,
    pub conf_dir: PathBuf,
    pub usr_dir: PathBuf,
    /// `store_paths` of the config file, searched after the OEM stores.
    pub config_stores: Vec<PathBuf>,
    /// `$TORCX_STOREPATH` and `--store`, searched last.
    pub extra_stores: Vec<PathBuf>,
    /// `VERSION_ID` of `USR/lib/os-release`, for the versioned stores.
    pub version_id: Option<String>,
    /// Whether the unversioned vendor store is searched (not when listing
    /// for another OS version, whose /usr is not this one).
    pub vendor_store: bool,
    /// Upper bound of one image's unpacked size, in bytes.
    pub unpack_limit: u64,
    /// Upper bound of all unpacked images' sizes together (their tmpfs
    /// trees), in bytes: each image gets at most what the others left.
    pub unpack_total_limit: u64,
    /// Where the configuration came from, for messages.
    pub config_file: Option<PathBuf>,
    /// Which archives `apply` and `attach` accept (`torcx-config-v1`).
    pub verify: Verify,
}

super::string_enum!(
    /// `verify` of `torcx-config-v1`: `signed` accepts an archive outside the
    /// vendor store only when a signed remote index lists its hash.
    #[derive(Default)]
    Verify { #[default] None = "none", Signed = "signed" }
);

/// `torcx-config-v0`, with torcx's own `unpack_limit` added.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ConfigValue {
    #[serde(default)]
    base_dir: Option<String>,
    #[serde(default)]
    run_dir: Option<String>,
    #[serde(default)]
    conf_dir: Option<String>,
    #[serde(default)]
    store_paths: Option<Vec<String>>,
    #[serde(default)]
    unpack_limit: Option<serde_json::Value>,
    #[serde(default)]
    unpack_total_limit: Option<serde_json::Value>,
    /// Only in `torcx-config-v1`.
    #[serde(default)]
    verify: Option<Verify>,
}

/// What can come from outside the config file: the environment and the CLI.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub root: Option<PathBuf>,
    pub stores: Vec<PathBuf>,
}

impl Config {
    /// Reads configuration the way upstream does: defaults < config file < environment.
    pub fn load(ov: &Overrides) -> Result<Config> {
        Self::load_with_env(ov, &|k| std::env::var(k).ok())
    }

    pub fn load_with_env(ov: &Overrides, env: &dyn Fn(&str) -> Option<String>) -> Result<Config> {
        let root = ov.root.clone().unwrap_or_else(|| PathBuf::from("/"));
        let half_ram = default_unpack_limit();
        let mut c = Config {
            root,
            base_dir: DEFAULT_BASEDIR.into(),
            run_dir: DEFAULT_RUNDIR.into(),
            conf_dir: DEFAULT_CONFDIR.into(),
            usr_dir: DEFAULT_USR.into(),
            config_stores: vec![],
            extra_stores: vec![],
            version_id: None,
            vendor_store: true,
            unpack_limit: half_ram,
            unpack_total_limit: half_ram,
            config_file: None,
            verify: Verify::None,
        };

        // The kernel command line may point at another config file.
        let cmdline = std::fs::read_to_string(c.host(Path::new("/proc/cmdline"))).unwrap_or_default();
        let cfg_path = cmdline
            .split_whitespace()
            .find_map(|w| w.strip_prefix("torcx_config="))
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(CONFIG_PATH));
        if !cfg_path.is_absolute() {
            bail!("torcx_config={} on the kernel command line: must be an absolute path", cfg_path.display());
        }
        c.apply_file(&cfg_path)?;

        let abs = |var: &str, v: String| -> Result<PathBuf> {
            let p = PathBuf::from(&v);
            if !p.is_absolute() {
                bail!("environment variable {var}={}: must be an absolute path", super::quoted(&v));
            }
            Ok(p)
        };
        if let Some(v) = env("TORCX_BASEDIR").filter(|v| !v.is_empty()) {
            c.base_dir = abs("TORCX_BASEDIR", v)?;
        }
        if let Some(v) = env("TORCX_RUNDIR").filter(|v| !v.is_empty()) {
            c.run_dir = abs("TORCX_RUNDIR", v)?;
        }
        if let Some(v) = env("TORCX_CONFDIR").filter(|v| !v.is_empty()) {
            c.conf_dir = abs("TORCX_CONFDIR", v)?;
        }
        // The run directory is written into unit files (Environment=,
        // RootDirectory=) and the seal: only plain paths, so nothing there
        // needs quoting and no systemd specifier (`%`) can expand.
        let run = c.run_dir.to_string_lossy();
        if let Some(bad) = run.chars().find(|ch| !plain_path_char(*ch)) {
            bail!(
                "run_dir {}: {bad:?} is not allowed (only letters, digits and / . _ - + : @): it is written into unit files",
                super::quoted(&run)
            );
        }
        // Upstream ignores a relative USR mountpoint rather than failing.
        if let Some(v) = env("TORCX_USR_MOUNTPOINT").filter(|v| v.starts_with('/')) {
            c.usr_dir = v.into();
        }
        if let Some(v) = env("TORCX_STOREPATH") {
            // Documented as colon-separated; upstream's code split on whitespace. Take both.
            for p in v.split(|ch: char| ch == ':' || ch.is_whitespace()).filter(|s| !s.is_empty()) {
                c.extra_stores.push(abs("TORCX_STOREPATH", p.into())?);
            }
        }
        if let Some(v) = env("TORCX_UNPACK_LIMIT").filter(|v| !v.is_empty()) {
            c.unpack_limit =
                parse_size(&v).with_context(|| format!("environment variable TORCX_UNPACK_LIMIT={v:?}"))?;
        }
        if let Some(v) = env("TORCX_UNPACK_TOTAL_LIMIT").filter(|v| !v.is_empty()) {
            c.unpack_total_limit =
                parse_size(&v).with_context(|| format!("environment variable TORCX_UNPACK_TOTAL_LIMIT={v:?}"))?;
        }
        for s in &ov.stores {
            let p = if s.is_absolute() { s.clone() } else { std::env::current_dir()?.join(s) };
            // --store names a directory on this machine, not under --root.
            c.extra_stores.push(p);
        }
        c.version_id = read_version_id(&c.host(&c.usr_dir.join("lib/os-release")));
        Ok(c)
    }

    fn apply_file(&mut self, logical: &Path) -> Result<()> {
        let host = self.host(logical);
        let text = match std::fs::read_to_string(&host) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("config {}", logical.display())),
        };
        let ctx = || format!("config {}", logical.display());
        let (kind, v): (String, ConfigValue) =
            crate::model::manifest::parse_envelope(&text, &["torcx-config-v0", "torcx-config-v1"])
                .and_then(|(k, v)| Ok((k, serde_json::from_value(v).map_err(super::parse_error)?)))
                .with_context(ctx)?;
        if let Some(verify) = v.verify {
            if kind == "torcx-config-v0" {
                bail!("config {}: field verify needs \"kind\": \"torcx-config-v1\"", logical.display());
            }
            self.verify = verify;
        }
        let abs = |field: &str, s: &str| -> Result<PathBuf> {
            if !s.starts_with('/') {
                bail!("config {}: field {field}: {} is not an absolute path", logical.display(), super::quoted(s));
            }
            Ok(PathBuf::from(s))
        };
        if let Some(s) = v.base_dir.as_deref().filter(|s| !s.is_empty()) {
            self.base_dir = abs("base_dir", s)?;
        }
        if let Some(s) = v.run_dir.as_deref().filter(|s| !s.is_empty()) {
            self.run_dir = abs("run_dir", s)?;
        }
        if let Some(s) = v.conf_dir.as_deref().filter(|s| !s.is_empty()) {
            self.conf_dir = abs("conf_dir", s)?;
        }
        for s in v.store_paths.unwrap_or_default() {
            self.config_stores.push(abs("store_paths", &s)?);
        }
        let size = |field: &str, v: Option<serde_json::Value>, into: &mut u64| -> Result<()> {
            match v {
                None => {}
                Some(serde_json::Value::Number(n)) if n.as_u64().is_some() => *into = n.as_u64().unwrap(),
                Some(serde_json::Value::String(s)) => {
                    *into = parse_size(&s).with_context(|| format!("config {}: field {field}", logical.display()))?
                }
                Some(other) => {
                    bail!(
                        "config {}: field {field}: {} is not a size",
                        logical.display(),
                        super::quoted(&other.to_string())
                    )
                }
            }
            Ok(())
        };
        size("unpack_limit", v.unpack_limit, &mut self.unpack_limit)?;
        size("unpack_total_limit", v.unpack_total_limit, &mut self.unpack_total_limit)?;
        self.config_file = Some(logical.to_path_buf());
        Ok(())
    }

    /// The path to touch for a logical path.
    pub fn host(&self, logical: &Path) -> PathBuf {
        match logical.strip_prefix("/") {
            Ok(rel) => self.root.join(rel),
            Err(_) => self.root.join(logical),
        }
    }

    pub fn bin_dir(&self) -> PathBuf {
        self.run_dir.join("bin")
    }
    pub fn unpack_dir(&self) -> PathBuf {
        self.run_dir.join("unpack")
    }
    pub fn attached_dir(&self) -> PathBuf {
        self.run_dir.join("attached")
    }
    pub fn status_path(&self) -> PathBuf {
        self.run_dir.join("status.json")
    }
    pub fn run_profile_path(&self) -> PathBuf {
        self.run_dir.join("profile.json")
    }
    pub fn lock_path(&self) -> PathBuf {
        self.run_dir.join(".lock")
    }
    pub fn next_profile_path(&self) -> PathBuf {
        self.conf_dir.join("next-profile")
    }
    /// Where user profiles live (`/etc/torcx/profiles`).
    pub fn user_profile_dir_path(&self) -> PathBuf {
        self.conf_dir.join("profiles")
    }
    pub fn vendor_dir(&self) -> PathBuf {
        self.usr_dir.join("share/torcx")
    }
    /// Remote directories (`NAME/remote.json` in each), lowest precedence first.
    pub fn remote_dirs(&self) -> Vec<PathBuf> {
        vec![self.vendor_dir().join("remotes"), PathBuf::from(OEM_DIR).join("remotes"), self.conf_dir.join("remotes")]
    }
    /// The user store, versioned when `version` is given: where populate writes.
    pub fn user_store(&self, version: Option<&str>) -> PathBuf {
        let s = self.base_dir.join("store");
        match version {
            Some(v) => s.join(v),
            None => s,
        }
    }
    /// Profile directories, lowest precedence first.
    pub fn profile_dirs(&self) -> Vec<PathBuf> {
        vec![
            self.vendor_dir().join("profiles"),
            PathBuf::from(OEM_DIR).join("profiles"),
            self.conf_dir.join("profiles"),
        ]
    }
}

/// Shell-style `KEY=value` lookup in an os-release file; quotes are stripped
/// (upstream kept them, which made `"1.2.3"` a store directory name).
pub fn read_version_id(path: &Path) -> Option<String> {
    let v = read_os_release(path, "VERSION_ID")?;
    // A versioned store is a directory name: refuse anything that is not one.
    (!v.is_empty() && v != "." && v != ".." && !v.contains('/')).then(|| v.to_string())
}

/// One `KEY=value` of an os-release file, quotes stripped.
pub fn read_os_release(path: &Path, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let v = text.lines().find_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))?;
    Some(v.trim().trim_matches(|c| c == '"' || c == '\'').to_string())
}

/// `1048576`, `512K`, `450M`, `2G` (powers of 1024).
/// A character a path written into a unit file may hold as it is.
pub fn plain_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "/._-+:@".contains(c)
}

pub fn parse_size(s: &str) -> Result<u64> {
    let s = s.trim();
    let (num, mul) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1u64 << 10),
        Some((i, 'm' | 'M')) => (&s[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("{} is not a size (bytes, or a number with K, M or G)", super::quoted(s)))?;
    let v = n.checked_mul(mul).ok_or_else(|| anyhow::anyhow!("{} is too large", super::quoted(s)))?;
    if v < 4096 {
        bail!("{} is too small: an image needs at least 4K", super::quoted(s));
    }
    Ok(v)
}

/// Half of RAM, as a plain tmpfs would get, but per image and enforced while
/// unpacking so a bomb stops early.
fn default_unpack_limit() -> u64 {
    let total_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:").map(|v| v.trim().trim_end_matches("kB").trim().to_string()))
        })
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(1 << 20);
    total_kib * 1024 / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(root: &Path, env: &[(&str, &str)]) -> Result<Config> {
        let env: Vec<(String, String)> = env.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        Config::load_with_env(&Overrides { root: Some(root.into()), stores: vec![] }, &move |k| {
            env.iter().find(|(a, _)| a == k).map(|(_, b)| b.clone())
        })
    }

    #[test]
    fn defaults_and_env() {
        let t = tempfile::tempdir().unwrap();
        let c = load(t.path(), &[]).unwrap();
        assert_eq!(c.base_dir, Path::new("/var/lib/torcx"));
        assert_eq!(c.bin_dir(), Path::new("/run/torcx/bin"));
        assert_eq!(c.host(Path::new("/run/torcx")), t.path().join("run/torcx"));
        let c = load(
            t.path(),
            &[("TORCX_USR_MOUNTPOINT", "/tmp/foo"), ("TORCX_STOREPATH", "/a:/b /c"), ("TORCX_USR_MOUNTPOINT", "rel")],
        )
        .unwrap();
        assert_eq!(c.vendor_dir(), Path::new("/tmp/foo/share/torcx"));
        assert_eq!(c.extra_stores, vec![PathBuf::from("/a"), "/b".into(), "/c".into()]);
        let e = load(t.path(), &[("TORCX_RUNDIR", "run")]).unwrap_err();
        assert!(format!("{e:#}").contains("TORCX_RUNDIR"), "{e:#}");
    }

    #[test]
    fn a_long_run_dir_is_cut_in_the_message() {
        // Found by the `parse` fuzz target: a 24 KB run_dir was echoed whole.
        let t = tempfile::tempdir().unwrap();
        let long = format!("/{}", "1,".repeat(10000));
        let e = format!("{:#}", load(t.path(), &[("TORCX_RUNDIR", &long)]).unwrap_err());
        assert!(e.starts_with("run_dir \"/1,1,") && e.contains("(20001 bytes): ',' is not allowed"), "{e}");
        assert!(e.len() < 300, "{} bytes", e.len());
    }

    #[test]
    fn config_file() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("etc/torcx")).unwrap();
        let f = t.path().join("etc/torcx/config.json");
        std::fs::write(
            &f,
            r#"{"kind":"torcx-config-v0","value":{"base_dir":"/srv/torcx","store_paths":["/x"],"unpack_limit":"64M"}}"#,
        )
        .unwrap();
        let c = load(t.path(), &[("TORCX_BASEDIR", "/env")]).unwrap();
        assert_eq!(c.base_dir, Path::new("/env"));
        assert_eq!(c.config_stores, vec![PathBuf::from("/x")]);
        assert_eq!(c.unpack_limit, 64 << 20);
        std::fs::write(&f, r#"{"kind":"torcx-config-v0","value":{"store_paths":["rel"]}}"#).unwrap();
        let e = format!("{:#}", load(t.path(), &[]).unwrap_err());
        assert!(e.contains("/etc/torcx/config.json") && e.contains("store_paths"), "{e}");
        std::fs::write(&f, r#"{"kind":"torcx-config-v0","value":{"store_path":["/x"]}}"#).unwrap();
        let e = format!("{:#}", load(t.path(), &[]).unwrap_err());
        assert!(e.contains("store_path"), "{e}");
        std::fs::write(&f, r#"{"kind":"torcx-config-v2","value":{}}"#).unwrap();
        let e = format!("{:#}", load(t.path(), &[]).unwrap_err());
        assert!(e.contains("torcx-config-v2"), "{e}");
        std::fs::write(&f, r#"{"kind":"torcx-config-v0","value":{"verify":"signed"}}"#).unwrap();
        let e = format!("{:#}", load(t.path(), &[]).unwrap_err());
        assert!(e.contains("field verify needs"), "{e}");
        std::fs::write(&f, r#"{"kind":"torcx-config-v1","value":{"verify":"sometimes"}}"#).unwrap();
        assert!(load(t.path(), &[]).is_err());
        std::fs::write(&f, r#"{"kind":"torcx-config-v1","value":{"verify":"signed"}}"#).unwrap();
        assert_eq!(load(t.path(), &[]).unwrap().verify, Verify::Signed);
        std::fs::write(&f, "").unwrap();
        assert!(load(t.path(), &[]).is_err());
        // The kernel command line points elsewhere.
        std::fs::create_dir_all(t.path().join("proc")).unwrap();
        std::fs::write(t.path().join("proc/cmdline"), "ro torcx_config=/boot/tc.json quiet\n").unwrap();
        std::fs::create_dir_all(t.path().join("boot")).unwrap();
        std::fs::write(t.path().join("boot/tc.json"), r#"{"kind":"torcx-config-v0","value":{"run_dir":"/run/tx"}}"#)
            .unwrap();
        assert_eq!(load(t.path(), &[]).unwrap().run_dir, Path::new("/run/tx"));
    }

    #[test]
    fn version_id_and_sizes() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("os-release");
        std::fs::write(&p, "ID=flatcar\nVERSION_ID=\"3815.2.0\"\n").unwrap();
        assert_eq!(read_version_id(&p).as_deref(), Some("3815.2.0"));
        std::fs::write(&p, "VERSION_ID=\n").unwrap();
        assert_eq!(read_version_id(&p), None);
        assert_eq!(parse_size("450M").unwrap(), 450 << 20);
        assert_eq!(parse_size("8192").unwrap(), 8192);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("1").is_err());
    }
}
