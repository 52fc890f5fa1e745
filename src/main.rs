//! The `torcx` binary: one program under two names, `torcx` for people and
//! scripts and `torcx-generator` for systemd. Everything is in the library.

fn main() {
    // The squashfs/erofs index reader, run by torcx itself in a child with
    // limits of its own (see `tree::isolated`).
    if let Some(code) = torcx::tree::isolated::child_main() {
        std::process::exit(code);
    }
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let called = std::path::Path::new(&argv0).file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let code = if called == "torcx-generator" { torcx::boot::generator::main() } else { torcx::cli::main() };
    std::process::exit(code);
}
