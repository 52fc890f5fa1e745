//! An OCI image layout directory (`NAME.torcx.oci/`, written by `image
//! pull`) read as the bundle it would be: a thread writes `oci-layout`,
//! `index.json` and every `blobs/sha256/HEX` into a tar stream, and the
//! bundle reader takes it from there, checking every blob it uses against
//! its digest as for a bundle file. Only regular files with well-formed
//! names are read, never through a symlink; partial downloads are skipped.

use crate::archive::stream::Pipe;
use anyhow::Result;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The files of the layout at `dir`, in the order a reader wants them.
fn files(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut v =
        vec![("oci-layout".to_string(), dir.join("oci-layout")), ("index.json".to_string(), dir.join("index.json"))];
    let blobs = dir.join("blobs/sha256");
    let mut names: Vec<String> = std::fs::read_dir(&blobs)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        // sha256 hex names only: `.HEX.part` downloads and anything else stay out.
        .filter(|n| n.len() == 64 && n.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .collect();
    names.sort();
    v.extend(names.into_iter().map(|n| (format!("blobs/sha256/{n}"), blobs.join(n))));
    v
}

/// The layout at `dir` as a tar stream.
pub fn open(dir: &Path) -> Result<Pipe> {
    let files = files(dir);
    let (reader, writer) = std::io::pipe()?;
    std::thread::spawn(move || {
        let mut b = tar::Builder::new(writer);
        for (name, path) in files {
            let Ok(f) = open_nofollow(&path) else { continue };
            let Ok(len) = f.metadata().map(|m| m.len()) else { continue };
            let mut h = tar::Header::new_gnu();
            h.set_size(len);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            // A file that changes size meanwhile ends the stream with an error.
            if b.append_data(&mut h, &name, f.take(len)).is_err() {
                return;
            }
        }
        let _ = b.into_inner().and_then(|mut w| w.flush());
    });
    Ok(Pipe::from_reader(Box::new(reader)))
}

fn open_nofollow(p: &Path) -> std::io::Result<std::fs::File> {
    use rustix::fs::{Mode, OFlags};
    let fd =
        rustix::fs::open(p, OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC, Mode::empty())?;
    let st = rustix::fs::fstat(&fd)?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(std::fs::File::from(fd))
}

/// Unpacks a bundle (`NAME.torcx.oci.tgz`) into the layout directory `dest`:
/// its `oci-layout`, `index.json` and blobs, nothing else.
pub fn from_bundle(bundle: &Path, dest: &Path) -> Result<()> {
    use anyhow::Context;
    let a = crate::archive::Archive {
        id: crate::model::names::ImageId { name: "bundle".into(), reference: "oci".into() },
        format: crate::archive::Format::Tgz,
        path: bundle.to_path_buf(),
        host: bundle.to_path_buf(),
    };
    let mut ar = tar::Archive::new(crate::archive::stream::open_tar(&a)?);
    std::fs::create_dir_all(dest.join("blobs/sha256"))?;
    for e in ar.entries().context("reading bundle")? {
        let mut e = e.context("reading bundle")?;
        if e.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let raw = String::from_utf8_lossy(&e.path_bytes()).trim_start_matches("./").to_string();
        let ok = raw == "oci-layout"
            || raw == "index.json"
            || raw
                .strip_prefix("blobs/sha256/")
                .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        if ok {
            let mut f = std::fs::File::create(dest.join(&raw)).with_context(|| format!("writing {raw}"))?;
            std::io::copy(&mut e, &mut f).with_context(|| format!("writing {raw}"))?;
        }
    }
    Ok(())
}
