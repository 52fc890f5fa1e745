//! torcx: a boot-time addon manager for immutable Linux systems.
//! One binary: `torcx` for people and scripts, `torcx-generator` for systemd.

mod apply;
mod archive;
mod attach;
mod cache;
mod cli;
mod config;
mod crash;
mod docs;
mod extract;
mod fsimage;
mod fsutil;
mod generator;
mod images;
mod inspect;
mod lint;
mod log;
mod loopdev;
mod manifest;
mod mount;
mod names;
mod oci;
mod pack;
mod portable;
mod profile;
mod profiles;
mod scan;
mod source;
mod store;
mod systemd;
mod unpack;

use clap::Parser;
use std::io::IsTerminal;
use std::path::PathBuf;

fn main() {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let called = std::path::Path::new(&argv0).file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    if called == "torcx-generator" {
        std::process::exit(generator_main());
    }
    let cli = cli::Cli::parse();
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
    let code = match cli::run(&cli, json) {
        Ok(code) => code,
        Err(e) => {
            log::error(&format!("{e:#}"));
            1
        }
    };
    std::process::exit(code);
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
