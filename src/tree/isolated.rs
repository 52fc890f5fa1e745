//! The index of a squashfs or erofs image read in a child process with
//! limits of its own. The index readers are other crates (backhand,
//! erofs-rs), and an image can make them allocate what its compressed
//! metadata inflates to (400 KB of squashfs directory table made 418 MB)
//! or walk a graph of hard-linked directories for ever. Whatever the image
//! does to them happens in the child: the generator and apply get one line
//! naming the limit, and go on with the other images.
//!
//! The child is this same binary, started as `/proc/self/exe` with
//! [`CHILD_ARG`]; it writes what it read as length-prefixed records on its
//! stdout, which the parent reads into a `Mem` within the same bounds as
//! any reader into memory.

use crate::archive::fsimage::FsImage;
use crate::archive::{Archive, Format};
use crate::tree::policy::{MAX_MEM_FILE, MAX_MEM_TOTAL, MAX_NAMES, MAX_PATH};
use crate::tree::source::Mem;
use anyhow::{Context, Result, anyhow, bail};
use std::io::{BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The child's heap and stacks (RLIMIT_DATA): the limit the generator and
/// apply keep to, for the index reader alone.
pub const CHILD_DATA: u64 = 64 << 20;
/// The child's CPU time: a real index of the largest image the entry
/// policy allows reads in well under a second.
pub const CHILD_CPU_SECONDS: u64 = 20;
/// The decoder's error when the child's output ends before its end mark.
const STOPPED: &str = "the index reader stopped early";

/// The argument that makes the binary the child (not a command).
pub const CHILD_ARG: &str = "--torcx-internal-read-index";

/// What the generator reads of a squashfs or erofs image (as
/// `Mem::from_fsimage` reads it), read by a child process within
/// [`CHILD_DATA`] and [`CHILD_CPU_SECONDS`].
pub fn read_fsimage_units(a: &Archive) -> Result<Mem> {
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg0("torcx").arg(CHILD_ARG).arg(a.format.name()).arg(&a.host);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    // SAFETY: between fork and exec only setrlimit(2) runs (no allocation,
    // no lock).
    unsafe {
        cmd.pre_exec(|| {
            use rustix::process::{Resource, Rlimit, setrlimit};
            let lim = |n: u64| Rlimit { current: Some(n), maximum: Some(n) };
            setrlimit(Resource::Data, lim(CHILD_DATA))?;
            setrlimit(Resource::Cpu, lim(CHILD_CPU_SECONDS))?;
            Ok(())
        });
    }
    // Not while a tree is remounted or unmounted: see `mount::CHILDREN`.
    let starting = crate::sys::mount::CHILDREN.read().unwrap_or_else(|e| e.into_inner());
    let mut child = cmd.spawn().context("starting the index reader")?;
    drop(starting);
    let out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    // The child's stderr is read on a thread so neither pipe can fill.
    let err = std::thread::spawn(move || {
        let mut v = vec![];
        let _ = (&mut err).take(4096).read_to_end(&mut v);
        let _ = std::io::copy(&mut err, &mut std::io::sink());
        v
    });
    let mem = decode(BufReader::new(out));
    if let Err(e) = &mem
        && !e.to_string().contains(STOPPED)
    {
        // What it sent broke the bounds: it may be blocked writing more.
        let _ = child.kill();
        let _ = child.wait();
        return mem;
    }
    let status = child.wait().context("waiting for the index reader")?;
    let err = err.join().unwrap_or_default();
    let line = String::from_utf8_lossy(&err).lines().next().unwrap_or("").to_string();
    if status.signal() == Some(rustix::process::Signal::XCPU.as_raw())
        || status.signal() == Some(rustix::process::Signal::KILL.as_raw())
    {
        let what =
            format!("reading the {} index took more than {CHILD_CPU_SECONDS} s of CPU: refused", a.format.name());
        return Err(crate::model::failure::error(crate::model::failure::Kind::Limit, what));
    }
    if line.starts_with("memory allocation of") || status.signal() == Some(rustix::process::Signal::ABORT.as_raw()) {
        let what =
            format!("reading the {} index took more than {} MiB of memory: refused", a.format.name(), CHILD_DATA >> 20);
        return Err(crate::model::failure::error(crate::model::failure::Kind::Limit, what));
    }
    if !status.success() {
        // The child says the kind of its failure first: `KIND<TAB>message`.
        use crate::model::failure::{KINDS, error};
        if let Some((k, msg)) = line.split_once('\t')
            && let Some((kind, _)) = KINDS.iter().find(|(kind, _)| kind.as_str() == k)
        {
            return Err(error(*kind, msg));
        }
        bail!("{}", if line.is_empty() { format!("the index reader failed ({status})") } else { line });
    }
    mem
}

/// The child: `torcx --torcx-internal-read-index FORMAT PATH`. `None`
/// when the arguments are not the child's.
pub fn child_main() -> Option<i32> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_none_or(|a| a != CHILD_ARG) || args.len() != 4 {
        return None;
    }
    let format = match args[2].to_str() {
        Some("squashfs") => Format::Squashfs,
        Some("erofs") => Format::Erofs,
        _ => return Some(2),
    };
    let res = FsImage::open(Path::new(&args[3]), format)
        .and_then(|fs| Mem::from_fsimage(&fs))
        .and_then(|m| encode(&m, &mut std::io::BufWriter::new(std::io::stdout().lock())));
    Some(match res {
        Ok(()) => 0,
        Err(e) => {
            let kind = crate::model::failure::kind_of(&e);
            eprintln!("{kind}\t{}", crate::sys::logger::escape_controls(&format!("{e:#}")));
            1
        }
    })
}

fn put(w: &mut impl Write, b: &[u8]) -> std::io::Result<()> {
    w.write_all(&(b.len() as u32).to_le_bytes())?;
    w.write_all(b)
}

fn encode(m: &Mem, w: &mut impl Write) -> Result<()> {
    for (p, data) in m.files() {
        w.write_all(b"F")?;
        put(w, p.as_os_str().as_bytes())?;
        put(w, data)?;
    }
    for (p, t) in m.links() {
        w.write_all(b"L")?;
        put(w, p.as_os_str().as_bytes())?;
        put(w, t.as_os_str().as_bytes())?;
    }
    for d in m.dirs() {
        w.write_all(b"D")?;
        put(w, d.as_os_str().as_bytes())?;
    }
    w.write_all(b"E")?;
    w.flush()?;
    Ok(())
}

/// Reads the child's records into a `Mem`, each length and the total
/// bounded as the readers into memory are.
fn decode(mut r: impl Read) -> Result<Mem> {
    let mut total = 0u64;
    let mut get = |r: &mut dyn Read, max: usize| -> Result<Vec<u8>> {
        let mut n = [0u8; 4];
        r.read_exact(&mut n).map_err(|_| anyhow!(STOPPED))?;
        let n = u32::from_le_bytes(n) as usize;
        total += n as u64;
        if n > max || total > MAX_MEM_TOTAL + 2 * MAX_NAMES {
            bail!("the index reader sent more than the limits allow");
        }
        let mut v = vec![0; n];
        r.read_exact(&mut v).map_err(|_| anyhow!(STOPPED))?;
        Ok(v)
    };
    let path = |b: Vec<u8>| PathBuf::from(std::ffi::OsString::from_vec(b));
    use std::os::unix::ffi::OsStringExt;
    let mut m = Mem::default();
    loop {
        let mut tag = [0u8; 1];
        r.read_exact(&mut tag).map_err(|_| anyhow!(STOPPED))?;
        match &tag {
            b"F" => {
                let p = get(&mut r, MAX_PATH)?;
                let d = get(&mut r, MAX_MEM_FILE as usize)?;
                m.insert_file(path(p), d);
            }
            b"L" => {
                let p = get(&mut r, MAX_PATH)?;
                let t = get(&mut r, MAX_PATH)?;
                m.insert_link(path(p), path(t));
            }
            b"D" => {
                let p = get(&mut r, MAX_PATH)?;
                m.insert_dir(path(p));
            }
            b"E" => return Ok(m),
            _ => bail!("the index reader sent a bad record"),
        }
    }
}

/// What the generator needs of an archive of any format, the squashfs and
/// erofs index read in a child ([`read_fsimage_units`]); the tar and OCI
/// readers are torcx's own, bounded by the entry policy, and run here.
pub fn read_units(a: &Archive, limits: &crate::tree::limits::Limits) -> Result<Mem> {
    match a.format {
        Format::Squashfs | Format::Erofs => read_fsimage_units(a),
        _ => crate::tree::read_units(a, limits),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_are_bounded() {
        let mut m = Mem::default();
        m.insert_file(PathBuf::from("lib/systemd/system/a.service"), b"[Service]\n".to_vec());
        m.insert_link(PathBuf::from("lib/systemd/system/b.service"), PathBuf::from("a.service"));
        m.insert_dir(PathBuf::from("usr"));
        let mut out = vec![];
        encode(&m, &mut out).unwrap();
        let back = decode(&out[..]).unwrap();
        assert_eq!(back.files().collect::<Vec<_>>(), m.files().collect::<Vec<_>>());
        assert_eq!(back.links().collect::<Vec<_>>(), m.links().collect::<Vec<_>>());
        assert_eq!(back.dirs().collect::<Vec<_>>(), m.dirs().collect::<Vec<_>>());
        // Cut short: the child stopped (its exit status then says why).
        assert_eq!(decode(&out[..out.len() - 1]).unwrap_err().to_string(), STOPPED);
        // A path longer than PATH_MAX is not read into memory.
        let mut bad = b"D".to_vec();
        bad.extend_from_slice(&(MAX_PATH as u32 + 1).to_le_bytes());
        assert_eq!(decode(&bad[..]).unwrap_err().to_string(), "the index reader sent more than the limits allow");
    }
}
