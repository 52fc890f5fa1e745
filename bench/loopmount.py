#!/usr/bin/env python3
"""Reference for the squashfs rows of bench/run.py: set up a loop device with
one LOOP_CONFIGURE (read-only, autoclear) and mount each image read-only, in
one process, as the kernel allows at best. usage: loopmount.py DEST IMAGE...
(run it in a private mount namespace: the mounts are left for the namespace
to take away). `loopmount.py --dry` starts, imports and exits: its time is
the interpreter's start-up, which bench/run.py subtracts."""
import ctypes, fcntl, os, struct, sys

LOOP_CTL_GET_FREE, LOOP_CONFIGURE = 0x4C82, 0x4C0A
LO_FLAGS_READ_ONLY, LO_FLAGS_AUTOCLEAR = 1, 4
MS_RDONLY, MS_NOSUID, MS_NODEV = 1, 2, 4
libc = ctypes.CDLL(None, use_errno=True)

def configure(ctl, image):
    fd = os.open(image, os.O_RDONLY | os.O_CLOEXEC)
    while True:
        n = fcntl.ioctl(ctl, LOOP_CTL_GET_FREE)
        dev = f"/dev/loop{n}"
        if not os.path.exists(dev):
            os.mknod(dev, 0o660 | 0o060000, os.makedev(7, n))
        lfd = os.open(dev, os.O_RDONLY | os.O_CLOEXEC)
        # struct loop_config { u32 fd, block_size; struct loop_info64 info; u64 reserved[8]; }
        info = struct.pack("=QQQQQIIII64s64s32sQQ", 0, 0, 0, 0, 0, 0, 0, 0,
                           LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR, image.encode()[:63], b"", b"", 0, 0)
        cfg = struct.pack("=II", fd, 0) + info + b"\0" * 64
        try:
            fcntl.ioctl(lfd, LOOP_CONFIGURE, cfg)
        except OSError as e:
            os.close(lfd)
            if e.errno == 16:  # EBUSY: taken meanwhile
                continue
            raise
        os.close(fd)
        return dev, lfd

def main():
    if sys.argv[1:] == ["--dry"]:
        return
    dest, images = sys.argv[1], sys.argv[2:]
    ctl = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
    for i, img in enumerate(images):
        dev, lfd = configure(ctl, img)
        d = os.path.join(dest, str(i))
        os.makedirs(d, exist_ok=True)
        if libc.mount(dev.encode(), d.encode(), b"squashfs", MS_RDONLY | MS_NOSUID | MS_NODEV, None) != 0:
            sys.exit(f"mount {img}: {os.strerror(ctypes.get_errno())}")
        os.close(lfd)

main()
