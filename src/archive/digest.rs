//! Hashing an archive's bytes as they are read: the sha256 torcx records,
//! and whatever algorithm a signed index lists the archive with.

use crate::model::remote::{Algo, Digest};
use sha2::Digest as _;
use std::io::Read;
use std::sync::{Arc, Mutex};

enum One {
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
}

impl One {
    fn new(a: Algo) -> One {
        match a {
            Algo::Sha256 => One::Sha256(sha2::Sha256::new()),
            Algo::Sha384 => One::Sha384(sha2::Sha384::new()),
            Algo::Sha512 => One::Sha512(sha2::Sha512::new()),
        }
    }
    fn update(&mut self, b: &[u8]) {
        match self {
            One::Sha256(h) => h.update(b),
            One::Sha384(h) => h.update(b),
            One::Sha512(h) => h.update(b),
        }
    }
    fn finish(self) -> Digest {
        let (algo, bytes) = match self {
            One::Sha256(h) => (Algo::Sha256, h.finalize().to_vec()),
            One::Sha384(h) => (Algo::Sha384, h.finalize().to_vec()),
            One::Sha512(h) => (Algo::Sha512, h.finalize().to_vec()),
        };
        Digest { algo, hex: crate::sys::fsutil::hex(&bytes) }
    }
}

/// Several algorithms over the same bytes.
pub struct Hasher {
    hashers: Vec<One>,
    pub bytes: u64,
}

impl Hasher {
    /// Each algorithm once.
    pub fn new(algos: &[Algo]) -> Hasher {
        let mut seen = vec![];
        for a in algos {
            if !seen.contains(a) {
                seen.push(*a);
            }
        }
        Hasher { hashers: seen.into_iter().map(One::new).collect(), bytes: 0 }
    }
    pub fn update(&mut self, b: &[u8]) {
        self.bytes += b.len() as u64;
        for h in &mut self.hashers {
            h.update(b);
        }
    }
    pub fn finish(self) -> Vec<Digest> {
        self.hashers.into_iter().map(One::finish).collect()
    }
}

/// What a [`HashingReader`] saw, once it reached the end.
#[derive(Default)]
pub struct Seen {
    pub digests: Option<Vec<Digest>>,
    pub bytes: u64,
}

/// A reader that hashes what passes through it, on a thread of its own:
/// the reading thread (which inflates) only copies each chunk, so hashing
/// takes the other core's slack instead of the boot's critical path. The
/// result is shared, so it can be collected after the reader moved into a
/// decoder on another thread; it is there only if the reader reached the
/// end of its input.
pub struct HashingReader<R> {
    inner: R,
    hashing: Option<HashThread>,
    seen: Arc<Mutex<Seen>>,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R, algos: &[Algo]) -> (HashingReader<R>, Arc<Mutex<Seen>>) {
        let seen = Arc::new(Mutex::new(Seen::default()));
        (HashingReader { inner, hashing: Some(HashThread::new(algos)), seen: seen.clone() }, seen)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0
            && let Some(h) = &self.hashing
        {
            let mut chunk = h.buffer(n);
            chunk.copy_from_slice(&buf[..n]);
            h.send(chunk);
        } else if n == 0
            && !buf.is_empty()
            && let Some(h) = self.hashing.take()
        {
            // The end: the hashing thread finishes what it was sent.
            if let Some(h) = h.finish() {
                let mut s = self.seen.lock().unwrap_or_else(|e| e.into_inner());
                s.bytes = h.bytes;
                s.digests = Some(h.finish());
            }
        }
        Ok(n)
    }
}

/// A thread that works in the gaps: SCHED_IDLE while the boot's critical
/// path (the inflating thread) runs, so with two cores and three busy
/// threads the hash never takes the inflater's core (time-slicing them
/// lengthened the boot by the hash's share); back to the normal class when
/// it is waited for ([`Gaps::join`]), so a machine busy with the rest of the
/// boot cannot starve it while the apply waits on it.
pub struct Gaps<T> {
    handle: std::thread::JoinHandle<T>,
    tid: Arc<std::sync::atomic::AtomicI32>,
}

fn set_class(tid: i32, class: libc::c_int) {
    let p = libc::sched_param { sched_priority: 0 };
    // SAFETY: a plain syscall with a valid param; failing leaves the thread as it was.
    unsafe {
        let _ = libc::sched_setscheduler(tid, class, &p);
    }
}

impl<T: Send + 'static> Gaps<T> {
    pub fn spawn(f: impl FnOnce() -> T + Send + 'static) -> Gaps<T> {
        use std::sync::atomic::Ordering;
        let tid = Arc::new(std::sync::atomic::AtomicI32::new(0));
        let mine = tid.clone();
        let handle = std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            let me = unsafe { libc::gettid() };
            set_class(me, libc::SCHED_IDLE);
            // Published after the class is set: `join` restores it after.
            mine.store(me, Ordering::SeqCst);
            f()
        });
        Gaps { handle, tid }
    }

    /// Back to the normal class from now on: something waits for it.
    pub fn boost(&self) {
        use std::sync::atomic::Ordering;
        // Not started far enough to have lowered itself: it may still.
        while !self.handle.is_finished() && self.tid.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        let tid = self.tid.swap(-1, Ordering::SeqCst);
        if tid > 0 {
            set_class(tid, libc::SCHED_OTHER);
        }
    }

    /// Waits for the thread, at normal priority from now on.
    pub fn join(self) -> std::thread::Result<T> {
        self.boost();
        self.handle.join()
    }
}

/// A thread that hashes the chunks it is handed, in order; the buffers go
/// back to a pool, so a writer that reads straight into [`HashThread::buffer`]
/// hashes without copying.
pub struct HashThread {
    full: std::sync::mpsc::SyncSender<Vec<u8>>,
    empty: std::sync::mpsc::Receiver<Vec<u8>>,
    thread: Gaps<Hasher>,
}

impl HashThread {
    pub fn new(algos: &[Algo]) -> HashThread {
        let (full, full_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(8);
        let (empty_tx, empty) = std::sync::mpsc::sync_channel::<Vec<u8>>(10);
        let mut hasher = Hasher::new(algos);
        let thread = Gaps::spawn(move || {
            for chunk in full_rx {
                hasher.update(&chunk);
                let _ = empty_tx.try_send(chunk);
            }
            hasher
        });
        HashThread { full, empty, thread }
    }

    /// A buffer of `len` bytes, from the pool when one is back.
    pub fn buffer(&self, len: usize) -> Vec<u8> {
        let mut b = self.empty.try_recv().unwrap_or_default();
        b.resize(len, 0);
        b
    }

    /// Hands `chunk` over to be hashed. When the queue is full the hasher
    /// is what the caller waits on: it leaves the idle class for good (else
    /// a busy machine starves it and the inflater with it).
    pub fn send(&self, chunk: Vec<u8>) {
        if let Err(std::sync::mpsc::TrySendError::Full(chunk)) = self.full.try_send(chunk) {
            self.thread.boost();
            let _ = self.full.send(chunk);
        }
    }

    /// Everything sent, hashed; `None` if the thread failed.
    pub fn finish(self) -> Option<Hasher> {
        drop(self.full);
        self.thread.join().ok()
    }
}

/// The largest archive hashed: a sparse file of a terabyte is refused at
/// once rather than read for minutes (the same bound as a download).
pub const MAX_HASHED: u64 = 16 << 30;

/// The digests of a whole file, read once (a regular file only, at most
/// [`MAX_HASHED`] bytes).
pub fn file_digests(path: &std::path::Path, algos: &[Algo]) -> std::io::Result<Vec<Digest>> {
    let f = crate::sys::fsutil::open_regular(path).map_err(|e| std::io::Error::other(format!("{e:#}")))?;
    reader_digests(f, algos)
}

/// The digests of what is left of an open file, read once (the caller keeps
/// using the same open file: what is hashed is what is mounted).
pub fn reader_digests(f: std::fs::File, algos: &[Algo]) -> std::io::Result<Vec<Digest>> {
    if f.metadata()?.len() > MAX_HASHED {
        return Err(std::io::Error::other(format!("larger than the limit of {MAX_HASHED} bytes")));
    }
    let mut h = Hasher::new(algos);
    let mut f = f;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(h.finish());
        }
        h.update(&buf[..n]);
    }
}

/// Opens an archive once, for hashing and then mounting or reading the same
/// file: returns the open file and the archive with its host path turned
/// into `/proc/PID/fd/N`, which opens that very file (in this process and
/// in a child) even if the store's name is replaced meanwhile.
pub fn pin(a: &crate::archive::Archive) -> anyhow::Result<(std::fs::File, crate::archive::Archive)> {
    pin_id(a).map(|(f, p, _)| (f, p))
}

/// [`pin`], with the identity of the file opened.
pub fn pin_id(
    a: &crate::archive::Archive,
) -> anyhow::Result<(std::fs::File, crate::archive::Archive, crate::archive::FileId)> {
    use std::os::fd::AsRawFd;
    let (f, st) = crate::sys::fsutil::open_regular_stat(&a.host)?;
    let id = crate::archive::FileId::of_open(&f, &st)?;
    let mut pinned = a.clone();
    pinned.host = format!("/proc/{}/fd/{}", crate::sys::fsutil::pid(), f.as_raw_fd()).into();
    Ok((f, pinned, id))
}
