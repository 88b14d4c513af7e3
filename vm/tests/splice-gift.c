// SPDX-License-Identifier: GPL-2.0
/*
 * splice-gift: user memory to file with no copy. Whole, page-aligned,
 * anonymous order-0 pages that a process vmsplice()s with SPLICE_F_GIFT and
 * then unmaps are moved into the page cache by a splice with SPLICE_F_MOVE:
 * the PFN the process saw behind each page (/proc/self/pagemap, root) is
 * the PFN of the file's page afterwards, the file holds the data, and
 * again after drop_caches (ext4: after a remount, from disk).
 *
 * Everything else is copied, each checked by splice_move_gift staying put
 * and no PFN of the process showing up in the file:
 * - mapped: gifted but still mapped; the process then writes over its
 *   buffer, and the file must keep what was spliced;
 * - no flag: vmspliced without SPLICE_F_GIFT, then unmapped;
 * - forked: gifted and unmapped, but a child still maps the pages (COW);
 * - pinned: gifted and unmapped, but io_uring holds the pages as fixed
 *   buffers (FOLL_PIN);
 * - huge: gifted and unmapped, but the pages are part of a THP;
 * - ksm: each page merged by ksmd with a twin of the same content (one KSM
 *   page behind both), gifted, then both unmapped: only the pipe holds the
 *   page, but KSM still knows it (skipped on a kernel without KSM).
 *
 * A page the CPU just faulted in sits in a per-CPU LRU batch, which holds a
 * reference, until the batch is drained: the splice drains its own CPU's
 * (munmap() no longer does from 7.2), and copies a page still in another
 * CPU's. So the test runs on one CPU, and like any gifter unmaps each page
 * before it is spliced: one page at a time, and in the chunks case 64K at
 * a time, as a streaming writer does.
 *
 * The pages are spliced one at a time: ext4 wants a large folio for a
 * longer write (6.16+), and a donor is order 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "guest.h"

#define PAGE 4096
#define NPAGES 32
#define HUGE (2 << 20)

#define CHUNK 16		/* pages per vmsplice() in the chunks case */

enum gift_case { GIFT, CHUNKS, MAPPED, NO_FLAG, FORKED, PINNED, HUGE_PAGE,
		 KSM, NCASES };

static const char *const case_name[NCASES] = {
	"gift", "gift in 64K chunks", "mapped", "no flag", "forked", "pinned",
	"huge", "ksm",
};

#define KSM_RUN "/sys/kernel/mm/ksm/run"

/*
 * Runs ksmd until each of the NPAGES pages at @a shares its page with its
 * twin at @b (both madvised MADV_MERGEABLE), for up to 30 s; then stops it,
 * which leaves the merged pages merged. 0 when all were merged.
 */
static int ksm_merge(const char *a, const char *b, const char *what)
{
	static uint64_t pa[NPAGES], pb[NPAGES];
	int merged = 0;

	write_number("/sys/kernel/mm/ksm/pages_to_scan", 8 * NPAGES);
	write_number("/sys/kernel/mm/ksm/sleep_millisecs", 10);
	if (write_file(KSM_RUN, "1"))
		return -1;
	for (int t = 0; t < 300 && merged < NPAGES; t++) {
		usleep(100000);
		if (mem_pfns(a, NPAGES, pa, what) || mem_pfns(b, NPAGES, pb, what))
			break;
		merged = 0;
		for (long pg = 0; pg < NPAGES; pg++)
			merged += pa[pg] == pb[pg];
	}
	write_file(KSM_RUN, "0");
	printf("%s: ksmd merged %d of %d pages with their twins\n", what,
	       merged, NPAGES);
	return merged == NPAGES ? 0 : -1;
}

/* Is the memory at @addr in a transparent huge page (/proc/kpageflags)? */
static int in_thp(const char *addr)
{
	uint64_t pfn, flags = 0;
	int fd;

	if (mem_pfns(addr, 1, &pfn, "thp"))
		return 0;
	fd = open("/proc/kpageflags", O_RDONLY);
	if (fd < 0)
		return 0;
	if (pread(fd, &flags, 8, pfn * 8) != 8)
		flags = 0;
	close(fd);
	return !!(flags & (1ull << 22));	/* KPF_THP */
}

/* Registers @len bytes at @addr as an io_uring fixed buffer; the ring fd. */
static int pin_pages(void *addr, size_t len)
{
	struct io_uring_params par;
	struct iovec iov = { addr, len };
	int ring;

	memset(&par, 0, sizeof(par));
	ring = syscall(__NR_io_uring_setup, 1, &par);
	if (ring < 0)
		return -1;
	if (syscall(__NR_io_uring_register, ring, IORING_REGISTER_BUFFERS, &iov, 1)) {
		close(ring);
		return -1;
	}
	return ring;
}

/*
 * One case on one filesystem: NPAGES pages of user memory, vmspliced and
 * spliced page by page into @dir/gift. Returns 0, or -1 when the case could
 * not be set up here (skipped, said why).
 */
static int run_case(const char *fs, const char *dir, enum gift_case c,
		    int require, struct blockfs *b)
{
	static uint64_t user[NPAGES], file[NPAGES];
	unsigned int seed = 1 + c;
	size_t len = NPAGES * PAGE;
	size_t maplen = c == HUGE_PAGE ? 2 * HUGE : c == KSM ? 2 * len : len;
	long moved, gifts, fallback, same = 0;
	char what[64], path[192];
	int fd, p[2], ring = -1;
	pid_t child = -1;
	char *map, *buf;

	snprintf(what, sizeof(what), "%s: %s", fs, case_name[c]);
	snprintf(path, sizeof(path), "%s/gift", dir);
	map = mmap(NULL, maplen, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (map == MAP_FAILED)
		return check(0, "%s: mmap: %s", what, strerror(errno)) - 1;
	buf = map;
	if (c == HUGE_PAGE) {
		buf = (char *)(((uintptr_t)map + HUGE - 1) & ~(uintptr_t)(HUGE - 1));
		madvise(buf, HUGE, MADV_HUGEPAGE);
	} else {
		madvise(buf, maplen, MADV_NOHUGEPAGE);
	}
	/* The chunks case writes each chunk just before it gives it. */
	for (long pg = 0; pg < NPAGES && c != CHUNKS; pg++)
		for (long i = 0; i < PAGE; i++)
			buf[pg * PAGE + i] = page_pattern(seed, pg, i);
	if (c == KSM) {
		if (access(KSM_RUN, F_OK)) {
			printf("%s: skipped: no KSM in this kernel\n", what);
			munmap(map, maplen);
			return -1;
		}
		memcpy(buf + len, buf, len);
		if (!check(madvise(buf, maplen, MADV_MERGEABLE) == 0 &&
			   ksm_merge(buf, buf + len, what) == 0,
			   "%s: every page merged with its twin", what)) {
			munmap(map, maplen);
			return 0;
		}
	}
	if (c == HUGE_PAGE && !in_thp(buf)) {
		printf("%s: skipped: no transparent huge page here\n", what);
		munmap(map, maplen);
		return -1;
	}
	if (c == PINNED) {
		ring = pin_pages(buf, len);
		if (ring < 0) {
			printf("%s: skipped: no io_uring fixed buffers: %s\n", what,
			       strerror(errno));
			munmap(map, maplen);
			return -1;
		}
	}
	if (c == FORKED) {
		fflush(stdout);
		child = fork();
		if (child == 0) {
			pause();
			_exit(0);
		}
	}
	if (c != CHUNKS &&
	    !check(mem_pfns(buf, NPAGES, user, what) == 0, "%s: PFNs of the user pages", what))
		goto out_map;

	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (!check(fd >= 0 && pipe(p) == 0, "%s: open and pipe", what))
		goto out_map;
	moved = vmstat("splice_move");
	gifts = vmstat("splice_move_gift");
	fallback = vmstat("splice_move_fallback");
	if (c == HUGE_PAGE) {
		/* All of it into the pipe, then no mapping of the THP is left. */
		struct iovec iov = { buf, len };
		ssize_t n = 0;

		check(fcntl(p[1], F_SETPIPE_SZ, (int)len) >= (int)len,
		      "%s: a pipe of %d pages", what, NPAGES);
		while (iov.iov_len &&
		       (n = vmsplice(p[1], &iov, 1, SPLICE_F_GIFT)) > 0) {
			iov.iov_base = (char *)iov.iov_base + n;
			iov.iov_len -= n;
		}
		check(!iov.iov_len, "%s: vmsplice %d pages", what, NPAGES);
		munmap(map, maplen);
	}
	for (long pg = 0; pg < NPAGES; pg++) {
		struct iovec iov = { buf + pg * PAGE, PAGE };
		loff_t off = pg * PAGE;

		if (c == CHUNKS && pg % CHUNK == 0) {
			/*
			 * As a streaming writer gives them: 64K written (the
			 * pages fresh in this CPU's LRU batch), given, unmapped.
			 */
			for (long i = 0; i < CHUNK * PAGE; i++)
				buf[pg * PAGE + i] = page_pattern(seed, pg + i / PAGE,
								  i % PAGE);
			if (mem_pfns(buf + pg * PAGE, CHUNK, user + pg, what)) {
				check(0, "%s: PFNs of the user pages", what);
				break;
			}
			iov.iov_len = CHUNK * PAGE;
			if (vmsplice(p[1], &iov, 1, SPLICE_F_GIFT) != CHUNK * PAGE) {
				check(0, "%s: vmsplice at page %ld: %s", what, pg,
				      strerror(errno));
				break;
			}
			munmap(buf + pg * PAGE, CHUNK * PAGE);
		}
		if (c != HUGE_PAGE && c != CHUNKS &&
		    vmsplice(p[1], &iov, 1, c == NO_FLAG ? 0 : SPLICE_F_GIFT) != PAGE) {
			check(0, "%s: vmsplice page %ld: %s", what, pg, strerror(errno));
			break;
		}
		if (c != MAPPED && c != HUGE_PAGE && c != CHUNKS)
			munmap(buf + pg * PAGE, PAGE);
		if (c == KSM)
			munmap(buf + len + pg * PAGE, PAGE);
		if (splice_full(p[0], fd, &off, PAGE)) {
			check(0, "%s: splice page %ld into the file", what, pg);
			break;
		}
	}
	moved = vmstat("splice_move") - moved;
	gifts = vmstat("splice_move_gift") - gifts;
	fallback = vmstat("splice_move_fallback") - fallback;
	if (c == MAPPED)
		memset(buf, 0x5a, len);
	check_pattern(fd, NPAGES, seed, what, "from the page cache");
	if (check(file_pfns(fd, NPAGES, file, what) == 0, "%s: PFNs of the file's pages", what)) {
		for (long pg = 0; pg < NPAGES; pg++)
			same += user[pg] == file[pg];
		printf("%s: %ld of %d pages moved, %ld gifts taken, %ld taken then copied, %ld user PFNs now the file's\n",
		       what, moved, NPAGES, gifts, fallback, same);
		if ((c == GIFT || c == CHUNKS) && require)
			check(moved == NPAGES && gifts == NPAGES && fallback == 0 &&
			      same == NPAGES,
			      "%s: every page moved as it was: %ld moved, %ld gifts, %ld copied after all, %ld PFNs kept (want %d, %d, 0, %d)",
			      what, moved, gifts, fallback, same, NPAGES, NPAGES, NPAGES);
		else if (c != GIFT && c != CHUNKS)
			check(gifts == 0 && same == 0,
			      "%s: copied: %ld gifts taken (want 0), %ld user PFNs in the file (want 0)",
			      what, gifts, same);
	}
	close(p[0]);
	close(p[1]);
	close(fd);
	if (b)
		check(blockfs_remount(b) == 0, "%s: remount", what);
	else
		check(drop_caches() == 0, "%s: drop_caches", what);
	fd = open(path, O_RDONLY);
	if (check(fd >= 0, "%s: open again", what)) {
		check_pattern(fd, NPAGES, seed, what,
			      b ? "after a remount, from disk" : "after drop_caches");
		close(fd);
	}
	unlink(path);
out_map:
	if (child > 0) {
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
	}
	if (ring >= 0)
		close(ring);
	munmap(map, maplen);
	return 0;
}

static void run_on(const char *fs, const char *dir, int require, struct blockfs *b)
{
	for (int c = 0; c < NCASES; c++)
		run_case(fs, dir, c, require, b);
}

int main(void)
{
	const char *tmpfs = "/tmp/zcsplice-gift-tmpfs";
	const char *ramfs = "/tmp/zcsplice-gift-ramfs";
	int require = moves_required();
	struct blockfs b;
	cpu_set_t cpu;
	int rc;

	if (vmstat("splice_move_gift") < 0) {
		printf("kernel without splice_move_gift: gifts are copied; nothing to test\n");
		return 77;
	}
	CPU_ZERO(&cpu);
	CPU_SET(sched_getcpu(), &cpu);
	if (sched_setaffinity(0, sizeof(cpu), &cpu))
		printf("sched_setaffinity: %s\n", strerror(errno));
	if (mount_tmpfs_ramfs(tmpfs, "size=64m,huge=never", ramfs))
		return 1;
	run_on("tmpfs", tmpfs, require, NULL);
	run_on("ramfs", ramfs, require, NULL);
	umount(tmpfs);
	umount(ramfs);
	rc = blockfs_setup(&b, "gift", "ext4", "", "");
	if (rc == 0)
		run_on("ext4", b.mnt, require, &b);
	else if (rc == -1)
		check(0, "ext4 setup");
	blockfs_teardown(&b);
	printf("%s: %d failures\n", failures ? "FAIL" : "PASS", failures);
	return failures != 0;
}
