//! An OCI bundle unpacked: its layer blobs staged inside the tree being
//! unpacked (checked against their digests, charged to the limits), then
//! applied in order with the confined extractor. `tree::oci` reads the
//! units of a bundle for the generator; the format is `archive::oci`.

use crate::archive::oci::{self, HashRead, Item, Resolved, check_entry_size, decoder, walk, wanted};
use crate::model::failure::{self, Kind};
use crate::sys::fsutil;
use crate::tree::extract::{self, Stats};
use crate::tree::layer::{self, LayerPass};
use crate::tree::policy::{self, Limits};
use anyhow::{Context, Result, bail};
use rustix::fs::{AtFlags, Mode, OFlags};
use std::collections::HashMap;
use std::io::{BufReader, Read, Seek, Write};
use std::os::fd::OwnedFd;
use std::path::Path;

/// Where `unpack` stages layer blobs, inside the tree, until they are applied.
pub const STAGING: &str = ".torcx-oci-staging";

/// Applies the layers of `tag` in order into the empty directory `dest`.
pub fn unpack(path: &Path, tag: &str, dest: &Path, limits: Limits) -> Result<Stats> {
    unpack_checked(path, tag, dest, limits, &|_| Ok(()))
}

/// [`unpack`], with `check` approving the resolved tag (its digests) before
/// any layer is read.
pub fn unpack_checked(path: &Path, tag: &str, dest: &Path, limits: Limits, check: oci::Check) -> Result<Stats> {
    let r = oci::resolve(path, tag)?;
    check(&r)?;
    let root = fsutil::open_dir(dest)?;
    let (mut staged, mut live) = stage(path, &r, &root, limits)?;
    crate::sys::crash::meet("staged");
    let mut stats = Stats::default();
    for (i, l) in r.layers.iter().enumerate() {
        let file = &staged[&l.hex].0;
        // The first layer has nothing below it for whiteouts to remove.
        let passes: &[LayerPass] =
            if i == 0 { &[LayerPass::Entries] } else { &[LayerPass::Whiteouts, LayerPass::Entries] };
        for pass in passes {
            let lim = Limits { max_bytes: limits.max_bytes.saturating_sub(live), ..limits };
            let res = file
                .try_clone()
                .and_then(|mut f| f.rewind().map(|_| f))
                .context("staged blob")
                .and_then(|f| decoder(l.comp, BufReader::with_capacity(128 << 10, f)))
                .and_then(|d| layer::extract_layer(d, dest, lim, &mut stats, *pass));
            if let Err(e) = res {
                // The tree is removed: what it took is free for the other
                // images, and so are the blobs still staged.
                limits.give_back(stats.bytes + live);
                return Err(e.context(format!("layer {} ({})", i + 1, l.digest)));
            }
        }
        if !r.layers[i + 1..].iter().any(|x| x.hex == l.hex)
            && let Some((file, charged)) = staged.remove(&l.hex)
        {
            // Closing the unlinked file frees its space for the tree, and
            // for the other images.
            drop(file);
            live -= charged;
            limits.give_back(charged);
        }
    }
    // Failing from here, the tree is removed all the same.
    if let Err(e) = extract::check_symlinks(dest) {
        limits.give_back(stats.bytes);
        return Err(e);
    }
    Ok(stats)
}

/// Staged layer blobs by hex digest: the open (unlinked) file and the space charged.
type Staged = HashMap<String, (std::fs::File, u64)>;

/// Copies the layer blobs of `r` into `dest/.torcx-oci-staging`, checking
/// each against its descriptor (and the config blob too), and returns them
/// open. Each staged file is unlinked as soon as it is created, so nothing a
/// layer writes can reach it and nothing is left if unpacking stops; the
/// directory goes once staging is done. The space used is charged against
/// `limits.max_bytes`; also returned, as it stays used until applied.
fn stage(path: &Path, r: &Resolved, root: &OwnedFd, limits: Limits) -> Result<(Staged, u64)> {
    rustix::fs::mkdirat(root, STAGING, Mode::from_raw_mode(0o700))
        .with_context(|| format!("creating {STAGING} in the image tree"))?;
    // What was taken from the pool of all images, given back if staging fails.
    let mut pooled = 0u64;
    let res = (|| -> Result<(Staged, u64)> {
        let dir = rustix::fs::openat(
            root,
            STAGING,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut want = wanted(r);
        let mut staged = HashMap::new();
        let mut total = 0u64;
        let mut buf = vec![0u8; 256 << 10];
        let pooled = &mut pooled;
        walk(path, |item, e| {
            let Item::Blob(h) = item else { return Ok(true) };
            let Some((digest, size, layer)) = want.remove(&h) else { return Ok(true) };
            check_entry_size(&digest, size, e)?;
            let mut hr = HashRead::new(e);
            if layer {
                let charge = policy::unpack_cost(size);
                total += charge;
                if total > limits.max_bytes {
                    return Err(failure::error(
                        Kind::Limit,
                        format!(
                            "blob {digest}: staging the layers exceeds the unpack limit of {} bytes (TORCX_UNPACK_LIMIT or unpack_limit in the config)",
                            limits.max_bytes
                        ),
                    ));
                }
                // Staged blobs take the tree's memory as files do.
                if let Some(pool) = limits.pool
                    && !pool.take(charge)
                {
                    total -= charge;
                    return Err(failure::shared_limit(format!(
                        "blob {digest}: staging the layers exceeds what the other images left of the limit of {} bytes for all images (TORCX_UNPACK_TOTAL_LIMIT or unpack_total_limit in the config)",
                        pool.total
                    )));
                }
                *pooled += charge;
                let fd = rustix::fs::openat(
                    &dir,
                    h.as_str(),
                    OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .with_context(|| format!("blob {digest}: staging"))?;
                let _ = rustix::fs::unlinkat(&dir, h.as_str(), AtFlags::empty());
                let mut f = std::fs::File::from(fd);
                loop {
                    let n = hr.read(&mut buf).with_context(|| format!("blob {digest}: reading"))?;
                    if n == 0 {
                        break;
                    }
                    f.write_all(&buf[..n]).with_context(|| format!("blob {digest}: staging"))?;
                }
                hr.finish(&digest, size)?;
                staged.insert(h, (f, charge));
            } else {
                hr.finish(&digest, size)?;
            }
            Ok(!want.is_empty())
        })?;
        if let Some((digest, _, _)) = want.values().next() {
            bail!("blob {digest}: missing from the bundle");
        }
        Ok((staged, total))
    })();
    let rm = rustix::fs::unlinkat(root, STAGING, AtFlags::REMOVEDIR);
    if res.is_err() {
        limits.give_back(pooled);
    }
    let out = res?;
    rm.with_context(|| format!("removing {STAGING}"))?;
    Ok(out)
}
