//! Messages for people. The generator's go to the kernel log, as
//! systemd.generator(7) asks, because its stderr may go nowhere useful that
//! early; everything else goes to stderr. Thirty lines do this, so no logging
//! framework is pulled in.

use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error = 3,
    Warn = 4,
    Info = 6,
    Debug = 7,
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Warn as u8);
static KMSG: Mutex<Option<std::fs::File>> = Mutex::new(None);
static IDENT: Mutex<&'static str> = Mutex::new("torcx");

pub fn set_level(l: Level) {
    LEVEL.store(l as u8, Ordering::Relaxed);
}

/// Sends messages to `/dev/kmsg` under `ident`; stays on stderr if it cannot be opened.
pub fn to_kmsg(ident: &'static str) {
    *IDENT.lock().unwrap() = ident;
    if let Ok(f) = std::fs::OpenOptions::new().write(true).open("/dev/kmsg") {
        *KMSG.lock().unwrap() = Some(f);
    }
}

pub fn log(l: Level, msg: &str) {
    if l as u8 > LEVEL.load(Ordering::Relaxed) {
        return;
    }
    let ident = *IDENT.lock().unwrap();
    if let Some(k) = KMSG.lock().unwrap().as_mut() {
        // One write per record: kmsg takes each write as one message.
        let line = format!("<{}>{ident}[{}]: {msg}\n", l as u8, std::process::id());
        if k.write_all(line.as_bytes()).is_ok() {
            return;
        }
    }
    let tag = match l {
        Level::Error => "error",
        Level::Warn => "warning",
        Level::Info => "info",
        Level::Debug => "debug",
    };
    let _ = writeln!(std::io::stderr(), "{ident}: {tag}: {msg}");
}

pub fn error(msg: &str) {
    log(Level::Error, msg)
}
pub fn warn(msg: &str) {
    log(Level::Warn, msg)
}
pub fn info(msg: &str) {
    log(Level::Info, msg)
}
pub fn debug(msg: &str) {
    log(Level::Debug, msg)
}
