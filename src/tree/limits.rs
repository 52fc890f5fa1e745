//! The numbers every reader stops at, and what a reader counts against
//! them: entries, names, bytes read into memory or unpacked, and the pool
//! the images unpacked at the same time share. `policy` applies them; each
//! number has its reason beside it (and in torcx-image(5), LIMITS).

/// Entries of one image (all layers of an OCI image together), for an unpack
/// and for the readers that read into memory alike. A real image has
/// hundreds to thousands; 131,072 is far beyond any, and bounds what the
/// readers keep per entry (about 100 bytes: the kind of every path, and the
/// image's directories and symlinks) to about 14 MB, so the generator stays
/// under 64 MiB whatever the image.
pub const MAX_ENTRIES: u64 = 131_072;

/// The bytes of all entries' paths and link targets in one image, counted
/// as [`MAX_ENTRIES`] is: the readers into memory keep the paths of
/// directories and symlinks, so without this a few thousand entries with
/// 4096-byte paths would cost what a hundred thousand short ones do.
pub const MAX_NAMES: u64 = 8 << 20;

/// The largest single file read into memory (a manifest, a unit, a drop-in).
/// These are text of a few kilobytes; a larger file is not a unit and is left
/// unread (the generator then sees a file it cannot read).
pub const MAX_MEM_FILE: u64 = 1 << 20;

/// All bytes read into memory for one image. The generator runs before most
/// of the boot, one image at a time, so this bounds its memory. 16 MiB, not
/// the 8 MiB the tar reader had: the OCI reader counts every layer's copy of
/// a unit (a later layer replacing it still costs its bytes), and thousands
/// of units with drop-ins fit either way, while 16 MiB is still nothing next
/// to what the boot has.
pub const MAX_MEM_TOTAL: u64 = 16 << 20;

/// The longest path an entry may have, and the longest symlink target:
/// Linux's PATH_MAX. No tool can open a longer path in one call, and every
/// reader's work on an entry grows with its path.
pub const MAX_PATH: usize = 4096;
/// The most components a path may have. Real images nest a few dozen deep;
/// the extractor opens one directory per component, so depth is work.
pub const MAX_DEPTH: usize = 256;
/// The longest name of one component: NAME_MAX of tmpfs, squashfs, erofs.
pub const MAX_NAME: usize = 255;

/// The longest symlink target tmpfs keeps in the inode; a longer one takes
/// a page (`SHORT_SYMLINK_LEN` in the kernel's shmem).
pub const INLINE_SYMLINK: usize = 128;

/// How far a reader may go with one image.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// For an unpack: bytes of file data, each file rounded up to a page as
    /// tmpfs stores it. For a reader into memory: bytes read, in all.
    pub max_bytes: u64,
    pub max_entries: u64,
    /// For an unpack: what all unpacks of this process may still take
    /// together (`unpack_total_limit`), charged as `max_bytes` is.
    pub pool: Option<&'static Pool>,
    /// For a reader into memory: the file data it may stream past without
    /// keeping, charged as an unpack charges it (the unpack limit, so the
    /// generator refuses what apply would, no later: a 32 MB archive of a
    /// zstd-compressed 1 TiB file kept it decompressing for 90 s).
    pub data: u64,
}

impl Limits {
    /// What the readers into memory may read, the data they pass unbounded.
    pub const MEM: Limits = Limits { max_bytes: MAX_MEM_TOTAL, max_entries: MAX_ENTRIES, pool: None, data: u64::MAX };

    /// What the generator may read of an image unpacked within `unpack_limit`.
    pub fn reading(unpack_limit: u64) -> Limits {
        Limits { data: unpack_limit, ..Limits::MEM }
    }

    /// An unpack bounded by `max_bytes` (`unpack_limit` in the config).
    pub fn unpack(max_bytes: u64) -> Limits {
        Limits { max_bytes, max_entries: MAX_ENTRIES, pool: None, data: max_bytes }
    }

    /// Gives back `n` bytes this unpack took from the pool of all images
    /// (its tree is removed).
    pub fn give_back(&self, n: u64) {
        if let Some(pool) = self.pool {
            pool.give(n);
        }
    }
}

/// Bytes the image trees unpacked at the same time may still take, all
/// together: two images unpacked at once cannot each take the whole limit.
///
/// An image that fits alone must not be refused for timing: two OCI images
/// staging their blobs at once could each take half of what is left and
/// then both run short. So the pool also knows which unpacks are under
/// way; one refused while another overlapped it is tried once more alone
/// ([`Pool::alone`]), after the others are done.
#[derive(Debug)]
pub struct Pool {
    left: std::sync::atomic::AtomicU64,
    pub total: u64,
    /// Unpacks under way, and how many ever began.
    busy: std::sync::Mutex<(u64, u64)>,
    idle: std::sync::Condvar,
    /// Held by the one unpack trying again alone.
    turn: std::sync::Mutex<()>,
}

/// One unpack under way (see [`Pool::begin`]); ends when dropped.
pub struct Unpacking<'a> {
    pool: &'a Pool,
    /// Others were under way when it began.
    others_then: bool,
    /// How many unpacks had begun when it began.
    began: u64,
}

impl Pool {
    pub fn new(left: u64, total: u64) -> Pool {
        Pool { left: left.into(), total, busy: Default::default(), idle: Default::default(), turn: Default::default() }
    }
    pub fn left(&self) -> u64 {
        self.left.load(std::sync::atomic::Ordering::SeqCst)
    }
    pub(super) fn take(&self, n: u64) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        self.left.fetch_update(SeqCst, SeqCst, |l| l.checked_sub(n)).is_ok()
    }
    /// Gives back what a failed unpack took (its tree is removed).
    pub fn give(&self, n: u64) {
        self.left.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
    }
    fn busy(&self) -> std::sync::MutexGuard<'_, (u64, u64)> {
        self.busy.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// An unpack begins drawing on the pool.
    pub fn begin(&self) -> Unpacking<'_> {
        let mut b = self.busy();
        let u = Unpacking { pool: self, others_then: b.0 > 0, began: b.1 };
        *b = (b.0 + 1, b.1 + 1);
        u
    }
    /// Waits for the turn to try again alone, and for every unpack under
    /// way to end; the unpack holding the turn begins before it is given
    /// back. Unpacks beginning meanwhile are not held back.
    pub fn alone(&self) -> (std::sync::MutexGuard<'_, ()>, Unpacking<'_>) {
        let turn = self.turn.lock().unwrap_or_else(|e| e.into_inner());
        let mut b = self.busy();
        while b.0 > 0 {
            b = self.idle.wait(b).unwrap_or_else(|e| e.into_inner());
        }
        drop(b);
        (turn, self.begin())
    }
}

impl Unpacking<'_> {
    /// Another unpack was under way at some time during this one.
    pub fn overlapped(&self) -> bool {
        let b = self.pool.busy();
        self.others_then || b.0 > 1 || b.1 > self.began + 1
    }
}

impl Drop for Unpacking<'_> {
    fn drop(&mut self) {
        let mut b = self.pool.busy();
        b.0 -= 1;
        if b.0 == 0 {
            self.pool.idle.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unpack_knows_whether_another_overlapped_it_and_alone_waits_for_all() {
        let pool: &'static Pool = Box::leak(Box::new(Pool::new(10, 10)));
        let a = pool.begin();
        assert!(!a.overlapped());
        let b = pool.begin();
        assert!(a.overlapped() && b.overlapped());
        drop(b);
        // b ended, but it ran during a.
        assert!(a.overlapped());
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let (_turn, c) = pool.alone();
            tx.send(c.overlapped()).unwrap();
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(rx.try_recv().is_err(), "alone must wait for a to end");
        drop(a);
        assert!(!rx.recv().unwrap(), "alone after the others: no overlap");
        waiter.join().unwrap();
    }
}
