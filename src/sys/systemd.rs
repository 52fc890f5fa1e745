//! Talking to systemd: the unit search path, and `systemctl` for reloads,
//! starts and stops. systemctl is run as a program: no D-Bus stack needed.

use crate::model::config::Config;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// systemd's system unit search path (systemd.unit(5)), highest priority first.
pub const UNIT_PATH: [&str; 13] = [
    "/etc/systemd/system.control",
    "/run/systemd/system.control",
    "/run/systemd/transient",
    "/run/systemd/generator.early",
    "/etc/systemd/system",
    "/etc/systemd/system.attached",
    "/run/systemd/system",
    "/run/systemd/system.attached",
    "/run/systemd/generator",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
    "/run/systemd/generator.late",
];

/// Where a unit of this name already is on the host, if anywhere.
pub fn find_unit(cfg: &Config, name: &str) -> Option<PathBuf> {
    find_units(cfg, name).next()
}

/// Every file of this name in the unit search path, highest priority first.
pub fn find_units<'a>(cfg: &'a Config, name: &'a str) -> impl Iterator<Item = PathBuf> + 'a {
    units_in(&UNIT_PATH, cfg, name)
}

/// The files named `name` in `dirs`, in their order.
fn units_in<'a>(dirs: &'a [&'static str], cfg: &'a Config, name: &'a str) -> impl Iterator<Item = PathBuf> + 'a {
    dirs.iter().map(move |d| Path::new(d).join(name)).filter(|p| std::fs::symlink_metadata(cfg.host(p)).is_ok())
}

/// What an image's units are checked against, looked at once per check:
/// which unit directories exist, and what the host's hold (read once: each
/// unit is then looked for in memory, but in torcx's own directory, which
/// changes as images are placed).
#[derive(Debug)]
pub struct UnitDirs {
    present: Vec<&'static str>,
    host: std::sync::Arc<HostUnits>,
}

/// The names in the host's unit directories (all but torcx's own), and the
/// host's aliases.
#[derive(Debug, Default)]
struct HostUnits {
    /// Each name, with the directories that hold it, in search order.
    names: std::collections::HashMap<std::ffi::OsString, Vec<&'static str>>,
    aliases: std::collections::HashMap<String, PathBuf>,
}

impl UnitDirs {
    pub fn read(cfg: &Config) -> UnitDirs {
        use std::os::unix::fs::MetadataExt;
        let stats: Vec<Option<std::fs::Metadata>> =
            UNIT_PATH.iter().map(|d| std::fs::metadata(cfg.host(Path::new(d))).ok()).collect();
        // torcx's own directory is always looked in: an apply that reads
        // these once makes it while it places images.
        let present = UNIT_PATH
            .iter()
            .zip(&stats)
            .filter(|(d, m)| **d == crate::model::config::UNITS_DIR || m.as_ref().is_some_and(|m| m.is_dir()))
            .map(|(d, _)| *d);
        let stamp: Stamp = UNIT_PATH
            .iter()
            .zip(&stats)
            .filter(|(d, _)| **d != crate::model::config::UNITS_DIR)
            .map(|(_, m)| m.as_ref().map(|m| (m.dev(), m.ino(), m.mtime(), m.mtime_nsec())))
            .collect();
        UnitDirs { present: present.collect(), host: host_units(cfg, stamp) }
    }

    /// Every file of this name in the unit search path, highest priority first.
    pub fn find_units<'a>(&'a self, cfg: &'a Config, name: &'a str) -> impl Iterator<Item = PathBuf> + 'a {
        let listed = self.host.names.get(std::ffi::OsStr::new(name)).map(Vec::as_slice).unwrap_or_default();
        self.present
            .iter()
            .filter(move |d| {
                if **d == crate::model::config::UNITS_DIR {
                    std::fs::symlink_metadata(cfg.host(&Path::new(d).join(name))).is_ok()
                } else {
                    listed.contains(d)
                }
            })
            .map(move |d| Path::new(d).join(name))
    }

    /// The host's alias named `name` resolves to, if any.
    pub fn alias_of(&self, name: &str) -> Option<&PathBuf> {
        self.host.aliases.get(name)
    }
}

type Stamp = Vec<Option<(u64, u64, i64, i64)>>;

/// The host's unit directories read: every name in them, and the aliases
/// (by the name of the unit they resolve to: symlinks directly in a unit
/// directory whose target has another name; the first in search order
/// wins). The boot checks every image against the same host, so the
/// directories are read again only when one of them changed (`stamp`, from
/// a stat of each, tells: a name added or removed changes its directory's
/// mtime), but for `/run/systemd/system`, which torcx itself changes while
/// it places images (and where it places no alias): it is not read here.
fn host_units(cfg: &Config, stamp: Stamp) -> std::sync::Arc<HostUnits> {
    type Cache = Option<(PathBuf, Stamp, std::sync::Arc<HostUnits>)>;
    static CACHE: std::sync::Mutex<Cache> = std::sync::Mutex::new(None);
    let mut c = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((root, s, h)) = c.as_ref()
        && *root == cfg.root
        && *s == stamp
    {
        return h.clone();
    }
    let h = std::sync::Arc::new(read_host_units(cfg));
    *c = Some((cfg.root.clone(), stamp, h.clone()));
    h
}

fn read_host_units(cfg: &Config) -> HostUnits {
    let mut out = HostUnits::default();
    for d in UNIT_PATH {
        let Ok(rd) = std::fs::read_dir(cfg.host(Path::new(d))) else { continue };
        for e in rd.flatten() {
            if d != crate::model::config::UNITS_DIR {
                out.names.entry(e.file_name()).or_default().push(d);
            }
            if !e.file_type().is_ok_and(|t| t.is_symlink()) {
                continue;
            }
            let Some(target) = std::fs::read_link(e.path()).ok().and_then(|t| t.file_name().map(|n| n.to_owned()))
            else {
                continue;
            };
            if target != e.file_name() {
                out.aliases
                    .entry(target.to_string_lossy().into_owned())
                    .or_insert_with(|| Path::new(d).join(e.file_name()));
            }
        }
    }
    out
}

pub struct Systemd {
    /// Only the running system's systemd is driven: never with `--root`.
    enabled: bool,
}

impl Systemd {
    pub fn new(cfg: &Config) -> Systemd {
        let enabled = cfg.root == Path::new("/") && Path::new("/run/systemd/system").is_dir();
        Systemd { enabled }
    }

    fn systemctl(&self, args: &[&str]) -> Result<std::process::Output> {
        Command::new("systemctl").args(args).output().with_context(|| format!("running systemctl {}", args.join(" ")))
    }

    pub fn daemon_reload(&self) -> Result<()> {
        if !self.enabled {
            log::info!("not reloading systemd (not running, or --root given)");
            return Ok(());
        }
        let out = self.systemctl(&["daemon-reload"])?;
        if !out.status.success() {
            bail!("systemctl daemon-reload failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(())
    }

    /// `ActiveState` of a unit; `None` when systemd is not driven here.
    pub fn active_state(&self, unit: &str) -> Option<String> {
        if !self.enabled {
            return None;
        }
        let out = self.systemctl(&["show", "--property=ActiveState", "--value", "--", unit]).ok()?;
        Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// `ActiveState` of each unit, in order, from one `systemctl show` (one
    /// call per unit made `torcx status` take 1.5 s with 500 images).
    pub fn active_states(&self, units: &[String]) -> Vec<Option<String>> {
        if !self.enabled || units.is_empty() {
            return vec![None; units.len()];
        }
        let mut args = vec!["show", "--property=ActiveState", "--"];
        args.extend(units.iter().map(String::as_str));
        let Ok(out) = self.systemctl(&args) else { return vec![None; units.len()] };
        // One block per unit, in the order asked, blank lines between.
        let text = String::from_utf8_lossy(&out.stdout);
        let states: Vec<String> = text
            .split("\n\n")
            .map(|b| b.trim())
            .filter(|b| !b.is_empty())
            .map(|b| b.strip_prefix("ActiveState=").unwrap_or("").to_string())
            .collect();
        if states.len() == units.len() {
            states.into_iter().map(Some).collect()
        } else if states.is_empty() {
            // systemctl could not tell (no manager to ask): as one call would say.
            vec![Some(String::new()); units.len()]
        } else {
            units.iter().map(|u| self.active_state(u)).collect()
        }
    }

    pub fn is_active(&self, unit: &str) -> bool {
        matches!(self.active_state(unit).as_deref(), Some("active" | "activating" | "reloading" | "deactivating"))
    }

    /// Runs `systemctl VERB UNITS...` and waits for the jobs; a unit that does
    /// not end up active (start, restart) is reported by name and state.
    pub fn run_jobs(&self, verb: &str, units: &[String]) -> Result<()> {
        if units.is_empty() {
            return Ok(());
        }
        if !self.enabled {
            log::warn!("not running systemctl {verb} {} (not running, or --root given)", units.join(" "));
            return Ok(());
        }
        let mut args = vec![verb, "--"];
        args.extend(units.iter().map(String::as_str));
        let out = self.systemctl(&args)?;
        if verb != "stop" {
            let bad: Vec<String> = units
                .iter()
                .filter_map(|u| {
                    let s = self.active_state(u).unwrap_or_default();
                    (s != "active" && s != "activating").then(|| format!("{u} is {s}"))
                })
                .collect();
            if !bad.is_empty() {
                bail!("systemctl {verb} failed: {}", bad.join(", "));
            }
        } else if !out.status.success() {
            bail!("systemctl stop failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(())
    }
}
