//! `torcx image pack`: build an archive from a directory.

use crate::config::Config;
use anyhow::{Result, bail};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct PackArgs {
    /// The image's root directory
    pub dir: PathBuf,
    /// The archive to write
    #[arg(short, long)]
    pub output: PathBuf,
}

pub fn run(_cfg: &Config, _args: &PackArgs, _json: bool) -> Result<i32> {
    bail!("image pack is not implemented yet")
}
