//! profile populate, profile check --remote-only, and image verify: what
//! people and programs see of fetching and trust.

use super::args::FetchArgs;
use super::output::{esc, output};
use crate::fetch::populate::{self, Outcome, Progress};
use crate::model::config::Config;
use crate::profile::edit::Target;
use anyhow::Result;
use serde_json::json;
use std::path::Path;
use std::time::Duration;

fn options(
    name: Option<&str>,
    file: Option<&Path>,
    version: Option<&str>,
    f: &FetchArgs,
    jobs: u8,
) -> Result<populate::Options> {
    Ok(populate::Options {
        target: Target::from_args(name, file)?,
        version: version.map(String::from),
        allow_unsigned: f.allow_unsigned,
        timeout: Duration::from_secs(f.timeout),
        attempts: f.tries,
        first_wait: Duration::from_secs(1),
        jobs: jobs.into(),
    })
}

/// One bar: what it is, bytes done of all, rate, time left.
fn bar_style() -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template(
        "{prefix:24} {bar:30} {bytes:>10}/{total_bytes:10} {bytes_per_sec:>12} {eta:>4}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
}

/// Bars on a terminal; otherwise one JSON line per image on stdout.
struct Shown {
    bars: Option<indicatif::MultiProgress>,
    json: bool,
}

impl Progress for Shown {
    fn start(&self, image: &str) -> Box<dyn Fn(u64, Option<u64>) + Sync + '_> {
        let Some(m) = &self.bars else { return Box::new(|_, _| {}) };
        let bar = m.add(indicatif::ProgressBar::no_length());
        bar.set_style(bar_style());
        bar.set_prefix(esc(image));
        Box::new(move |done, total| {
            if let Some(t) = total {
                bar.set_length(t);
            }
            bar.set_position(done);
            // The last state is drawn whatever the redraw rate allowed so far.
            if total.is_some_and(|t| done >= t) {
                bar.finish();
            }
        })
    }

    fn done(&self, o: &Outcome) {
        let line = human(o);
        if self.json {
            println!("{}", json!({"kind": "torcx-populate-image-v0", "value": o}));
        } else if let Some(m) = &self.bars {
            let _ = m.println(&line);
        } else {
            println!("{line}");
        }
        if o.state != "failed" {
            log::info!("{line}");
        }
    }
}

fn human(o: &Outcome) -> String {
    match o.state {
        "present" => {
            format!("{}: present ({})", o.image, o.path.as_deref().map(|p| p.display().to_string()).unwrap_or_default())
        }
        "downloaded" => format!(
            "{}: downloaded from remote {}: {} bytes in {:.2} s ({:.1} MB/s){}",
            o.image,
            esc(&o.remote),
            o.bytes,
            o.seconds,
            o.bytes_per_second as f64 / 1e6,
            if o.resumed_bytes > 0 { format!(", resumed at {} bytes", o.resumed_bytes) } else { String::new() }
        ),
        _ => format!("{}: failed (remote {}): {}", o.image, esc(&o.remote), esc(o.error.as_deref().unwrap_or(""))),
    }
}

pub(super) fn cmd_populate(
    cfg: &Config,
    name: Option<&str>,
    file: Option<&Path>,
    version: Option<&str>,
    f: &FetchArgs,
    jobs: u8,
    json: bool,
) -> Result<i32> {
    use std::io::IsTerminal;
    let opts = options(name, file, version, f, jobs)?;
    let bars = (!json && std::io::stderr().is_terminal()).then(indicatif::MultiProgress::new);
    let shown = Shown { bars, json };
    let outcomes = populate::populate(cfg, &opts, &shown)?;
    if let Some(m) = &shown.bars {
        let _ = m.clear();
    }
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.state == "failed").collect();
    if outcomes.is_empty() && !json {
        println!("nothing to populate: no image of the profile names a remote");
    }
    for o in &failed {
        log::error!("image {} (remote {}): {}", o.image, o.remote, o.error.as_deref().unwrap_or(""));
    }
    Ok(if failed.is_empty() { 0 } else { 1 })
}

pub(super) fn cmd_check_remotes(
    cfg: &Config,
    name: Option<&str>,
    file: Option<&Path>,
    f: &FetchArgs,
    json: bool,
) -> Result<i32> {
    let opts = options(name, file, None, f, 1)?;
    let res = populate::check_remotes(cfg, &opts)?;
    let problems: Vec<_> =
        res.iter().filter_map(|(i, e)| e.as_ref().map(|e| json!({"image": i, "error": e}))).collect();
    let images: Vec<&String> = res.iter().map(|(i, _)| i).collect();
    output(
        json,
        "torcx-profile-check-v0",
        json!({"remote_only": true, "images": images, "problems": problems}),
        || {
            format!(
                "{} image{} naming a remote{}",
                images.len(),
                if images.len() == 1 { "" } else { "s" },
                if problems.is_empty() { ", all listed by their signed index" } else { "" }
            )
        },
    );
    for (i, e) in &res {
        if let Some(e) = e {
            log::error!("image {i}: {e}");
        }
    }
    Ok(if problems.is_empty() { 0 } else { 1 })
}

pub(super) fn cmd_verify(cfg: &Config, image: Option<&str>, json: bool) -> Result<i32> {
    use crate::attach::from::{self, ImageFrom};
    let archives = match image {
        None => crate::fetch::verify::candidates(cfg),
        Some(arg) if from::is_path(arg) || arg.contains(':') => match from::resolve(cfg, arg, false)? {
            ImageFrom::Archive(a) => vec![a],
            ImageFrom::Dir { path, .. } => anyhow::bail!("{}: a directory has no hash to verify", path.display()),
        },
        Some(name) => {
            crate::model::names::validate_name(name)?;
            let all: Vec<_> = crate::store::scan(cfg).into_iter().filter(|a| a.id.name == name).collect();
            if all.is_empty() {
                anyhow::bail!("image {name}: no archive in any store");
            }
            all
        }
    };
    let res = crate::fetch::verify::verify(cfg, &archives);
    output(json, "torcx-image-verify-v0", json!(res), || {
        let ok = res.iter().filter(|v| v.ok).count();
        let mut s: Vec<String> = res
            .iter()
            .filter(|v| v.ok)
            .map(|v| {
                format!(
                    "{}: {} (remote {})",
                    v.image,
                    v.digest.as_deref().unwrap_or(""),
                    esc(v.remote.as_deref().unwrap_or(""))
                )
            })
            .collect();
        s.push(format!("{ok} of {} archive{} verified", res.len(), if res.len() == 1 { "" } else { "s" }));
        s.join("\n")
    });
    for v in res.iter().filter(|v| !v.ok) {
        log::error!("image {} ({}): {}", v.image, v.path.display(), v.error.as_deref().unwrap_or(""));
    }
    Ok(if res.iter().all(|v| v.ok) { 0 } else { 1 })
}

pub(super) fn cmd_pull(
    cfg: &Config,
    reference: &str,
    name: Option<&str>,
    version: Option<&str>,
    plain_http: bool,
    timeout: u64,
    json: bool,
) -> Result<i32> {
    use std::io::IsTerminal;
    // On a terminal: a bar per blob, and one for the whole image.
    let bars = (!json && std::io::stderr().is_terminal()).then(indicatif::MultiProgress::new);
    let total = bars.as_ref().map(|m| {
        let b = m.add(indicatif::ProgressBar::new(0));
        b.set_style(bar_style());
        b.set_prefix("total");
        b
    });
    let per: std::sync::Mutex<std::collections::HashMap<String, (indicatif::ProgressBar, u64)>> = Default::default();
    let progress = |digest: &str, done: u64, size: u64| {
        let (Some(m), Some(total)) = (&bars, &total) else { return };
        let mut per = per.lock().unwrap_or_else(|e| e.into_inner());
        let (bar, last) = per.entry(digest.to_string()).or_insert_with(|| {
            let b = m.insert_before(total, indicatif::ProgressBar::new(size));
            b.set_style(bar_style());
            b.set_prefix(digest.get(7..19).unwrap_or(digest).to_string());
            total.inc_length(size);
            (b, 0)
        });
        bar.set_position(done);
        total.inc(done.saturating_sub(*last));
        *last = done;
    };
    let res =
        crate::fetch::pull::pull(cfg, reference, name, version, plain_http, Duration::from_secs(timeout), &progress);
    if let Some(m) = &bars {
        let _ = m.clear();
    }
    let o = res?;
    let line = format!(
        "{}: pulled from {}: {} bytes fetched, {} reused ({} blobs) in {:.2} s, into {}",
        o.image,
        esc(&o.reference),
        o.pulled.fetched_bytes,
        o.pulled.reused_bytes,
        o.pulled.blobs,
        o.seconds,
        o.path.display()
    );
    report(json, "torcx-image-pull-v0", json!(o), &line);
    Ok(0)
}

pub(super) fn cmd_push(
    cfg: &Config,
    source: &Path,
    reference: &str,
    plain_http: bool,
    timeout: u64,
    json: bool,
) -> Result<i32> {
    let o = crate::image::push::push(cfg, source, reference, plain_http, Duration::from_secs(timeout))?;
    let line = format!(
        "{}: pushed to {} ({}): {} bytes sent, {} already there ({} blobs) in {:.2} s",
        esc(o.source.display()),
        esc(&o.reference),
        o.pushed.manifest,
        o.pushed.sent_bytes,
        o.pushed.skipped_bytes,
        o.pushed.blobs,
        o.seconds
    );
    report(json, "torcx-image-push-v0", json!(o), &line);
    Ok(0)
}

/// One summary line for the journal, and on stdout the line for people or
/// one compact JSON line for programs.
fn report(json: bool, kind: &str, value: serde_json::Value, line: &str) {
    log::info!("{line}");
    if json {
        println!("{}", json!({"kind": kind, "value": value}));
    } else {
        println!("{line}");
    }
}
