//! torcx: a boot-time addon manager for immutable Linux systems.
//! One binary: `torcx` for people and scripts, `torcx-generator` for systemd.

mod apply;
mod archive;
mod attach;
mod config;
mod extract;
mod fsutil;
mod generator;
mod log;
mod manifest;
mod mount;
mod names;
mod profile;
mod source;
mod store;

use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "torcx",
    version,
    about = "Boot-time addon manager for immutable Linux systems"
)]
struct Cli {
    /// Work under DIR instead of / (every path, including the seal)
    #[arg(long, global = true, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Print JSON (the default when stdout is not a terminal)
    #[arg(long, global = true)]
    json: bool,
    /// More messages (-v info, -vv debug)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Only errors
    #[arg(short, long, global = true)]
    quiet: bool,
    /// An extra store directory, searched last (repeatable)
    #[arg(long, global = true, value_name = "DIR")]
    store: Vec<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply the next profile now: unpack and attach its images, then seal
    Apply {
        /// Apply again even though this boot is already sealed
        #[arg(long)]
        force: bool,
    },
}

fn main() {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let called = std::path::Path::new(&argv0)
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if called == "torcx-generator" {
        std::process::exit(generator_main());
    }
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
    let code = match run(&cli, json) {
        Ok(code) => code,
        Err(e) => {
            log::error(&format!("{e:#}"));
            1
        }
    };
    std::process::exit(code);
}

fn run(cli: &Cli, json: bool) -> anyhow::Result<i32> {
    let cfg = config::Config::load(&config::Overrides {
        root: cli.root.clone(),
        stores: cli.store.clone(),
    })?;
    match &cli.command {
        Command::Apply { force } => {
            let out = apply::apply(&cfg, *force)?;
            print_apply(&out, json);
            let failed: Vec<_> = out
                .status
                .images
                .iter()
                .filter_map(|i| i.error.as_ref())
                .collect();
            for e in &failed {
                log::error(e);
            }
            if !failed.is_empty() {
                log::error(&format!(
                    "{} of {} images failed; not sealed (see {})",
                    failed.len(),
                    out.status.images.len(),
                    cfg.status_path().display()
                ));
                return Ok(1);
            }
            Ok(0)
        }
    }
}

fn print_apply(out: &apply::Outcome, json: bool) {
    let s = &out.status;
    if json {
        let doc = serde_json::json!({"kind": apply::STATUS_KIND, "value": s, "already_applied": out.already});
        println!("{}", serde_json::to_string_pretty(&doc).unwrap());
        return;
    }
    if out.already {
        println!("already applied this boot: nothing to do (use --force to apply again)");
    }
    for i in &s.images {
        let archive = i
            .archive
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<32} {:<10} {}",
            format!("{}:{}", i.name, i.reference),
            i.state,
            archive
        );
    }
    let lower = s.lower_profiles.join(":");
    let profiles = match &s.upper_profile {
        Some(u) => format!("{lower} + {u}"),
        None => lower,
    };
    println!(
        "profiles: {}; {} images; {}",
        if profiles.is_empty() {
            "none"
        } else {
            &profiles
        },
        s.images.len(),
        if s.sealed { "sealed" } else { "NOT sealed" }
    );
}

/// `torcx-generator [--root DIR] NORMAL [EARLY LATE]`, as systemd calls it.
fn generator_main() -> i32 {
    log::to_kmsg("torcx-generator");
    log::set_level(log::Level::Info);
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "--version") {
        println!("torcx-generator {}", env!("CARGO_PKG_VERSION"));
        return 0;
    }
    let mut root = None;
    if args.first().is_some_and(|a| a == "--root") && args.len() >= 2 {
        root = Some(PathBuf::from(args.remove(1)));
        args.remove(0);
    }
    if args.len() != 1 && args.len() != 3 {
        log::error("usage: torcx-generator [--root DIR] NORMAL_DIR [EARLY_DIR LATE_DIR]");
        return 2;
    }
    generator::run(root, std::path::Path::new(&args[0]))
}
