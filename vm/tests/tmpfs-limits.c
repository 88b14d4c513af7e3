// SPDX-License-Identifier: GPL-2.0
/*
 * tmpfs-limits: a page moved from a pipe into tmpfs is accounted like one
 * tmpfs allocated, and goes only where tmpfs would put an order-0 page.
 *
 * size=: a tmpfs of 128 KiB takes exactly 128 KiB of a 256 KiB splice,
 * then says ENOSPC (a short splice, then -ENOSPC with the rest still in
 * the pipe), statfs() shows it full, and all free again after unlink.
 * The same sequence with vm.splice_move=0 must give the same results.
 *
 * huge=: where shmem wants a large folio (a PMD-sized huge page, or on
 * 6.14+ an mTHP order from the length of the write), the data is copied (a
 * donor is order 0), so huge=always and huge=within_size files get the
 * same folios whether moving is on or off (their orders read from
 * /proc/kpageflags); a page moves exactly where shmem puts an order-0
 * folio.
 *
 * Every file is verified from the page cache and after drop_caches.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "guest.h"
#include "check.h"

#define PAGE		4096L
#define LIMIT		(128L << 10)	/* size= of the small tmpfs */
#define DATA		(256L << 10)	/* what is spliced into it */
#define HUGE_FILE	(4L << 20)	/* two PMD-sized huge pages */
#define HPAGE_KB	2048L
#define DIR_SMALL	"/tmp/zcsplice-limits-small"
#define DIR_HUGE	"/tmp/zcsplice-limits-huge"

static int have_counters;	/* the kernel has splice_move in vmstat */
static int have_switch;		/* ... and vm.splice_move */

/* The byte that belongs at file offset @o; every page differs. */
static unsigned char pat(unsigned int seed, long o)
{
	return (unsigned char)(seed * 31 + o * 13 + (o >> 12) * 101);
}

static void fill(unsigned char *buf, long off, long len, unsigned int seed)
{
	for (long i = 0; i < len; i++)
		buf[i] = pat(seed, off + i);
}

/* A /proc/meminfo field in kB, or -1. */
static long meminfo_kb(const char *name)
{
	char line[256];
	size_t n = strlen(name);
	long v = -1;
	FILE *f = fopen("/proc/meminfo", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, name, n) && line[n] == ':') {
			v = strtol(line + n + 1, NULL, 10);
			break;
		}
	}
	fclose(f);
	return v;
}

static long moved0, fallback0;

static void counters_start(void)
{
	moved0 = vmstat("splice_move");
	fallback0 = vmstat("splice_move_fallback");
}

static long moved(void)
{
	return have_counters ? vmstat("splice_move") - moved0 : 0;
}

static long fallback(void)
{
	return have_counters ? vmstat("splice_move_fallback") - fallback0 : 0;
}

static int make_pipe(int p[2], long size)
{
	if (pipe(p)) {
		check(0, "pipe: %s", strerror(errno));
		return -1;
	}
	if (fcntl(p[1], F_SETPIPE_SZ, size) < size) {
		check(0, "F_SETPIPE_SZ %ld: %s", size, strerror(errno));
		close(p[0]);
		close(p[1]);
		return -1;
	}
	return 0;
}

/* Writes [off, off + len) through a pipe of @chunk bytes with write(2) + splice(2). */
static int splice_file(int fd, long off, long len, long chunk, unsigned int seed)
{
	static unsigned char buf[HUGE_FILE];
	loff_t pos = off;
	int p[2], ret = -1;

	if (make_pipe(p, chunk))
		return -1;
	for (long done = 0; done < len; ) {
		long n = len - done < chunk ? len - done : chunk;

		fill(buf, off + done, n, seed);
		if (write(p[1], buf, n) != n) {
			check(0, "write %ld bytes into the pipe: %s", n, strerror(errno));
			goto out;
		}
		if (splice_full(p[0], fd, &pos, n)) {
			check(0, "splice at %lld: %s", (long long)pos, strerror(errno));
			goto out;
		}
		done += n;
	}
	ret = 0;
out:
	close(p[0]);
	close(p[1]);
	return ret;
}

/*
 * The file must be @size bytes: zeroes up to @start, then pat(@seed).
 * Returns 1 when it is.
 */
static int verify(const char *path, long start, long size, unsigned int seed,
		  const char *when)
{
	static unsigned char got[HUGE_FILE + PAGE];
	struct stat st;
	ssize_t n;
	int fd = open(path, O_RDONLY);

	if (fd < 0 || fstat(fd, &st))
		return check(0, "%s %s: open: %s", path, when, strerror(errno));
	n = pread(fd, got, sizeof(got), 0);
	close(fd);
	if (st.st_size != size || n != size)
		return check(0, "%s %s: size %lld, read %zd, want %ld", path, when,
			      (long long)st.st_size, n, size);
	for (long i = 0; i < size; i++) {
		unsigned char want = i < start ? 0 : pat(seed, i);

		if (got[i] != want)
			return check(0, "%s %s: byte %ld is %#x, want %#x", path,
				      when, i, got[i], want);
	}
	return check(1, "%s %s: %ld bytes as written", path, when, size);
}

static void verify_twice(const char *path, long start, long size, unsigned int seed)
{
	verify(path, start, size, seed, "from the page cache");
	if (drop_caches())
		check(0, "drop_caches: %s", strerror(errno));
	verify(path, start, size, seed, "after drop_caches");
}

/* What the size= sequence saw: must not depend on vm.splice_move. */
struct limit_result {
	long bsize, blocks, bfree_empty;
	long first, second, second_errno, pos_after;
	long left_in_pipe, st_size, st_blocks, bfree_full, bavail_full;
	long bfree_unlinked;
	long u_first, u_second, u_second_errno, u_pos_after, u_left_in_pipe;
	long u_bfree_unlinked;
};

static long bfree(const char *dir, long *bavail)
{
	struct statfs s;

	if (statfs(dir, &s))
		return -1;
	if (bavail)
		*bavail = s.f_bavail;
	return s.f_bfree;
}

/*
 * Fills a pipe with @len bytes for file offsets [off, off + len), splices
 * all of it to the file at @off with one call and then the rest with
 * another. Records both results; the bytes left in the pipe must be the
 * ones that did not fit.
 */
static void splice_over_limit(const char *path, long off, long len, unsigned int seed,
			      long *first, long *second, long *second_errno,
			      long *pos_after, long *left_in_pipe)
{
	static unsigned char buf[DATA], rest[DATA];
	loff_t pos = off;
	int p[2], fd, avail = -1;
	ssize_t s;

	fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
	if (fd < 0) {
		check(0, "create %s: %s", path, strerror(errno));
		return;
	}
	if (make_pipe(p, len)) {
		close(fd);
		return;
	}
	fill(buf, off, len, seed);
	if (write(p[1], buf, len) != len) {
		check(0, "write %ld bytes into the pipe: %s", len, strerror(errno));
		goto out;
	}
	s = splice(p[0], NULL, fd, &pos, len, SPLICE_F_MOVE);
	*first = s < 0 ? -errno : s;
	s = splice(p[0], NULL, fd, &pos, len, SPLICE_F_MOVE);
	*second = s;
	*second_errno = s < 0 ? errno : 0;
	*pos_after = pos;
	ioctl(p[0], FIONREAD, &avail);
	*left_in_pipe = avail;
	if (avail > 0 && *first > 0 && *first + avail == len) {
		/* The pipe still holds exactly the data that did not go in. */
		s = read(p[0], rest, avail);
		check(s == avail && !memcmp(rest, buf + *first, avail),
		      "the %d bytes left in the pipe are the ones that did not fit",
		      avail);
	}
out:
	close(p[0]);
	close(p[1]);
	close(fd);
}

static void limit_sequence(int move, struct limit_result *r)
{
	const char *dir = DIR_SMALL;
	char path[256];
	struct statfs sf;
	struct stat st;
	long m, fb;

	printf("--- size=128k, vm.splice_move=%d ---\n", move);
	memset(r, 0, sizeof(*r));
	if (mount("tmpfs", dir, "tmpfs", 0, "size=128k")) {
		check(0, "mount tmpfs size=128k: %s", strerror(errno));
		return;
	}
	if (statfs(dir, &sf)) {
		check(0, "statfs: %s", strerror(errno));
		goto out;
	}
	r->bsize = sf.f_bsize;
	r->blocks = sf.f_blocks;
	r->bfree_empty = sf.f_bfree;
	check(sf.f_bsize == PAGE && sf.f_blocks == LIMIT / PAGE &&
	      sf.f_bfree == LIMIT / PAGE,
	      "statfs empty: bsize %ld, %ld blocks, %ld free (want %ld, %ld, %ld)",
	      (long)sf.f_bsize, (long)sf.f_blocks, (long)sf.f_bfree, PAGE,
	      LIMIT / PAGE, LIMIT / PAGE);

	/* Page-aligned: whole pages, moved while there is room. */
	snprintf(path, sizeof(path), "%s/f", dir);
	counters_start();
	splice_over_limit(path, 0, DATA, 1, &r->first, &r->second,
			  &r->second_errno, &r->pos_after, &r->left_in_pipe);
	m = moved();
	fb = fallback();
	check(r->first == LIMIT,
	      "256 KiB spliced at 0 into 128 KiB: first splice returns %ld (want %ld)",
	      r->first, LIMIT);
	check(r->second == -1 && r->second_errno == ENOSPC,
	      "the next splice returns %ld, %s (want -1, ENOSPC)", r->second,
	      strerror(r->second_errno));
	check(r->pos_after == LIMIT, "the file offset stops at %ld (want %ld)",
	      r->pos_after, LIMIT);
	check(r->left_in_pipe == DATA - LIMIT, "%ld bytes left in the pipe (want %ld)",
	      r->left_in_pipe, DATA - LIMIT);
	if (have_counters)
		printf("pages moved: %ld, taken then copied: %ld\n", m, fb);
	if (moves_required() && move)
		check(m == LIMIT / PAGE, "%ld pages moved (want %ld: every page that fits)",
		      m, LIMIT / PAGE);
	if (have_counters && !move)
		check(m == 0 && fb == 0,
		      "vm.splice_move=0: nothing moved or taken (%ld, %ld)", m, fb);

	if (!stat(path, &st)) {
		r->st_size = st.st_size;
		r->st_blocks = st.st_blocks;
	}
	check(r->st_size == LIMIT && r->st_blocks == LIMIT / 512,
	      "file size %ld, %ld blocks of 512 (want %ld, %ld)", r->st_size,
	      r->st_blocks, LIMIT, LIMIT / 512);
	r->bfree_full = bfree(dir, &r->bavail_full);
	check(r->bfree_full == 0 && r->bavail_full == 0,
	      "statfs full: %ld free, %ld available (want 0, 0)", r->bfree_full,
	      r->bavail_full);
	verify_twice(path, 0, LIMIT, 1);
	if (unlink(path))
		check(0, "unlink: %s", strerror(errno));
	r->bfree_unlinked = bfree(dir, NULL);
	check(r->bfree_unlinked == LIMIT / PAGE, "statfs after unlink: %ld free (want %ld)",
	      r->bfree_unlinked, LIMIT / PAGE);

	/* Unaligned: nothing can move, the limit is the same. */
	counters_start();
	splice_over_limit(path, 100, DATA, 2, &r->u_first, &r->u_second,
			  &r->u_second_errno, &r->u_pos_after, &r->u_left_in_pipe);
	check(r->u_first == LIMIT - 100,
	      "256 KiB spliced at 100: first splice returns %ld (want %ld)",
	      r->u_first, LIMIT - 100);
	check(r->u_second == -1 && r->u_second_errno == ENOSPC,
	      "the next splice returns %ld, %s (want -1, ENOSPC)", r->u_second,
	      strerror(r->u_second_errno));
	check(r->u_pos_after == LIMIT && r->u_left_in_pipe == DATA - (LIMIT - 100),
	      "the file offset stops at %ld, %ld bytes left in the pipe (want %ld, %ld)",
	      r->u_pos_after, r->u_left_in_pipe, LIMIT, DATA - (LIMIT - 100));
	if (have_counters)
		check(moved() == 0, "unaligned: %ld pages moved (want 0)", moved());
	verify_twice(path, 100, LIMIT, 2);
	if (unlink(path))
		check(0, "unlink: %s", strerror(errno));
	r->u_bfree_unlinked = bfree(dir, NULL);
	check(r->u_bfree_unlinked == LIMIT / PAGE,
	      "statfs after unlink: %ld free (want %ld)", r->u_bfree_unlinked,
	      LIMIT / PAGE);
out:
	if (umount(dir))
		check(0, "umount %s: %s", dir, strerror(errno));
}

/* What a huge= run saw: huge pages must not depend on vm.splice_move. */
struct huge_result {
	long huge_kb, thp_alloc, moved, fallback;
	long folios[FOLIO_ORDERS];	/* the file's pages per folio order */
};

/* Splices HUGE_FILE bytes at 0 through a pipe of @chunk bytes. */
static void huge_run(const char *opts, long chunk, int move, struct huge_result *r)
{
	const char *dir = DIR_HUGE;
	char path[256];
	long huge0, thp0, huge_unlinked;
	struct stat st;
	int fd;

	printf("--- %s, %ld KiB per splice, vm.splice_move=%d ---\n", opts,
	       chunk >> 10, move);
	memset(r, 0, sizeof(*r));
	if (mount("tmpfs", dir, "tmpfs", 0, opts)) {
		check(0, "mount tmpfs %s: %s", opts, strerror(errno));
		return;
	}
	snprintf(path, sizeof(path), "%s/f", dir);
	fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0644);
	if (fd < 0) {
		check(0, "create %s: %s", path, strerror(errno));
		goto out;
	}
	huge0 = meminfo_kb("ShmemHugePages");
	thp0 = vmstat("thp_file_alloc");
	counters_start();
	splice_file(fd, 0, HUGE_FILE, chunk, 3);
	check(folio_orders(fd, HUGE_FILE, r->folios) == HUGE_FILE / PAGE,
	      "the file's folio orders read");
	print_folio_orders(opts, r->folios);
	close(fd);
	r->huge_kb = meminfo_kb("ShmemHugePages") - huge0;
	r->thp_alloc = vmstat("thp_file_alloc") - thp0;
	r->moved = moved();
	r->fallback = fallback();
	printf("ShmemHugePages +%ld kB, thp_file_alloc +%ld", r->huge_kb, r->thp_alloc);
	if (have_counters)
		printf(", pages moved: %ld, taken then copied: %ld", r->moved,
		       r->fallback);
	printf("\n");
	if (!stat(path, &st))
		check(st.st_blocks == HUGE_FILE / 512, "%lld blocks of 512 (want %ld)",
		      (long long)st.st_blocks, HUGE_FILE / 512);
	verify_twice(path, 0, HUGE_FILE, 3);
	if (unlink(path))
		check(0, "unlink: %s", strerror(errno));
	huge_unlinked = meminfo_kb("ShmemHugePages") - huge0;
	check(huge_unlinked == 0, "ShmemHugePages back after unlink (%+ld kB)",
	      huge_unlinked);
out:
	if (umount(dir))
		check(0, "umount %s: %s", dir, strerror(errno));
}

static void huge_tests(int *modes, int nmodes)
{
	struct huge_result always[2], within[2], small[2];
	char line[128] = "";
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/shmem_enabled", "r");

	if (!f) {
		printf("skip huge=: no transparent_hugepage/shmem_enabled (no THP)\n");
		return;
	}
	if (!fgets(line, sizeof(line), f))
		line[0] = 0;
	fclose(f);
	line[strcspn(line, "\n")] = 0;
	printf("shmem_enabled: %s\n", line);
	if (strstr(line, "[deny]")) {
		printf("skip huge=: shmem huge pages denied\n");
		return;
	}
	printf("policy: tmpfs copies where shmem would allocate a huge page; an order-0 donor only goes where shmem wants an order-0 folio\n");
	for (int i = 0; i < nmodes; i++) {
		int move = modes[i];

		if (have_switch)
			set_splice_move(move);
		huge_run("huge=always,size=16m", 1L << 20, move, &always[i]);
		check(always[i].huge_kb == HUGE_FILE >> 10 && always[i].thp_alloc == 2,
		      "huge=always: the file is in %ld kB of huge pages, %ld allocated (want %ld kB, 2)",
		      always[i].huge_kb, always[i].thp_alloc, HUGE_FILE >> 10);

		/*
		 * Whether within_size wants large folios for a write that
		 * extends the file is the kernel's choice: 6.12 looks at where
		 * the write ends, 6.1 only at i_size before it, 6.14+ also
		 * picks mTHP orders from the length. The comparison with
		 * vm.splice_move=0 below checks that moving does not change it.
		 */
		huge_run("huge=within_size,size=16m", HUGE_FILE, move, &within[i]);
		check(within[i].huge_kb == 0 || within[i].huge_kb == HUGE_FILE >> 10,
		      "huge=within_size, one 4 MiB splice: %ld kB of huge pages (want 0 or %ld)",
		      within[i].huge_kb, HUGE_FILE >> 10);
		/* Written 1 MiB at a time, within_size wants fewer huge pages. */
		huge_run("huge=within_size,size=16m", 1L << 20, move, &small[i]);

		/* Donors are order 0 and go wherever shmem puts order 0. */
		for (int k = 0; moves_required() && move && k < 3; k++) {
			const struct huge_result *r = k == 0 ? &always[i] :
						      k == 1 ? &within[i] : &small[i];

			check(r->moved == r->folios[0],
			      "%s: %ld pages moved, %ld in order-0 folios (want the same)",
			      k == 0 ? "huge=always, 1 MiB splices" :
			      k == 1 ? "huge=within_size, one 4 MiB splice" :
				       "huge=within_size, 1 MiB splices",
			      r->moved, r->folios[0]);
		}
	}
	if (nmodes == 2) {
		const struct huge_result *a[3][2] = {
			{ &always[0], &always[1] }, { &within[0], &within[1] },
			{ &small[0], &small[1] },
		};

		for (int k = 0; k < 3; k++)
			check(!memcmp(a[k][0]->folios, a[k][1]->folios,
				      sizeof(a[k][0]->folios)),
			      "%s: the same folio orders with and without moving",
			      k == 0 ? "huge=always" : k == 1 ? "huge=within_size" :
			      "huge=within_size by 1 MiB");
	}
	if (nmodes == 2)
		check(always[0].huge_kb == always[1].huge_kb &&
		      within[0].huge_kb == within[1].huge_kb &&
		      small[0].huge_kb == small[1].huge_kb,
		      "huge pages the same with and without moving: always %ld/%ld kB, within_size %ld/%ld kB, within_size by 1 MiB %ld/%ld kB",
		      always[0].huge_kb, always[1].huge_kb, within[0].huge_kb,
		      within[1].huge_kb, small[0].huge_kb, small[1].huge_kb);
}

int main(void)
{
	struct limit_result lim[2];
	int modes[2] = { 1, 0 }, nmodes = 1;
	long old_switch = read_number("/proc/sys/vm/splice_move");

	setvbuf(stdout, NULL, _IOLBF, 0);
	have_counters = vmstat("splice_move") >= 0;
	have_switch = old_switch >= 0;
	if (have_switch)
		nmodes = 2;
	printf("splice_move counters: %s, vm.splice_move: %s\n",
	       have_counters ? "yes" : "no (unpatched kernel: data checks only)",
	       have_switch ? "yes" : "no");
	mkdir(DIR_SMALL, 0755);
	mkdir(DIR_HUGE, 0755);

	for (int i = 0; i < nmodes; i++) {
		if (have_switch && set_splice_move(modes[i]))
			check(0, "set vm.splice_move=%d", modes[i]);
		limit_sequence(modes[i], &lim[i]);
	}
	if (nmodes == 2)
		check(!memcmp(&lim[0], &lim[1], sizeof(lim[0])),
		      "size=: every result the same with vm.splice_move=1 and 0");

	huge_tests(modes, nmodes);

	if (have_switch)
		set_splice_move(old_switch);
	rmdir(DIR_SMALL);
	rmdir(DIR_HUGE);
	printf("%s: %d of %d checks failed\n", failures ? "FAIL" : "PASS", failures,
	       checks);
	return failures ? 1 : 0;
}
