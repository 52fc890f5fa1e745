//! The host's units: an image may not ship a unit that systemd would find
//! elsewhere on the host, shadowing it or shadowed by it.

use super::plan::{Action, Class, GENERATOR_DIR, Placement};
use super::record::Record;
use crate::model::config::{self, Config};
use crate::model::names::ImageId;
use crate::model::units::{is_unit_name, template_of};
use crate::sys::systemd;
use anyhow::{Result, bail};
use std::path::{Path, PathBuf};

/// Refuses a unit of the plan that systemd would find elsewhere on the
/// host: the image would shadow it, or be shadowed by it. Two copies are the
/// image's own and not the host's: the torcx generator's copy of the same
/// unit in `/run/systemd/generator` (the same bytes: at boot the generator
/// planned this image first), and a file in `/run/systemd/system` that this
/// image's own record placed (the generator runs again on a daemon-reload
/// after an image is attached). Everything else counts: what other
/// generators wrote, whatever the directory.
pub fn check_host_units(cfg: &Config, id: &ImageId, plan: &[Placement]) -> Result<()> {
    check_host_units_in(cfg, &systemd::UnitDirs::read(cfg), id, plan)
}

/// [`check_host_units`] against unit directories looked at already (by a
/// caller that checks several images and changes nothing in between).
pub fn check_host_units_in(cfg: &Config, dirs: &systemd::UnitDirs, id: &ImageId, plan: &[Placement]) -> Result<()> {
    let units = Path::new(config::UNITS_DIR);
    let mut mine: Option<Vec<PathBuf>> = None;
    for p in plan.iter().filter(|p| p.class == Class::Unit && p.dest.parent() == Some(units)) {
        let name = p.dest.file_name().unwrap().to_string_lossy();
        if !is_unit_name(&name) {
            continue;
        }
        // An instance the image ships replaces the host's instance of the
        // same template; a unit it ships becomes what the host's aliases of
        // that name point at.
        if let Some(t) = template_of(&name)
            && let Some(found) = dirs.find_units(cfg, &t).next()
        {
            bail!(
                "image {id}: unit {name} (from /{}) shadows an instance of the host's template {}",
                p.source.as_deref().unwrap_or("?"),
                found.display()
            );
        }
        if let Some(alias) = dirs.alias_of(&name) {
            bail!(
                "image {id}: unit {name} (from /{}) would become the host's alias {}",
                p.source.as_deref().unwrap_or("?"),
                alias.display()
            );
        }
        for found in dirs.find_units(cfg, &name) {
            let dir = found.parent().unwrap_or(Path::new("/"));
            let ours = if dir == Path::new(GENERATOR_DIR) {
                matches!(&p.action, Action::File(b) if std::fs::read(cfg.host(&found)).is_ok_and(|h| &h == b))
            } else if dir == units {
                let mine = match &mut mine {
                    Some(m) => m,
                    None => mine.insert(recorded_by(cfg, &id.name)),
                };
                mine.contains(&found)
            } else {
                false
            };
            if !ours {
                return Err(crate::model::failure::error(
                    crate::model::failure::Kind::Conflict,
                    format!(
                        "image {id}: unit {name} (from /{}) conflicts with {} on the host",
                        p.source.as_deref().unwrap_or("?"),
                        found.display()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The files the record of image `name` says torcx placed for it.
fn recorded_by(cfg: &Config, name: &str) -> Vec<PathBuf> {
    match Record::load(cfg, name) {
        Ok(Some(r)) => r.files.into_iter().map(|f| f.path).collect(),
        _ => vec![],
    }
}
