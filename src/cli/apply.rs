//! apply: the boot apply, run by hand.

use super::status::profiles_line;
use crate::boot::apply;
use crate::model::config::Config;
use anyhow::Result;
use serde_json::json;

pub(super) fn cmd_apply(cfg: &Config, force: bool, json: bool) -> Result<i32> {
    let out = apply::apply(cfg, force)?;
    let s = &out.status;
    if json {
        let doc = json!({"kind": apply::STATUS_KIND, "value": s, "already_applied": out.already});
        println!("{}", serde_json::to_string_pretty(&doc).unwrap());
    } else {
        if out.already {
            println!("already applied this boot: nothing to do (use --force to apply again)");
        }
        for i in &s.images {
            let archive = i.archive.as_ref().map(|p| super::output::esc(p.display())).unwrap_or_else(|| "-".into());
            println!("{:<32} {:<10} {}", format!("{}:{}", i.name, i.reference), i.state, archive);
        }
        println!("{}", profiles_line(s));
    }
    let failed: Vec<_> = s.images.iter().filter_map(|i| i.error.as_ref()).collect();
    for e in &failed {
        log::error!("{}", e);
    }
    if let Some(e) = &s.error {
        log::error!("{e}; not sealed (see {})", cfg.status_path().display());
        return Ok(1);
    }
    if !failed.is_empty() {
        log::error!(
            "{} of {} images failed; not sealed (see {})",
            failed.len(),
            s.images.len(),
            cfg.status_path().display()
        );
        return Ok(1);
    }
    Ok(0)
}
