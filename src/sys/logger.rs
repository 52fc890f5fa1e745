//! Where messages go. The library logs through the `log` facade, so a
//! program embedding it (a test, a fuzz target) chooses the sink or none;
//! the torcx binary installs this one. The generator's messages go to the
//! kernel log, as systemd.generator(7) asks, because its stderr may go
//! nowhere useful that early; everything else goes to stderr as
//! `IDENT: LEVEL: message`.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::io::Write;
use std::sync::Mutex;

struct Sink {
    ident: &'static str,
    kmsg: Mutex<Option<Kmsg>>,
}

/// `/dev/kmsg` open, and how many lines went through this opening.
struct Kmsg {
    file: std::fs::File,
    lines: usize,
}

/// The kernel keeps a burst of this many lines per opening of /dev/kmsg
/// (then drops lines for five seconds, saying only how many): each error of
/// a long profile is worth its line, so the file is opened again before.
const KMSG_BURST: usize = 10;

/// The longest message in one kernel log record: the kernel refuses a
/// write to /dev/kmsg over 1,024 bytes (976 or 992 on older kernels), prefix and
/// newline included. A longer message goes as several records, the later
/// ones starting with `... `.
const KMSG_PIECE: usize = 900;

/// `s` in pieces of at most `max` bytes, cut between characters.
fn pieces(s: &str, max: usize) -> impl Iterator<Item = &str> {
    let mut rest = s;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut end = rest.len().min(max);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (piece, after) = rest.split_at(end);
        rest = after;
        Some(piece)
    })
    // An empty message is one empty record.
    .chain(s.is_empty().then_some(""))
}

fn open_kmsg() -> Option<Kmsg> {
    let file = std::fs::OpenOptions::new().append(true).open("/dev/kmsg").ok()?;
    Some(Kmsg { file, lines: 0 })
}

impl Log for Sink {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let (prio, tag) = match r.level() {
            Level::Error => (3, "error"),
            Level::Warn => (4, "warning"),
            Level::Info => (6, "info"),
            Level::Debug | Level::Trace => (7, "debug"),
        };
        let ident = self.ident;
        let msg = r.args().to_string();
        let msg = escape_controls(&msg);
        let msg = bounded(&msg);
        let mut kmsg = self.kmsg.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(k) = kmsg.as_mut() {
            let mut sent = true;
            for (i, piece) in pieces(&msg, KMSG_PIECE).enumerate() {
                if k.lines >= KMSG_BURST
                    && let Some(again) = open_kmsg()
                {
                    *k = again;
                }
                k.lines += 1;
                // One write per record: kmsg takes each write as one message.
                let more = if i > 0 { "... " } else { "" };
                let line = format!("<{prio}>{ident}[{}]: {more}{piece}\n", crate::sys::fsutil::pid());
                sent &= k.file.write_all(line.as_bytes()).is_ok();
            }
            if sent {
                return;
            }
        }
        let _ = writeln!(std::io::stderr(), "{ident}: {tag}: {msg}");
    }

    fn flush(&self) {}
}

/// Installs the sink: messages up to `level`, under `ident`, to `/dev/kmsg`
/// when `kmsg` is set and it can be opened, else to stderr. Once per process.
pub fn init(ident: &'static str, kmsg: bool, level: LevelFilter) {
    let file = kmsg.then(open_kmsg).flatten();
    let sink: &'static Sink = Box::leak(Box::new(Sink { ident, kmsg: Mutex::new(file) }));
    if log::set_logger(sink).is_ok() {
        log::set_max_level(level);
    }
}

/// A message as one line with nothing a terminal or the journal would act
/// on: control characters (a newline that would forge a `torcx:` line, an
/// escape sequence) are written as `\xNN`.
/// The longest log line: a message past it is cut, with its length, so no
/// input (a name, a path, a parser's echo) makes a line without end.
pub const MAX_LINE: usize = 4096;

fn bounded(s: &str) -> std::borrow::Cow<'_, str> {
    if s.len() <= MAX_LINE {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut end = MAX_LINE;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &s[..end], s.len()).into()
}

pub fn escape_controls(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    s.chars().map(|c| if c.is_control() { format!("\\x{:02x}", c as u32) } else { c.to_string() }).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn lines_are_bounded() {
        let long = "é".repeat(3000);
        let b = super::bounded(&long);
        assert!(b.len() < super::MAX_LINE + 32 && b.ends_with("... (6000 bytes)"), "{}", b.len());
        assert_eq!(super::bounded("short"), "short");
    }

    #[test]
    fn long_messages_go_to_the_kernel_log_in_pieces() {
        let msg = format!("{}é{}", "a".repeat(899), "b".repeat(1000));
        let p: Vec<&str> = super::pieces(&msg, super::KMSG_PIECE).collect();
        assert_eq!(p.concat(), msg);
        // The é would straddle the first cut: it starts the second piece.
        assert_eq!(p.iter().map(|p| p.len()).collect::<Vec<_>>(), [899, 900, 102]);
        assert_eq!(super::pieces("", 900).collect::<Vec<_>>(), [""]);
        assert_eq!(super::pieces("x", 900).collect::<Vec<_>>(), ["x"]);
        // The longest record, prefix and a 900-byte piece, fits every kernel.
        assert!("<3>torcx-generator[4194304]: ... \n".len() + super::KMSG_PIECE < 976);
    }

    #[test]
    fn controls_are_escaped() {
        assert_eq!(super::escape_controls("plain"), "plain");
        assert_eq!(super::escape_controls("a\ntorcx: error: forged\x1b[2J"), "a\\x0atorcx: error: forged\\x1b[2J");
    }
}
