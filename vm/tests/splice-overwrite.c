// SPDX-License-Identifier: GPL-2.0
/*
 * splice-overwrite: a whole-page, page-aligned splice with SPLICE_F_MOVE
 * over pages that are in the page cache. On tmpfs and ramfs the pipe's
 * page takes the place of the cached one (page-cache replacement); on
 * ext4 the data is copied over the cached page, as before.
 *
 * For each filesystem, a file of NPAGES pages is written with pwrite(2),
 * the PFN behind each page read from /proc/self/pagemap (root), then:
 * - default: with vm.splice_move_replace=0 (the default) a new pattern is
 *   spliced over the whole file: nothing is replaced, no page is taken
 *   from the pipe only to be copied, and the PFNs stay. The rest runs with
 *   vm.splice_move_replace=1 (a kernel without that sysctl replaces
 *   wherever it can).
 * - overwrite: a new pattern is spliced over the whole file. On tmpfs and
 *   ramfs nearly every page must be replaced (/proc/vmstat
 *   splice_move_replace) with none taken and then copied, and the PFN of
 *   every replaced page must change; on ext4 none is replaced and the PFNs
 *   stay. The data must read back, and again after drop_caches (ext4:
 *   after a remount, from disk).
 * - mapped: the file is mapped MAP_SHARED and read through the mapping,
 *   then spliced over: a mapped page must never be replaced (the mapping
 *   would keep showing the old page). Nothing is replaced, the PFNs stay,
 *   and the mapping shows the new data.
 * - racing readers: a child pread(2)s the file in a loop while the parent
 *   splices eight more patterns over it. Where pages are replaced, every
 *   page it reads must be one whole pattern that page held, never zeros
 *   or a mix; a copy into a cached page may be read half done (reads take
 *   no folio lock), so on ext4 that is only reported.
 * - others racing: while eight more patterns are spliced over the file, a
 *   child keeps the file mapped, zaps random ranges of its mapping
 *   (MADV_DONTNEED) and faults them in again, so that pages are mapped and
 *   unmapped around the replacements; others punch holes, fsync() and drop
 *   clean caches. Then one last pattern is spliced with nothing racing,
 *   and the child's mapping must show it on every page: a page replaced
 *   under a mapping that a fault had just set up would keep showing an
 *   older one. Then the same with ftruncate() racing (no mapping: it
 *   would fault beyond EOF). tmpfs must give back every block afterwards.
 * Without the series (no splice_move_replace counter) the data checks run
 * all the same.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "guest.h"

#define PAGE 4096
#define NPAGES 256		/* 1 MiB */
#define CHUNK 16		/* pages per write(2) into the pipe */
#define SEEDS 6			/* patterns 1..SEEDS-1 */

static void fill(unsigned char *buf, long pages, unsigned int seed)
{
	for (long pg = 0; pg < pages; pg++)
		for (long i = 0; i < PAGE; i++)
			buf[pg * PAGE + i] = page_pattern(seed, pg, i);
}

/* Which seed page @pg of @buf holds, whole; 0 when none. */
static unsigned int seed_of(const unsigned char *buf, long pg)
{
	for (unsigned int s = 1; s < SEEDS; s++) {
		long i = 0;

		while (i < PAGE && buf[i] == page_pattern(s, pg, i))
			i++;
		if (i == PAGE)
			return s;
	}
	return 0;
}

/* Splices NPAGES pages of @seed over the file, CHUNK pages at a time. */
static int splice_over(int fd, unsigned int seed)
{
	static unsigned char buf[NPAGES * PAGE];
	int pfd[2];
	loff_t off = 0;
	int ret = 0;

	fill(buf, NPAGES, seed);
	if (pipe(pfd) || fcntl(pfd[1], F_SETPIPE_SZ, CHUNK * PAGE) < 0)
		return -1;
	for (long pg = 0; pg < NPAGES && !ret; pg += CHUNK) {
		if (write(pfd[1], buf + pg * PAGE, CHUNK * PAGE) != CHUNK * PAGE ||
		    splice_full(pfd[0], fd, &off, CHUNK * PAGE))
			ret = -1;
	}
	close(pfd[0]);
	close(pfd[1]);
	return ret;
}

/* splice_over(), counting the pages replaced and those taken then copied. */
static void splice_counted(int fd, unsigned int seed, const char *fs,
			   long *replaced, long *fallback)
{
	long r0 = vmstat("splice_move_replace"), f0 = vmstat("splice_move_fallback");

	check(splice_over(fd, seed) == 0, "%s: splice pattern %u over the file", fs, seed);
	*replaced = vmstat("splice_move_replace") - r0;
	*fallback = vmstat("splice_move_fallback") - f0;
}

/* Does the file hold @seed on every page? Prints the first page that differs. */
static int holds(int fd, unsigned int seed, const char *fs, const char *when)
{
	static unsigned char got[NPAGES * PAGE];

	if (pread(fd, got, sizeof(got), 0) != sizeof(got))
		return check(0, "%s: %s: short read", fs, when);
	for (long pg = 0; pg < NPAGES; pg++)
		if (seed_of(got + pg * PAGE, pg) != seed)
			return check(0, "%s: %s: page %ld holds pattern %u, want %u",
				     fs, when, pg, seed_of(got + pg * PAGE, pg), seed);
	return check(1, "%s: %s: every page holds pattern %u", fs, when, seed);
}

/* Pages whose PFN differs between @a and @b. */
static long changed(const uint64_t *a, const uint64_t *b)
{
	long n = 0;

	for (long pg = 0; pg < NPAGES; pg++)
		n += a[pg] != b[pg];
	return n;
}

/*
 * The child of the race: reads until killed. It exits (status 1) as soon as
 * a read found a page that holds no whole pattern.
 */
static void reader(const char *path)
{
	static unsigned char got[NPAGES * PAGE];
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		_exit(2);
	for (long round = 0;; round++) {
		long bad = 0;

		if (pread(fd, got, sizeof(got), 0) != sizeof(got)) {
			printf("reader: short read\n");
			_exit(2);
		}
		for (long pg = 0; pg < NPAGES; pg++) {
			if (seed_of(got + pg * PAGE, pg))
				continue;
			if (bad++ < 3)
				printf("reader: round %ld: page %ld is no whole pattern (byte 0 0x%02x)\n",
				       round, pg, got[pg * PAGE]);
		}
		if (bad) {
			fflush(stdout);
			_exit(1);
		}
	}
}

/* What the mapper child and the parent say to each other, shared. */
struct handshake {
	volatile int stop;	/* parent: 1 stop faulting, 2 check now */
	volatile int stopped;	/* child: 1 no longer faulting */
};

/*
 * The mapper: maps the file, then until told to stop zaps a random range
 * of its mapping and faults random pages in again. Then, with every page
 * faulted in, waits for the parent's last overwrite and checks that the
 * mapping shows @final on every page. Exits with the number of pages
 * that do not (at most 255), 255 on a setup failure.
 */
static void mapper(int fd, struct handshake *h, unsigned int final)
{
	volatile unsigned char *map;
	uint64_t rnd = getpid();
	long stale = 0;

	map = mmap(NULL, NPAGES * PAGE, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		_exit(255);
	while (!h->stop) {
		long pg = xrand(&rnd) % NPAGES, n = 1 + xrand(&rnd) % CHUNK;

		if (pg + n > NPAGES)
			n = NPAGES - pg;
		madvise((void *)(map + pg * PAGE), n * PAGE, MADV_DONTNEED);
		for (int k = 0; k < 8; k++)
			(void)map[(xrand(&rnd) % NPAGES) * PAGE];
	}
	for (long pg = 0; pg < NPAGES; pg++)
		(void)map[pg * PAGE];
	h->stopped = 1;
	while (h->stop != 2)
		usleep(1000);
	for (long pg = 0; pg < NPAGES; pg++) {
		if (seed_of((const unsigned char *)map + pg * PAGE, pg) == final)
			continue;
		if (stale++ < 3)
			printf("mapper: page %ld shows pattern %u, want %u\n", pg,
			       seed_of((const unsigned char *)map + pg * PAGE, pg), final);
	}
	fflush(stdout);
	_exit(stale > 254 ? 254 : stale);
}

/* Until killed: punch holes (@what 0), fsync and drop clean caches (1), truncate (2). */
static void disturber(const char *path, int what)
{
	uint64_t rnd = getpid() * 7 + what;
	int fd = open(path, O_RDWR);

	if (fd < 0)
		_exit(2);
	for (;;) {
		long pg = xrand(&rnd) % NPAGES;

		switch (what) {
		case 0:
			/* ramfs has no hole punching: EOPNOTSUPP, and that is fine */
			fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				  pg * PAGE, 4 * PAGE);
			break;
		case 1:
			fsync(fd);
			write_file("/proc/sys/vm/drop_caches", "1");
			break;
		default:
			if (ftruncate(fd, pg * PAGE) || ftruncate(fd, NPAGES * PAGE))
				_exit(3);
		}
		usleep(1000);
	}
}

/* Starts the disturbers named in @whats (-1 ends the list) into @pids. */
static int disturb(const char *path, const int *whats, pid_t *pids)
{
	int n = 0;

	fflush(stdout);
	for (; whats[n] >= 0; n++) {
		pids[n] = fork();
		if (pids[n] == 0)
			disturber(path, whats[n]);
	}
	return n;
}

/* Stops them; 0 when each was still running (none gave up on an error). */
static int undisturb(const pid_t *pids, int n)
{
	int status, bad = 0;

	for (int k = 0; k < n; k++) {
		kill(pids[k], SIGKILL);
		waitpid(pids[k], &status, 0);
		bad += !(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	}
	return bad;
}

/* Splices eight patterns over @fd (4, 1, 5, 1, ...) while others race it. */
static long race(int fd, const char *fs, const char *who)
{
	long r0 = vmstat("splice_move_replace");

	for (unsigned int s = 4; s < SEEDS; s++)
		for (int k = 0; k < 4; k++)
			check(splice_over(fd, k % 2 ? 1 : s) == 0,
			      "%s: splice pattern %u over the file, %s",
			      fs, k % 2 ? 1 : s, who);
	return vmstat("splice_move_replace") - r0;
}

/* The mapping, hole punching, fsync and drop_caches race; then truncation. */
static void others_racing(int fd, const char *path, const char *fs)
{
	static const int punch_sync[] = { 0, 1, -1 }, trunc_punch[] = { 2, 0, -1 };
	struct handshake *h;
	pid_t pids[4], mpid;
	int status, n;
	long r;

	h = mmap(NULL, sizeof(*h), PROT_READ | PROT_WRITE,
		 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (!check(h != MAP_FAILED, "%s: shared memory for the mapper", fs))
		return;
	fflush(stdout);
	mpid = fork();
	if (mpid == 0)
		mapper(fd, h, 2);
	n = disturb(path, punch_sync, pids);
	r = race(fd, fs, "with faults, zaps, hole punches, fsync and drop_caches racing");
	check(undisturb(pids, n) == 0, "%s: hole punching, fsync and drop_caches ran throughout", fs);
	h->stop = 1;
	while (!h->stopped)
		usleep(1000);
	check(splice_over(fd, 2) == 0, "%s: splice pattern 2 over the file, nothing racing", fs);
	h->stop = 2;
	waitpid(mpid, &status, 0);
	check(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	      "%s: after %ld replacements racing faults and zaps, a mapping kept since shows pattern 2 on every page (%d pages do not)",
	      fs, r, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	holds(fd, 2, fs, "after faults, zaps, punches, fsync and drop_caches");
	munmap(h, sizeof(*h));

	n = disturb(path, trunc_punch, pids);
	r = race(fd, fs, "with ftruncate and hole punches racing");
	check(undisturb(pids, n) == 0, "%s: ftruncate and hole punching ran throughout", fs);
	printf("%s: %ld pages replaced while ftruncate and hole punching raced\n", fs, r);
	check(splice_over(fd, 1) == 0, "%s: splice pattern 1 over the file, nothing racing", fs);
	holds(fd, 1, fs, "after ftruncate and hole punches");
}

static void run_on(const char *fs, const char *mnt, int counters, int require,
		   struct blockfs *b)
{
	static unsigned char buf[NPAGES * PAGE];
	static uint64_t before[NPAGES], after[NPAGES];
	int replaces = strcmp(fs, "ext4") != 0;
	long r0, r, f;
	volatile unsigned char *map;
	char path[192];
	int fd, status, torn;
	pid_t pid;

	printf("%s:\n", fs);
	snprintf(path, sizeof(path), "%s/file", mnt);
	fill(buf, NPAGES, 1);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (!check(fd >= 0 && pwrite(fd, buf, sizeof(buf), 0) == sizeof(buf),
		   "%s: write %d pages of pattern 1", fs, NPAGES))
		goto out;
	if (!check(file_pfns(fd, NPAGES, before, fs) == 0,
		   "%s: PFNs of the cached pages", fs))
		goto out;

	/* By default a move copies over a cached page, and takes none. */
	if (counters && read_number(SPLICE_MOVE_REPLACE_SYSCTL) >= 0) {
		check(write_number(SPLICE_MOVE_REPLACE_SYSCTL, 0) == 0,
		      "%s: vm.splice_move_replace=0", fs);
		splice_counted(fd, 5, fs, &r, &f);
		holds(fd, 5, fs, "overwritten by default, from the page cache");
		if (check(file_pfns(fd, NPAGES, after, fs) == 0,
			  "%s: PFNs after the default overwrite", fs))
			check(r == 0 && f == 0 && changed(before, after) == 0,
			      "%s: by default copied over the cached pages: %ld replaced, %ld taken then copied, %ld PFNs changed (want 0, 0, 0)",
			      fs, r, f, changed(before, after));
		check(write_number(SPLICE_MOVE_REPLACE_SYSCTL, 1) == 0,
		      "%s: vm.splice_move_replace=1", fs);
	}

	/* Overwrite. */
	splice_counted(fd, 2, fs, &r, &f);
	holds(fd, 2, fs, "overwritten, from the page cache");
	if (check(file_pfns(fd, NPAGES, after, fs) == 0,
		  "%s: PFNs after the overwrite", fs) &&
	    counters) {
		printf("%s: %ld pages replaced, %ld taken then copied, %ld PFNs changed\n",
		       fs, r, f, changed(before, after));
		if (replaces && require) {
			check(r >= NPAGES * 9 / 10 && f == 0,
			      "%s: %ld of %d cached pages replaced by the pipe's (want >= 90%%), %ld copied after all (want 0)",
			      fs, r, NPAGES, f);
			check(changed(before, after) == r,
			      "%s: the PFN changed for exactly the %ld replaced pages (%ld changed)",
			      fs, r, changed(before, after));
		} else if (!replaces) {
			check(r == 0 && changed(before, after) == 0,
			      "%s: copied over the cached pages: %ld replaced (want 0), %ld PFNs changed (want 0)",
			      fs, r, changed(before, after));
		}
	}

	/* A mapped page is never replaced: the mapping would go stale. */
	map = mmap(NULL, NPAGES * PAGE, PROT_READ, MAP_SHARED, fd, 0);
	if (!check(map != MAP_FAILED, "%s: mmap", fs))
		goto out;
	for (long pg = 0; pg < NPAGES; pg++)
		(void)map[pg * PAGE];
	file_pfns(fd, NPAGES, before, fs);
	r0 = vmstat("splice_move_replace");
	check(splice_over(fd, 3) == 0, "%s: splice pattern 3 over the mapped file", fs);
	r = vmstat("splice_move_replace") - r0;
	{
		long stale = 0;

		for (long pg = 0; pg < NPAGES; pg++)
			stale += seed_of((const unsigned char *)map + pg * PAGE, pg) != 3;
		check(stale == 0, "%s: the mapping shows pattern 3 on every page (%ld do not)",
		      fs, stale);
	}
	file_pfns(fd, NPAGES, after, fs);
	munmap((void *)map, NPAGES * PAGE);
	if (counters)
		check(r == 0 && changed(before, after) == 0,
		      "%s: mapped pages copied over: %ld replaced (want 0), %ld PFNs changed (want 0)",
		      fs, r, changed(before, after));

	/* Readers racing the overwrite see whole pages, old or new. */
	fflush(stdout);
	pid = fork();
	if (pid == 0)
		reader(path);
	r = race(fd, fs, "pages being read");
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	/*
	 * Killed means it found nothing wrong: it stops by itself on a torn
	 * page. A replaced page is whole before anyone can see it; a copy
	 * into a cached page is not (buffered reads take no folio lock), so
	 * only where pages are replaced must every read be whole.
	 */
	torn = !(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	if (replaces && counters && require)
		check(!torn, "%s: a reader racing 8 overwrites (%ld pages replaced) read whole pages only",
		      fs, r);
	else
		printf("%s: a reader racing 8 overwrites (%ld pages replaced) %s\n", fs, r,
		       torn ? "read a torn page, as a copy allows" : "read whole pages only");
	holds(fd, 1, fs, "after the race");

	others_racing(fd, path, fs);

	/* What stays once the cache is gone. */
	close(fd);
	fd = -1;
	if (b) {
		check(blockfs_remount(b) == 0, "%s: remount", fs);
	} else {
		drop_caches();
	}
	fd = open(path, O_RDONLY);
	if (check(fd >= 0, "%s: open again", fs))
		holds(fd, 1, fs, b ? "after a remount, from disk" : "after drop_caches");
out:
	if (fd >= 0)
		close(fd);
	unlink(path);
	if (!strcmp(fs, "tmpfs")) {
		struct statfs st = { 0 };
		int err = statfs(mnt, &st);

		check(!err && st.f_bfree == st.f_blocks,
		      "%s: every block given back once the file is gone (%llu of %llu free)",
		      fs, (unsigned long long)st.f_bfree, (unsigned long long)st.f_blocks);
	}
}

int main(void)
{
	long knob = read_number(SPLICE_MOVE_REPLACE_SYSCTL);
	int counters = vmstat("splice_move_replace") >= 0;
	int require = moves_required();
	const char *tmpfs = "/tmp/zcsplice-overwrite-tmpfs";
	const char *ramfs = "/tmp/zcsplice-overwrite-ramfs";
	struct blockfs b;
	int rc;

	if (!counters)
		printf("splice_move_replace counter: absent, checking data only\n");
	if (knob >= 0)
		check(knob == 0, "vm.splice_move_replace is 0 by default (it is %ld)", knob);
	if (mount_tmpfs_ramfs(tmpfs, "size=64m", ramfs))
		return 1;
	run_on("tmpfs", tmpfs, counters, require, NULL);
	run_on("ramfs", ramfs, counters, require, NULL);
	umount(tmpfs);
	umount(ramfs);
	rc = blockfs_setup(&b, "overwrite", "ext4", "", "");
	if (rc == 0)
		run_on("ext4", b.mnt, counters, require, &b);
	else if (rc == -1)
		check(0, "ext4 setup");
	blockfs_teardown(&b);
	if (knob >= 0)
		write_number(SPLICE_MOVE_REPLACE_SYSCTL, knob);
	printf("%s: %d failures\n", failures ? "FAIL" : "PASS", failures);
	return failures != 0;
}
