//! Crash injection for the tests that kill `torcx attach` at every step:
//! with `TORCX_TEST_CRASH_AT=N`, the Nth step kills the process with SIGKILL,
//! exactly as an operator's `kill -9` or a power cut would.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

static TARGET: OnceLock<Option<u32>> = OnceLock::new();
static COUNT: AtomicU32 = AtomicU32::new(0);

pub fn point(_what: &str) {
    let target = TARGET.get_or_init(|| std::env::var("TORCX_TEST_CRASH_AT").ok().and_then(|v| v.parse().ok()));
    if let Some(t) = target {
        let n = COUNT.fetch_add(1, Ordering::SeqCst) + 1;
        if n == *t {
            let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
        }
    }
}
