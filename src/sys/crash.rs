//! Fault injection for the tests that interrupt `torcx attach` and `reattach`
//! at every step. Steps are counted from 1. With `TORCX_TEST_CRASH_AT=N` the
//! Nth step kills the process with SIGKILL, as an operator's `kill -9` or a
//! power cut would; with `TORCX_TEST_FAIL_AT=N` it returns an error, as a
//! full disk would.
//!
//! Only a build with the `fault-injection` feature (which the tests turn on)
//! reads those variables; in any other build, the shipped one included, a
//! step is an empty function and the variables mean nothing.

use anyhow::Result;

#[cfg(feature = "fault-injection")]
pub fn point(what: &str) -> Result<()> {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU32, Ordering};
    static TARGET: OnceLock<(Option<u32>, Option<u32>)> = OnceLock::new();
    static COUNT: AtomicU32 = AtomicU32::new(0);
    let (crash, fail) = TARGET.get_or_init(|| {
        let n = |v: &str| std::env::var(v).ok().and_then(|v| v.parse().ok());
        (n("TORCX_TEST_CRASH_AT"), n("TORCX_TEST_FAIL_AT"))
    });
    if crash.is_none() && fail.is_none() {
        return Ok(());
    }
    let n = COUNT.fetch_add(1, Ordering::SeqCst) + 1;
    if *crash == Some(n) {
        let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    }
    if *fail == Some(n) {
        anyhow::bail!("injected failure at step {n} ({what})");
    }
    Ok(())
}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn point(_what: &str) -> Result<()> {
    Ok(())
}

/// With `TORCX_TEST_MEET=WHAT:N`, the first N threads to reach the step
/// `what` wait there until all N have (10 s at most): the tests make two
/// images' unpacks overlap at a chosen step, whatever the machine's timing.
#[cfg(feature = "fault-injection")]
pub fn meet(what: &str) {
    use std::sync::{Condvar, Mutex, OnceLock};
    static WANT: OnceLock<Option<(String, u32)>> = OnceLock::new();
    static HERE: (Mutex<u32>, Condvar) = (Mutex::new(0), Condvar::new());
    let want = WANT.get_or_init(|| {
        let v = std::env::var("TORCX_TEST_MEET").ok()?;
        let (w, n) = v.rsplit_once(':')?;
        Some((w.to_string(), n.parse().ok()?))
    });
    let Some((w, n)) = want else { return };
    if w != what {
        return;
    }
    let mut here = HERE.0.lock().unwrap_or_else(|e| e.into_inner());
    if *here >= *n {
        return;
    }
    *here += 1;
    HERE.1.notify_all();
    let _ = HERE.1.wait_timeout_while(here, std::time::Duration::from_secs(10), |h| *h < *n);
}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn meet(_what: &str) {}

/// With `TORCX_TEST_HOLD=WHAT:DIR`, the step `what` creates `DIR/held` and
/// waits (10 s at most) for `DIR/go`: a test changes something at that
/// very point, whatever the machine's timing.
#[cfg(feature = "fault-injection")]
pub fn hold(what: &str) {
    let Some(v) = std::env::var_os("TORCX_TEST_HOLD") else { return };
    let Some((w, dir)) = v.to_str().and_then(|v| v.split_once(':')) else { return };
    if w != what {
        return;
    }
    let dir = std::path::Path::new(dir);
    let _ = std::fs::write(dir.join("held"), what);
    for _ in 0..2000 {
        if dir.join("go").exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn hold(_what: &str) {}

/// With `TORCX_TEST_FD_LOG=FILE`, appends to FILE the number of files this
/// process still has open as it exits (the soak test compares the first
/// cycle with the last: a leak grows it).
#[cfg(feature = "fault-injection")]
pub fn log_open_files() {
    use std::io::Write;
    let Some(path) = std::env::var_os("TORCX_TEST_FD_LOG") else { return };
    let n = std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0);
    if let Ok(mut f) = std::fs::OpenOptions::new().append(true).create(true).open(path) {
        // The directory listing itself held one more.
        let _ = writeln!(f, "{}", n.saturating_sub(1));
    }
}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn log_open_files() {}
