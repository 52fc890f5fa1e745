//! A tar stream, bounded before the tar crate reads it. The crate reads a
//! GNU long name, a GNU long link name or a PAX header into memory whole,
//! however large its header says it is: a 200 KB gzip of a 200 MB long
//! name cost 400 MB. This reader passes the stream through unchanged while
//! it follows the tar blocks itself, and fails the read that would hand
//! over an extension record past [`MAX_EXTENSION`] or more than
//! [`MAX_TRAILER`] bytes after the end of the archive.

use std::io::{self, Read};

/// The largest GNU long name or link name, or PAX header, of one entry.
/// Paths and link targets are at most 4096 bytes (`tree::policy`); the
/// records around them add little.
pub const MAX_EXTENSION: u64 = 64 << 10;
/// What may follow the two zero blocks that end a tar: tar writers pad the
/// archive to a whole record (10240 bytes for GNU tar's default), and some
/// use larger records.
pub const MAX_TRAILER: u64 = 1 << 20;

/// Extension headers (GNU long names, PAX headers, global or not) in a row,
/// before the entry they describe: a writer puts one or two. The readers
/// skip them before counting entries, and they give output, so a flood of
/// them (16 GiB of global headers in a 1.5 MB archive: 30 s) met no bound.
pub const MAX_EXTENSION_RUN: u32 = 8;

const BLOCK: u64 = 512;

enum State {
    /// Reading a header block; `have` bytes of it so far.
    Header {
        have: usize,
        zeros: u8,
    },
    /// Passing `left` bytes of an entry's data (and its padding).
    Data {
        left: u64,
    },
    /// Reading a PAX header's records (to learn the next entry's `size`).
    Pax {
        left: u64,
        pad: u64,
    },
    /// After the end-of-archive blocks (or a format this does not follow
    /// further, such as GNU sparse entries, which the policy refuses).
    Trailer {
        seen: u64,
    },
    Untracked,
}

pub struct TarGuard<R> {
    inner: R,
    state: State,
    header: [u8; 512],
    pax: Vec<u8>,
    /// The size the last PAX header gave the next entry.
    pax_size: Option<u64>,
    /// Extension headers since the last entry.
    run: u32,
}

impl<R: Read> TarGuard<R> {
    pub fn new(inner: R) -> TarGuard<R> {
        TarGuard {
            inner,
            state: State::Header { have: 0, zeros: 0 },
            header: [0; 512],
            pax: vec![],
            pax_size: None,
            run: 0,
        }
    }
}

fn refuse(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// A header's size field: octal, or GNU's base-256 when the high bit is set.
fn header_size(h: &[u8; 512]) -> Option<u64> {
    let f = &h[124..136];
    if f[0] & 0x80 != 0 {
        let mut v: u64 = 0;
        for (i, b) in f.iter().enumerate() {
            let b = if i == 0 { b & 0x7f } else { *b };
            v = v.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(v);
    }
    let s: Vec<u8> = f.iter().copied().take_while(|b| *b != 0 && *b != b' ').skip_while(|b| *b == b' ').collect();
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(std::str::from_utf8(&s).ok()?.trim(), 8).ok()
}

/// Whether a `path` or `linkpath` record of PAX header data holds a
/// newline before its end. Tar readers disagree on such a record (the tar
/// crate drops it and uses the short name; Python and GNU tar keep it), so
/// the tree torcx unpacks would not be the one other tools show.
fn pax_newline_in_path(data: &[u8]) -> bool {
    let mut rest = data;
    while !rest.is_empty() {
        let Some(sp) = rest.iter().position(|b| *b == b' ') else { return false };
        let Some(len) = std::str::from_utf8(&rest[..sp]).ok().and_then(|s| s.parse::<usize>().ok()) else {
            return false;
        };
        if len <= sp + 1 || len > rest.len() {
            return false;
        }
        let rec = &rest[sp + 1..len - 1];
        if (rec.starts_with(b"path=") || rec.starts_with(b"linkpath=")) && rec.contains(&b'\n') {
            return true;
        }
        rest = &rest[len..];
    }
    false
}

/// The `size` record of PAX header data, if any.
fn pax_size(data: &[u8]) -> Option<u64> {
    let mut rest = data;
    let mut found = None;
    while !rest.is_empty() {
        let sp = rest.iter().position(|b| *b == b' ')?;
        let len: usize = std::str::from_utf8(&rest[..sp]).ok()?.parse().ok()?;
        if len <= sp || len > rest.len() {
            return found;
        }
        let rec = &rest[sp + 1..len];
        if let Some(v) = rec.strip_prefix(b"size=") {
            found = std::str::from_utf8(v).ok().and_then(|v| v.trim_end_matches('\n').parse().ok());
        }
        rest = &rest[len..];
    }
    found
}

impl<R: Read> TarGuard<R> {
    /// Moves the state along over `buf`, the bytes about to be handed out.
    fn follow(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            match &mut self.state {
                State::Untracked => return Ok(()),
                State::Trailer { seen } => {
                    *seen += buf.len() as u64;
                    if *seen > MAX_TRAILER {
                        return Err(refuse(format!("more than {MAX_TRAILER} bytes after the end of the archive")));
                    }
                    return Ok(());
                }
                State::Data { left } => {
                    let n = (*left).min(buf.len() as u64);
                    *left -= n;
                    buf = &buf[n as usize..];
                    if *left == 0 {
                        self.state = State::Header { have: 0, zeros: 0 };
                    }
                }
                State::Pax { left, pad } => {
                    let n = (*left).min(buf.len() as u64) as usize;
                    self.pax.extend_from_slice(&buf[..n]);
                    *left -= n as u64;
                    buf = &buf[n..];
                    if *left == 0 {
                        if pax_newline_in_path(&self.pax) {
                            return Err(refuse(
                                "a PAX path or link name with a newline (tar readers disagree on it): refused".into(),
                            ));
                        }
                        self.pax_size = pax_size(&self.pax);
                        self.pax.clear();
                        self.state =
                            if *pad > 0 { State::Data { left: *pad } } else { State::Header { have: 0, zeros: 0 } };
                    }
                }
                State::Header { have, zeros } => {
                    let n = (512 - *have).min(buf.len());
                    self.header[*have..*have + n].copy_from_slice(&buf[..n]);
                    *have += n;
                    buf = &buf[n..];
                    if *have < 512 {
                        continue;
                    }
                    if self.header.iter().all(|b| *b == 0) {
                        let z = *zeros + 1;
                        self.state =
                            if z == 2 { State::Trailer { seen: 0 } } else { State::Header { have: 0, zeros: z } };
                        continue;
                    }
                    // Refused, not left to the tar crate: it reads only the
                    // last 8 bytes of a base-256 size, so a size this guard
                    // could not follow turned the guard off for the rest of
                    // the stream (an outside attack then had a 1 GiB long
                    // name read whole, and 1 TiB after the end drained).
                    let Some(size) = header_size(&self.header) else {
                        return Err(refuse("a tar header whose size field is not a number torcx can read".into()));
                    };
                    let padded = |s: u64| s.div_ceil(BLOCK) * BLOCK;
                    let ty = self.header[156];
                    self.state = match ty {
                        b'L' | b'K' | b'x' | b'g' => {
                            self.run += 1;
                            if self.run > MAX_EXTENSION_RUN {
                                return Err(refuse(format!(
                                    "more than {MAX_EXTENSION_RUN} tar extension headers in a row refused"
                                )));
                            }
                            // The tar crate gives a PAX header's size to the
                            // header after it, whatever its type; this guard,
                            // to the next entry. They would disagree.
                            if self.pax_size.is_some() {
                                return Err(refuse(
                                    "a PAX header with a size followed by another extension header refused".into(),
                                ));
                            }
                            if size > MAX_EXTENSION {
                                let what = match ty {
                                    b'L' => "long name",
                                    b'K' => "long link name",
                                    _ => "PAX header",
                                };
                                return Err(refuse(format!(
                                    "a tar {what} of {size} bytes refused (at most {MAX_EXTENSION})"
                                )));
                            }
                            if ty == b'x' {
                                State::Pax { left: size, pad: padded(size) - size }
                            } else {
                                State::Data { left: padded(size) }
                            }
                        }
                        // GNU sparse entries carry more headers; the policy
                        // refuses them anyway.
                        b'S' => State::Untracked,
                        _ => {
                            self.run = 0;
                            // As the tar crate counts: the size (a PAX
                            // one first), whatever the entry's type.
                            let size = self.pax_size.take().unwrap_or(size);
                            if size == 0 {
                                State::Header { have: 0, zeros: 0 }
                            } else {
                                State::Data { left: padded(size) }
                            }
                        }
                    };
                }
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for TarGuard<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(out)?;
        self.follow(&out[..n])?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(data: &[u8]) -> io::Result<u64> {
        io::copy(&mut TarGuard::new(data), &mut io::sink())
    }

    fn header(name: &str, ty: u8, size: u64) -> Vec<u8> {
        let mut h = tar::Header::new_gnu();
        h.set_size(size);
        h.set_entry_type(tar::EntryType::new(ty));
        h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        h.as_bytes().to_vec()
    }

    #[test]
    fn passes_ordinary_archives_and_refuses_huge_extensions() {
        let mut b = tar::Builder::new(vec![]);
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        b.append_data(&mut h, format!("{}/f", "d".repeat(300)), &b"abc"[..]).unwrap();
        let ok = b.into_inner().unwrap();
        assert_eq!(drain(&ok).unwrap(), ok.len() as u64);

        let mut bad = header("././@LongLink", b'L', MAX_EXTENSION + 1);
        bad.extend(vec![b'a'; 1024]);
        assert_eq!(
            drain(&bad).unwrap_err().to_string(),
            format!("a tar long name of {} bytes refused (at most {MAX_EXTENSION})", MAX_EXTENSION + 1)
        );
        let mut trailer = ok.clone();
        trailer.extend(vec![0u8; (MAX_TRAILER + 1) as usize]);
        assert_eq!(
            drain(&trailer).unwrap_err().to_string(),
            format!("more than {MAX_TRAILER} bytes after the end of the archive")
        );
    }

    #[test]
    fn refuses_a_size_it_cannot_follow() {
        // Base 256 with a byte set beyond the 8 the tar crate reads: the
        // crate sees 5 bytes, a u64 cannot hold it. Then a huge long name.
        let mut a = header("f", b'0', 0);
        a[124..136].copy_from_slice(&[0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 5]);
        let sum: u32 = a[..148].iter().chain(&[b' '; 8]).chain(&a[156..512]).map(|b| u32::from(*b)).sum();
        a[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        a.extend(vec![b'z'; 512]);
        a.extend(header("././@LongLink", b'L', 1 << 30));
        assert_eq!(drain(&a).unwrap_err().to_string(), "a tar header whose size field is not a number torcx can read");
    }

    #[test]
    fn refuses_floods_of_extension_headers_and_a_pax_size_given_to_one() {
        let mut a = vec![];
        for _ in 0..MAX_EXTENSION_RUN {
            a.extend(header("g", b'g', 0));
        }
        a.extend(header("f", b'0', 0));
        a.extend(header("g", b'g', 0));
        assert!(drain(&a).is_ok(), "an entry starts the count again");
        a.extend((0..MAX_EXTENSION_RUN).flat_map(|_| header("g", b'g', 0)));
        assert_eq!(drain(&a).unwrap_err().to_string(), "more than 8 tar extension headers in a row refused");

        let rec = b"22 size=1099511627776\n";
        let mut b = header("PaxHeader", b'x', rec.len() as u64);
        b.extend(rec);
        b.resize(b.len().div_ceil(512) * 512, 0);
        b.extend(header("g", b'g', 0));
        assert_eq!(
            drain(&b).unwrap_err().to_string(),
            "a PAX header with a size followed by another extension header refused"
        );
    }

    #[test]
    fn follows_pax_sizes() {
        // A PAX header says the next entry has 700 bytes, its header says 0.
        let rec = b"12 size=700\n";
        let mut a = header("PaxHeader", b'x', rec.len() as u64);
        a.extend(rec);
        a.resize(a.len().div_ceil(512) * 512, 0);
        a.extend(header("f", b'0', 0));
        a.extend(vec![b'z'; 1024]);
        // After the 700 bytes (and padding) comes a huge long name.
        a.extend(header("././@LongLink", b'L', 1 << 30));
        assert!(drain(&a).unwrap_err().to_string().starts_with("a tar long name of 1073741824 bytes"));
    }
}
