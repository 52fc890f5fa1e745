//! image list and image clear-versioned (pack and inspect live in the
//! image stage).

use super::output::{lock, output};
use crate::image::list;
use crate::model::config::Config;
use anyhow::Result;
use serde_json::json;

pub(super) fn cmd_image_list(cfg: &Config, name: Option<&str>, os_release: Option<&str>, json: bool) -> Result<i32> {
    let rows = list::list(cfg, name, os_release)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&json!({"kind": "torcx-image-list-v0", "value": rows})).unwrap());
    } else if rows.is_empty() {
        println!("no images");
    } else {
        println!("{:<24} {:<16} {:<9} {:>12}  PATH", "NAME", "REFERENCE", "FORMAT", "SIZE");
        for r in &rows {
            println!("{:<24} {:<16} {:<9} {:>12}  {}", r.name, r.reference, r.format, r.size, r.filepath.display());
        }
    }
    Ok(0)
}

pub(super) fn cmd_clear_versioned(cfg: &Config, keep: &[String], name: Option<&str>, json: bool) -> Result<i32> {
    let _lock = lock(cfg)?;
    let removed = list::clear_versioned(cfg, keep, name)?;
    output(json, "torcx-image-clear-versioned-v0", json!({"removed": removed}), || {
        if removed.is_empty() {
            "nothing to remove".into()
        } else {
            removed.iter().map(|p| format!("removed {}", p.display())).collect::<Vec<_>>().join("\n")
        }
    });
    Ok(0)
}
