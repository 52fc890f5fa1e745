/* Reference for the squashfs rows of bench/run.py: what the kernel allows
 * at best for attaching read-only images, with no runtime to start. For
 * each image: one LOOP_CTL_GET_FREE, one LOOP_CONFIGURE (read-only,
 * autoclear, straight from the image's fd) and one mount (read-only,
 * nosuid, nodev) on DEST/N, which the setup made.
 *
 * usage: loopmount [-j THREADS] DEST IMAGE...
 *
 * One thread by default (the reference); with -j, that many threads take
 * the images in turn (how far the kernel lets mounts overlap: they mostly
 * wait on the loop devices' reads). Run it in a private mount namespace:
 * the mounts are left for the namespace to take away, and autoclear frees
 * the loop devices then.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

static const char *dest;
static char **images;
static int count;
static int ctl;
static atomic_int next_image;
/* Threads that ask GET_FREE together get the same device: one at a time. */
static pthread_mutex_t setup = PTHREAD_MUTEX_INITIALIZER;

static void die(const char *what, const char *path) {
	fprintf(stderr, "loopmount: %s %s: %s\n", what, path, strerror(errno));
	exit(1);
}

/* Sets up a loop device over IMAGE; returns its fd, its name in DEV. */
static int configure(const char *image, char *dev, size_t len) {
	int fd = open(image, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die("open", image);
	pthread_mutex_lock(&setup);
	for (;;) {
		int n = ioctl(ctl, LOOP_CTL_GET_FREE);
		if (n < 0)
			die("LOOP_CTL_GET_FREE", image);
		snprintf(dev, len, "/dev/loop%d", n);
		int lfd = open(dev, O_RDONLY | O_CLOEXEC);
		if (lfd < 0 && errno == ENOENT) {
			/* a /dev without devtmpfs' node for it: make one */
			if (mknod(dev, S_IFBLK | 0660, makedev(7, n)) < 0 && errno != EEXIST)
				die("mknod", dev);
			lfd = open(dev, O_RDONLY | O_CLOEXEC);
		}
		if (lfd < 0)
			die("open", dev);
		struct loop_config cfg;
		memset(&cfg, 0, sizeof cfg);
		cfg.fd = fd;
		cfg.info.lo_flags = LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR;
		strncpy((char *)cfg.info.lo_file_name, image, LO_NAME_SIZE - 1);
		if (ioctl(lfd, LOOP_CONFIGURE, &cfg) == 0) {
			pthread_mutex_unlock(&setup);
			close(fd);
			return lfd;
		}
		if (errno != EBUSY) /* EBUSY: another process took it meanwhile */
			die("LOOP_CONFIGURE", image);
		close(lfd);
	}
}

static void *work(void *unused) {
	(void)unused;
	for (int i; (i = atomic_fetch_add(&next_image, 1)) < count;) {
		char dev[32], target[4096];
		int lfd = configure(images[i], dev, sizeof dev);
		snprintf(target, sizeof target, "%s/%d", dest, i);
		if (mount(dev, target, "squashfs", MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0)
			die("mount", images[i]);
		close(lfd);
	}
	return NULL;
}

int main(int argc, char **argv) {
	int threads = 1;
	if (argc > 2 && strcmp(argv[1], "-j") == 0) {
		threads = atoi(argv[2]);
		argv += 2;
		argc -= 2;
	}
	if (argc < 2 || threads < 1 || threads > 64) {
		fprintf(stderr, "usage: loopmount [-j THREADS] DEST IMAGE...\n");
		return 2;
	}
	dest = argv[1];
	images = argv + 2;
	count = argc - 2;
	ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0)
		die("open", "/dev/loop-control");
	if (threads == 1) {
		work(NULL);
		return 0;
	}
	pthread_t t[64];
	for (int k = 0; k < threads; k++)
		if (pthread_create(&t[k], NULL, work, NULL) != 0)
			die("pthread_create", "");
	for (int k = 0; k < threads; k++)
		pthread_join(t[k], NULL);
	return 0;
}
