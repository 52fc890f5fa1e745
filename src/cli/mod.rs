//! The command line: clap definitions, one handler per command, and output
//! for people (tables) and for programs (JSON, the default when piped).

mod apply;
mod args;
mod attach;
pub mod docs;
mod image;
mod output;
mod populate;
mod profile;
mod status;

pub use args::{Cli, Command, ImageCmd, ProfileCmd};

use crate::model::config::{Config, Overrides};
use crate::sys::systemd::Systemd;
use anyhow::Result;
use clap::Parser;

pub fn run(cli: &Cli, json: bool) -> Result<i32> {
    let cfg = Config::load(&Overrides { root: cli.root.clone(), stores: cli.store.clone() })?;
    let sd = Systemd::new(&cfg);
    match &cli.command {
        Command::Apply { force } => apply::cmd_apply(&cfg, *force, json),
        Command::Attach { image, now, no_reload, force, copy, portable } => {
            attach::cmd_attach(&cfg, &sd, image, *now, *no_reload, *force, *copy, *portable, json)
        }
        Command::Detach { name, now, no_reload, force } => {
            attach::cmd_detach(&cfg, &sd, name, *now, *no_reload, *force, json)
        }
        Command::Reattach { image, now, no_reload } => attach::cmd_reattach(&cfg, &sd, image, *now, *no_reload, json),
        Command::IsAttached { name } => attach::cmd_is_attached(&cfg, &sd, name, json),
        Command::Status { name } => status::cmd_status(&cfg, &sd, name.as_deref(), json),
        Command::Image(ImageCmd::Pack(args)) => crate::image::pack::run(&cfg, args, json),
        Command::Image(ImageCmd::List { name, os_release }) => {
            image::cmd_image_list(&cfg, name.as_deref(), os_release.as_deref(), json)
        }
        Command::Image(ImageCmd::ClearVersioned { keep, name }) => {
            image::cmd_clear_versioned(&cfg, keep, name.as_deref(), json)
        }
        Command::Profile(p) => profile::cmd_profile(&cfg, p, json),
        Command::GenerateDocs { dir } => crate::cli::docs::generate(dir).map(|_| 0),
        Command::Image(ImageCmd::Inspect(args)) => crate::image::inspect::run(&cfg, args, json),
        Command::Image(ImageCmd::Verify { image }) => populate::cmd_verify(&cfg, image.as_deref(), json),
        Command::Image(ImageCmd::Push { source, reference, plain_http, timeout }) => {
            populate::cmd_push(&cfg, source, reference, *plain_http, *timeout, json)
        }
        Command::Image(ImageCmd::Pull { reference, name, os_release, plain_http, timeout }) => {
            populate::cmd_pull(&cfg, reference, name.as_deref(), os_release.as_deref(), *plain_http, *timeout, json)
        }
    }
}

/// The boot's own command line (`torcx apply`, as torcx-apply.service runs
/// it, with `--json` or `--force`), read without building clap's parser of
/// every command and option (a third of a millisecond at every boot, before
/// the first image is mounted). Anything else goes to clap, which reads
/// these the same way.
fn boot_apply(args: impl Iterator<Item = std::ffi::OsString>) -> Option<Cli> {
    let (mut apply, mut json, mut force) = (false, false, false);
    for a in args {
        let seen = match a.to_str()? {
            "apply" => &mut apply,
            "--json" => &mut json,
            "--force" if apply => &mut force,
            _ => return None,
        };
        if std::mem::replace(seen, true) {
            return None;
        }
    }
    apply.then(|| Cli { root: None, json, verbose: 0, quiet: false, store: vec![], command: Command::Apply { force } })
}

/// `torcx ARGS...`: parses, runs, and returns the exit status (0 success,
/// 1 failure, 2 usage error, which clap exits with itself).
pub fn main() -> i32 {
    use std::io::IsTerminal;
    // Like other Unix tools: a closed pipe (`torcx ... | head`) ends the
    // process quietly, instead of a panic on the next line printed.
    // SAFETY: restoring the default action of one signal, before any thread starts.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = boot_apply(std::env::args_os().skip(1)).unwrap_or_else(Cli::parse);
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => log::LevelFilter::Error,
        (false, 0) => log::LevelFilter::Warn,
        (false, 1) => log::LevelFilter::Info,
        (false, _) => log::LevelFilter::Debug,
    };
    crate::sys::logger::init("torcx", false, level);
    let json = cli.json || !std::io::stdout().is_terminal();
    let code = match run(&cli, json) {
        Ok(code) => code,
        Err(e) => {
            log::error!("{e:#}");
            1
        }
    };
    crate::sys::crash::log_open_files();
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast(args: &[&str]) -> Option<Cli> {
        boot_apply(args.iter().map(std::ffi::OsString::from))
    }

    /// What the boot's command line reads to, with or without clap.
    fn seen(c: &Cli) -> String {
        let force = match c.command {
            Command::Apply { force } => force,
            _ => panic!("not apply"),
        };
        format!("{:?} {} {} {} {:?} {force}", c.root, c.json, c.verbose, c.quiet, c.store)
    }

    #[test]
    fn the_boot_command_line_reads_as_clap_reads_it() {
        for args in [
            &["apply"][..],
            &["apply", "--json"],
            &["--json", "apply"],
            &["apply", "--force"],
            &["apply", "--json", "--force"],
            &["--json", "apply", "--force"],
        ] {
            let by_clap = Cli::try_parse_from(std::iter::once("torcx").chain(args.iter().copied())).unwrap();
            assert_eq!(seen(&fast(args).unwrap()), seen(&by_clap), "{args:?}");
        }
        // Everything else is clap's, to accept or refuse as it does.
        for args in [
            &[][..],
            &["status"],
            &["--force", "apply"],
            &["apply", "--json", "--json"],
            &["apply", "apply"],
            &["apply", "-v"],
            &["apply", "--root", "/x"],
            &["apply", "--store=/x"],
            &["apply", "--forc"],
        ] {
            assert!(fast(args).is_none(), "{args:?}");
        }
    }
}
