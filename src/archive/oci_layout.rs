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

fn is_hex(n: &str) -> bool {
    n.len() == 64 && n.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The most digests followed from one layout: a document listing more
/// (a planted `index.json`, an odd manifest) costs bounded time.
const MAX_DIGESTS: usize = 4096;

/// Every `sha256:HEX` a JSON document names, as `"digest"` anywhere in it,
/// up to [`MAX_DIGESTS`] found in all.
fn digests_in(v: &serde_json::Value, out: &mut Vec<String>, found: &mut usize) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x.as_str().and_then(|d| d.strip_prefix("sha256:"))) {
                    ("digest", Some(h)) if is_hex(h) && *found < MAX_DIGESTS => {
                        *found += 1;
                        out.push(h.to_string());
                    }
                    _ => digests_in(x, out, found),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| digests_in(x, out, found)),
        _ => {}
    }
}

/// The files of the layout at `dir` a reader may need, in the order it
/// wants them: the layout file, the index, and the blobs the index reaches
/// (through manifests and nested indexes), not every blob an older pull
/// left. JSON is read at most 4 MiB a document, 64 documents and 16 MiB in
/// all.
fn files(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut v =
        vec![("oci-layout".to_string(), dir.join("oci-layout")), ("index.json".to_string(), dir.join("index.json"))];
    let blobs = dir.join("blobs/sha256");
    // JSON read in all, index.json included: 16 MiB (as for a bundle's speculative reads).
    let budget = std::cell::Cell::new(16u64 << 20);
    let json = |p: &Path| -> Option<serde_json::Value> {
        let f = open_nofollow(p).ok()?;
        let len = f.metadata().ok()?.len();
        if len > 4 << 20 || len > budget.get() {
            return None;
        }
        // A layer is not read: JSON starts with `{` in its first bytes.
        let mut f = f.take(4 << 20);
        let mut b = vec![];
        (&mut f).take(512).read_to_end(&mut b).ok()?;
        if b.iter().find(|c| !c.is_ascii_whitespace()) != Some(&b'{') {
            return None;
        }
        budget.set(budget.get() - len);
        f.read_to_end(&mut b).ok()?;
        serde_json::from_slice(&b).ok()
    };
    let mut todo = vec![];
    let mut found = 0;
    if let Some(index) = json(&dir.join("index.json")) {
        digests_in(&index, &mut todo, &mut found);
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut documents = 0;
    while let Some(h) = todo.pop() {
        if !seen.insert(h.clone()) {
            continue;
        }
        // Only a blob that is there can be a document (a missing one costs no open).
        if documents < 64
            && let Some(doc) = json(&blobs.join(&h))
        {
            documents += 1;
            digests_in(&doc, &mut todo, &mut found);
        }
    }
    v.extend(seen.into_iter().map(|n| (format!("blobs/sha256/{n}"), blobs.join(n))));
    v
}

/// What the tar writer writes, to the reader in this process: a closed
/// reader is an error for the writer (an OS pipe would be a SIGPIPE, which
/// the torcx command leaves fatal).
struct ChanWriter(std::sync::mpsc::SyncSender<Vec<u8>>);

impl Write for ChanWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.send(b.to_vec()).map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))?;
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct ChanReader {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
    /// The writing thread, waited for once the reader is closed: a stream
    /// dropped before its end leaves no file of the layout open.
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for ChanReader {
    fn drop(&mut self) {
        drop(std::mem::replace(&mut self.rx, std::sync::mpsc::sync_channel(0).1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Read for ChanReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(c) => (self.cur, self.pos) = (c, 0),
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.cur.len() - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The layout at `dir` as a tar stream.
pub fn open(dir: &Path) -> Result<Pipe> {
    let files = files(dir);
    let (tx, rx) = std::sync::mpsc::sync_channel(4);
    let thread = std::thread::spawn(move || {
        let mut b = tar::Builder::new(std::io::BufWriter::with_capacity(128 << 10, ChanWriter(tx)));
        for (name, path) in files {
            let Ok(f) = open_nofollow(&path) else { continue };
            let Ok(len) = f.metadata().map(|m| m.len()) else { continue };
            let mut h = tar::Header::new_gnu();
            h.set_size(len);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            // A file that changes size meanwhile, or a reader that stopped, ends the stream.
            if b.append_data(&mut h, &name, f.take(len)).is_err() {
                return;
            }
        }
        let _ = b.into_inner().and_then(|mut w| w.flush());
    });
    Ok(Pipe::from_reader(Box::new(ChanReader { rx, cur: vec![], pos: 0, thread: Some(thread) })))
}

/// Opens a regular file without following a symlink or blocking on a FIFO.
pub fn open_nofollow(p: &Path) -> std::io::Result<std::fs::File> {
    use rustix::fs::{Mode, OFlags};
    let fd =
        rustix::fs::open(p, OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC, Mode::empty())?;
    let st = rustix::fs::fstat(&fd)?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
        return Err(std::io::Error::other("not a regular file"));
    }
    rustix::fs::fcntl_setfl(&fd, OFlags::empty())?;
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
        let ok = raw == "oci-layout" || raw == "index.json" || raw.strip_prefix("blobs/sha256/").is_some_and(is_hex);
        if ok {
            let mut f = std::fs::File::create(dest.join(&raw)).with_context(|| format!("writing {raw}"))?;
            std::io::copy(&mut e, &mut f).with_context(|| format!("writing {raw}"))?;
        }
    }
    Ok(())
}
