//! status: the attachments, their units and binaries, and the last boot apply.

use super::output::esc;
use crate::attach::Record;
use crate::boot::apply;
use crate::model::config::Config;
use crate::model::names;
use crate::sys::systemd::Systemd;
use anyhow::{Result, bail};
use serde_json::json;
use std::path::Path;

pub(super) fn profiles_line(s: &apply::Status) -> String {
    let lower = s.lower_profiles.join(":");
    let profiles = match &s.upper_profile {
        Some(u) if lower.is_empty() => u.clone(),
        Some(u) => format!("{lower} + {u}"),
        None => lower,
    };
    format!(
        "profiles: {}; {} images; {}",
        if profiles.is_empty() { "none" } else { &profiles },
        s.images.len(),
        if s.sealed { "sealed" } else { "NOT sealed" }
    )
}

pub(super) fn cmd_status(cfg: &Config, sd: &Systemd, name: Option<&str>, json: bool) -> Result<i32> {
    let mut recs = Record::load_all(cfg);
    if let Some(n) = name {
        names::validate_name(n)?;
        recs.retain(|r| r.name == n);
        if recs.is_empty() {
            bail!("image {n} is not attached");
        }
    }
    let last = apply::read_status(cfg);
    let sealed = cfg.host(Path::new(crate::model::config::SEAL_PATH)).exists();
    let all: Vec<String> = recs.iter().flat_map(|r| r.units()).collect();
    let mut states = sd.active_states(&all).into_iter();
    let atts: Vec<serde_json::Value> = recs
        .iter()
        .map(|r| {
            let units: Vec<serde_json::Value> =
                r.units().iter().map(|u| json!({"name": u, "active_state": states.next().flatten()})).collect();
            json!({
                "name": r.name, "reference": r.reference, "origin": r.origin, "state": r.state,
                "archive": r.archive, "format": r.format, "digest": r.digest, "tree": r.tree,
                "portable": r.portable, "units": units, "binaries": r.binaries(),
            })
        })
        .collect();
    if json {
        let v = json!({"sealed": sealed, "attachments": atts, "last_apply": last});
        println!("{}", serde_json::to_string_pretty(&json!({"kind": "torcx-status-v0", "value": v})).unwrap());
        return Ok(0);
    }
    println!("{:<20} {:<16} {:<8} {:<10} {:<40} ARCHIVE", "NAME", "REFERENCE", "ORIGIN", "STATE", "UNITS");
    for (r, a) in recs.iter().zip(&atts) {
        let units: Vec<String> = a["units"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| match u["active_state"].as_str() {
                Some(s) => format!("{}({s})", u["name"].as_str().unwrap()),
                None => u["name"].as_str().unwrap().to_string(),
            })
            .collect();
        println!(
            "{:<20} {:<16} {:<8} {:<10} {:<40} {}",
            r.name,
            r.reference,
            r.origin,
            r.state,
            if units.is_empty() { "-".into() } else { esc(units.join(" ")) },
            esc(r.archive.display())
        );
        if let Some(d) = &r.digest {
            println!("{:<20} digest {d}; binaries: {}", "", esc(r.binaries().join(" ")));
        }
    }
    match &last {
        None => println!("last boot apply: none recorded"),
        Some(s) => {
            println!("last boot apply: {}", profiles_line(s));
            if let Some(e) = &s.error {
                println!("  error: {}", esc(e));
            }
            for i in s.images.iter().filter(|i| i.error.is_some()) {
                let kind = i.kind.map(|k| k.as_str()).unwrap_or("other");
                println!("  failed ({kind}): {}", esc(i.error.as_deref().unwrap()));
            }
        }
    }
    Ok(0)
}
