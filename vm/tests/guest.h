/* SPDX-License-Identifier: GPL-2.0 */
/* Helpers shared by the guest tests (each test is one static binary). */
#ifndef ZCSPLICE_GUEST_H
#define ZCSPLICE_GUEST_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE		/* splice(), loff_t */
#endif

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

/* Where run-tests.sh puts the tests: a child memory cgroup. */
#define MEMCG_PARENT "/sys/fs/cgroup/zcsplice"

/* A /proc/vmstat counter, or -1 when the kernel has none by that name. */
static inline long vmstat(const char *name)
{
	char key[64];
	long val;
	FILE *f = fopen("/proc/vmstat", "r");

	if (!f)
		return -1;
	while (fscanf(f, "%63s %ld", key, &val) == 2) {
		if (!strcmp(key, name)) {
			fclose(f);
			return val;
		}
	}
	fclose(f);
	return -1;
}

/* Writes a string to a file in /proc or /sys; 0 on success. */
static inline int write_file(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = write(fd, val, strlen(val));
	close(fd);
	return n == (ssize_t)strlen(val) ? 0 : -1;
}

/* Reads the first number of a file in /proc or /sys, or -1. */
static inline long read_number(const char *path)
{
	FILE *f = fopen(path, "r");
	long v = -1;

	if (!f)
		return -1;
	if (fscanf(f, "%ld", &v) != 1)
		v = -1;
	fclose(f);
	return v;
}

/* The switch the series adds; -1 on a kernel without it. */
static inline int set_splice_move(int on)
{
	return write_file("/proc/sys/vm/splice_move", on ? "1" : "0");
}

/* Syncs and drops clean page cache: a moved page not dirtied is lost. */
static inline int drop_caches(void)
{
	sync();
	return write_file("/proc/sys/vm/drop_caches", "3");
}

/*
 * Moves this process into MEMCG_PARENT/name, created with memory.max and
 * memory.swap.max (NULL: no limit). Returns 0, or -1 with errno set.
 */
static inline int memcg_enter(const char *name, const char *max,
			      const char *swap_max)
{
	char path[256], pid[32];

	snprintf(path, sizeof(path), MEMCG_PARENT "/%s", name);
	if (mkdir(path, 0755) && errno != EEXIST)
		return -1;
	snprintf(path, sizeof(path), MEMCG_PARENT "/%s/memory.max", name);
	if (max && write_file(path, max))
		return -1;
	snprintf(path, sizeof(path), MEMCG_PARENT "/%s/memory.swap.max", name);
	if (swap_max && write_file(path, swap_max))
		return -1;
	snprintf(path, sizeof(path), MEMCG_PARENT "/%s/cgroup.procs", name);
	snprintf(pid, sizeof(pid), "%d", getpid());
	return write_file(path, pid);
}

/* A reproducible pseudo-random number (xorshift64*); *state must not be 0. */
static inline uint32_t xrand(uint64_t *state)
{
	uint64_t x = *state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return (uint32_t)((x * 0x2545f4914f6cdd1dULL) >> 32);
}

/*
 * Splices exactly len bytes from the pipe read end pfd to fd (at *off, or
 * at the file position when off is NULL). Returns 0, or -1 with errno set
 * (ENODATA when the pipe ran dry).
 */
#ifdef SPLICE_F_MOVE	/* not when <fcntl.h> came before _GNU_SOURCE */
static inline int splice_full(int pfd, int fd, loff_t *off, size_t len)
{
	while (len) {
		ssize_t n = splice(pfd, NULL, fd, off, len, 0);

		if (n == 0)
			errno = ENODATA;
		if (n <= 0)
			return -1;
		len -= n;
	}
	return 0;
}
#endif

/*
 * An ext4 filesystem on a loop device whose image lives in a tmpfs of its
 * own: /tmp/zcsplice-<name>-ext4img holds the image, /tmp/zcsplice-<name>-ext4
 * is the mount point. mkfs.ext4 comes from the host root the guest runs on.
 */
struct ext4_loop {
	char imgdir[128];
	char img[160];
	char dev[32];
	char mnt[128];
	int loopfd;
};

/*
 * Attaches the file img to a free loop device (LOOP_CONFIGURE); writes
 * /dev/loopN into dev. Returns the open loop device, or -1.
 */
static inline int loop_attach(const char *img, char *dev, size_t devlen)
{
	struct loop_config cfg;
	int ctl, nr, fd, ifd;

	ctl = open("/dev/loop-control", O_RDWR);
	if (ctl < 0) {
		mknod("/dev/loop-control", S_IFCHR | 0600, makedev(10, 237));
		ctl = open("/dev/loop-control", O_RDWR);
	}
	if (ctl < 0)
		return -1;
	nr = ioctl(ctl, LOOP_CTL_GET_FREE);
	close(ctl);
	if (nr < 0)
		return -1;
	snprintf(dev, devlen, "/dev/loop%d", nr);
	fd = open(dev, O_RDWR);
	if (fd < 0 && errno == ENOENT) {
		mknod(dev, S_IFBLK | 0600, makedev(7, nr));
		fd = open(dev, O_RDWR);
	}
	if (fd < 0)
		return -1;
	ifd = open(img, O_RDWR);
	if (ifd < 0) {
		close(fd);
		return -1;
	}
	memset(&cfg, 0, sizeof(cfg));
	cfg.fd = ifd;
	if (ioctl(fd, LOOP_CONFIGURE, &cfg)) {
		close(ifd);
		close(fd);
		return -1;
	}
	close(ifd);
	return fd;
}

/* Unmounts and mounts the ext4 filesystem again: nothing cached survives. */
static inline int ext4_loop_remount(struct ext4_loop *e)
{
	sync();
	if (umount(e->mnt)) {
		printf("umount %s: %s\n", e->mnt, strerror(errno));
		return -1;
	}
	if (mount(e->dev, e->mnt, "ext4", 0, NULL)) {
		printf("mount %s on %s: %s\n", e->dev, e->mnt, strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * Makes a mb MiB ext4 image, attaches and mounts it (see struct ext4_loop).
 * Returns 0; or -1 after printing why (-2: no mkfs.ext4 on this system).
 */
static inline int ext4_loop_setup(struct ext4_loop *e, const char *name,
				  unsigned int mb)
{
	char cmd[512], opt[32];
	int fd;

	memset(e, 0, sizeof(*e));
	e->loopfd = -1;
	snprintf(e->imgdir, sizeof(e->imgdir), "/tmp/zcsplice-%s-ext4img", name);
	snprintf(e->img, sizeof(e->img), "%s/img", e->imgdir);
	snprintf(e->mnt, sizeof(e->mnt), "/tmp/zcsplice-%s-ext4", name);
	if (system("PATH=/usr/sbin:/sbin:/usr/bin:/bin command -v mkfs.ext4 >/dev/null")) {
		printf("no mkfs.ext4 here\n");
		return -2;
	}
	mkdir(e->imgdir, 0755);
	mkdir(e->mnt, 0755);
	snprintf(opt, sizeof(opt), "size=%um", mb + 8);
	if (mount("tmpfs", e->imgdir, "tmpfs", 0, opt)) {
		printf("mount tmpfs on %s: %s\n", e->imgdir, strerror(errno));
		return -1;
	}
	fd = open(e->img, O_CREAT | O_TRUNC | O_RDWR, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)mb << 20)) {
		printf("image %s: %s\n", e->img, strerror(errno));
		return -1;
	}
	close(fd);
	snprintf(cmd, sizeof(cmd),
		 "PATH=/usr/sbin:/sbin:/usr/bin:/bin mkfs.ext4 -q -F -b 4096 "
		 "-E lazy_itable_init=0,lazy_journal_init=0 %s", e->img);
	if (system(cmd)) {
		printf("mkfs.ext4 %s failed\n", e->img);
		return -1;
	}
	e->loopfd = loop_attach(e->img, e->dev, sizeof(e->dev));
	if (e->loopfd < 0) {
		printf("loop device for %s: %s\n", e->img, strerror(errno));
		return -1;
	}
	if (mount(e->dev, e->mnt, "ext4", 0, NULL)) {
		printf("mount %s on %s: %s\n", e->dev, e->mnt, strerror(errno));
		return -1;
	}
	return 0;
}

/* Undoes ext4_loop_setup(), as far as it got. */
static inline void ext4_loop_teardown(struct ext4_loop *e)
{
	if (!e->mnt[0])
		return;
	umount(e->mnt);
	rmdir(e->mnt);
	if (e->loopfd >= 0) {
		ioctl(e->loopfd, LOOP_CLR_FD, 0);
		close(e->loopfd);
		e->loopfd = -1;
	}
	umount(e->imgdir);
	rmdir(e->imgdir);
}

#endif
