//! `torcx image inspect`: what an archive is and what attaching it would do.

use crate::config::Config;
use anyhow::{Result, bail};

#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// NAME[:REF] from the stores, or the path of an archive
    pub image: String,
}

pub fn run(_cfg: &Config, _args: &InspectArgs, _json: bool) -> Result<i32> {
    bail!("image inspect is not implemented yet")
}
