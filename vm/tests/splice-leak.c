// SPDX-License-Identifier: GPL-2.0
/*
 * splice-leak: every page the series moves into the page cache, and every
 * cached page it retires, is freed once the file is gone. A reference left
 * behind leaks the page for good, and nothing else says so: no BUG, no bad
 * page state, and the data is right.
 *
 * In a memory cgroup of its own, for each way a page moves in: holes on
 * tmpfs, ramfs, ext4 and ext2 (ext2 through a placeholder folio);
 * overwrite of cached pages on tmpfs and ramfs (vm.splice_move_replace=1,
 * the old folios retired); gifts (vmsplice(SPLICE_F_GIFT), then unmapped)
 * on tmpfs, ramfs and ext4; and ext4 inside EOF over blocks that hold data (the
 * file evicted by a remount). Each case splices NPAGES pages with
 * SPLICE_F_MOVE, a page per call (ext4 wants a large folio for a longer
 * write from 6.16, and a donor is order 0), then removes the file, syncs
 * and drops caches: the memcg's memory.current must be back where it was,
 * within SLACK (per-CPU charge stocks and LRU batches). A first round of
 * the same case, not measured, charges what is charged only once (ext4's
 * metadata blocks). With the series the pages must have moved, as the
 * case's counter says; on other kernels only the bookkeeping is checked.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "check.h"
#include "guest.h"

#define PAGE 4096
#define NPAGES 4096		/* 16 MiB per case */
#define CHUNK 16		/* pages per write(2) into the pipe */
#define SLACK (2L << 20)
#define MEMCG "leak"
#define TMPFS "/tmp/zcsplice-leak-tmpfs"
#define RAMFS "/tmp/zcsplice-leak-ramfs"

enum how { HOLES, OVERWRITE, GIFTS, REWRITE };

static const char *const hows[] = { "holes", "overwrite", "gifts", "rewrite" };

/* The counter that tells how many pages moved the case's way. */
static const char *const counters[] = {
	"splice_move", "splice_move_replace", "splice_move_gift", "splice_move",
};

static unsigned char data[CHUNK * PAGE];

/* Gives page @pg of the data to the pipe from memory of its own, unmapped. */
static int give_page(int pfd, long pg)
{
	struct iovec iov;
	ssize_t n;
	char *page = mmap(NULL, PAGE, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (page == MAP_FAILED)
		return -1;
	memcpy(page, data + (pg % CHUNK) * PAGE, PAGE);
	iov.iov_base = page;
	iov.iov_len = PAGE;
	n = vmsplice(pfd, &iov, 1, SPLICE_F_GIFT);
	if (munmap(page, PAGE) || n != PAGE)
		return -1;
	return 0;
}

/* Writes the whole file, synced: the pages an overwrite or rewrite meets. */
static int prefill(int fd)
{
	for (long pg = 0; pg < NPAGES; pg += CHUNK)
		if (pwrite(fd, data, sizeof(data), pg * PAGE) != sizeof(data))
			return -1;
	return fsync(fd);
}

/*
 * One round of case @how in @dir (on @b when a block filesystem): returns
 * the pages moved its way, or -1 after a FAIL line. The file is gone after.
 */
static long one_round(const char *what, const char *dir, enum how how,
		      struct blockfs *b)
{
	long moved = -1, before;
	char path[192];
	loff_t off = 0;
	int p[2], fd;

	snprintf(path, sizeof(path), "%s/leak", dir);
	fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0644);
	if (fd < 0 || pipe(p)) {
		check(0, "%s: open %s: %s", what, path, strerror(errno));
		return -1;
	}
	if ((how == OVERWRITE || how == REWRITE) && prefill(fd)) {
		check(0, "%s: writing the file: %s", what, strerror(errno));
		goto out;
	}
	if (how == REWRITE) {
		/* Evicted: the blocks hold data, the page cache has none. */
		close(fd);
		fd = -1;
		if (blockfs_remount(b)) {
			check(0, "%s: remount", what);
			goto out;
		}
		fd = open(path, O_RDWR);
		if (fd < 0) {
			check(0, "%s: reopen: %s", what, strerror(errno));
			goto out;
		}
	}
	before = vmstat(counters[how]);
	for (long pg = 0; pg < NPAGES; pg++) {
		int err;

		if (how == GIFTS)
			err = give_page(p[1], pg);
		else if (pg % CHUNK == 0)
			err = write(p[1], data, sizeof(data)) != sizeof(data);
		else
			err = 0;
		if (err || splice_full(p[0], fd, &off, PAGE)) {
			check(0, "%s: splice at page %ld: %s", what, pg,
			      strerror(errno));
			goto out;
		}
	}
	moved = vmstat(counters[how]) - before;
	if (fsync(fd)) {
		check(0, "%s: fsync: %s", what, strerror(errno));
		moved = -1;
	}
out:
	close(p[0]);
	close(p[1]);
	if (fd >= 0)
		close(fd);
	unlink(path);
	drop_caches();
	return moved;
}

static void run_case(const char *fs, const char *dir, enum how how,
		     struct blockfs *b, int require)
{
	char what[64];
	long base, after, moved;

	snprintf(what, sizeof(what), "%s %s", fs, hows[how]);
	if (one_round(what, dir, how, b) < 0)
		return;
	base = memcg_current(MEMCG);
	moved = one_round(what, dir, how, b);
	after = memcg_current(MEMCG);
	if (moved < 0)
		return;
	printf("%s: %ld of %d pages moved (%s); memory.current %ld KiB, then %ld KiB\n",
	       what, moved, NPAGES, counters[how], base >> 10, after >> 10);
	if (require)
		check(moved >= NPAGES * 9 / 10, "%s: the pages moved (%ld of %d)",
		      what, moved, NPAGES);
	check(after - base < SLACK,
	      "%s: every page freed with the file (memory.current %+ld KiB, %d KiB spliced)",
	      what, (after - base) >> 10, NPAGES * PAGE >> 10);
}

static void run_on_block(const char *type, const enum how *cases, int n,
			 int require)
{
	struct blockfs b;
	int rc = blockfs_setup(&b, "leak", type, "", "");

	if (rc == -2)
		return;
	if (rc) {
		check(0, "%s: no filesystem to test", type);
		return;
	}
	for (int i = 0; i < n; i++)
		run_case(type, b.mnt, cases[i], &b, require);
	blockfs_teardown(&b);
}

int main(void)
{
	static const enum how mem_cases[] = { HOLES, OVERWRITE, GIFTS };
	static const enum how ext4_cases[] = { HOLES, GIFTS, REWRITE };
	static const enum how ext2_cases[] = { HOLES };
	long replace = read_number(SPLICE_MOVE_REPLACE_SYSCTL);
	int require = moves_required();
	cpu_set_t cpu;

	if (vmstat("splice_move") < 0)
		printf("no splice_move counter (unpatched kernel): bookkeeping only\n");
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = page_pattern(1, i / PAGE, i % PAGE);
	if (memcg_enter(MEMCG, NULL, NULL)) {
		printf("FAIL: cannot enter memcg %s/%s: %s\n", MEMCG_PARENT,
		       MEMCG, strerror(errno));
		return 1;
	}
	/*
	 * A page just faulted in waits in its CPU's LRU batch, holding a
	 * reference, and a gift from another CPU's batch is copied: one CPU.
	 */
	CPU_ZERO(&cpu);
	CPU_SET(sched_getcpu(), &cpu);
	if (sched_setaffinity(0, sizeof(cpu), &cpu))
		printf("sched_setaffinity: %s\n", strerror(errno));
	/* The overwrite cases measure replacement, off by default. */
	if (replace >= 0 && write_number(SPLICE_MOVE_REPLACE_SYSCTL, 1)) {
		printf("FAIL: vm.splice_move_replace=1: %s\n", strerror(errno));
		return 1;
	}
	if (mount_tmpfs_ramfs(TMPFS, "size=64m,huge=never", RAMFS))
		return 1;
	for (int i = 0; i < 3; i++)
		run_case("tmpfs", TMPFS, mem_cases[i], NULL, require);
	for (int i = 0; i < 3; i++)
		run_case("ramfs", RAMFS, mem_cases[i], NULL, require);
	umount(TMPFS);
	umount(RAMFS);
	run_on_block("ext4", ext4_cases, 3, require);
	run_on_block("ext2", ext2_cases, 1, require);
	if (replace >= 0)
		write_number(SPLICE_MOVE_REPLACE_SYSCTL, replace);
	printf("%s: %d checks, %d failures\n", failures ? "FAIL" : "PASS",
	       checks, failures);
	return failures != 0;
}
