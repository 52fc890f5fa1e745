//! Archive formats behind one interface: a tar stream to unpack, and a
//! cheap read of just the manifest and unit files for the generator.

use crate::store::{Archive, Format};
use anyhow::{Context, Result, bail};
use std::io::{BufReader, Read};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

const CHUNK: usize = 256 * 1024;
const QUEUE: usize = 4;

/// The decompressed tar stream of an archive. Decompression runs on its own
/// thread, so inflating and writing the tree overlap on two cores; buffers
/// go back and forth, so memory stays at a few chunks. With `digest`, the
/// thread also hashes the archive file as it reads it.
pub fn open_tar(a: &Archive, digest: bool) -> Result<Pipe> {
    let file = std::fs::File::open(&a.host).with_context(|| format!("opening archive {}", a.path.display()))?;
    let state = Arc::new(Mutex::new(HashState { file, hasher: digest.then(sha2::Sha256::default) }));
    let buffered = BufReader::with_capacity(128 * 1024, Hashing(state.clone()));
    let dec: Box<dyn Read + Send> = match a.format {
        Format::Tgz => Box::new(flate2::read::MultiGzDecoder::new(buffered)),
        Format::TarZst => {
            let mut d = zstd::stream::read::Decoder::with_buffer(buffered).context("starting zstd")?;
            // Archives made with `zstd --long` need the larger window.
            d.window_log_max(31).context("configuring zstd")?;
            Box::new(d)
        }
        Format::Squashfs => bail!("squashfs archives are not supported yet"),
    };
    Ok(Pipe::spawn(dec, state))
}

/// The archive file and, when a digest is wanted, its running hash. Shared
/// so the thread can hash what follows the compressed stream at the end.
struct HashState {
    file: std::fs::File,
    hasher: Option<sha2::Sha256>,
}

impl HashState {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read(buf)?;
        if let Some(h) = &mut self.hasher {
            sha2::Digest::update(h, &buf[..n]);
        }
        Ok(n)
    }

    /// Hashes the rest of the file and returns `sha256:HEX`.
    fn finish(&mut self) -> Option<String> {
        self.hasher.as_ref()?;
        let mut buf = vec![0; 64 * 1024];
        while let Ok(n) = self.read(&mut buf) {
            if n == 0 {
                break;
            }
        }
        let d = sha2::Digest::finalize(self.hasher.take()?);
        Some(format!("sha256:{}", d.iter().map(|b| format!("{b:02x}")).collect::<String>()))
    }
}

struct Hashing(Arc<Mutex<HashState>>);

impl Read for Hashing {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().read(buf)
    }
}

pub struct Pipe {
    full: Receiver<std::io::Result<Vec<u8>>>,
    empty: SyncSender<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
    digest: Arc<Mutex<Option<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Pipe {
    fn spawn(mut src: Box<dyn Read + Send>, state: Arc<Mutex<HashState>>) -> Pipe {
        let digest = Arc::new(Mutex::new(None));
        let digest_out = digest.clone();
        let (full_tx, full) = sync_channel::<std::io::Result<Vec<u8>>>(QUEUE);
        let (empty, empty_rx) = sync_channel::<Vec<u8>>(QUEUE + 2);
        for _ in 0..QUEUE {
            let _ = empty.send(Vec::with_capacity(CHUNK));
        }
        let thread = std::thread::spawn(move || {
            loop {
                let mut buf = empty_rx.recv().unwrap_or_else(|_| Vec::with_capacity(CHUNK));
                buf.resize(CHUNK, 0);
                let mut n = 0;
                // Fill the chunk: decoders return short reads.
                let res = loop {
                    match src.read(&mut buf[n..]) {
                        Ok(0) => break Ok(()),
                        Ok(k) => {
                            n += k;
                            if n == CHUNK {
                                break Ok(());
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => break Err(e),
                    }
                };
                buf.truncate(n);
                let done = n == 0;
                let msg = match res {
                    Ok(()) => Ok(buf),
                    Err(e) => Err(e),
                };
                let failed = msg.is_err();
                if done {
                    *digest_out.lock().unwrap() = state.lock().unwrap().finish();
                }
                if full_tx.send(msg).is_err() || done || failed {
                    return;
                }
            }
        });
        Pipe { full, empty, cur: vec![], pos: 0, digest, thread: Some(thread) }
    }

    /// Reads the stream to its end (tar stops before the padding) and returns
    /// the archive's `sha256:` digest, if one was asked for.
    pub fn finish(mut self) -> Result<Option<String>> {
        std::io::copy(&mut self, &mut std::io::sink()).context("reading archive")?;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        Ok(self.digest.lock().unwrap().take())
    }
}

impl Read for Pipe {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.cur.len() {
            let spent = std::mem::take(&mut self.cur);
            let _ = self.empty.try_send(spent);
            self.pos = 0;
            match self.full.recv() {
                Ok(Ok(b)) => self.cur = b,
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
            if self.cur.is_empty() {
                return Ok(0);
            }
        }
        let n = out.len().min(self.cur.len() - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
