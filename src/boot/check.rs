//! `torcx profile check`: the checks a boot makes, made now, changing
//! nothing. It plans each image with the generator's own plan, so what the
//! boot would refuse (a host unit shadowed, a manifest path outside the
//! image), this reports.

use crate::attach::Action;
use crate::boot::generator;
use crate::model::config::Config;
use crate::model::manifest;
use crate::profile::{self, edit::Target};
use crate::store;
use crate::sys::fsutil;
use crate::tree::source::{ImageSource, Kind};
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// One problem `profile check` found.
#[derive(Serialize, Debug)]
pub struct Problem {
    pub image: String,
    pub error: String,
}

#[derive(Serialize, Debug)]
pub struct Checked {
    pub profile: Option<String>,
    pub images: Vec<String>,
    pub problems: Vec<Problem>,
}

/// The checks a boot would make, without making any change: the profile
/// merged as at boot (with `t` as the upper profile when given), every image
/// in a store, every archive readable with a valid manifest, no two images
/// placing the same unit or binary.
pub fn check(cfg: &Config, t: Option<Target>) -> Result<Checked> {
    let (images, shown) = match t {
        None => {
            let r = profile::resolve(cfg)?;
            if let Some(e) = r.upper_error {
                anyhow::bail!(e);
            }
            (r.images, r.upper_profile)
        }
        Some(t) => {
            let (host, shown) = t.paths(cfg);
            let text = std::fs::read_to_string(&host).with_context(|| format!("profile {shown}"))?;
            let upper = manifest::parse_profile(&text).with_context(|| format!("profile {shown}"))?;
            let mut layers = vec![];
            for l in profile::LOWER_PROFILES {
                if let Some(p) = profile::find(cfg, l)? {
                    layers.push(profile::load(cfg, &p)?);
                }
            }
            layers.push(upper);
            (profile::merge(&layers), Some(shown))
        }
    };
    let archives = store::scan(cfg);
    let host = crate::sys::systemd::UnitDirs::read(cfg);
    let mut problems = vec![];
    let mut owners: BTreeMap<PathBuf, String> = BTreeMap::new();
    for id in &images {
        let res = (|| -> Result<()> {
            // The generator's own plan: what it would refuse, this reports.
            let generator::ImagePlan { manifest: m, units: mem, placements: plan } =
                generator::plan_image(cfg, &archives, &host, id)?;
            let mut dests: Vec<PathBuf> =
                plan.into_iter().filter(|p| p.action != Action::Dir).map(|p| p.dest).collect();
            // Binaries named as files (directories are only known once unpacked).
            for b in &m.bin {
                if let Ok(rel) = fsutil::relative_inside(b)
                    && mem.stat(&rel)? != Some(Kind::Dir)
                    && let Some(f) = rel.file_name()
                {
                    dests.push(cfg.bin_dir().join(f));
                }
            }
            for d in dests {
                if let Some(prev) = owners.insert(d.clone(), id.to_string()) {
                    bail!("{} is provided by image {prev} too", d.display());
                }
            }
            Ok(())
        })();
        if let Err(e) = res {
            // The image is named beside the error: not twice.
            let e = format!("{e:#}");
            let error = e.strip_prefix(&format!("image {id}: ")).unwrap_or(&e).to_string();
            problems.push(Problem { image: id.to_string(), error });
        }
    }
    Ok(Checked { profile: shown, images: images.iter().map(|i| i.to_string()).collect(), problems })
}
