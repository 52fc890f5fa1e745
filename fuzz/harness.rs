//! The bodies of the fuzz targets. Each `fuzz_targets/*.rs` calls one of
//! these, and `tests/fuzz_corpus.rs` replays the kept corpora through the
//! same functions under `cargo test`, so a fixed finding stays fixed without
//! a nightly toolchain or libFuzzer.
//!
//! Each body feeds the bytes to torcx the way an image reaches it (a file in
//! a store, unpacked under a scratch root) and checks what must hold for any
//! input: no panic, errors of one bounded line, nothing written outside the
//! scratch directory it was given.

#![allow(dead_code)]

use std::io::Write;
use std::path::Path;
use torcx::archive::{Archive, Format};
use torcx::model::config::{Config, Overrides};
use torcx::model::names::ImageId;

/// The longest error text a body accepts: a few paths at the policy's
/// 4096-byte bound, never the archive's data.
pub const MAX_ERROR: usize = 16 * 1024;

/// A scratch directory of this thread (the replay test runs targets on
/// several threads), never removed: the fuzzer runs until killed.
fn scratch() -> &'static Path {
    thread_local! {
        static DIR: &'static Path = {
            let d = tempfile::Builder::new().prefix("torcx-fuzz-").tempdir().unwrap();
            std::fs::create_dir_all(d.path().join("root")).unwrap();
            Box::leak(d.keep().into_boxed_path())
        };
    }
    DIR.with(|d| *d)
}

/// Removes this thread's scratch directory (the replay test, when done).
pub fn remove_scratch() {
    let _ = std::fs::remove_dir_all(scratch());
}

/// A config under an empty root (no config file, no host units).
fn config() -> &'static Config {
    thread_local! {
        static CFG: &'static Config = Box::leak(Box::new(
            Config::load_with_env(&Overrides { root: Some(scratch().join("root")), stores: vec![] }, &|_| None).unwrap(),
        ));
    }
    CFG.with(|c| *c)
}

fn check_error(e: &anyhow::Error) {
    let text = format!("{e:#}");
    assert!(
        text.len() <= MAX_ERROR,
        "error of {} bytes: {}...",
        text.len(),
        text.chars().take(200).collect::<String>()
    );
}

fn gz(d: &[u8], level: u32) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(vec![], flate2::Compression::new(level));
    e.write_all(d).unwrap();
    e.finish().unwrap()
}

/// Writes `data` as the archive `fuzz:1` of `format` in the scratch store.
fn archive(data: &[u8], format: Format) -> Archive {
    let path = scratch().join(format!("fuzz:1{}", format.suffix()));
    std::fs::write(&path, data).unwrap();
    Archive { id: ImageId::new("fuzz", "1").unwrap(), format, path: path.clone(), host: path }
}

/// The generator's whole reading of one archive: what it reads into
/// memory, the manifest or scan, the unit plan and the host check, as
/// `torcx-generator` and `profile check` do it.
fn generator(a: &Archive) {
    let limits = torcx::tree::limits::Limits::reading(config().unpack_limit);
    let res = torcx::tree::read_units(a, &limits).and_then(|mem| {
        let (_, plan) = torcx::attach::plan_archive_units(config(), a, &mem)?;
        torcx::attach::check_host_units(config(), &a.id, &plan)
    });
    if let Err(e) = res {
        check_error(&e);
    }
}

/// A fresh empty directory to unpack into, and the directory it is in
/// (which must stay empty but for it).
fn fresh_dest() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("dest-").tempdir_in(scratch()).unwrap()
}

/// Every name directly in `dir` (to see that nothing appeared beside a
/// destination).
fn names(dir: &Path) -> Vec<std::ffi::OsString> {
    let mut v: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    v.sort();
    v
}

/// The entry policy and the confined extractor: the bytes as a tar stream,
/// unpacked into an empty directory, then every symlink resolved beneath it.
pub fn extract(data: &[u8]) {
    let dest = fresh_dest();
    let before = names(scratch());
    let limits = torcx::tree::policy::Limits::unpack(32 << 20);
    let res = torcx::tree::extract::extract(data, dest.path(), limits)
        .and_then(|_| torcx::tree::extract::check_symlinks(dest.path()));
    if let Err(e) = res {
        check_error(&e);
    }
    assert_eq!(before, names(scratch()), "the extractor wrote beside its destination");
}

/// The generator's tar readers. The first byte picks the form: a plain tar
/// (wrapped in an uncompressed gzip, so the mutations reach the tar and the
/// entry policy), or the bytes as a `.torcx.tgz` or `.torcx.tar.zst` file
/// (so they reach the decompressors and the stream guard).
pub fn reader_tar(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else { return };
    let a = match sel % 3 {
        0 => archive(&gz(rest, 0), Format::Tgz),
        1 => archive(rest, Format::Tgz),
        _ => archive(rest, Format::TarZst),
    };
    generator(&a);
}

/// The squashfs and erofs reader: the bytes as each kind of image, read as
/// the generator reads it, and walked whole as `image inspect` does.
pub fn reader_fsimage(data: &[u8]) {
    for format in [Format::Squashfs, Format::Erofs] {
        let a = archive(data, format);
        generator(&a);
        if let Ok(fs) = torcx::archive::fsimage::FsImage::open(&a.host, format)
            && let Err(e) = fs.entries()
        {
            check_error(&e);
        }
    }
}

/// Splits `data` at each `SEP` (the layers of a layout built from them).
pub const SEP: &[u8] = b"\n--layer--\n";

fn split(data: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![];
    let mut rest = data;
    while let Some(i) = rest.windows(SEP.len()).position(|w| w == SEP) {
        out.push(rest[..i].to_vec());
        rest = &rest[i + SEP.len()..];
    }
    out.push(rest.to_vec());
    out
}

/// The OCI readers, the generator's and apply's. The first byte picks the
/// form: the bytes as the uncompressed tar of an OCI layout (so index,
/// manifests and descriptors are mutated), or layer tars separated by
/// [`SEP`], built into a valid layout with uncompressed layers (so the
/// mutations get past the digests into the layers and their merge).
pub fn reader_oci(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else { return };
    let layout =
        if sel % 2 == 0 { rest.to_vec() } else { torcx::archive::testkit::oci_layout(&split(rest), false, false) };
    let a = archive(&gz(&layout, 0), Format::Oci);
    generator(&a);
    let dest = fresh_dest();
    let limits = torcx::tree::policy::Limits::unpack(32 << 20);
    let res = torcx::tree::oci::unpack(&a.host, "1", dest.path(), limits)
        .and_then(|_| torcx::tree::extract::check_symlinks(dest.path()));
    if let Err(e) = res {
        check_error(&e);
    }
}

/// The parsers of text torcx reads: an image manifest, a profile, the
/// config file (and with it the names it validates). The first byte picks.
pub fn parse(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    let res = match sel % 4 {
        0 => torcx::model::manifest::parse_image_manifest(&text).map(drop),
        1 => torcx::model::manifest::parse_profile(&text).map(drop),
        2 => {
            let root = fresh_dest();
            let file = root.path().join("etc/torcx/config.json");
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(&file, rest).unwrap();
            Config::load_with_env(&Overrides { root: Some(root.path().into()), stores: vec![] }, &|_| None).map(drop)
        }
        _ => {
            // A store file name, as the store scan splits it.
            if let Some((_, id)) = torcx::archive::parse_archive_name(&text) { id.map(drop) } else { Ok(()) }
        }
    };
    if let Err(e) = res {
        check_error(&e);
    }
}

/// Makes the allocations of torcx's own code (everything Rust allocates;
/// libFuzzer's corpus is C++ and not counted) abort the run once more than
/// [`HEAP_LIMIT`] is live at once: an image that makes torcx hold that much
/// is a finding, even when the machine has the memory.
pub struct Counting;

pub const HEAP_LIMIT: usize = 64 << 20;

static LIVE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
        let now = LIVE.fetch_add(l.size(), std::sync::atomic::Ordering::Relaxed) + l.size();
        if now > HEAP_LIMIT {
            eprintln!("torcx fuzz: {} bytes live on the heap, over the {HEAP_LIMIT}-byte limit", now);
            std::process::abort();
        }
        unsafe { std::alloc::System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
        LIVE.fetch_sub(l.size(), std::sync::atomic::Ordering::Relaxed);
        unsafe { std::alloc::System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: std::alloc::Layout, new: usize) -> *mut u8 {
        if new > l.size() {
            let now = LIVE.fetch_add(new - l.size(), std::sync::atomic::Ordering::Relaxed) + new - l.size();
            if now > HEAP_LIMIT {
                eprintln!("torcx fuzz: {} bytes live on the heap, over the {HEAP_LIMIT}-byte limit", now);
                std::process::abort();
            }
        } else {
            LIVE.fetch_sub(l.size() - new, std::sync::atomic::Ordering::Relaxed);
        }
        unsafe { std::alloc::System.realloc(p, l, new) }
    }
}
