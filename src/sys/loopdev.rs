//! Loop devices for squashfs and erofs images, without bindgen: the kernel
//! structures come from linux-raw-sys, the calls from rustix. One
//! `LOOP_CONFIGURE` sets the file, read-only and autoclear at once (Linux ≥
//! 5.8, about half a millisecond); older kernels get `LOOP_SET_FD` +
//! `LOOP_SET_STATUS64`. Autoclear means the device frees itself when the
//! image is unmounted, so detach has nothing else to undo.

use anyhow::{Context, Result, bail};
use linux_raw_sys::loop_device as ld;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::ioctl::{Ioctl, IoctlOutput, Opcode};
use std::ffi::c_void;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

/// An ioctl that takes a pointer (or nothing) and returns the syscall's value.
struct Raw<T> {
    op: u32,
    arg: Option<T>,
}

unsafe impl<T> Ioctl for Raw<T> {
    type Output = i32;
    const IS_MUTATING: bool = true;
    fn opcode(&self) -> Opcode {
        self.op as Opcode
    }
    fn as_ptr(&mut self) -> *mut c_void {
        match &mut self.arg {
            Some(a) => a as *mut T as *mut c_void,
            None => std::ptr::null_mut(),
        }
    }
    unsafe fn output_from_ptr(out: IoctlOutput, _: *mut c_void) -> rustix::io::Result<i32> {
        Ok(out)
    }
}

/// An integer argument passed by value (LOOP_SET_FD).
struct ByValue {
    op: u32,
    value: usize,
}

unsafe impl Ioctl for ByValue {
    type Output = i32;
    const IS_MUTATING: bool = false;
    fn opcode(&self) -> Opcode {
        self.op as Opcode
    }
    fn as_ptr(&mut self) -> *mut c_void {
        self.value as *mut c_void
    }
    unsafe fn output_from_ptr(out: IoctlOutput, _: *mut c_void) -> rustix::io::Result<i32> {
        Ok(out)
    }
}

fn info(file: &Path) -> ld::loop_info64 {
    // SAFETY: loop_info64 is plain data; all zeroes is its empty value.
    let mut i: ld::loop_info64 = unsafe { std::mem::zeroed() };
    i.lo_flags = ld::LO_FLAGS_READ_ONLY as u32 | ld::LO_FLAGS_AUTOCLEAR as u32;
    let name = file.as_os_str().as_encoded_bytes();
    let n = name.len().min(i.lo_file_name.len() - 1);
    i.lo_file_name[..n].copy_from_slice(&name[..n]);
    i
}

/// Opens a device node, making it first when a container's /dev lacks it.
fn open_or_make(
    path: impl AsRef<Path>,
    kind: rustix::fs::FileType,
    (major, minor): (u32, u32),
    flags: OFlags,
) -> Result<OwnedFd> {
    let path = path.as_ref();
    match rustix::fs::open(path, flags | OFlags::CLOEXEC, Mode::empty()) {
        Ok(d) => Ok(d),
        Err(Errno::NOENT) => {
            rustix::fs::mknodat(
                rustix::fs::CWD,
                path,
                kind,
                Mode::from_raw_mode(0o660),
                rustix::fs::makedev(major, minor),
            )
            .with_context(|| format!("creating {}", path.display()))?;
            rustix::fs::open(path, flags | OFlags::CLOEXEC, Mode::empty())
                .with_context(|| format!("opening {}", path.display()))
        }
        Err(e) => Err(e).with_context(|| format!("opening {}", path.display())),
    }
}

/// `/dev/loop-control`, opened once per process: every image asks it.
fn control() -> Result<&'static OwnedFd> {
    static CTL: std::sync::OnceLock<OwnedFd> = std::sync::OnceLock::new();
    if let Some(c) = CTL.get() {
        return Ok(c);
    }
    let c = open_or_make("/dev/loop-control", rustix::fs::FileType::CharacterDevice, (10, 237), OFlags::RDWR)?;
    // Two threads opening it at once keep one; the other's closes here.
    Ok(CTL.get_or_init(|| c))
}

/// A loop device set up read-only over the open file `backing` (the very
/// file that was checked: no second open by name), shown as `label` by
/// `losetup`. Keep the returned fd open until the device is mounted:
/// autoclear then frees it on unmount.
pub fn attach(backing: BorrowedFd<'_>, label: &Path) -> Result<(PathBuf, OwnedFd)> {
    let ctl = control()?;
    // One setup at a time in this process: threads that ask GET_FREE
    // together are all given the same device, and all but one then wait
    // on it (its open blocks while another configures it) only to get
    // EBUSY. Setting up takes a tenth of a millisecond; mounts stay parallel.
    static SETUP: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = SETUP.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..64 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number.
        let n = unsafe { rustix::ioctl::ioctl(ctl, Raw::<()> { op: ld::LOOP_CTL_GET_FREE, arg: None }) }
            .context("LOOP_CTL_GET_FREE")?;
        let path = PathBuf::from(format!("/dev/loop{n}"));
        let dev = open_or_make(&path, rustix::fs::FileType::BlockDevice, (7, n as u32), OFlags::RDONLY)?;
        // SAFETY: loop_config is plain data; zeroes are its defaults.
        let mut cfg: ld::loop_config = unsafe { std::mem::zeroed() };
        cfg.fd = backing.as_raw_fd() as u32;
        cfg.info = info(label);
        // SAFETY: LOOP_CONFIGURE reads one loop_config.
        match unsafe { rustix::ioctl::ioctl(&dev, Raw { op: ld::LOOP_CONFIGURE, arg: Some(cfg) }) } {
            Ok(_) => return Ok((path, dev)),
            // Another process took this device between GET_FREE and here.
            Err(Errno::BUSY) => continue,
            // Before Linux 5.8: the two-call setup.
            Err(Errno::NOTTY | Errno::INVAL) => {
                // SAFETY: LOOP_SET_FD takes the backing fd by value.
                match unsafe {
                    rustix::ioctl::ioctl(&dev, ByValue { op: ld::LOOP_SET_FD, value: backing.as_raw_fd() as usize })
                } {
                    Ok(_) => {}
                    Err(Errno::BUSY) => continue,
                    Err(e) => return Err(e).context("LOOP_SET_FD"),
                }
                // SAFETY: LOOP_SET_STATUS64 reads one loop_info64.
                if let Err(e) =
                    unsafe { rustix::ioctl::ioctl(&dev, Raw { op: ld::LOOP_SET_STATUS64, arg: Some(info(label)) }) }
                {
                    // SAFETY: LOOP_CLR_FD takes no argument.
                    let _ = unsafe { rustix::ioctl::ioctl(&dev, Raw::<()> { op: ld::LOOP_CLR_FD, arg: None }) };
                    return Err(e).context("LOOP_SET_STATUS64");
                }
                return Ok((path, dev));
            }
            Err(e) => return Err(e).with_context(|| format!("LOOP_CONFIGURE on {}", path.display())),
        }
    }
    bail!("no free loop device after 64 tries")
}
