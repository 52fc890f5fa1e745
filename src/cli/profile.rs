//! profile list, check, new, set-next, use-image and remove-image.

use super::args::ProfileCmd;
use super::output::{lock, output};
use crate::model::config::Config;
use anyhow::{Result, anyhow};
use serde_json::json;

pub(super) fn cmd_profile(cfg: &Config, p: &ProfileCmd, json: bool) -> Result<i32> {
    use crate::profile::edit::{self, Target};
    match p {
        ProfileCmd::List => {
            let l = edit::list(cfg)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({"kind": "torcx-profile-list-v0", "value": l})).unwrap()
                );
            } else {
                let none = || "-".to_string();
                println!(
                    "booted lower profiles: {}",
                    if l.lower_profile_names.is_empty() { none() } else { l.lower_profile_names.join(" ") }
                );
                println!("booted upper profile:  {}", l.user_profile_name.clone().unwrap_or_else(none));
                println!(
                    "run profile:           {}",
                    l.current_profile_path.as_ref().map(|p| p.display().to_string()).unwrap_or_else(none)
                );
                println!("next profile:          {}", l.next_profile_name.clone().unwrap_or_else(none));
                println!(
                    "profiles:              {}",
                    if l.profiles.is_empty() { none() } else { l.profiles.join(" ") }
                );
            }
            Ok(0)
        }
        ProfileCmd::Check { name, file, remote_only: true, fetch } => {
            super::populate::cmd_check_remotes(cfg, name.as_deref(), file.as_deref(), fetch, json)
        }
        ProfileCmd::Populate { name, file, os_release, jobs, fetch } => super::populate::cmd_populate(
            cfg,
            name.as_deref(),
            file.as_deref(),
            os_release.as_deref(),
            fetch,
            *jobs,
            json,
        ),
        ProfileCmd::Check { name, file, remote_only: false, .. } => {
            let c = crate::boot::check::check(cfg, Target::from_args(name.as_deref(), file.as_deref())?)?;
            output(json, "torcx-profile-check-v0", json!(c), || {
                let mut s = format!(
                    "profile {}: {} image{}",
                    c.profile.as_deref().unwrap_or("(lower profiles only)"),
                    c.images.len(),
                    if c.images.len() == 1 { "" } else { "s" }
                );
                if c.problems.is_empty() {
                    s += ", all present and readable, no conflicts";
                }
                s
            });
            for pr in &c.problems {
                log::error!("image {}: {}", pr.image, pr.error);
            }
            Ok(if c.problems.is_empty() { 0 } else { 1 })
        }
        ProfileCmd::New { name, file, from, from_next } => {
            let _lock = lock(cfg)?;
            let t =
                Target::from_args(name.as_deref(), file.as_deref())?.ok_or_else(|| anyhow!("give --name or --file"))?;
            let path = edit::new(cfg, &t, from.as_deref(), *from_next)?;
            output(json, "torcx-profile-new-v0", json!({"path": path}), || format!("created {}", path.display()));
            Ok(0)
        }
        ProfileCmd::SetNext { name } => {
            let _lock = lock(cfg)?;
            edit::set_next(cfg, name)?;
            output(json, "torcx-profile-set-next-v0", json!({"next_profile_name": name}), || {
                format!("the next boot applies profile {name}")
            });
            Ok(0)
        }
        ProfileCmd::UseImage { image, name, file, allow } => {
            let _lock = lock(cfg)?;
            let t = Target::from_args(name.as_deref(), file.as_deref())?;
            let path = edit::use_image(cfg, t, image, allow.is_some())?;
            output(json, "torcx-profile-use-image-v0", json!({"path": path, "image": image}), || {
                format!("{} now uses {image}", path.display())
            });
            Ok(0)
        }
        ProfileCmd::RemoveImage { image, name, file } => {
            let _lock = lock(cfg)?;
            let t = Target::from_args(name.as_deref(), file.as_deref())?;
            let (path, masked) = edit::remove_image(cfg, t, image)?;
            output(
                json,
                "torcx-profile-remove-image-v0",
                json!({"path": path, "image": image, "masked_lower": masked}),
                || {
                    if masked {
                        format!(
                            "removed {image} from {} (a lower profile names it: an empty reference there removes it from the boot)",
                            path.display()
                        )
                    } else {
                        format!("removed {image} from {}", path.display())
                    }
                },
            );
            Ok(0)
        }
    }
}
