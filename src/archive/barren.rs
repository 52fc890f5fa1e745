//! A decompressor must give out about as much as it reads. Some
//! compressed bytes legitimately give nothing (gzip's zero padding after
//! the last member, deflate's empty stored blocks, zstd's skippable frames
//! and empty blocks), and nothing in either format bounds how many there
//! are: an archive whose valid tar was followed by a 1 TiB hole in a sparse
//! file (4 KB on disk) made `apply` read the whole hole, about 7 minutes,
//! to check the stream's end.
//!
//! [`bounded`] keeps what the decompressor has read beyond what it has
//! given (never below zero: output does not pay in advance for input yet
//! to come), and fails its read once that passes [`MAX_BARREN`]. So all
//! the compressed bytes read are at most the output plus 64 MiB, and the
//! output is bounded by the unpack limit. Real archives stay far from it:
//! incompressible data grows by a few bytes per 64 KiB block, and tar
//! writers pad with a record or two.

use std::io::{self, BufRead, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// How far the compressed bytes read may run ahead of the bytes given.
pub const MAX_BARREN: u64 = 64 << 20;

/// The decompressor `make` builds over `input`, failing as corrupt once it
/// has read [`MAX_BARREN`] bytes more than it gave. `what` names the stream
/// in the error ("gzip", "zstd").
pub fn bounded<R: BufRead, D: Read>(
    input: R,
    what: &'static str,
    make: impl FnOnce(Input<R>) -> anyhow::Result<D>,
) -> anyhow::Result<Output<D>> {
    let since = Arc::new(AtomicU64::new(0));
    let inner = make(Input { inner: input, since: since.clone(), what })?;
    Ok(Output { inner, since })
}

/// The input side: counts what the decompressor takes. Both sides run on
/// the decompressing thread; the count is shared only because the
/// decompressor owns its input.
pub struct Input<R> {
    inner: R,
    since: Arc<AtomicU64>,
    what: &'static str,
}

impl<R> Input<R> {
    fn check(&self) -> io::Result<()> {
        if self.since.load(Ordering::Relaxed) >= MAX_BARREN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("corrupt {} stream: {} MiB more read than it gave", self.what, MAX_BARREN >> 20),
            ));
        }
        Ok(())
    }

    fn took(&self, n: usize) {
        self.since.fetch_add(n as u64, Ordering::Relaxed);
    }
}

impl<R: Read> Read for Input<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.check()?;
        let n = self.inner.read(buf)?;
        self.took(n);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Input<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.check()?;
        self.inner.fill_buf()
    }
    fn consume(&mut self, n: usize) {
        self.took(n);
        self.inner.consume(n)
    }
}

/// The output side: each byte given pays for one byte read.
pub struct Output<D> {
    inner: D,
    since: Arc<AtomicU64>,
}

impl<D: Read> Read for Output<D> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        // Only this thread changes the count between the load and the store.
        let owed = self.since.load(Ordering::Relaxed);
        self.since.store(owed.saturating_sub(n as u64), Ordering::Relaxed);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufReader, Write};

    /// `data`, then `zeros` zero bytes, read without holding them.
    fn then_zeros(data: Vec<u8>, zeros: u64) -> impl BufRead {
        BufReader::with_capacity(64 << 10, io::Cursor::new(data).chain(io::repeat(0).take(zeros)))
    }

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(vec![], flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn gunzip(r: impl BufRead) -> io::Result<u64> {
        let mut d = bounded(r, "gzip", |i| Ok(crate::archive::gunzip::decoder(i))).unwrap();
        io::copy(&mut d, &mut io::sink())
    }

    fn unzstd(r: impl BufRead) -> io::Result<u64> {
        let mut d = bounded(r, "zstd", crate::archive::stream::zstd_decoder).unwrap();
        io::copy(&mut d, &mut io::sink())
    }

    #[test]
    fn zero_padding_after_gzip_is_read_up_to_the_bound() {
        let data = vec![b'x'; 1 << 20];
        // A few records of padding, as tape-blocked files have: fine.
        assert_eq!(gunzip(then_zeros(gz(&data), 20 << 10)).unwrap(), 1 << 20);
        // A hole far past the bound ends at the bound, not at its end.
        let e = gunzip(then_zeros(gz(&data), 1 << 40)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert_eq!(e.to_string(), "corrupt gzip stream: 64 MiB more read than it gave");
    }

    #[test]
    fn empty_zstd_blocks_are_read_up_to_the_bound() {
        let data = vec![b'y'; 1 << 20];
        let mut z = zstd::encode_all(&data[..], 3).unwrap();
        // Another frame whose blocks are all raw, empty and not the last:
        // each block header is three zero bytes, so a hole is endless.
        z.extend_from_slice(&[0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x00]);
        assert_eq!(unzstd(then_zeros(z.clone(), 1 << 10)).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        let e = unzstd(then_zeros(z, 1 << 40)).unwrap_err();
        assert_eq!(e.to_string(), "corrupt zstd stream: 64 MiB more read than it gave");
    }

    #[test]
    fn output_pays_only_for_as_much_input() {
        // 1000 bytes out, then a skippable frame of 40 MiB, four times:
        // never 64 MiB without output, but 160 MiB read for 4000 bytes.
        let frames = |n: u8, skip: u32| {
            let mut z: Box<dyn Read> = Box::new(io::empty());
            for i in 0..n {
                let mut frame = zstd::encode_all(&[i; 1000][..], 3).unwrap();
                frame.extend_from_slice(&[0x50, 0x2a, 0x4d, 0x18]);
                frame.extend_from_slice(&skip.to_le_bytes());
                z = Box::new(z.chain(io::Cursor::new(frame)).chain(io::repeat(0).take(skip.into())));
            }
            BufReader::new(z)
        };
        let e = unzstd(frames(4, 40 << 20)).unwrap_err();
        assert_eq!(e.to_string(), "corrupt zstd stream: 64 MiB more read than it gave");
        assert_eq!(unzstd(frames(4, 1 << 20)).unwrap(), 4000);
        // 32 MiB given first earns nothing ahead: a hole of 90 MiB after
        // it is still too much.
        let data = vec![0u8; 32 << 20];
        assert!(gunzip(then_zeros(gz(&data), 90 << 20)).is_err());
        // Incompressible data grows a little, and passes.
        let mut noise = vec![0u8; 2 << 20];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for b in noise.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        let z = gz(&noise);
        assert!(z.len() > noise.len());
        assert_eq!(gunzip(then_zeros(z, 0)).unwrap(), 2 << 20);
    }
}
