//! Archive formats behind one interface: a tar stream to unpack, and a
//! cheap read of just the manifest and unit files for the generator.

use crate::archive::barren;
use crate::archive::digest::{HashingReader, Seen};
use crate::archive::{Archive, FileId, Format};
use crate::model::remote::Algo;
use anyhow::{Context, Result, bail};
use std::io::{BufReader, Read};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

const CHUNK: usize = 128 * 1024;
const QUEUE: usize = 8;

/// The decompressed tar stream of an archive. Decompression runs on its own
/// thread, so inflating and writing the tree overlap on two cores; buffers
/// go back and forth, so memory stays at a few chunks.
pub fn open_tar(a: &Archive) -> Result<Pipe> {
    Ok(open_tar_hashed(a, &[])?.0)
}

/// Like [`open_tar`], hashing the archive's bytes with `algos` as they are
/// read (on the inflating thread): the digests are in the returned slot
/// once the stream was read to its end.
pub fn open_tar_hashed(a: &Archive, algos: &[Algo]) -> Result<(Pipe, Arc<Mutex<Seen>>)> {
    let file = open_archive(a)?;
    let (file, seen) = HashingReader::new(file, algos);
    Ok((tar_pipe(a, file)?, seen))
}

/// The archive's file, for reading: a FIFO, a device or a directory put in
/// its place since the store was listed is refused, never waited on.
fn open_archive(a: &Archive) -> Result<std::fs::File> {
    crate::sys::fsutil::open_regular_io(&a.host).with_context(|| format!("opening archive {}", a.path.display()))
}

/// Archives at least this large are read ahead on a thread of their own.
const READ_AHEAD_FROM: u64 = 8 << 20;

/// The decompressing thread over `file`, bounded by the tar guard.
fn tar_pipe(a: &Archive, file: impl Read + Send + 'static) -> Result<Pipe> {
    // A large archive's bytes are copied out of the page cache by a thread
    // of their own (for zstd a twentieth of the work), not by the
    // decompressing one, which is the boot's critical path. A small one's
    // are not worth a thread.
    let large = std::fs::metadata(&a.host).is_ok_and(|m| m.len() >= READ_AHEAD_FROM);
    let buffered: Box<dyn std::io::BufRead + Send> =
        if large { Box::new(ReadAhead::spawn(file)) } else { Box::new(BufReader::with_capacity(64 * 1024, file)) };
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let buffered = Stoppable { inner: buffered, stop: stop.clone() };
    let dec: Box<dyn Read + Send> = match a.format {
        Format::Tgz => Box::new(barren::bounded(buffered, "gzip", |i| Ok(crate::archive::gunzip::decoder(i)))?),
        Format::TarZst => Box::new(barren::bounded(buffered, "zstd", zstd_decoder)?),
        Format::Squashfs | Format::Erofs | Format::Oci | Format::OciLayout => {
            bail!("{} archives are not tar streams", a.format.name())
        }
    };
    // Bounded before the tar crate reads it (extension records, trailer).
    Ok(Pipe::spawn(Box::new(crate::archive::guard::TarGuard::new(dec)), Some(stop)))
}

/// The compressed bytes as the decompressor reads them, until the stream is
/// dropped: one read of a decompressor can go on through any amount of
/// input that gives no output (zstd skippable frames, empty gzip members),
/// so the thread is stopped where the decompressor reads, with an error,
/// not only where it hands a chunk over.
struct Stoppable<R> {
    inner: R,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl<R> Stoppable<R> {
    fn check(&self) -> std::io::Result<()> {
        if self.stop.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(std::io::Error::other("the archive's reader stopped"));
        }
        Ok(())
    }
}

impl<R: Read> Read for Stoppable<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.check()?;
        self.inner.read(buf)
    }
}

impl<R: std::io::BufRead> std::io::BufRead for Stoppable<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.check()?;
        self.inner.fill_buf()
    }
    fn consume(&mut self, n: usize) {
        self.inner.consume(n)
    }
}

/// The largest zstd window accepted, as a power of two (16 MiB). The
/// decoder allocates the window a frame declares, so this bounds what a
/// 4 KB archive can make torcx allocate; the zstd tool's own default limit
/// is 2^27: archives made with `--long` or `--ultra -20` and above need
/// `--long=24`. With 16 MiB of unit text at most, this keeps the generator
/// and apply under 64 MiB.
pub const ZSTD_WINDOW_LOG_MAX: u32 = 24;

/// A zstd decoder with the window bounded, whose "too much memory" error
/// names the limit.
pub fn zstd_decoder<'a, R: std::io::BufRead + 'a>(r: R) -> Result<ZstdLimit<zstd::stream::read::Decoder<'a, R>>> {
    let mut d = zstd::stream::read::Decoder::with_buffer(r).context("starting zstd")?;
    d.window_log_max(ZSTD_WINDOW_LOG_MAX).context("configuring zstd")?;
    Ok(ZstdLimit(d))
}

pub struct ZstdLimit<R>(R);

impl<R: Read> Read for ZstdLimit<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf).map_err(|e| {
            if e.to_string().contains("too much memory") {
                std::io::Error::other(format!(
                    "zstd frame needs a window over the limit of {} MiB (made with --long? use --long={ZSTD_WINDOW_LOG_MAX} or less)",
                    (1u64 << ZSTD_WINDOW_LOG_MAX) >> 20
                ))
            } else if e.kind() == std::io::ErrorKind::Other && e.raw_os_error().is_none() {
                // The decoder's own verdicts ("Unknown frame descriptor"):
                // damaged data (kind corrupt), not a system error.
                std::io::Error::new(std::io::ErrorKind::InvalidData, format!("corrupt zstd stream: {e}"))
            } else {
                e
            }
        })
    }
}

/// `sha256:HEX` of a file, read on a thread of its own: while unpacking, the
/// thread writing the tree waits on inflation most of the time, so this
/// costs the boot almost nothing.
pub fn digest_in_background(path: &std::path::Path) -> std::thread::JoinHandle<Option<String>> {
    let f = crate::sys::fsutil::open_regular_io(path);
    std::thread::spawn(move || sha256_at(&f.ok()?))
}

/// `sha256:HEX` of the open file `f` from its start, read with `pread` (the
/// file's offset, which another reader may share, is left alone).
fn sha256_at(f: &std::fs::File) -> Option<String> {
    use sha2::Digest;
    use std::os::unix::fs::FileExt;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0; 256 * 1024];
    let mut at = 0u64;
    loop {
        match f.read_at(&mut buf, at) {
            Ok(0) => break,
            Ok(n) => {
                h.update(&buf[..n]);
                at += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    Some(format!("sha256:{}", crate::sys::fsutil::hex(&h.finalize())))
}

/// Like [`open_tar`], with the archive's sha256 for the record: known
/// already when `known` is of this very file (the one opened: same device,
/// inode, size, mtime and ctime), else computed from the same open file on
/// a thread of its own, reading it again rather than taking a copy of each
/// chunk from the inflating thread (the boot's critical path). Only where
/// the digest is information: a digest that must match a signed index is
/// taken from the bytes as they stream ([`open_tar_hashed`]). Also returns
/// the identity of the file opened.
pub fn open_tar_digesting(a: &Archive, known: Option<&KnownDigest>) -> Result<(Pipe, Digesting, FileId)> {
    let (file, st) = crate::sys::fsutil::open_regular_stat(&a.host)
        .with_context(|| format!("opening archive {}", a.path.display()))?;
    let id = FileId::of_open(&file, &st).with_context(|| format!("reading archive {}", a.path.display()))?;
    let again = file.try_clone().with_context(|| format!("opening archive {}", a.path.display()))?;
    let how = match known {
        Some(k) if k.file == id => How::Known(k.digest.clone()),
        _ => {
            let again = again.try_clone().with_context(|| format!("opening archive {}", a.path.display()))?;
            How::Hashing(crate::archive::digest::Gaps::spawn(move || sha256_at(&again)))
        }
    };
    let digest = Digesting { how, file: again, id, archive: a.path.clone() };
    Ok((tar_pipe(a, file)?, digest, id))
}

/// An archive's `sha256:HEX` as an earlier apply computed it, and the
/// identity of the file it was computed from (kept in the generator cache).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownDigest {
    pub file: FileId,
    pub digest: String,
}

/// The digest of [`open_tar_digesting`], and the file it is of.
pub struct Digesting {
    how: How,
    file: std::fs::File,
    id: FileId,
    archive: std::path::PathBuf,
}

enum How {
    Known(String),
    Hashing(crate::archive::digest::Gaps<Option<String>>),
}

impl Digesting {
    /// The digest, once the hashing thread (if any) is done; `None` if the
    /// file could not be read. An error if the file is not what it was when
    /// opened: written to while it was unpacked, the tree may hold some of
    /// either, and the digest (known, or read on its own) neither.
    pub fn join(self) -> Result<Option<String>> {
        let digest = match self.how {
            How::Known(d) => Some(d),
            How::Hashing(h) => h.join().ok().flatten(),
        };
        let now = FileId::of_file(&self.file).with_context(|| format!("reading archive {}", self.archive.display()))?;
        if now != self.id {
            bail!("archive {} changed while it was unpacked", self.archive.display());
        }
        Ok(digest)
    }
}

/// Reads into all of `buf` unless the stream ends first (decoders and pipes
/// return short reads): how much was read, and the error that stopped it.
fn fill(src: &mut (impl Read + ?Sized), buf: &mut [u8]) -> (usize, std::io::Result<()>) {
    let mut n = 0;
    while n < buf.len() {
        match src.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return (n, Err(e)),
        }
    }
    (n, Ok(()))
}

/// A file read ahead on a thread of its own, in chunks of `AHEAD`, at most
/// `AHEAD_QUEUE` of them waiting: its reader takes them as they are (no
/// copy on its side). A read error reaches the reader where it happened.
pub struct ReadAhead {
    full: Receiver<std::io::Result<Vec<u8>>>,
    empty: SyncSender<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
    done: bool,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Closes both channels of a reading thread, so that it stops at its next
/// hand-over, and waits for it: a stream dropped before its end leaves no
/// thread behind still holding the file open (the process may exit, or
/// unmount, next).
fn stop<T>(
    full: &mut Receiver<std::io::Result<T>>,
    empty: &mut SyncSender<T>,
    thread: Option<std::thread::JoinHandle<()>>,
) {
    drop(std::mem::replace(full, sync_channel(0).1));
    drop(std::mem::replace(empty, sync_channel(0).0));
    if let Some(t) = thread {
        let _ = t.join();
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        stop(&mut self.full, &mut self.empty, self.thread.take());
    }
}

const AHEAD: usize = 256 * 1024;
const AHEAD_QUEUE: usize = 3;

impl ReadAhead {
    pub fn spawn(mut src: impl Read + Send + 'static) -> ReadAhead {
        let (full_tx, full) = sync_channel::<std::io::Result<Vec<u8>>>(AHEAD_QUEUE);
        let (empty, empty_rx) = sync_channel::<Vec<u8>>(AHEAD_QUEUE + 2);
        for _ in 0..AHEAD_QUEUE {
            let _ = empty.send(vec![0; AHEAD]);
        }
        // It ends at the end of the file, at an error, or when the reader
        // is dropped (its channels close).
        let thread = std::thread::spawn(move || {
            while let Ok(mut buf) = empty_rx.recv() {
                buf.resize(AHEAD, 0);
                let (n, res) = fill(&mut src, &mut buf);
                buf.truncate(n);
                let end = n < AHEAD || res.is_err();
                // Bytes read before an error are handed over first (an
                // empty chunk would say the file ended).
                let msgs = match res {
                    Ok(()) => vec![Ok(buf)],
                    Err(e) if n == 0 => vec![Err(e)],
                    Err(e) => vec![Ok(buf), Err(e)],
                };
                for m in msgs {
                    if full_tx.send(m).is_err() {
                        return;
                    }
                }
                if end {
                    let _ = full_tx.send(Ok(vec![]));
                    return;
                }
            }
        });
        ReadAhead { full, empty, cur: vec![], pos: 0, done: false, thread: Some(thread) }
    }
}

impl std::io::BufRead for ReadAhead {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        while self.pos == self.cur.len() && !self.done {
            match self.full.recv() {
                Ok(Ok(b)) => {
                    self.done = b.is_empty();
                    let old = std::mem::replace(&mut self.cur, b);
                    self.pos = 0;
                    if old.capacity() > 0 {
                        let _ = self.empty.try_send(old);
                    }
                }
                Ok(Err(e)) => return Err(e),
                // The thread ended without saying so: it panicked.
                Err(_) => return Err(std::io::Error::other("reading ahead: the reading thread ended")),
            }
        }
        Ok(&self.cur[self.pos..])
    }
    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.cur.len());
    }
}

impl Read for ReadAhead {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        use std::io::BufRead;
        let b = self.fill_buf()?;
        let n = b.len().min(out.len());
        out[..n].copy_from_slice(&b[..n]);
        self.consume(n);
        Ok(n)
    }
}

/// Chunk buffers kept for the next pipe of this process: the 50 images of a
/// boot would otherwise each allocate their own and fault them in, zeroed
/// (a tenth of the time of a small image). As many as two unpacks at once
/// hold.
static SPARE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

fn spare() -> Vec<u8> {
    SPARE.lock().ok().and_then(|mut s| s.pop()).unwrap_or_default()
}

fn keep(b: Vec<u8>) {
    if b.capacity() >= CHUNK
        && let Ok(mut s) = SPARE.lock()
        && s.len() < 2 * (QUEUE + 2)
    {
        s.push(b);
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        keep(std::mem::take(&mut self.cur));
        while let Ok(Ok(b)) = self.full.try_recv() {
            keep(b);
        }
        if let Some(s) = &self.stop {
            s.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        stop(&mut self.full, &mut self.empty, self.thread.take());
    }
}

pub struct Pipe {
    full: Receiver<std::io::Result<Vec<u8>>>,
    empty: SyncSender<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
    thread: Option<std::thread::JoinHandle<()>>,
    stop: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl Pipe {
    /// Any byte stream, read on a thread of its own.
    pub fn from_reader(src: Box<dyn Read + Send>) -> Pipe {
        Pipe::spawn(src, None)
    }

    /// `stop`, when given, is raised as the pipe is dropped (see [`Stoppable`]).
    fn spawn(mut src: Box<dyn Read + Send>, stop: Option<Arc<std::sync::atomic::AtomicBool>>) -> Pipe {
        let (full_tx, full) = sync_channel::<std::io::Result<Vec<u8>>>(QUEUE);
        let (empty, empty_rx) = sync_channel::<Vec<u8>>(QUEUE + 2);
        for _ in 0..QUEUE {
            let _ = empty.send(spare());
        }
        let thread = std::thread::spawn(move || {
            // Whatever way it ends, the buffers handed back go to the next pipe.
            struct Back(Receiver<Vec<u8>>);
            impl Drop for Back {
                fn drop(&mut self) {
                    while let Ok(b) = self.0.try_recv() {
                        keep(b);
                    }
                }
            }
            let empty_rx = Back(empty_rx);
            loop {
                let mut buf = empty_rx.0.recv().unwrap_or_else(|_| spare());
                buf.resize(CHUNK, 0);
                let (n, res) = fill(&mut *src, &mut buf);
                buf.truncate(n);
                let done = n == 0;
                let msg = match res {
                    Ok(()) => Ok(buf),
                    Err(e) => Err(e),
                };
                let failed = msg.is_err();
                if full_tx.send(msg).is_err() || done || failed {
                    return;
                }
            }
        });
        Pipe { full, empty, cur: vec![], pos: 0, thread: Some(thread), stop }
    }

    /// Reads the stream to its end (tar stops before the padding), so a
    /// corrupt tail is an error too, and waits for the thread.
    pub fn finish(mut self) -> Result<()> {
        std::io::copy(&mut self, &mut std::io::sink()).context("reading archive")?;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;

    /// Gives `data` in reads of at most `step` bytes, then fails if `fail`.
    struct Source {
        data: Vec<u8>,
        at: usize,
        step: usize,
        fail: bool,
    }

    impl Read for Source {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            if self.at == self.data.len() && self.fail {
                return Err(std::io::Error::other("disk on fire"));
            }
            let n = (self.data.len() - self.at).min(out.len()).min(self.step);
            out[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    fn bytes(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn read_ahead_gives_every_byte_in_order_at_every_size() {
        for n in [0, 1, AHEAD - 1, AHEAD, AHEAD + 1, 2 * AHEAD, AHEAD_QUEUE * AHEAD * 3 + 7] {
            for step in [4096, 100_000, usize::MAX] {
                let data = bytes(n);
                let mut r = ReadAhead::spawn(Source { data: data.clone(), at: 0, step, fail: false });
                let mut got = vec![];
                r.read_to_end(&mut got).unwrap();
                assert!(got == data, "{n} bytes in steps of {step}: {} read", got.len());
                // The end stays the end.
                assert!(r.fill_buf().unwrap().is_empty());
            }
        }
    }

    #[test]
    fn read_ahead_hands_over_the_bytes_before_an_error_then_the_error() {
        for n in [0, 10, AHEAD, AHEAD + 10] {
            let data = bytes(n);
            let mut r = ReadAhead::spawn(Source { data: data.clone(), at: 0, step: 8192, fail: true });
            let mut got = vec![];
            let e = loop {
                match r.fill_buf() {
                    Ok([]) => panic!("{n} bytes: the error was taken for the end"),
                    Ok(b) => {
                        let k = b.len();
                        got.extend_from_slice(b);
                        r.consume(k);
                    }
                    Err(e) => break e,
                }
            };
            assert_eq!(e.to_string(), "disk on fire");
            assert!(got == data, "{n} bytes: {} before the error", got.len());
        }
    }

    /// A source that never ends, and says when its thread drops it.
    struct Endless(std::sync::mpsc::Sender<()>);
    impl Read for Endless {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            Ok(out.len())
        }
    }
    impl Drop for Endless {
        fn drop(&mut self) {
            let _ = self.0.send(());
        }
    }

    /// A zstd stream with one frame of 200 KiB of zeros, then up to `limit`
    /// bytes of skippable frames (made as they are read), counting what
    /// was read of it.
    struct Skips {
        head: Vec<u8>,
        at: u64,
        limit: u64,
        served: Arc<std::sync::atomic::AtomicU64>,
    }
    impl Read for Skips {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            const FRAME: u64 = 1 << 20;
            let h = self.head.len() as u64;
            let n = if self.at < h {
                let n = out.len().min((h - self.at) as usize);
                out[..n].copy_from_slice(&self.head[self.at as usize..self.at as usize + n]);
                n
            } else if self.at >= self.limit {
                0
            } else {
                // Each skippable frame: magic, length, then `FRAME` bytes.
                let off = (self.at - h) % (8 + FRAME);
                let mut hdr = [0u8; 8];
                hdr[..4].copy_from_slice(&0x184D2A50u32.to_le_bytes());
                hdr[4..].copy_from_slice(&(FRAME as u32).to_le_bytes());
                if off < 8 {
                    let n = out.len().min(8 - off as usize);
                    out[..n].copy_from_slice(&hdr[off as usize..off as usize + n]);
                    n
                } else {
                    let n = out.len().min((8 + FRAME - off) as usize);
                    out[..n].fill(0);
                    n
                }
            };
            self.at += n as u64;
            self.served.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
            Ok(n)
        }
    }

    /// Found by an outside attack: the stream's thread, waited for when the
    /// stream is dropped early, was inside one read of the decompressor that
    /// went on through terabytes of skippable frames (a sparse file), so the
    /// generator, which stops at the units, never ended. The thread is now
    /// stopped where the decompressor reads.
    #[test]
    fn a_stream_dropped_in_skippable_frames_stops_reading_them() {
        let head = zstd::stream::encode_all(&vec![0u8; 200 << 10][..], 3).unwrap();
        let served = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let src = Skips { head, at: 0, limit: 64 << 30, served: served.clone() };
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let buffered = Stoppable { inner: BufReader::with_capacity(64 << 10, src), stop: stop.clone() };
        let mut p = Pipe::spawn(Box::new(zstd_decoder(buffered).unwrap()), Some(stop));
        p.read_exact(&mut [0; 1000]).unwrap();
        drop(p);
        let read = served.load(std::sync::atomic::Ordering::Relaxed);
        assert!(read < 1 << 30, "{read} bytes of skippable frames read after the stream was dropped");
    }

    /// Dropped before the end, a stream has its thread stop and drop the
    /// source (closing the file) before the drop returns: the soak test saw
    /// one file more open at exit when the thread was still at it.
    #[test]
    fn a_stream_dropped_early_has_stopped_its_thread_when_the_drop_returns() {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut r = ReadAhead::spawn(Endless(tx));
        r.fill_buf().unwrap();
        drop(r);
        assert_eq!(rx.try_recv(), Ok(()), "read ahead: the thread still held its source");
        let (tx, rx) = std::sync::mpsc::channel();
        let mut p = Pipe::from_reader(Box::new(Endless(tx)));
        p.read_exact(&mut [0; 1000]).unwrap();
        drop(p);
        assert_eq!(rx.try_recv(), Ok(()), "pipe: the thread still held its source");
        // A pipe over a read-ahead: both threads are done.
        let (tx, rx) = std::sync::mpsc::channel();
        let mut p = Pipe::from_reader(Box::new(ReadAhead::spawn(Endless(tx))));
        p.read_exact(&mut [0; 1000]).unwrap();
        drop(p);
        assert_eq!(rx.try_recv(), Ok(()), "pipe over read ahead: a thread still held the source");
    }
}
