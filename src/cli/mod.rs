//! The command line: clap definitions, one handler per command, and output
//! for people (tables) and for programs (JSON, the default when piped).

pub mod docs;

use crate::attach::portable::Sandbox;
use crate::attach::{self, CopyMode, Options, Record};
use crate::boot::apply;
use crate::image::list;
use crate::model::config::{Config, Overrides};
use crate::model::names::{self};
use crate::sys::fsutil::Lock;
use crate::sys::log;
use crate::sys::systemd::Systemd;
use anyhow::{Result, anyhow, bail};
use clap::{Parser, Subcommand};
use serde_json::json;
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(
    name = "torcx",
    version,
    about = "Boot-time addon manager for immutable Linux systems",
    long_about = "Boot-time addon manager for immutable Linux systems.\n\n\
An image (an archive in a store) is unpacked or mounted into its own read-only tree under \
/run/torcx/unpack/NAME and attached: its binaries are linked into /run/torcx/bin, its systemd units \
are placed in /run/systemd/system with a drop-in tying them to the image, and its networkd, sysusers, \
tmpfiles and udev files go to their runtime directories. Every placed file is recorded in \
/run/torcx/attached/NAME.json, and detach removes exactly those. At boot, torcx-generator(8) and \
torcx-apply.service apply the profile (torcx-profile(5)) and seal the system.\n\n\
Output is a table or a line on a terminal and JSON when piped or with --json. Exit status: 0 success, \
1 failure (one line on standard error naming the image, the file and the cause), 2 usage error."
)]
pub struct Cli {
    /// Work under DIR instead of / (every path, including the seal); systemd is not driven
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Print JSON (the default when stdout is not a terminal)
    #[arg(long, global = true)]
    pub json: bool,
    /// More messages (-v info, -vv debug)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// An extra store directory, searched last (repeatable)
    #[arg(long, global = true, value_name = "DIR")]
    pub store: Vec<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Apply the next profile now: unpack and attach its images, then seal
    #[command(long_about = "Apply the next profile now: unpack and attach its images, then seal.\n\n\
This is what torcx-apply.service runs at boot. Images are attached one by one; one failing does not \
stop the others. /run/torcx/status.json records every image's outcome. Only when every image is \
attached are /run/torcx/profile.json and the seal /run/metadata/torcx written. Run again after \
success it changes nothing and says so; after a failure it retries the failed images.")]
    Apply {
        /// Apply again even though this boot is already sealed
        #[arg(long)]
        force: bool,
    },
    /// Attach an image on the running system: NAME, NAME:REF, or the path of an archive or directory
    #[command(long_about = "Attach an image on the running system.\n\n\
IMAGE is NAME:REF, NAME (the reference the active profile names, else the only one in the stores), \
or the path of an archive or of an unpacked image directory (a path has a '/', as in ./dir, or is an \
archive's file name; a bare word is always looked up in the stores). Refused before anything changes: the \
image already attached (use reattach), a unit of the same name anywhere in systemd's unit search \
path (--force overrides this check only), a binary or file already placed, a manifest path outside \
the image. The record is written first, so an interrupted attach is cleaned up by detach or by the \
next attach. Then systemctl daemon-reload runs, unless --no-reload or --root.")]
    Attach {
        image: String,
        /// Start the units the image enables, and wait for them
        #[arg(long)]
        now: bool,
        /// Do not run systemctl daemon-reload
        #[arg(long)]
        no_reload: bool,
        /// Attach even though a unit of the same name exists on the host
        #[arg(long)]
        force: bool,
        /// How to place unit files
        #[arg(long, value_enum, default_value_t = CopyMode::Auto)]
        copy: CopyMode,
        /// Run the image's services inside the image tree, with this sandbox
        #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "default", require_equals = true)]
        portable: Option<Sandbox>,
    },
    /// Detach an image: remove exactly what attach placed
    #[command(long_about = "Detach an image: remove exactly what attach placed.\n\n\
Refused while one of the image's units is active, unless --now (stop them first) or --force. Only \
files that are still as torcx placed them are removed; a file changed since is kept and named, and \
the exit status is 1. Then the image tree is unmounted, the record removed, and systemd reloaded.")]
    Detach {
        name: String,
        /// Stop the image's units first
        #[arg(long)]
        now: bool,
        /// Do not run systemctl daemon-reload
        #[arg(long)]
        no_reload: bool,
        /// Detach even though its units are active
        #[arg(long)]
        force: bool,
    },
    /// Switch an attached image to another reference, all or nothing
    #[command(long_about = "Switch an attached image to another reference, all or nothing.\n\n\
The new archive is unpacked or mounted beside the old tree and checked first. Then the old files are \
removed, the trees trade places and the new files are placed; any failure puts the old attachment \
back exactly as it was. Services still running from the old tree keep it until they stop.")]
    Reattach {
        /// NAME:REF, or the path of an archive
        image: String,
        /// Restart the image's running units, start new ones, stop removed ones
        #[arg(long)]
        now: bool,
        /// Do not run systemctl daemon-reload
        #[arg(long)]
        no_reload: bool,
    },
    /// Exit 0 when the image is attached, 1 when not; print its state
    IsAttached { name: String },
    /// Attachments, their units and binaries, and the last boot apply
    Status { name: Option<String> },
    /// Build, list and look into images
    #[command(subcommand)]
    Image(ImageCmd),
    /// List, check and edit profiles
    #[command(subcommand)]
    Profile(ProfileCmd),
    /// Write the man pages and shell completions into DIR/man and DIR/completions
    #[command(hide = true)]
    GenerateDocs { dir: PathBuf },
}

#[derive(Subcommand)]
pub enum ProfileCmd {
    /// The booted lower and upper profiles, the run profile, the next profile, all profiles
    List,
    /// Check a profile as a boot would, without changing anything
    Check {
        /// A user profile (default: the next profile, merged as at boot)
        #[arg(long, conflicts_with = "file")]
        name: Option<String>,
        /// A profile file
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Create a profile, empty or as a copy
    New {
        /// Create /etc/torcx/profiles/NAME.json
        #[arg(long, conflicts_with = "file", required_unless_present = "file")]
        name: Option<String>,
        /// Create this file (must end in .json)
        #[arg(long)]
        file: Option<PathBuf>,
        /// Copy this profile
        #[arg(long, conflicts_with = "from_next")]
        from: Option<String>,
        /// Copy the next profile
        #[arg(long)]
        from_next: bool,
    },
    /// Select the profile the next boot applies
    SetNext { name: String },
    /// Pin an image reference in a profile (default: the next profile)
    UseImage {
        /// NAME:REF
        image: String,
        #[arg(long, conflicts_with = "file")]
        name: Option<String>,
        #[arg(long)]
        file: Option<PathBuf>,
        /// `missing`: name an image that is in no store yet
        #[arg(long, value_parser = ["missing"])]
        allow: Option<String>,
    },
    /// Remove an image from a profile (default: the next profile)
    RemoveImage {
        /// NAME
        image: String,
        #[arg(long, conflicts_with = "file")]
        name: Option<String>,
        #[arg(long)]
        file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum ImageCmd {
    /// Archives in the stores: name, reference, store, path, format, size
    List {
        /// Only this image
        name: Option<String>,
        /// List the stores of this OS version (VERSION_ID) instead of this one's
        #[arg(short = 'n', long = "os-release", value_name = "VERSION_ID")]
        os_release: Option<String>,
    },
    /// Remove versioned user stores other than the kept versions (or only NAME's archives in them)
    ClearVersioned {
        /// A version to keep (repeatable, at least one)
        #[arg(short = 'k', long = "keep-version", value_name = "VERSION_ID", required = true)]
        keep: Vec<String>,
        name: Option<String>,
    },
    /// Build an archive from a directory, writing its manifest when it has none
    Pack(crate::image::pack::PackArgs),
    /// Format, size, digest, manifest, what would be placed where, and lint findings
    Inspect(crate::image::inspect::InspectArgs),
}

pub fn run(cli: &Cli, json: bool) -> Result<i32> {
    let cfg = Config::load(&Overrides { root: cli.root.clone(), stores: cli.store.clone() })?;
    let sd = Systemd::new(&cfg);
    match &cli.command {
        Command::Apply { force } => cmd_apply(&cfg, *force, json),
        Command::Attach { image, now, no_reload, force, copy, portable } => {
            let _lock = lock(&cfg)?;
            let img = attach::from::resolve(&cfg, image, true)?;
            let opts = Options {
                origin: attach::RecordOrigin::Runtime,
                copy: *copy,
                portable: *portable,
                check_host_units: true,
                force: *force,
            };
            let (rec, _) = attach::attach(&cfg, &img, &opts)?;
            if !no_reload {
                sd.daemon_reload()?;
            }
            let mut started = vec![];
            if *now {
                started = rec.enabled_units();
                sd.run_jobs("start", &started)?;
            }
            output(json, "torcx-attach-v0", json!({"attachment": rec, "started": started}), || {
                format!("attached {} from {}: {}", rec.id(), rec.archive.display(), summary(&rec))
            });
            Ok(0)
        }
        Command::Detach { name, now, no_reload, force } => {
            let _lock = lock(&cfg)?;
            let kept = attach::detach(&cfg, &sd, name, *now, *force)?;
            if !no_reload {
                sd.daemon_reload()?;
            }
            output(json, "torcx-detach-v0", json!({"name": name, "kept": kept}), || format!("detached {name}"));
            if !kept.is_empty() {
                let list: Vec<String> = kept.iter().map(|p| p.display().to_string()).collect();
                log::error(&format!(
                    "image {name}: kept {} file{} changed since attach: {}",
                    kept.len(),
                    if kept.len() > 1 { "s" } else { "" },
                    list.join(", ")
                ));
                return Ok(1);
            }
            Ok(0)
        }
        Command::Reattach { image, now, no_reload } => {
            let _lock = lock(&cfg)?;
            let img = attach::from::resolve(&cfg, image, false)?;
            let running: Vec<String> = match Record::load(&cfg, &img.id().name)? {
                Some(old) => old.units().into_iter().filter(|u| sd.is_active(u)).collect(),
                None => vec![],
            };
            let (old, new) = attach::reattach(&cfg, &img)?;
            if !no_reload {
                sd.daemon_reload()?;
            }
            let (mut restarted, mut started, mut stopped) = (vec![], vec![], vec![]);
            if *now {
                let new_units = new.units();
                stopped = running.iter().filter(|u| !new_units.contains(u)).cloned().collect();
                restarted = running.iter().filter(|u| new_units.contains(u)).cloned().collect();
                let old_enabled = old.enabled_units();
                started = new
                    .enabled_units()
                    .into_iter()
                    .filter(|u| !old_enabled.contains(u) && !restarted.contains(u))
                    .collect();
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
        Command::IsAttached { name } => {
            names::validate_name(name)?;
            let state = match Record::load(&cfg, name)? {
                Some(r) if r.state == attach::RecordState::Attached => {
                    if r.units().iter().any(|u| sd.is_active(u)) {
                        "running"
                    } else if r.origin == attach::RecordOrigin::Boot {
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
        Command::Status { name } => cmd_status(&cfg, &sd, name.as_deref(), json),
        Command::Image(ImageCmd::Pack(args)) => crate::image::pack::run(&cfg, args, json),
        Command::Image(ImageCmd::List { name, os_release }) => {
            let rows = list::list(&cfg, name.as_deref(), os_release.as_deref())?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({"kind": "torcx-image-list-v0", "value": rows})).unwrap()
                );
            } else if rows.is_empty() {
                println!("no images");
            } else {
                println!("{:<24} {:<16} {:<9} {:>12}  PATH", "NAME", "REFERENCE", "FORMAT", "SIZE");
                for r in &rows {
                    println!(
                        "{:<24} {:<16} {:<9} {:>12}  {}",
                        r.name,
                        r.reference,
                        r.format,
                        r.size,
                        r.filepath.display()
                    );
                }
            }
            Ok(0)
        }
        Command::Image(ImageCmd::ClearVersioned { keep, name }) => {
            let _lock = lock(&cfg)?;
            let removed = list::clear_versioned(&cfg, keep, name.as_deref())?;
            output(json, "torcx-image-clear-versioned-v0", json!({"removed": removed}), || {
                if removed.is_empty() {
                    "nothing to remove".into()
                } else {
                    removed.iter().map(|p| format!("removed {}", p.display())).collect::<Vec<_>>().join("\n")
                }
            });
            Ok(0)
        }
        Command::Profile(p) => cmd_profile(&cfg, p, json),
        Command::GenerateDocs { dir } => crate::cli::docs::generate(dir).map(|_| 0),
        Command::Image(ImageCmd::Inspect(args)) => crate::image::inspect::run(&cfg, args, json),
    }
}

fn lock(cfg: &Config) -> Result<Lock> {
    let l = Lock::take(&cfg.host(&cfg.lock_path()))?;
    attach::sweep(cfg);
    Ok(l)
}

fn summary(r: &Record) -> String {
    let (u, b) = (r.units(), r.binaries());
    format!(
        "{} unit{} ({}), {} binar{} ({})",
        u.len(),
        if u.len() == 1 { "" } else { "s" },
        u.join(" "),
        b.len(),
        if b.len() == 1 { "y" } else { "ies" },
        b.join(" ")
    )
}

/// Prints a `{"kind", "value"}` document, or the human text.
fn output(json: bool, kind: &str, value: serde_json::Value, human: impl FnOnce() -> String) {
    if json {
        println!("{}", serde_json::to_string_pretty(&json!({"kind": kind, "value": value})).unwrap());
    } else {
        println!("{}", human());
    }
}

fn cmd_apply(cfg: &Config, force: bool, json: bool) -> Result<i32> {
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
            let archive = i.archive.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "-".into());
            println!("{:<32} {:<10} {}", format!("{}:{}", i.name, i.reference), i.state, archive);
        }
        println!("{}", profiles_line(s));
    }
    let failed: Vec<_> = s.images.iter().filter_map(|i| i.error.as_ref()).collect();
    for e in &failed {
        log::error(e);
    }
    if !failed.is_empty() {
        log::error(&format!(
            "{} of {} images failed; not sealed (see {})",
            failed.len(),
            s.images.len(),
            cfg.status_path().display()
        ));
        return Ok(1);
    }
    Ok(0)
}

fn profiles_line(s: &apply::Status) -> String {
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

fn cmd_status(cfg: &Config, sd: &Systemd, name: Option<&str>, json: bool) -> Result<i32> {
    let mut recs = Record::load_all(cfg)?;
    if let Some(n) = name {
        names::validate_name(n)?;
        recs.retain(|r| r.name == n);
        if recs.is_empty() {
            bail!("image {n} is not attached");
        }
    }
    let last = apply::read_status(cfg);
    let sealed = cfg.host(Path::new(crate::model::config::SEAL_PATH)).exists();
    let atts: Vec<serde_json::Value> = recs
        .iter()
        .map(|r| {
            let units: Vec<serde_json::Value> =
                r.units().iter().map(|u| json!({"name": u, "active_state": sd.active_state(u)})).collect();
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
            if units.is_empty() { "-".into() } else { units.join(" ") },
            r.archive.display()
        );
        if let Some(d) = &r.digest {
            println!("{:<20} digest {d}; binaries: {}", "", r.binaries().join(" "));
        }
    }
    match &last {
        None => println!("last boot apply: none recorded"),
        Some(s) => {
            println!("last boot apply: {}", profiles_line(s));
            if let Some(e) = &s.error {
                println!("  error: {e}");
            }
            for i in s.images.iter().filter(|i| i.error.is_some()) {
                println!("  failed: {}", i.error.as_deref().unwrap());
            }
        }
    }
    Ok(0)
}

fn cmd_profile(cfg: &Config, p: &ProfileCmd, json: bool) -> Result<i32> {
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
        ProfileCmd::Check { name, file } => {
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
                log::error(&format!("image {}: {}", pr.image, pr.error));
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

/// `torcx ARGS...`: parses, runs, and returns the exit status (0 success,
/// 1 failure, 2 usage error, which clap exits with itself).
pub fn main() -> i32 {
    use std::io::IsTerminal;
    let cli = Cli::parse();
    log::set_level(if cli.quiet {
        log::Level::Error
    } else {
        match cli.verbose {
            0 => log::Level::Warn,
            1 => log::Level::Info,
            _ => log::Level::Debug,
        }
    });
    let json = cli.json || !std::io::stdout().is_terminal();
    match run(&cli, json) {
        Ok(code) => code,
        Err(e) => {
            log::error(&format!("{e:#}"));
            1
        }
    }
}
