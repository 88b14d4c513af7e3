// SPDX-License-Identifier: GPL-2.0
/*
 * splice-failures: what moving pipe pages must not do when nobody asked
 * for it, or when the write fails. Each case is one finding of the v1
 * review (issue #13); each failed on the v1 series.
 *
 * - unasked: a splice without SPLICE_F_MOVE moves nothing (vm.splice_move
 *   = 1 honours the flag); with the flag, tmpfs moves whole pages.
 * - dsync-eio: an O_DSYNC splice into ext2 on a device-mapper device that
 *   starts failing writes returns EIO after the data reached the page
 *   cache. The pipe keeps its buffers, and they must keep the bytes that
 *   were written into the pipe: the file's page is then overwritten
 *   through the file, and reading the pipe must not show that (a moved
 *   page left in the pipe is the file's page).
 * - memcg-fallback: pipes whose first page a sealed memfd (EPERM) or a
 *   full tmpfs (ENOSPC) refuses: the memory cgroup must still be charged
 *   for the pages the pipes hold (taken for a move and given back
 *   uncharged, they escape it).
 * - unconverted: a filesystem instance that takes no donor (ext4
 *   data=journal, a raw block device) must see no page taken at all:
 *   splice_move and splice_move_fallback stay where they were.
 * - keep-size: on ext4, an append at EOF whose donor cannot be inserted
 *   (fault knob insert-fails) must not throw away a FALLOC_FL_KEEP_SIZE
 *   preallocation past EOF.
 * - slow-insert: on a full tmpfs, a splice into a hole fails with ENOSPC;
 *   a reader of that hole must never wait on a folio that was never the
 *   file's (fault knob slow-insert holds an inserted donor for 500 ms;
 *   a donor inserted before its block is accounted is visible there).
 *
 * The knob cases need CONFIG_SPLICE_MOVE_FAULTS (the series' testing
 * patch) and report a skip without it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "guest.h"
#include "check.h"

#define PAGE 4096
#define KNOB "/sys/kernel/debug/splice_move/fault"
#define DM_NAME "zcsplice-eio"

static int skips;

static void fill(unsigned char *buf, size_t len, int seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (unsigned char)(seed * 31 + i * 7 + (i >> 12) + 1);
}

/* A pipe holding len bytes of pattern seed, written with write(2). */
static int pipe_with(int p[2], size_t len, int seed)
{
	static unsigned char buf[64 * PAGE];

	if (pipe(p))
		return -1;
	fcntl(p[1], F_SETPIPE_SZ, 1 << 20);
	fill(buf, len, seed);
	if (write(p[1], buf, len) != (ssize_t)len) {
		close(p[0]);
		close(p[1]);
		return -1;
	}
	return 0;
}

/* Sets the fault knob; 0, or -1 when the kernel has no such fault. */
static int knob(const char *fault)
{
	if (access(KNOB, F_OK))
		mount("debugfs", "/sys/kernel/debug", "debugfs", 0, NULL);
	return write_file(KNOB, fault);
}

static int sh(const char *cmd)
{
	char full[1024];

	snprintf(full, sizeof(full),
		 "PATH=/usr/sbin:/sbin:/usr/bin:/bin DM_DISABLE_UDEV=1 %s", cmd);
	return system(full);
}

static void unasked(void)
{
	const char *mnt = "/tmp/zcsplice-unasked";
	char path[128];
	long m0, m1, m2;
	loff_t off = 0;
	int p[2], fd;

	mkdir(mnt, 0755);
	if (mount("tmpfs", mnt, "tmpfs", 0, "size=16m")) {
		check(0, "unasked: mount tmpfs: %s", strerror(errno));
		return;
	}
	snprintf(path, sizeof(path), "%s/f", mnt);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	m0 = vmstat("splice_move");
	if (fd < 0 || pipe_with(p, 64 * PAGE, 1)) {
		check(0, "unasked: setup: %s", strerror(errno));
		goto out;
	}
	check(splice(p[0], NULL, fd, &off, 64 * PAGE, 0) == 64 * PAGE,
	      "unasked: splice without SPLICE_F_MOVE wrote 64 pages");
	m1 = vmstat("splice_move");
	check(m1 == m0, "unasked: without SPLICE_F_MOVE, %ld pages moved (want 0)",
	      m1 - m0);
	close(p[0]);
	close(p[1]);
	if (pipe_with(p, 64 * PAGE, 2)) {
		check(0, "unasked: pipe: %s", strerror(errno));
		goto out;
	}
	check(splice(p[0], NULL, fd, &off, 64 * PAGE, SPLICE_F_MOVE) == 64 * PAGE,
	      "unasked: splice with SPLICE_F_MOVE wrote 64 pages");
	m2 = vmstat("splice_move");
	if (moves_required())
		check(m2 - m1 >= 60, "unasked: with SPLICE_F_MOVE, %ld of 64 pages moved",
		      m2 - m1);
	close(p[0]);
	close(p[1]);
out:
	if (fd >= 0)
		close(fd);
	umount(mnt);
	rmdir(mnt);
}

static long long dev_sectors(const char *dev)
{
	unsigned long long bytes = 0;
	int fd = open(dev, O_RDONLY);

	if (fd < 0)
		return -1;
	if (ioctl(fd, BLKGETSIZE64, &bytes))
		bytes = 0;
	close(fd);
	return bytes / 512;
}

/*
 * Switches the dm device to a new table. --nolockfs: a suspend that
 * freezes the filesystem would sync it, and fail once writes do.
 */
static int dm_table(const char *table)
{
	char cmd[320];

	snprintf(cmd, sizeof(cmd),
		 "dmsetup suspend --nolockfs " DM_NAME " && dmsetup reload " DM_NAME
		 " --table '%s' && dmsetup resume " DM_NAME, table);
	return sh(cmd);
}

static void dsync_eio(void)
{
	static unsigned char want[16 * PAGE], got[16 * PAGE], other[16 * PAGE];
	const char *mnt = "/tmp/zcsplice-eio";
	const char *dev = "/dev/mapper/" DM_NAME;
	char linear[128], error[128], cmd[256];
	long long sectors = dev_sectors("/dev/vdb");
	long m0 = vmstat("splice_move");
	int p[2] = { -1, -1 }, fd = -1, wfd = -1;
	loff_t off = 0;
	ssize_t n;

	if (sectors <= 0) {
		printf("skip: dsync-eio: no /dev/vdb\n");
		skips++;
		return;
	}
	snprintf(linear, sizeof(linear), "0 %lld linear /dev/vdb 0", sectors);
	snprintf(error, sizeof(error), "0 %lld error", sectors);
	snprintf(cmd, sizeof(cmd), "dmsetup create " DM_NAME " --table '%s'", linear);
	if (sh(cmd)) {
		printf("skip: dsync-eio: dmsetup create failed\n");
		skips++;
		return;
	}
	snprintf(cmd, sizeof(cmd), "mkfs.ext2 -q -F %s", dev);
	mkdir(mnt, 0755);
	if (sh(cmd) || mount(dev, mnt, "ext2", 0, "errors=continue")) {
		check(0, "dsync-eio: mkfs/mount ext2 on %s", dev);
		goto out_dm;
	}
	fd = open("/tmp/zcsplice-eio/f", O_RDWR | O_CREAT | O_TRUNC | O_DSYNC, 0600);
	wfd = open("/tmp/zcsplice-eio/f", O_RDWR);
	if (fd < 0 || wfd < 0 || pipe_with(p, sizeof(want), 3)) {
		check(0, "dsync-eio: setup: %s", strerror(errno));
		goto out;
	}
	fill(want, sizeof(want), 3);
	/*
	 * Allocate the file's blocks while the device works, then drop its
	 * pages: on the failing device, writes must find their blocks mapped
	 * (allocating would read bitmaps and fail first) and no page cached
	 * (pages are only moved where nothing is cached).
	 */
	memset(other, 0, sizeof(other));
	if (pwrite(wfd, other, sizeof(other), 0) != sizeof(other) || fsync(wfd) ||
	    posix_fadvise(wfd, 0, 0, POSIX_FADV_DONTNEED)) {
		check(0, "dsync-eio: preallocating the file: %s", strerror(errno));
		goto out;
	}
	sync();
	if (dm_table(error)) {
		check(0, "dsync-eio: cannot switch %s to the error target", dev);
		goto out;
	}
	n = splice(p[0], NULL, fd, &off, sizeof(want), SPLICE_F_MOVE);
	check(n < 0 && errno == EIO,
	      "dsync-eio: O_DSYNC splice onto a failing device: %zd (%s), want EIO",
	      n, n < 0 ? strerror(errno) : "no error");
	printf("dsync-eio: %ld pages moved before the sync failed\n",
	       vmstat("splice_move") - m0);

	/* Overwrite the file's pages in the page cache. */
	fill(other, sizeof(other), 4);
	check(pwrite(wfd, other, sizeof(other), 0) == sizeof(other),
	      "dsync-eio: buffered overwrite of the file");
	check(ftruncate(wfd, 100) == 0, "dsync-eio: partial truncate of the file");

	/* The pipe must still hold what was written into it. */
	memset(got, 0, sizeof(got));
	fcntl(p[0], F_SETFL, O_NONBLOCK);
	n = read(p[0], got, sizeof(got));
	if (check(n == sizeof(got), "dsync-eio: the pipe still holds its %zu bytes (read %zd)",
		  sizeof(got), n)) {
		size_t bad = 0;

		while (bad < sizeof(got) && got[bad] == want[bad])
			bad++;
		check(bad == sizeof(got),
		      "dsync-eio: the pipe's data is what was written into it%s",
		      bad == sizeof(got) ? "" : " (it changed with the file)");
		if (bad < sizeof(got))
			printf("  first difference at byte %zu: 0x%02x, want 0x%02x\n",
			       bad, got[bad], want[bad]);
	}
out:
	if (p[0] >= 0) {
		close(p[0]);
		close(p[1]);
	}
	if (fd >= 0)
		close(fd);
	if (wfd >= 0)
		close(wfd);
	dm_table(linear);
	if (umount(mnt))
		printf("umount %s: %s\n", mnt, strerror(errno));
	rmdir(mnt);
out_dm:
	sh("dmsetup remove " DM_NAME);
}

#define FALLBACK_PIPES 768

/*
 * Fills FALLBACK_PIPES pipes with a page each and splices each into fd,
 * which refuses it. Sets *drop to how much the memcg's charge dropped, in
 * pages (negative when it rose). Returns 0, or -1 when the pipes could not
 * be made.
 */
static int refused_splices(int fd, const char *what, unsigned int flags,
			   long *drop)
{
	static int rd[FALLBACK_PIPES];
	long before, after, taken;
	int refused = 0;

	for (int k = 0; k < FALLBACK_PIPES; k++) {
		int p[2];

		if (pipe_with(p, PAGE, k)) {
			check(0, "memcg-fallback: pipe %d: %s", k, strerror(errno));
			for (int j = 0; j < k; j++)
				close(rd[j]);
			return -1;
		}
		close(p[1]);
		rd[k] = p[0];
	}
	before = memcg_current("fallback");
	taken = vmstat("splice_move_fallback");
	for (int k = 0; k < FALLBACK_PIPES; k++) {
		/* Past what the full tmpfs holds: each splice needs a block. */
		loff_t off = (loff_t)(k + 64) * PAGE;

		if (splice(rd[k], NULL, fd, &off, PAGE, flags) < 0)
			refused++;
	}
	after = memcg_current("fallback");
	taken = vmstat("splice_move_fallback") - taken;
	for (int k = 0; k < FALLBACK_PIPES; k++)
		close(rd[k]);
	printf("memcg-fallback: %s%s: %ld pages taken for a move and given back\n",
	       what, flags ? " (SPLICE_F_MOVE)" : "", taken);
	check(refused == FALLBACK_PIPES, "memcg-fallback: %s refused %d of %d splices%s",
	      what, refused, FALLBACK_PIPES, flags ? " (SPLICE_F_MOVE)" : "");
	*drop = (before - after) / PAGE;
	return 0;
}

/*
 * Mounts a tmpfs of 16 pages on mnt and fills it through mnt/f, which it
 * returns open; -1 after saying why (the caller unmounts).
 */
static int full_tmpfs(const char *what, const char *mnt)
{
	static unsigned char page[PAGE];
	char path[128];
	int fd;

	mkdir(mnt, 0755);
	if (mount("tmpfs", mnt, "tmpfs", 0, "size=64k")) {
		check(0, "%s: mount tmpfs: %s", what, strerror(errno));
		return -1;
	}
	snprintf(path, sizeof(path), "%s/f", mnt);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	for (int k = 0; fd >= 0 && k < 16; k++)
		if (write(fd, page, PAGE) != PAGE)
			break;
	if (fd < 0 || write(fd, page, PAGE) >= 0) {
		check(0, "%s: cannot fill a 64k tmpfs", what);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

static void memcg_fallback(void)
{
	const char *mnt = "/tmp/zcsplice-full";
	int fds[2] = { -1, -1 };
	const char *names[2] = { "a sealed memfd", "a full tmpfs" };

	if (memcg_enter("fallback", NULL, NULL)) {
		printf("skip: memcg-fallback: no child memory cgroup: %s\n",
		       strerror(errno));
		skips++;
		return;
	}
	fds[0] = memfd_create("sealed", MFD_ALLOW_SEALING);
	if (fds[0] < 0 || ftruncate(fds[0], (FALLBACK_PIPES + 64) * PAGE) ||
	    fcntl(fds[0], F_ADD_SEALS, F_SEAL_WRITE)) {
		check(0, "memcg-fallback: sealed memfd: %s", strerror(errno));
		goto out;
	}
	fds[1] = full_tmpfs("memcg-fallback", mnt);
	if (fds[1] < 0)
		goto out;
	for (int f = 0; f < 2; f++) {
		long copy, move;

		if (refused_splices(fds[f], names[f], 0, &copy) ||
		    refused_splices(fds[f], names[f], SPLICE_F_MOVE, &move))
			continue;
		/*
		 * The pipes still hold every page, so the charge must not drop
		 * (per-cpu charge caching blurs memory.current by up to 64
		 * pages per cpu).
		 */
		check(move < FALLBACK_PIPES / 3,
		      "memcg-fallback: %s: the charge dropped by %ld pages when asked to move (%ld when not); the pipes hold %d",
		      names[f], move, copy, FALLBACK_PIPES);
	}
out:
	for (int f = 0; f < 2; f++)
		if (fds[f] >= 0)
			close(fds[f]);
	umount(mnt);
	rmdir(mnt);
	memcg_enter("tests", NULL, NULL);
}

/* Splices 16 pages into fd with SPLICE_F_MOVE: nothing may be taken. */
static void no_steal(int fd, const char *what)
{
	long m0 = vmstat("splice_move"), f0 = vmstat("splice_move_fallback");
	loff_t off = 0;
	int p[2];

	if (pipe_with(p, 16 * PAGE, 5)) {
		check(0, "unconverted: pipe: %s", strerror(errno));
		return;
	}
	check(splice_full(p[0], fd, &off, 16 * PAGE) == 0 || errno == ENOSYS,
	      "unconverted: %s: splice 16 pages", what);
	close(p[0]);
	close(p[1]);
	check(vmstat("splice_move") == m0 && vmstat("splice_move_fallback") == f0,
	      "unconverted: %s: %ld pages moved, %ld taken and copied (want 0, 0)",
	      what, vmstat("splice_move") - m0, vmstat("splice_move_fallback") - f0);
}

static void unconverted(void)
{
	struct blockfs b;
	char path[160];
	int fd;

	switch (blockfs_setup(&b, "journal", "ext4", "", "data=journal")) {
	case -2:
		printf("skip: unconverted: no ext4 disk\n");
		skips++;
		return;
	case -1:
		check(0, "unconverted: ext4 data=journal setup");
		return;
	}
	snprintf(path, sizeof(path), "%s/f", b.mnt);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (check(fd >= 0, "unconverted: open %s", path)) {
		no_steal(fd, "ext4 data=journal");
		close(fd);
	}
	blockfs_teardown(&b);

	/* A raw block device: ->write_begin() is block_write_begin(). */
	fd = open("/dev/vdb", O_RDWR);
	if (check(fd >= 0, "unconverted: open /dev/vdb")) {
		no_steal(fd, "the block device /dev/vdb");
		fsync(fd);
		close(fd);
	}
}

static void keep_size(void)
{
	struct blockfs b;
	static unsigned char page[4 * PAGE];
	struct stat st0, st1;
	char path[160];
	loff_t off = 4 * PAGE;
	int p[2], fd;

	if (knob("none")) {
		printf("skip: keep-size: no fault knob (CONFIG_SPLICE_MOVE_FAULTS)\n");
		skips++;
		return;
	}
	if (blockfs_setup(&b, "keepsize", "ext4", "", "")) {
		check(0, "keep-size: ext4 setup");
		return;
	}
	snprintf(path, sizeof(path), "%s/f", b.mnt);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, page, sizeof(page)) != sizeof(page) || fsync(fd) ||
	    fallocate(fd, FALLOC_FL_KEEP_SIZE, 4 * PAGE, 1 << 20) || fstat(fd, &st0)) {
		check(0, "keep-size: setup: %s", strerror(errno));
		goto out;
	}
	if (pipe_with(p, PAGE, 6)) {
		check(0, "keep-size: pipe: %s", strerror(errno));
		goto out;
	}
	if (knob("insert-fails")) {
		printf("skip: keep-size: this kernel has no insert-fails fault\n");
		skips++;
		close(p[0]);
		close(p[1]);
		goto out;
	}
	check(splice(p[0], NULL, fd, &off, PAGE, SPLICE_F_MOVE) == PAGE,
	      "keep-size: append one page at EOF");
	knob("none");
	close(p[0]);
	close(p[1]);
	fstat(fd, &st1);
	check(st1.st_blocks >= st0.st_blocks,
	      "keep-size: %lld blocks allocated before the append, %lld after (a KEEP_SIZE preallocation of 1 MiB)",
	      (long long)st0.st_blocks, (long long)st1.st_blocks);
out:
	knob("none");
	if (fd >= 0)
		close(fd);
	blockfs_teardown(&b);
}

static void slow_insert(void)
{
	const char *mnt = "/tmp/zcsplice-slow";
	static unsigned char page[PAGE];
	double *slowest;
	int fd = -1, refused = 0;
	pid_t reader;

	if (knob("none")) {
		printf("skip: slow-insert: no fault knob (CONFIG_SPLICE_MOVE_FAULTS)\n");
		skips++;
		return;
	}
	slowest = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (slowest == MAP_FAILED) {
		check(0, "slow-insert: mmap: %s", strerror(errno));
		return;
	}
	fd = full_tmpfs("slow-insert", mnt);
	if (fd < 0)
		goto out;
	/* A hole at index 64, inside i_size. */
	if (ftruncate(fd, 128 * PAGE)) {
		check(0, "slow-insert: ftruncate: %s", strerror(errno));
		goto out;
	}
	if (knob("slow-insert")) {
		printf("skip: slow-insert: this kernel has no slow-insert fault\n");
		skips++;
		goto out;
	}
	*slowest = 0;
	reader = fork();
	if (reader == 0) {
		double end = now() + 4;

		while (now() < end) {
			double t0 = now(), t;

			if (pread(fd, page, PAGE, 64 * PAGE) != PAGE)
				_exit(2);
			t = now() - t0;
			if (t > *slowest)
				*slowest = t;
		}
		_exit(0);
	}
	for (int k = 0; k < 5; k++) {
		loff_t off = 64 * PAGE;
		int p[2];

		if (pipe_with(p, PAGE, 7))
			break;
		if (splice(p[0], NULL, fd, &off, PAGE, SPLICE_F_MOVE) < 0 && errno == ENOSPC)
			refused++;
		close(p[0]);
		close(p[1]);
	}
	waitpid(reader, NULL, 0);
	knob("none");
	check(refused == 5, "slow-insert: %d of 5 splices into the full tmpfs got ENOSPC",
	      refused);
	check(*slowest < 0.25,
	      "slow-insert: the slowest read of the hole took %.3f s (a reader waiting on a donor that is then removed: more than 0.25 s)",
	      *slowest);
out:
	knob("none");
	if (fd >= 0)
		close(fd);
	umount(mnt);
	rmdir(mnt);
}

int main(void)
{
	if (vmstat("splice_move") < 0) {
		printf("no splice_move counter: not a kernel with the series\n");
		return 77;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	unasked();
	dsync_eio();
	memcg_fallback();
	unconverted();
	keep_size();
	slow_insert();
	printf("%s: %d checks, %d failures, %d skipped\n",
	       failures ? "FAIL" : "PASS", checks, failures, skips);
	return failures != 0;
}
