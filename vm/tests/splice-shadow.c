// SPDX-License-Identifier: GPL-2.0
/*
 * splice-shadow: reclaim leaves a shadow entry where it evicts a page of a
 * file (workingset detection reads it when the page comes back). A splice
 * of whole pages over evicted pages must move the pipe pages in as it
 * does over a hole: a shadow is not a page, and the data is on disk only.
 *
 * On ext4 and ext2: write a file inside a memory cgroup of its own, sync,
 * reclaim half of it with memory.reclaim, count the pages evicted
 * (cachestat(2)'s shadow entries; before 6.5, the pages mincore(2) finds
 * gone), then splice a new pattern over the whole file with
 * SPLICE_F_MOVE, a page per splice. With the series and vm.splice_move=1,
 * nearly every evicted page must move (/proc/vmstat splice_move), none be
 * taken and then copied (splice_move_fallback), and, as for a copy, a
 * page written over a shadow is no refault (workingset_refault_file):
 * filemap_add_folio() leaves writes out of workingset detection. The new
 * data must read back from the page cache and, after a remount, from
 * disk. On a kernel without the series the data is checked all the same.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "check.h"
#include "guest.h"

#define PAGE 4096
#define NPAGES 2048		/* 8 MiB */
#define CHUNK 16		/* pages per write(2) into the pipe */

#ifndef __NR_cachestat
#define __NR_cachestat 451
#endif

struct cachestat_range {
	uint64_t off;
	uint64_t len;
};

struct cachestat {
	uint64_t nr_cache;
	uint64_t nr_dirty;
	uint64_t nr_writeback;
	uint64_t nr_evicted;
	uint64_t nr_recently_evicted;
};

static void fill(unsigned char *buf, size_t len, unsigned int seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (unsigned char)((i / PAGE) * 31 + i * 7 + seed);
}

/* The file's contents compared with @want; 0 when they match. */
static int same(const char *path, const unsigned char *want,
		const char *type, const char *when)
{
	unsigned char *got = malloc(NPAGES * PAGE);
	int fd = open(path, O_RDONLY);
	ssize_t n = -1;
	int bad = 0;

	if (got && fd >= 0)
		n = pread(fd, got, NPAGES * PAGE, 0);
	if (n != NPAGES * PAGE) {
		printf("FAIL: %s: %s: read %zd of %d bytes\n", type, when, n,
		       NPAGES * PAGE);
		bad = 1;
	} else {
		for (size_t pg = 0; pg < NPAGES; pg++) {
			if (memcmp(got + pg * PAGE, want + pg * PAGE, PAGE)) {
				printf("FAIL: %s: %s: page %zu differs\n", type, when, pg);
				bad = 1;
				break;
			}
		}
	}
	if (!bad)
		printf("ok: %s: %s: %d pages intact\n", type, when, NPAGES);
	if (fd >= 0)
		close(fd);
	free(got);
	return bad;
}

/* A line of MEMCG_PARENT/name/memory.stat, or -1. */
static long memcg_stat(const char *name, const char *key)
{
	char path[256], k[64];
	long v, found = -1;
	FILE *f;

	snprintf(path, sizeof(path), MEMCG_PARENT "/%s/memory.stat", name);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (found < 0 && fscanf(f, "%63s %ld", k, &v) == 2)
		if (!strcmp(k, key))
			found = v;
	fclose(f);
	return found;
}

/*
 * The file's pages that reclaim evicted: cachestat(2)'s shadow entries,
 * or on a kernel without it (6.4 and older) the pages mincore(2) does not
 * find resident, which reclaim just left as shadows. -1 on failure.
 */
static long evicted_pages(int fd)
{
	struct cachestat_range r = { 0, 0 };
	static unsigned char vec[NPAGES];
	struct cachestat cs;
	long n = 0;
	void *map;

	if (!syscall(__NR_cachestat, fd, &r, &cs, 0)) {
		printf("cachestat: %llu pages cached, %llu evicted (shadow entries)\n",
		       (unsigned long long)cs.nr_cache,
		       (unsigned long long)cs.nr_evicted);
		return cs.nr_evicted;
	}
	map = mmap(NULL, NPAGES * PAGE, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED || mincore(map, NPAGES * PAGE, vec)) {
		printf("mincore: %s\n", strerror(errno));
		n = -1;
	}
	for (long i = 0; n >= 0 && i < NPAGES; i++)
		n += !(vec[i] & 1);
	if (map != MAP_FAILED)
		munmap(map, NPAGES * PAGE);
	printf("no cachestat(2): %ld pages not resident (mincore)\n", n);
	return n;
}

static void run_on(const char *type, const char *mkfs_opts, int require)
{
	unsigned char *old = malloc(NPAGES * PAGE), *new = malloc(NPAGES * PAGE);
	long moved0, fallback0, refault0, moved, fallback, refault;
	long evicted;
	int pfd[2], fd;
	char path[192], size[32];
	struct blockfs b;
	loff_t off = 0;
	int rc;

	printf("%s, mkfs %s:\n", type, mkfs_opts[0] ? mkfs_opts : "defaults");
	rc = blockfs_setup(&b, "shadow", type, mkfs_opts, "");
	if (rc == -2 || !old || !new)
		goto out_free;
	if (rc) {
		printf("FAIL: %s setup\n", type);
		failures++;
		goto out_free;
	}
	fill(old, NPAGES * PAGE, 1);
	fill(new, NPAGES * PAGE, 2);
	snprintf(path, sizeof(path), "%s/file", b.mnt);

	/* The file's pages are charged to this memcg, and reclaimed there. */
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || pwrite(fd, old, NPAGES * PAGE, 0) != NPAGES * PAGE ||
	    fsync(fd)) {
		printf("FAIL: %s: cannot write %s: %s\n", type, path, strerror(errno));
		failures++;
		goto out_close;
	}
	/*
	 * Reclaim half the file. The shadow shrinker keeps shadow entries in
	 * proportion to the pages the memcg has, as its (rate-limited)
	 * statistics say: give them time to count the file, and leave the
	 * memcg pages, or it takes the shadows away with the pages.
	 */
	sleep(3);
	snprintf(size, sizeof(size), "%d", NPAGES * PAGE / 2);
	if (write_file(MEMCG_PARENT "/shadow/memory.reclaim", size) &&
	    errno != EAGAIN)
		printf("memory.reclaim: %s\n", strerror(errno));
	printf("memcg: workingset_nodereclaim %ld\n",
	       memcg_stat("shadow", "workingset_nodereclaim"));
	evicted = evicted_pages(fd);
	if (!check(evicted >= NPAGES / 4, "%s: reclaim evicted %ld of %d pages",
		   type, evicted, NPAGES))
		goto out_close;

	moved0 = vmstat("splice_move");
	fallback0 = vmstat("splice_move_fallback");
	refault0 = vmstat("workingset_refault_file");
	if (pipe(pfd) || fcntl(pfd[1], F_SETPIPE_SZ, CHUNK * PAGE) < 0) {
		printf("FAIL: pipe: %s\n", strerror(errno));
		failures++;
		goto out_close;
	}
	/*
	 * One page per splice: where a larger write would get a large folio
	 * (ext4 from 6.16), a page takes an order-0 folio and may move.
	 */
	for (size_t pg = 0; pg < NPAGES; pg++) {
		if ((pg % CHUNK == 0 &&
		     write(pfd[1], new + pg * PAGE, CHUNK * PAGE) != CHUNK * PAGE) ||
		    splice_full(pfd[0], fd, &off, PAGE)) {
			printf("FAIL: %s: splice at page %zu: %s\n", type, pg,
			       strerror(errno));
			failures++;
			goto out_pipe;
		}
	}
	moved = vmstat("splice_move") - moved0;
	fallback = vmstat("splice_move_fallback") - fallback0;
	refault = vmstat("workingset_refault_file") - refault0;
	printf("spliced over them: %ld moved, %ld taken then copied, %ld refaults\n",
	       moved, fallback, refault);
	if (require) {
		check(moved >= evicted * 9 / 10,
		      "%s: most pages over shadow entries moved (%ld of %ld)",
		      type, moved, evicted);
		check(!fallback, "%s: no page taken from the pipe, then copied (%ld)",
		      type, fallback);
		/* As filemap_add_folio() has it for a copy (__GFP_WRITE). */
		check(refault < evicted / 10,
		      "%s: a page written over a shadow is no refault (%ld refaults)",
		      type, refault);
	}
	failures += same(path, new, type, "from the page cache");
	close(fd);
	fd = -1;
	if (blockfs_remount(&b)) {
		failures++;
		goto out_pipe;
	}
	failures += same(path, new, type, "from disk");
out_pipe:
	close(pfd[0]);
	close(pfd[1]);
out_close:
	if (fd >= 0)
		close(fd);
	blockfs_teardown(&b);
out_free:
	free(old);
	free(new);
}

int main(void)
{
	int counters = vmstat("splice_move") >= 0;
	int require = moves_required();

	if (!counters)
		printf("splice_move counter: absent (unpatched kernel), checking data only\n");
	if (memcg_enter("shadow", NULL, NULL)) {
		printf("FAIL: cannot enter memcg %s/shadow: %s\n", MEMCG_PARENT,
		       strerror(errno));
		return 1;
	}
	run_on("ext4", "", require);
	run_on("ext2", "", require);
	printf("%s: %d failures\n", failures ? "FAIL" : "PASS", failures);
	return failures != 0;
}
