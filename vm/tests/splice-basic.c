// SPDX-License-Identifier: GPL-2.0
/*
 * splice-basic: a forked writer write(2)s 8 MiB of a known pattern into a
 * pipe while this process splices from the pipe into a file, on ramfs,
 * tmpfs, and on the scratch disks zcsplice attaches: ext2, and ext4 with
 * delayed allocation (the default), nodelalloc, 1 KiB blocks (four buffer
 * heads move with each page), inline data, and data=journal. The file must
 * read back intact from the page cache and again after sync and
 * drop_caches (from disk; a moved page that was not dirtied reads back as
 * zeroes).
 *
 * Two runs per filesystem:
 * - aligned: the writer writes whole pages (1 to 64 at a time) and the
 *   splices take whole pages, so every pipe buffer is a full anonymous page
 *   going to a page-aligned file position: on a patched kernel with
 *   vm.splice_move=1, nearly all of them must be moved (/proc/vmstat
 *   splice_move), except with data=journal, which copies: none may move;
 * - odd: writes and splices of odd sizes (1 byte to 1 MiB), so most pipe
 *   buffers are partial or land unaligned; moves are only reported.
 * Then, with vm.splice_move=0, an aligned run must move nothing.
 * On a kernel without the series the data is checked all the same.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "guest.h"

#define PAGE 4096
#define TOTAL (8u << 20)
#define NPAGES (TOTAL / PAGE)

static unsigned char *data;	/* the pattern, TOTAL bytes */
static int failures;

/* Every page differs from its neighbours and from a zero page. */
static void fill(unsigned char *buf, size_t len, unsigned int seed)
{
	for (size_t i = 0; i < len; i++) {
		size_t pg = i / PAGE;

		buf[i] = (unsigned char)(seed + (i % PAGE) * 7 + pg * 151 +
					 (pg >> 8) * 37 + 1);
	}
}

/* Chunk sizes: whole pages, or anything. */
static const size_t aligned_writes[] = {
	1 * PAGE, 3 * PAGE, 16 * PAGE, 2 * PAGE, 7 * PAGE, 64 * PAGE, 5 * PAGE,
	32 * PAGE,
};
static const size_t aligned_splices[] = {
	16 * PAGE, 1 * PAGE, 256 * PAGE, 3 * PAGE, 64 * PAGE,
};
static const size_t odd_writes[] = {
	1, 100, PAGE - 1, PAGE + 1, 65536, 12345, 2 * PAGE - 1, 3, 300000,
	PAGE,
};
static const size_t odd_splices[] = {
	1000, 70000, PAGE, 1 << 20, 5, 3 * PAGE + 17,
};

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* The writer: TOTAL bytes of data into the pipe, in chunks of the sizes. */
static void writer(int wfd, const size_t *sizes, size_t nsizes)
{
	size_t done = 0;

	for (size_t k = 0; done < TOTAL; k++) {
		size_t chunk = sizes[k % nsizes];
		ssize_t w;

		if (chunk > TOTAL - done)
			chunk = TOTAL - done;
		w = write(wfd, data + done, chunk);
		if (w <= 0) {
			perror("writer: write pipe");
			_exit(1);
		}
		done += w;
	}
	close(wfd);
	_exit(0);
}

/* Reads path back and compares it with data; 0 when equal. */
static int check(const char *path, const char *when)
{
	static unsigned char got[1 << 20];
	struct stat st;
	int fd = open(path, O_RDONLY);

	if (fd < 0 || fstat(fd, &st)) {
		printf("FAIL: %s %s: open: %s\n", path, when, strerror(errno));
		return 1;
	}
	if (st.st_size != TOTAL) {
		printf("FAIL: %s %s: size %lld, want %u\n", path, when,
		       (long long)st.st_size, TOTAL);
		close(fd);
		return 1;
	}
	for (size_t off = 0; off < TOTAL; off += sizeof(got)) {
		ssize_t n = pread(fd, got, sizeof(got), off);

		if (n != sizeof(got)) {
			printf("FAIL: %s %s: short read at %zu\n", path, when, off);
			close(fd);
			return 1;
		}
		if (memcmp(got, data + off, sizeof(got))) {
			size_t i = 0;

			while (got[i] == data[off + i])
				i++;
			printf("FAIL: %s %s: byte %zu (page %zu) is %#x, want %#x%s\n",
			       path, when, off + i, (off + i) / PAGE, got[i],
			       data[off + i], got[i] ? "" : " (zeroes: page lost?)");
			close(fd);
			return 1;
		}
	}
	close(fd);
	printf("ok: %s %s\n", path, when);
	return 0;
}

/*
 * One run: a writer feeds the pipe while we splice it into dir/file.
 * Returns the pages moved meanwhile (-1 without the counter).
 */
static long run(const char *dir, const char *mode, int aligned)
{
	const size_t *ws = aligned ? aligned_writes : odd_writes;
	const size_t *ss = aligned ? aligned_splices : odd_splices;
	size_t nws = aligned ? N(aligned_writes) : N(odd_writes);
	size_t nss = aligned ? N(aligned_splices) : N(odd_splices);
	long moved = vmstat("splice_move");
	long copied = vmstat("splice_move_fallback");
	char path[256];
	size_t done = 0;
	int p[2], fd, status, err = 0;
	pid_t pid;

	snprintf(path, sizeof(path), "%s/file-%s", dir, mode);
	fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
	if (fd < 0 || pipe(p)) {
		printf("FAIL: %s: open/pipe: %s\n", path, strerror(errno));
		failures++;
		return -1;
	}
	/* The odd run also has a bigger pipe. */
	if (!aligned && fcntl(p[1], F_SETPIPE_SZ, 1 << 20) < 0)
		printf("note: F_SETPIPE_SZ: %s\n", strerror(errno));
	pid = fork();
	if (pid < 0) {
		perror("fork");
		failures++;
		return -1;
	}
	if (!pid) {
		close(p[0]);
		writer(p[1], ws, nws);
	}
	close(p[1]);
	for (size_t k = 0; ; k++) {
		ssize_t s = splice(p[0], NULL, fd, NULL, ss[k % nss], SPLICE_F_MOVE);

		if (s < 0) {
			printf("FAIL: %s: splice after %zu bytes: %s\n", path, done,
			       strerror(errno));
			err = 1;
			break;
		}
		if (!s)
			break;
		done += s;
	}
	close(p[0]);
	if (err)
		kill(pid, SIGKILL);
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
	    WEXITSTATUS(status)) {
		printf("FAIL: %s: the writer failed (status %#x)\n", path, status);
		err = 1;
	}
	close(fd);
	if (!err && done != TOTAL) {
		printf("FAIL: %s: spliced %zu bytes, want %u\n", path, done, TOTAL);
		err = 1;
	}
	if (!err) {
		err |= check(path, "from the page cache");
		if (drop_caches())
			printf("warning: drop_caches failed\n");
		err |= check(path, "after drop_caches");
	}
	failures += err;
	if (moved >= 0) {
		moved = vmstat("splice_move") - moved;
		copied = vmstat("splice_move_fallback") - copied;
		printf("%s %s: %zu bytes spliced, %ld of %u pages moved, %ld taken then copied\n",
		       dir, mode, done, moved, NPAGES, copied);
	} else {
		printf("%s %s: %zu bytes spliced\n", dir, mode, done);
	}
	unlink(path);
	return moved;
}

static int require;	/* the series is there and vm.splice_move is 1 */

/*
 * Both runs on one filesystem; the aligned one must move pages if it can
 * (moves: 1), or must copy them all (moves: 0).
 */
static void run_on(const char *dir, int moves)
{
	long moved = run(dir, "aligned", 1);

	if (require && moves && moved < NPAGES * 9 / 10) {
		printf("FAIL: %s: only %ld of %u page-aligned whole pages moved\n",
		       dir, moved, NPAGES);
		failures++;
	}
	if (require && !moves && moved) {
		printf("FAIL: %s: %ld pages moved, where it must copy\n", dir,
		       moved);
		failures++;
	}
	moved = run(dir, "odd", 0);
	if (moved >= 0)
		printf("%s: odd sizes moved %ld pages (not required)\n", dir, moved);
}

/* A block filesystem made on its disk for one run_on(). */
static void run_on_disk(const char *type, const char *mkfs_opts,
			const char *opts, int moves)
{
	struct blockfs b;
	int rc;

	printf("%s, mkfs %s, mount %s:\n", type, mkfs_opts[0] ? mkfs_opts : "defaults",
	       opts[0] ? opts : "defaults");
	rc = blockfs_setup(&b, "basic-disk", type, mkfs_opts, opts);
	if (rc == -2)
		return;
	if (rc) {
		printf("FAIL: %s setup\n", type);
		failures++;
		return;
	}
	run_on(b.mnt, moves);
	blockfs_teardown(&b);
}

int main(void)
{
	const char *ramfs = "/tmp/zcsplice-basic-ramfs";
	const char *tmpfs = "/tmp/zcsplice-basic-tmpfs";
	long sw = read_number("/proc/sys/vm/splice_move");
	int counters = vmstat("splice_move") >= 0;

	require = counters && sw == 1;
	data = malloc(TOTAL);
	if (!data)
		return 1;
	fill(data, TOTAL, 1);
	if (!counters)
		printf("splice_move counter: absent (unpatched kernel), checking data only\n");
	else
		printf("vm.splice_move = %ld: moves %s\n", sw,
		       require ? "required for aligned runs" : "not required");
	mkdir(ramfs, 0755);
	mkdir(tmpfs, 0755);
	if (mount("ramfs", ramfs, "ramfs", 0, NULL) ||
	    mount("tmpfs", tmpfs, "tmpfs", 0, "size=64m")) {
		perror("mount");
		return 1;
	}
	run_on(ramfs, 1);
	run_on(tmpfs, 1);
	run_on_disk("ext2", "", "", 1);
	run_on_disk("ext4", "", "", 1);
	run_on_disk("ext4", "", "nodelalloc", 1);
	run_on_disk("ext4", "-b 1024", "", 1);
	run_on_disk("ext4", "-O inline_data", "", 1);
	run_on_disk("ext4", "", "data=journal", 0);

	/* With the switch off, the same aligned run must copy every page. */
	if (counters && sw >= 0) {
		if (set_splice_move(0)) {
			printf("FAIL: cannot set vm.splice_move to 0\n");
			failures++;
		} else {
			long moved = run(tmpfs, "switched-off", 1);

			if (moved) {
				printf("FAIL: vm.splice_move=0, yet %ld pages moved\n", moved);
				failures++;
			}
			set_splice_move(sw);
		}
	}
	umount(ramfs);
	umount(tmpfs);
	rmdir(ramfs);
	rmdir(tmpfs);
	printf("%s: %d failures\n", failures ? "FAIL" : "PASS", failures);
	return failures != 0;
}
