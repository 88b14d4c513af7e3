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
 * Four runs per filesystem:
 * - aligned: the writer writes whole pages (1 to 64 at a time) and the
 *   splices take whole pages, so every pipe buffer is a full anonymous page
 *   going to a page-aligned file position: on a patched kernel with
 *   vm.splice_move=1, nearly all of them must be moved (/proc/vmstat
 *   splice_move), except with data=journal, which copies: none may move.
 *   Where a write(2) of 64 KiB gets a large folio (ext4 from 6.16), a page
 *   moves only where that write would have got an order-0 folio, which the
 *   mix of sizes makes some of them: moves are reported, but no page may be
 *   taken from the pipe and then copied (splice_move_fallback);
 * - pages: the splices take one page at a time, which write(2) puts in an
 *   order-0 folio everywhere: nearly all must move (none with data=journal);
 * - large: 64 KiB writes and, once the pipe is full, 64 KiB splices. Where
 *   write(2) gets large folios, the file must end up in the very folio
 *   sizes that 64 KiB write(2)s give it (read from /proc/kpageflags),
 *   nothing may be taken from the pipe and then copied, and a page may
 *   move only into an order-0 folio (at the start of an inline_data file,
 *   say); elsewhere nearly all must move;
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
static const size_t one_page[] = { PAGE };
static const size_t sixteen_pages[] = { 16 * PAGE };
static const size_t odd_writes[] = {
	1, 100, PAGE - 1, PAGE + 1, 65536, 12345, 2 * PAGE - 1, 3, 300000,
	PAGE,
};
static const size_t odd_splices[] = {
	1000, 70000, PAGE, 1 << 20, 5, 3 * PAGE + 17,
};

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* How a run writes into the pipe and splices out of it. */
struct kind {
	const char *name;
	const size_t *writes, *splices;
	size_t nwrites, nsplices;
	int full;		/* splice only once the pipe holds a whole splice */
	int big_pipe;		/* a 1 MiB pipe instead of the default 64 KiB */
};

static const struct kind aligned = {
	"aligned", aligned_writes, aligned_splices, N(aligned_writes),
	N(aligned_splices), 0, 0,
};
static const struct kind pages = {
	"pages", aligned_writes, one_page, N(aligned_writes), 1, 0, 0,
};
static const struct kind large = {
	"large", sixteen_pages, sixteen_pages, 1, 1, 1, 0,
};
static const struct kind odd = {
	"odd", odd_writes, odd_splices, N(odd_writes), N(odd_splices), 0, 1,
};

/* What a run did: pages moved and taken then copied (-1: no counters). */
struct result {
	long moved, taken;
	long folios[FOLIO_ORDERS];	/* pages per folio order, after it */
	long cached;			/* pages counted in folios[], or -1 */
};

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
 * The folio sizes of a file that write(2) fills in 64 KiB chunks, as the
 * large run's splices do; 0, or 1 on a failure (printed).
 */
static int write_orders(const char *dir, long counts[FOLIO_ORDERS])
{
	char path[256];
	int fd, err = 0;

	snprintf(path, sizeof(path), "%s/file-written", dir);
	fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0644);
	if (fd < 0) {
		printf("FAIL: %s: %s\n", path, strerror(errno));
		return 1;
	}
	for (size_t off = 0; !err && off < TOTAL; off += 16 * PAGE)
		err = write(fd, data + off, 16 * PAGE) != 16 * PAGE;
	if (err)
		printf("FAIL: %s: write: %s\n", path, strerror(errno));
	else if (folio_orders(fd, TOTAL, counts) != NPAGES)
		err = 1;
	close(fd);
	unlink(path);
	if (!err)
		print_folio_orders(path, counts);
	return err;
}

/*
 * One run: a writer feeds the pipe while we splice it into dir/file.
 * Returns what the counters and the page cache say; 0, or 1 on a failure
 * (printed).
 */
static int run(const char *dir, const struct kind *k, struct result *r)
{
	char path[256];
	size_t done = 0;
	int p[2], fd, status, err = 0;
	pid_t pid;

	r->moved = vmstat("splice_move");
	r->taken = vmstat("splice_move_fallback");
	r->cached = -1;
	snprintf(path, sizeof(path), "%s/file-%s", dir, k->name);
	fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0644);
	if (fd < 0 || pipe(p)) {
		printf("FAIL: %s: open/pipe: %s\n", path, strerror(errno));
		return 1;
	}
	if (k->big_pipe && fcntl(p[1], F_SETPIPE_SZ, 1 << 20) < 0)
		printf("note: F_SETPIPE_SZ: %s\n", strerror(errno));
	pid = fork();
	if (pid < 0) {
		perror("fork");
		return 1;
	}
	if (!pid) {
		close(p[0]);
		writer(p[1], k->writes, k->nwrites);
	}
	close(p[1]);
	for (size_t n = 0; ; n++) {
		size_t len = k->splices[n % k->nsplices];
		ssize_t s;

		if (k->full)
			pipe_wait_for(p[0], len < TOTAL - done ? len : TOTAL - done);
		s = splice(p[0], NULL, fd, NULL, len, SPLICE_F_MOVE);
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
	if (!err && done != TOTAL) {
		printf("FAIL: %s: spliced %zu bytes, want %u\n", path, done, TOTAL);
		err = 1;
	}
	if (!err) {
		r->cached = folio_orders(fd, TOTAL, r->folios);
		err |= check(path, "from the page cache");
		if (drop_caches())
			printf("warning: drop_caches failed\n");
		err |= check(path, "after drop_caches");
	}
	close(fd);
	if (r->moved >= 0) {
		r->moved = vmstat("splice_move") - r->moved;
		r->taken = vmstat("splice_move_fallback") - r->taken;
		printf("%s %s: %zu bytes spliced, %ld of %u pages moved, %ld taken then copied\n",
		       dir, k->name, done, r->moved, NPAGES, r->taken);
	} else {
		printf("%s %s: %zu bytes spliced\n", dir, k->name, done);
	}
	if (r->cached >= 0) {
		char what[300];

		snprintf(what, sizeof(what), "%s %s", dir, k->name);
		print_folio_orders(what, r->folios);
	}
	unlink(path);
	return err;
}

static int counted;	/* the series is there and vm.splice_move is 1 */
static int require;	/* ... and pages must move (moves_required()) */

/* One expectation of a run; counts a failure when it does not hold. */
static void expect(int ok, const char *dir, const char *kind, const char *what,
		   long got)
{
	if (ok)
		return;
	printf("FAIL: %s %s: %s (%ld)\n", dir, kind, what, got);
	failures++;
}

/*
 * Every run on one filesystem, where pages can move (moves: 1) or must be
 * copied (moves: 0).
 */
static void run_on(const char *dir, int moves)
{
	int lf = large_folio_writes(dir);
	struct result r;

	printf("%s: a 64 KiB write(2) gets %s\n", dir,
	       lf < 0 ? "an unknown folio" : lf ? "a large folio" : "order-0 folios");
	if (lf < 0)
		failures++;

	failures += run(dir, &aligned, &r);
	if (require && moves && lf == 0)
		expect(r.moved >= NPAGES * 9 / 10, dir, "aligned",
		       "too few page-aligned whole pages moved", r.moved);
	if (counted && lf == 1)
		expect(!r.taken, dir, "aligned",
		       "pages taken from the pipe, then copied", r.taken);
	if (counted && !moves)
		expect(!r.moved, dir, "aligned", "pages moved, where it must copy",
		       r.moved);

	failures += run(dir, &pages, &r);
	if (require && moves)
		expect(r.moved >= NPAGES * 9 / 10, dir, "pages",
		       "too few single pages moved", r.moved);
	if (counted && !moves)
		expect(!r.moved, dir, "pages", "pages moved, where it must copy",
		       r.moved);

	failures += run(dir, &large, &r);
	if (require && moves && lf == 0)
		expect(r.moved >= NPAGES * 9 / 10, dir, "large",
		       "too few 64 KiB splices moved", r.moved);
	if (counted && lf == 1) {
		long written[FOLIO_ORDERS];

		failures += write_orders(dir, written);
		for (int k = 0; k < FOLIO_ORDERS; k++)
			expect(r.cached == NPAGES && r.folios[k] == written[k], dir,
			       "large", "pages per folio order differ from write(2)'s, at order",
			       k);
		expect(r.moved <= r.folios[0], dir, "large",
		       "more pages moved than there are order-0 folios", r.moved);
		expect(!r.taken, dir, "large",
		       "pages taken from the pipe, then copied", r.taken);
	}
	if (counted && !moves)
		expect(!r.moved, dir, "large", "pages moved, where it must copy",
		       r.moved);

	failures += run(dir, &odd, &r);
	if (r.moved >= 0)
		printf("%s: odd sizes moved %ld pages (not required)\n", dir,
		       r.moved);
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

	counted = counters && sw == 1;
	require = moves_required();
	data = malloc(TOTAL);
	if (!data)
		return 1;
	fill(data, TOTAL, 1);
	if (!counters)
		printf("splice_move counter: absent (unpatched kernel), checking data only\n");
	else
		printf("vm.splice_move = %ld: moves %s\n", sw,
		       require ? "required for aligned runs" : "not required");
	if (mount_tmpfs_ramfs(tmpfs, "size=64m", ramfs))
		return 1;
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
			struct result r;

			failures += run(tmpfs, &aligned, &r);
			expect(!r.moved, tmpfs, "aligned",
			       "vm.splice_move=0, yet pages moved", r.moved);
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
