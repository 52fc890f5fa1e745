//! attach, detach, reattach and is-attached on the running system.

use super::output::{esc, lock, output, summary};
use crate::attach::portable::Sandbox;
use crate::attach::{self, CopyMode, Options, Record};
use crate::model::config::Config;
use crate::model::names;
use crate::sys::systemd::Systemd;
use anyhow::Result;
use serde_json::json;

/// An error of attaching `img` names the image and its file, as apply's
/// do ("reading archive: corrupt gzip stream" alone said neither), unless
/// it names the image already.
fn named(img: &attach::from::ImageFrom, e: anyhow::Error) -> anyhow::Error {
    let id = img.id();
    if e.to_string().starts_with(&format!("image {id}")) {
        return e;
    }
    e.context(format!("image {id} ({})", img.path().display()))
}

#[allow(clippy::too_many_arguments)]
pub(super) fn cmd_attach(
    cfg: &Config,
    sd: &Systemd,
    image: &str,
    now: bool,
    no_reload: bool,
    force: bool,
    copy: CopyMode,
    portable: Option<Sandbox>,
    json: bool,
) -> Result<i32> {
    let _lock = lock(cfg)?;
    let img = attach::from::resolve(cfg, image, true)?;
    let opts = Options {
        origin: crate::attach::RecordOrigin::Runtime,
        copy,
        portable,
        check_host_units: true,
        force,
        known: None,
        known_digest: None,
        unit_dirs: None,
        unrecorded: false,
    };
    let (rec, _) = attach::attach(cfg, &img, &opts).map_err(|e| named(&img, e))?;
    if !no_reload {
        sd.daemon_reload()?;
    }
    let mut started = vec![];
    if now {
        started = rec.enabled_units();
        sd.run_jobs("start", &started)?;
    }
    output(json, "torcx-attach-v0", json!({"attachment": rec, "started": started}), || {
        format!("attached {} from {}: {}", rec.id(), esc(rec.archive.display()), summary(&rec))
    });
    Ok(0)
}

pub(super) fn cmd_detach(
    cfg: &Config,
    sd: &Systemd,
    name: &str,
    now: bool,
    no_reload: bool,
    force: bool,
    json: bool,
) -> Result<i32> {
    let _lock = lock(cfg)?;
    let kept = attach::detach(cfg, sd, name, now, force)?;
    if !no_reload {
        sd.daemon_reload()?;
    }
    output(json, "torcx-detach-v0", json!({"name": name, "kept": kept}), || format!("detached {name}"));
    if !kept.is_empty() {
        let list: Vec<String> = kept.iter().map(|p| p.display().to_string()).collect();
        log::error!(
            "image {name}: kept {} file{} changed since attach: {}",
            kept.len(),
            if kept.len() > 1 { "s" } else { "" },
            list.join(", ")
        );
        return Ok(1);
    }
    Ok(0)
}

pub(super) fn cmd_reattach(
    cfg: &Config,
    sd: &Systemd,
    image: &str,
    now: bool,
    no_reload: bool,
    json: bool,
) -> Result<i32> {
    let _lock = lock(cfg)?;
    let img = attach::from::resolve(cfg, image, false)?;
    let running: Vec<String> = match Record::load(cfg, &img.id().name)? {
        Some(old) => old.units().into_iter().filter(|u| sd.is_active(u)).collect(),
        None => vec![],
    };
    let (old, new) = attach::reattach(cfg, &img).map_err(|e| named(&img, e))?;
    if !no_reload {
        sd.daemon_reload()?;
    }
    let (mut restarted, mut started, mut stopped) = (vec![], vec![], vec![]);
    if now {
        let new_units = new.units();
        stopped = running.iter().filter(|u| !new_units.contains(u)).cloned().collect();
        restarted = running.iter().filter(|u| new_units.contains(u)).cloned().collect();
        let old_enabled = old.enabled_units();
        started =
            new.enabled_units().into_iter().filter(|u| !old_enabled.contains(u) && !restarted.contains(u)).collect();
        sd.run_jobs("stop", &stopped)?;
        sd.run_jobs("restart", &restarted)?;
        sd.run_jobs("start", &started)?;
    }
    output(
        json,
        "torcx-reattach-v0",
        json!({"previous": old, "attachment": new, "restarted": restarted, "started": started, "stopped": stopped}),
        || format!("reattached {}: {} -> {} ({})", new.name, old.reference, new.reference, summary(&new)),
    );
    Ok(0)
}

pub(super) fn cmd_is_attached(cfg: &Config, sd: &Systemd, name: &str, json: bool) -> Result<i32> {
    names::validate_name(name)?;
    let state = match Record::load(cfg, name)? {
        Some(r) if r.state == crate::attach::RecordState::Attached => {
            if r.units().iter().any(|u| sd.is_active(u)) {
                "running"
            } else if r.origin == crate::attach::RecordOrigin::Boot {
                "attached-boot"
            } else {
                "attached"
            }
        }
        Some(_) => "interrupted",
        None => "not-attached",
    };
    output(json, "torcx-is-attached-v0", json!({"name": name, "state": state}), || state.to_string());
    Ok(if state.starts_with("attached") || state == "running" { 0 } else { 1 })
}
