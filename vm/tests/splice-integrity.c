// SPDX-License-Identifier: GPL-2.0
/*
 * splice-integrity: every byte spliced from a write(2)-fed pipe lands
 * where it should on tmpfs, ramfs, ext4 and ext2 (on the scratch disks
 * zcsplice attaches), whether pages are moved or copied:
 * aligned and unaligned offsets, partial pages, appends, holes, overwrites
 * of cached pages, and a tee'd pipe whose other reader must still see the
 * original bytes. Runs in the runner's child memory cgroup (kmem charges
 * only show there) and checks each file again after drop_caches (a moved page that
 * was not dirtied reads back as zeroes).
 *
 * Races and other paths:
 * - mmap: another process keeps a MAP_SHARED mapping of the file and scans
 *   it while we splice-overwrite it and append whole pages (on tmpfs and
 *   ext4 also into punched holes); it may only ever see the old byte, the new byte
 *   or zero, and in the end its long-lived mapping must show exactly what
 *   read(2) shows (a moved page must be the page the mapping maps). A
 *   write through a fresh mapping must reach read(2) too, and all of it
 *   must survive drop_caches.
 * - truncation: one process ftruncate()s (and on tmpfs and ext4 punches
 *   holes) at
 *   random, including 0 and unaligned sizes, while we splice whole and
 *   partial pages at random offsets; every byte must then be 0 or the
 *   pattern byte of its offset, and a last known splice must read back
 *   exactly. The harness checks the console for kernel reports.
 * - O_DIRECT: splices from a write(2)-fed pipe into an O_DIRECT file on
 *   ext4: page-aligned whole pages, a 512-byte aligned offset,
 *   and unaligned offsets and lengths. For those, ext4 on 6.12 returns
 *   EINVAL (iomap's alignment check: ext4_dio_alignment() is 1 for a plain
 *   inode, so there is no buffered fallback) and the data stays in the
 *   pipe; a buffered fallback that writes the data is accepted as well.
 *   Plus a buffered ext4 file on the same filesystem, where the 16
 *   page-aligned whole pages must be moved; checked after drop_caches and
 *   after umount/mount. On tmpfs, O_DIRECT writes are
 *   buffered (generic_perform_write()), so pages may be moved there: the
 *   data is checked and the moves reported.
 * - ENOSPC on ext4: appends from a pipe into a filesystem with room for
 *   about 16 pages of 64 must stop with ENOSPC, what was written must read
 *   back, and once space is freed the rest of the pipe must complete the
 *   file byte for byte: a page refused for lack of space goes back to the
 *   pipe as it was (moved appends reserve their blocks before the page is
 *   visible, and must undo that on failure; a leaked reservation shows as
 *   a kernel warning when the filesystem is unmounted).
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
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "guest.h"

#define PAGE 4096
#define FILE_MAX (64 * PAGE)

static unsigned char model[FILE_MAX];	/* what the file must contain */
static size_t model_len;
static int failures;

static void fail(const char *what, const char *path)
{
	printf("FAIL: %s: %s (%s)\n", path, what, strerror(errno));
	failures++;
}

static void pattern(unsigned char *buf, size_t len, unsigned int seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (unsigned char)(seed * 167 + i * 13 + (i >> 12));
}

/* Writes len bytes into a pipe with write(2), splices them to fd at off. */
static void splice_at(int fd, const char *path, off_t off, size_t len, unsigned int seed)
{
	static unsigned char buf[FILE_MAX];
	int p[2];
	size_t done = 0;

	pattern(buf, len, seed);
	if (pipe(p)) {
		fail("pipe", path);
		return;
	}
	fcntl(p[1], F_SETPIPE_SZ, 1 << 20);
	while (done < len) {
		size_t chunk = len - done < 16 * PAGE ? len - done : 16 * PAGE;
		loff_t o = off + done;
		ssize_t w = write(p[1], buf + done, chunk);

		if (w != (ssize_t)chunk) {
			fail("write pipe", path);
			break;
		}
		if (splice_full(p[0], fd, &o, chunk)) {
			fail("splice", path);
			goto out;
		}
		done += chunk;
	}
	memcpy(model + off, buf, len);
	if ((size_t)off + len > model_len)
		model_len = off + len;
out:
	close(p[0]);
	close(p[1]);
}

static void verify(const char *path, const char *when)
{
	static unsigned char got[FILE_MAX];
	int fd = open(path, O_RDONLY);
	struct stat st;
	ssize_t n;

	if (fd < 0 || fstat(fd, &st)) {
		fail("open for verify", path);
		return;
	}
	if ((size_t)st.st_size != model_len) {
		printf("FAIL: %s %s: size %lld, want %zu\n", path, when,
		       (long long)st.st_size, model_len);
		failures++;
	}
	n = pread(fd, got, model_len, 0);
	close(fd);
	if (n != (ssize_t)model_len) {
		fail("short read", path);
		return;
	}
	for (size_t i = 0; i < model_len; i++) {
		if (got[i] != model[i]) {
			printf("FAIL: %s %s: byte %zu is %#x, want %#x\n", path, when,
			       i, got[i], model[i]);
			failures++;
			return;
		}
	}
}

/* A tee'd pipe: the file gets the data, the other reader still sees it. */
static void tee_case(const char *dir)
{
	static unsigned char buf[8 * PAGE], got[8 * PAGE];
	char path[256];
	int a[2], b[2], fd;
	ssize_t n;

	snprintf(path, sizeof(path), "%s/tee", dir);
	fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0644);
	if (fd < 0 || pipe(a) || pipe(b)) {
		fail("tee setup", path);
		return;
	}
	pattern(buf, sizeof(buf), 99);
	if (write(a[1], buf, sizeof(buf)) != (ssize_t)sizeof(buf) ||
	    tee(a[0], b[1], sizeof(buf), 0) != (ssize_t)sizeof(buf)) {
		fail("write/tee", path);
		return;
	}
	if (splice_full(a[0], fd, NULL, sizeof(buf))) {
		fail("splice after tee", path);
		return;
	}
	n = read(b[0], got, sizeof(got));
	if (n != (ssize_t)sizeof(got) || memcmp(got, buf, sizeof(buf)))
		fail("the tee'd reader lost the original bytes", path);
	if (pread(fd, got, sizeof(got), 0) != (ssize_t)sizeof(got) ||
	    memcmp(got, buf, sizeof(buf)))
		fail("file differs after tee", path);
	close(fd);
	close(a[0]);
	close(a[1]);
	close(b[0]);
	close(b[1]);
}

/* The byte that belongs at file offset off, for a given seed; never 0. */
static unsigned char pat_at(unsigned int seed, size_t off)
{
	unsigned char v = (unsigned char)(seed * 167 + off * 13 + (off >> 12) * 29);

	return v ? v : 0xa5;
}

/* Writes pat_at(seed, off...) into a fresh pipe and splices it to fd at off. */
static int splice_pat(int fd, off_t off, size_t len, unsigned int seed)
{
	static unsigned char buf[64 * PAGE];
	loff_t o = off;
	int p[2], ret = 0;

	if (len > sizeof(buf) || pipe(p))
		return -1;
	if (len > 16 * PAGE)
		fcntl(p[1], F_SETPIPE_SZ, (int)sizeof(buf));
	for (size_t k = 0; k < len; k++)
		buf[k] = pat_at(seed, off + k);
	if (write(p[1], buf, len) != (ssize_t)len || splice_full(p[0], fd, &o, len))
		ret = -1;
	close(p[0]);
	close(p[1]);
	return ret;
}

static void *shared_page(void)
{
	void *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

/* ---- a concurrent MAP_SHARED reader ---- */

#define MM_OLD 128			/* pages written first, pattern A */
#define MM_NEW 128			/* pages appended by splice, pattern B */
#define MM_PAGES (MM_OLD + MM_NEW)
#define MM_SEED_A 21
#define MM_SEED_B 22

struct mm_state {
	volatile int done;		/* the parent is through splicing */
	volatile long scans;		/* full scans the reader made */
	volatile long bad;		/* bytes that were neither A, B nor 0 */
	volatile long bad_off;
	volatile int bad_byte;
	volatile long final_off;	/* first byte where mapping != read(2) */
	volatile int reader_err;
};

static unsigned char mm_model[MM_PAGES * PAGE];

static unsigned char mm_a[MM_PAGES * PAGE], mm_b[MM_PAGES * PAGE];

/* One pass over what the mapping shows within i_size. */
static void mm_scan(const unsigned char *map, int fd, struct mm_state *st)
{
	const uint64_t *m = (const uint64_t *)map;
	const uint64_t *a = (const uint64_t *)mm_a, *b = (const uint64_t *)mm_b;
	struct stat sb;
	size_t size;

	if (fstat(fd, &sb)) {
		st->reader_err = errno;
		return;
	}
	size = sb.st_size < MM_PAGES * PAGE ? (size_t)sb.st_size : MM_PAGES * PAGE;
	for (size_t w = 0; w < size / 8; w++) {
		uint64_t v = m[w];

		if (v == b[w] || v == a[w] || !v)
			continue;
		/* Mixed within the word: judge byte by byte. */
		for (size_t i = w * 8; i < w * 8 + 8; i++) {
			unsigned char c = map[i];

			if (!c || c == mm_b[i] || c == mm_a[i])
				continue;
			if (!st->bad++) {
				st->bad_off = i;
				st->bad_byte = c;
			}
		}
	}
	st->scans++;
}

/* Lets the reader finish a scan while we are in the middle of things. */
static void mm_pace(struct mm_state *st)
{
	long seen = st->scans;
	double end = now() + 1.0;

	while (st->scans == seen && !st->reader_err && now() < end)
		sched_yield();
}

static void mm_reader(const char *path, struct mm_state *st)
{
	static unsigned char got[MM_PAGES * PAGE];
	const unsigned char *map;
	int fd = open(path, O_RDONLY);
	ssize_t n;

	if (fd < 0) {
		st->reader_err = errno;
		_exit(1);
	}
	map = mmap(NULL, MM_PAGES * PAGE, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED) {
		st->reader_err = errno;
		_exit(1);
	}
	while (!st->done)
		mm_scan(map, fd, st);
	mm_scan(map, fd, st);
	/* Now nothing changes: the old mapping must show what read(2) does. */
	n = pread(fd, got, sizeof(got), 0);
	if (n != sizeof(got)) {
		st->reader_err = n < 0 ? errno : EIO;
		_exit(1);
	}
	for (size_t i = 0; i < sizeof(got); i++) {
		if (map[i] != got[i]) {
			st->final_off = i;
			break;
		}
	}
	_exit(0);
}

/* Splices B over [pg, pg + n) pages of the mmap file, k pages at a time. */
static void mm_splice(int fd, const char *path, struct mm_state *st,
		      size_t pg, size_t n, size_t k)
{
	for (size_t i = pg; i < pg + n; i += k) {
		size_t len = (i + k > pg + n ? pg + n - i : k) * PAGE;

		if (splice_pat(fd, i * PAGE, len, MM_SEED_B)) {
			fail("splice into the mapped file", path);
			return;
		}
		for (size_t j = i * PAGE; j < i * PAGE + len; j++)
			mm_model[j] = pat_at(MM_SEED_B, j);
		mm_pace(st);
	}
}

static int mm_compare(const unsigned char *got, const char *path, const char *what)
{
	for (size_t i = 0; i < sizeof(mm_model); i++) {
		if (got[i] != mm_model[i]) {
			printf("FAIL: %s: %s: byte %zu (page %zu) is %#x, want %#x\n",
			       path, what, i, i / PAGE, got[i], mm_model[i]);
			failures++;
			return 1;
		}
	}
	return 0;
}

/* The mapping and read(2) against the model, with a fresh mapping. */
static void mm_verify(const char *path, const char *when)
{
	static unsigned char got[MM_PAGES * PAGE];
	unsigned char *map;
	char what[96];
	int fd = open(path, O_RDONLY), bad;

	if (fd < 0 || pread(fd, got, sizeof(got), 0) != sizeof(got)) {
		fail("read back the mapped file", path);
		if (fd >= 0)
			close(fd);
		return;
	}
	snprintf(what, sizeof(what), "read(2) %s", when);
	bad = mm_compare(got, path, what);
	map = mmap(NULL, sizeof(got), PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED) {
		fail("mmap", path);
		bad = 1;
	} else {
		snprintf(what, sizeof(what), "a fresh mapping %s", when);
		bad |= mm_compare(map, path, what);
		munmap(map, sizeof(got));
	}
	close(fd);
	if (!bad)
		printf("ok: %s: read(2) and a fresh mapping %s\n", path, when);
}

static void mmap_case(const char *dir, int can_punch)
{
	struct mm_state *st = shared_page();
	long moved = vmstat("splice_move");
	unsigned char *map;
	char path[256];
	int fd, status;
	pid_t pid;

	snprintf(path, sizeof(path), "%s/mapped", dir);
	fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0644);
	if (fd < 0 || !st) {
		fail("mmap case setup", path);
		return;
	}
	st->final_off = -1;
	memset(mm_a, 0, sizeof(mm_a));
	for (size_t i = 0; i < sizeof(mm_b); i++) {
		if (i < MM_OLD * PAGE)
			mm_a[i] = pat_at(MM_SEED_A, i);
		mm_b[i] = pat_at(MM_SEED_B, i);
	}
	memcpy(mm_model, mm_a, sizeof(mm_model));
	if (write(fd, mm_a, MM_OLD * PAGE) != MM_OLD * PAGE) {
		fail("write pattern A", path);
		return;
	}
	pid = fork();
	if (pid < 0) {
		fail("fork", path);
		return;
	}
	if (!pid)
		mm_reader(path, st);
	while (!st->scans && !st->reader_err)
		usleep(1000);

	mm_splice(fd, path, st, 0, 32, 8);		/* overwrite cached pages */
	mm_splice(fd, path, st, MM_OLD + 32, 16, 4);	/* append after a hole */
	mm_splice(fd, path, st, MM_OLD, 32, 1);	/* fill the hole, page by page */
	if (can_punch) {
		/* Empty indices under the mapping: a splice may move pages there. */
		if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      32 * PAGE, 32 * PAGE))
			fail("punch a hole", path);
		memset(mm_model + 32 * PAGE, 0, 32 * PAGE);
		mm_pace(st);
	}
	mm_splice(fd, path, st, 32, 32, 2);
	/* Unaligned overwrite: copied, never moved. */
	{
		size_t off = 64 * PAGE + 100, len = 20 * PAGE;

		for (size_t done = 0; done < len; done += 4 * PAGE) {
			if (splice_pat(fd, off + done, 4 * PAGE, MM_SEED_B))
				fail("unaligned splice into the mapped file", path);
			mm_pace(st);
		}
		for (size_t j = off; j < off + len; j++)
			mm_model[j] = pat_at(MM_SEED_B, j);
	}
	mm_splice(fd, path, st, MM_OLD + 48, MM_NEW - 48, 16);	/* append the rest */
	st->done = 1;
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
	    WEXITSTATUS(status) || st->reader_err) {
		printf("FAIL: %s: the mmap reader failed (status %#x, %s)\n", path,
		       status, strerror(st->reader_err));
		failures++;
	}
	printf("%s: the mmap reader made %ld scans\n", path, st->scans);
	if (st->bad) {
		printf("FAIL: %s: the mmap reader saw %ld bytes that were neither old, new nor 0; first at %ld: %#x\n",
		       path, st->bad, st->bad_off, st->bad_byte);
		failures++;
	}
	if (st->final_off >= 0) {
		printf("FAIL: %s: the reader's mapping differs from read(2) at byte %ld (page %ld)\n",
		       path, st->final_off, st->final_off / PAGE);
		failures++;
	} else if (!st->bad) {
		printf("ok: %s: the reader saw only old, new or 0 bytes, and its mapping matches read(2)\n",
		       path);
	}
	mm_verify(path, "from the page cache");
	if (drop_caches())
		printf("warning: drop_caches failed\n");
	mm_verify(path, "after drop_caches");

	/* A write through a mapping must reach read(2): the same pages. */
	map = mmap(NULL, sizeof(mm_model), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED) {
		fail("mmap for writing", path);
	} else {
		for (size_t pg = 0; pg < MM_PAGES; pg++) {
			size_t at = pg * PAGE + 17 + pg % 64;

			map[at] = ~mm_model[at];
			mm_model[at] = map[at];
		}
		munmap(map, sizeof(mm_model));
		mm_verify(path, "after writing through a mapping");
	}
	close(fd);
	if (drop_caches())
		printf("warning: drop_caches failed\n");
	mm_verify(path, "after writing through a mapping and drop_caches");
	if (moved >= 0)
		printf("%s: mmap case moved %ld pages\n", path,
		       vmstat("splice_move") - moved);
	munmap(st, PAGE);
	unlink(path);
}

/* ---- truncation racing the splice ---- */

#define TR_PAGES 48			/* the file stays below this */
#define TR_SEED 31
#define TR_SECONDS 3.0

struct tr_state {
	volatile int stop;
	volatile long truncs;
	volatile long punches;
	volatile int err;
	volatile long reads;		/* the reader's preads */
	volatile long bad;		/* bytes it saw that were neither 0 nor the pattern */
	volatile long bad_off;
	volatile int bad_byte;
	volatile int reader_err;
};

/*
 * Reads at random meanwhile, without i_rwsem (unlike the truncations and
 * the splices): on ramfs a read of a hole puts a zeroed page where a splice
 * may be inserting one.
 */
static void tr_reader(const char *path, struct tr_state *st)
{
	static unsigned char got[4 * PAGE];
	uint64_t rs = 0x13198a2e03707344ULL;
	int fd = open(path, O_RDONLY);

	if (fd < 0) {
		st->reader_err = errno;
		_exit(1);
	}
	while (!st->stop) {
		off_t off = xrand(&rs) % (TR_PAGES * PAGE);
		ssize_t n = pread(fd, got, 1 + xrand(&rs) % sizeof(got), off);

		if (n < 0) {
			st->reader_err = errno;
			break;
		}
		for (ssize_t i = 0; i < n; i++) {
			if (got[i] && got[i] != pat_at(TR_SEED, off + i) && !st->bad++) {
				st->bad_off = off + i;
				st->bad_byte = got[i];
			}
		}
		st->reads++;
	}
	close(fd);
	_exit(st->reader_err != 0);
}

static void truncator(const char *path, int can_punch, struct tr_state *st)
{
	uint64_t rs = 0x9e3779b97f4a7c15ULL;
	int fd = open(path, O_RDWR);

	if (fd < 0) {
		st->err = errno;
		_exit(1);
	}
	while (!st->stop) {
		uint32_t r = xrand(&rs);
		off_t size;

		switch (r % 8) {
		case 0:
			size = 0;
			break;
		case 1:
		case 2:
			size = (off_t)(xrand(&rs) % (TR_PAGES + 1)) * PAGE;
			break;
		default:
			size = xrand(&rs) % (TR_PAGES * PAGE);
			break;
		}
		if (can_punch && r % 8 == 7) {
			off_t off = xrand(&rs) % (TR_PAGES * PAGE);

			if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				      off, 1 + xrand(&rs) % (4 * PAGE))) {
				st->err = errno;
				break;
			}
			st->punches++;
			continue;
		}
		if (ftruncate(fd, size)) {
			st->err = errno;
			break;
		}
		st->truncs++;
		if (r & 0x100)
			usleep(r % 200);
	}
	close(fd);
	_exit(st->err != 0);
}

/* Every byte must be 0 or the pattern byte of its offset. */
static void tr_check(const char *path, const char *when)
{
	static unsigned char got[TR_PAGES * PAGE + PAGE];
	int fd = open(path, O_RDONLY);
	ssize_t n;

	if (fd < 0) {
		fail("open after the truncation race", path);
		return;
	}
	n = pread(fd, got, sizeof(got), 0);
	close(fd);
	if (n < 0 || n > TR_PAGES * PAGE) {
		printf("FAIL: %s %s: read %zd bytes, the file ends below %d\n",
		       path, when, n, TR_PAGES * PAGE);
		failures++;
		return;
	}
	for (ssize_t i = 0; i < n; i++) {
		if (got[i] && got[i] != pat_at(TR_SEED, i)) {
			printf("FAIL: %s %s: byte %zd (page %zd) is %#x, want 0 or %#x\n",
			       path, when, i, i / PAGE, got[i], pat_at(TR_SEED, i));
			failures++;
			return;
		}
	}
	printf("ok: %s %s: %zd bytes, each 0 or the pattern\n", path, when, n);
}

static void truncate_case(const char *dir, int can_punch)
{
	struct tr_state *st = shared_page();
	uint64_t rs = 0x243f6a8885a308d3ULL;
	long moved = vmstat("splice_move");
	long whole = 0, partial = 0;
	double end;
	char path[256];
	int fd, status;
	pid_t pid, rpid;

	snprintf(path, sizeof(path), "%s/truncated", dir);
	fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0644);
	if (fd < 0 || !st) {
		fail("truncation case setup", path);
		return;
	}
	pid = fork();
	if (pid < 0) {
		fail("fork", path);
		return;
	}
	if (!pid)
		truncator(path, can_punch, st);
	rpid = fork();
	if (rpid < 0) {
		fail("fork", path);
		st->stop = 1;
		waitpid(pid, &status, 0);
		return;
	}
	if (!rpid)
		tr_reader(path, st);
	end = now() + TR_SECONDS;
	while (now() < end && !st->err) {
		uint32_t r = xrand(&rs);
		size_t off, len;

		if (r % 3) {
			/* Whole pages at a page boundary: may be moved. */
			size_t k = 1 + xrand(&rs) % 8;

			off = (size_t)(xrand(&rs) % (TR_PAGES - k)) * PAGE;
			len = k * PAGE;
			whole++;
		} else {
			/* Partial pages, anywhere. */
			len = 1 + xrand(&rs) % (3 * PAGE);
			off = xrand(&rs) % (TR_PAGES * PAGE - len);
			partial++;
		}
		if (splice_pat(fd, off, len, TR_SEED)) {
			fail("splice while truncating", path);
			break;
		}
	}
	st->stop = 1;
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
	    WEXITSTATUS(status)) {
		printf("FAIL: %s: the truncating process failed: %s\n", path,
		       strerror(st->err));
		failures++;
	}
	if (waitpid(rpid, &status, 0) != rpid || !WIFEXITED(status) ||
	    WEXITSTATUS(status)) {
		printf("FAIL: %s: the reading process failed: %s\n", path,
		       strerror(st->reader_err));
		failures++;
	}
	if (st->bad) {
		printf("FAIL: %s: a concurrent read saw %ld bytes neither 0 nor the pattern; first at %ld: %#x, want %#x\n",
		       path, st->bad, st->bad_off, st->bad_byte,
		       pat_at(TR_SEED, st->bad_off));
		failures++;
	}
	printf("%s: %ld whole-page and %ld partial splices against %ld truncations, %ld hole punches and %ld reads",
	       path, whole, partial, st->truncs, st->punches, st->reads);
	if (moved >= 0)
		printf(", %ld pages moved", vmstat("splice_move") - moved);
	printf("\n");
	tr_check(path, "from the page cache");
	if (drop_caches())
		printf("warning: drop_caches failed\n");
	tr_check(path, "after drop_caches");

	/* And a known splice on the same file reads back exactly. */
	if (ftruncate(fd, 0)) {
		fail("ftruncate to 0", path);
	} else {
		memset(model, 0, sizeof(model));
		model_len = 0;
		splice_at(fd, path, 0, 8 * PAGE, 7);
		splice_at(fd, path, 12 * PAGE + 5, 3 * PAGE, 8);
		splice_at(fd, path, 20 * PAGE, 4 * PAGE + 1, 9);
		verify(path, "after the race, from the page cache");
		if (drop_caches())
			printf("warning: drop_caches failed\n");
		verify(path, "after the race, after drop_caches");
	}
	close(fd);
	munmap(st, PAGE);
	unlink(path);
}

/* ---- O_DIRECT and buffered writes on ext4 ---- */

#define DIO_PAGES 128
#define DIO_SEED 41

static unsigned char dio_model[DIO_PAGES * PAGE];
static size_t dio_len;

/*
 * Splices len bytes of the pattern to fd at off; the pipe gets them with
 * one write(2) per entry of chunks (so a short first chunk makes a short
 * first pipe buffer). Returns 0 when written, else the errno; on EINVAL
 * the bytes are drained from the pipe.
 */
static int dio_splice(int fd, off_t off, const size_t *chunks, size_t nchunks)
{
	static unsigned char buf[DIO_PAGES * PAGE];
	size_t len = 0, done = 0;
	loff_t o = off;
	int p[2], err = 0;

	for (size_t k = 0; k < nchunks; k++)
		len += chunks[k];
	if (off + len > sizeof(buf) || pipe(p))
		return EINVAL;
	fcntl(p[1], F_SETPIPE_SZ, 1 << 20);
	for (size_t k = 0; k < len; k++)
		buf[k] = pat_at(DIO_SEED, off + k);
	for (size_t k = 0; k < nchunks; k++) {
		if (write(p[1], buf + done, chunks[k]) != (ssize_t)chunks[k]) {
			err = errno ? errno : EIO;
			goto out;
		}
		done += chunks[k];
	}
	if (splice_full(p[0], fd, &o, len)) {
		err = errno;
		goto out;
	}
	memcpy(dio_model + off, buf, len);
	if (off + len > dio_len)
		dio_len = off + len;
out:
	close(p[0]);
	close(p[1]);
	return err;
}

static void dio_verify(const char *path, const char *when)
{
	static unsigned char got[DIO_PAGES * PAGE];
	struct stat sb;
	int fd = open(path, O_RDONLY);
	ssize_t n;

	if (fd < 0 || fstat(fd, &sb)) {
		fail("open for verify", path);
		return;
	}
	n = pread(fd, got, sizeof(got), 0);
	close(fd);
	if ((size_t)sb.st_size != dio_len || n != (ssize_t)dio_len) {
		printf("FAIL: %s %s: size %lld, read %zd, want %zu\n", path, when,
		       (long long)sb.st_size, n, dio_len);
		failures++;
		return;
	}
	for (size_t i = 0; i < dio_len; i++) {
		if (got[i] != dio_model[i]) {
			printf("FAIL: %s %s: byte %zu (page %zu) is %#x, want %#x\n",
			       path, when, i, i / PAGE, got[i], dio_model[i]);
			failures++;
			return;
		}
	}
	printf("ok: %s %s (%zu bytes)\n", path, when, dio_len);
}

/* One unaligned O_DIRECT splice: written (buffered fallback) or EINVAL. */
static void dio_unaligned(int fd, const char *path, const char *what, off_t off,
			  const size_t *chunks, size_t nchunks)
{
	int err = dio_splice(fd, off, chunks, nchunks);

	if (!err)
		printf("O_DIRECT %s: written (buffered fallback)\n", what);
	else if (err == EINVAL)
		printf("O_DIRECT %s: EINVAL, the data stays in the pipe\n", what);
	else {
		printf("FAIL: %s: O_DIRECT %s: %s\n", path, what, strerror(err));
		failures++;
	}
}

static void odirect_case(void)
{
	static const size_t p16[] = { 16 * PAGE }, p32[] = { 32 * PAGE };
	static const size_t p2[] = { 2 * PAGE }, p1[] = { PAGE };
	static const size_t odd[] = { 1000 };
	static const size_t short_then_page[] = { 100, PAGE };
	long moved = vmstat("splice_move");
	long copied = vmstat("splice_move_fallback");
	struct blockfs e;
	char path[256], bpath[256];
	int fd, err, rc;

	rc = blockfs_setup(&e, "integrity-direct", "ext4", "", "");
	if (rc) {
		if (rc == -2) {
			printf("skip: the O_DIRECT case needs ext4 on a disk\n");
		} else {
			printf("FAIL: ext4 for the O_DIRECT case\n");
			failures++;
		}
		return;
	}
	snprintf(path, sizeof(path), "%s/direct", e.mnt);
	fd = open(path, O_CREAT | O_TRUNC | O_RDWR | O_DIRECT, 0644);
	if (fd < 0) {
		fail("open O_DIRECT", path);
		blockfs_teardown(&e);
		return;
	}
	memset(dio_model, 0, sizeof(dio_model));
	dio_len = 0;
	/* Page-aligned whole pages: straight to disk. */
	err = dio_splice(fd, 0, p16, 1);
	if (!err)
		err = dio_splice(fd, 64 * PAGE, p32, 1);	/* after a hole */
	if (!err)
		err = dio_splice(fd, 40 * PAGE + 512, p2, 1);	/* 512-aligned */
	if (err) {
		printf("FAIL: %s: O_DIRECT splice of aligned pages: %s\n", path,
		       strerror(err));
		failures++;
	}
	dio_unaligned(fd, path, "at an unaligned offset", 50 * PAGE + 100, p1, 1);
	dio_unaligned(fd, path, "of an odd length", 52 * PAGE, odd, 1);
	/* A short buffer, then a whole page at a page boundary: a donor. */
	dio_unaligned(fd, path, "short buffer then a whole page", 57 * PAGE - 100,
		      short_then_page, 2);
	close(fd);
	dio_verify(path, "O_DIRECT, read back");
	if (drop_caches())
		printf("warning: drop_caches failed\n");
	dio_verify(path, "O_DIRECT, after drop_caches");

	/*
	 * Buffered: ext4 takes the whole pages, copies the rest. A page per
	 * splice: write(2) of a page gets an order-0 folio on every kernel,
	 * so the pages move even where ext4 has large folios (6.16+).
	 */
	snprintf(bpath, sizeof(bpath), "%s/buffered", e.mnt);
	fd = open(bpath, O_CREAT | O_TRUNC | O_RDWR, 0644);
	if (fd < 0) {
		fail("open", bpath);
	} else {
		static unsigned char keep[DIO_PAGES * PAGE];
		size_t keep_len = dio_len;

		memcpy(keep, dio_model, sizeof(keep));
		memset(dio_model, 0, sizeof(dio_model));
		dio_len = 0;
		err = 0;
		for (int k = 0; !err && k < 16; k++)
			err = dio_splice(fd, k * PAGE, p1, 1);
		if (!err)
			err = dio_splice(fd, 20 * PAGE + 7, p2, 1);
		if (err) {
			printf("FAIL: %s: buffered splice: %s\n", bpath, strerror(err));
			failures++;
		}
		close(fd);
		dio_verify(bpath, "buffered, from the page cache");
		if (blockfs_remount(&e)) {
			failures++;
		} else {
			dio_verify(bpath, "buffered, after umount/mount");
			memcpy(dio_model, keep, sizeof(keep));
			dio_len = keep_len;
			dio_verify(path, "O_DIRECT, after umount/mount");
		}
	}
	if (moved >= 0) {
		moved = vmstat("splice_move") - moved;
		copied = vmstat("splice_move_fallback") - copied;
		printf("ext4: %ld pages moved, %ld taken then copied\n", moved, copied);
		if (moves_required() && moved < 16) {
			printf("FAIL: ext4 moved %ld pages, want the 16 aligned ones\n",
			       moved);
			failures++;
		}
	}
	blockfs_teardown(&e);
}

/* tmpfs takes O_DIRECT, and writes through the page cache all the same. */
static void odirect_tmpfs_case(const char *dir)
{
	static const size_t p16[] = { 16 * PAGE }, p1[] = { PAGE };
	static const size_t short_then_page[] = { 100, PAGE };
	long moved = vmstat("splice_move");
	char path[256];
	int fd, err;

	snprintf(path, sizeof(path), "%s/direct", dir);
	fd = open(path, O_CREAT | O_TRUNC | O_RDWR | O_DIRECT, 0644);
	if (fd < 0) {
		printf("note: %s: no O_DIRECT on tmpfs here (%s)\n", path, strerror(errno));
		return;
	}
	memset(dio_model, 0, sizeof(dio_model));
	dio_len = 0;
	err = dio_splice(fd, 0, p16, 1);
	if (!err)
		err = dio_splice(fd, 32 * PAGE, p16, 1);
	if (!err)
		err = dio_splice(fd, 20 * PAGE + 100, p1, 1);
	if (!err)
		err = dio_splice(fd, 50 * PAGE - 100, short_then_page, 2);
	if (err) {
		printf("FAIL: %s: O_DIRECT splice: %s\n", path, strerror(err));
		failures++;
	}
	close(fd);
	dio_verify(path, "O_DIRECT on tmpfs, from the page cache");
	if (drop_caches())
		printf("warning: drop_caches failed\n");
	dio_verify(path, "O_DIRECT on tmpfs, after drop_caches");
	if (moved >= 0)
		printf("%s: O_DIRECT on tmpfs moved %ld pages\n", path,
		       vmstat("splice_move") - moved);
	unlink(path);
}

static void run_on(const char *dir, int can_punch)
{
	char path[256];
	int fd;

	snprintf(path, sizeof(path), "%s/f", dir);
	fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0644);
	if (fd < 0) {
		fail("create", path);
		return;
	}
	memset(model, 0, sizeof(model));
	model_len = 0;
	splice_at(fd, path, 0, 16 * PAGE, 1);		/* aligned, whole pages */
	splice_at(fd, path, 16 * PAGE, 5 * PAGE + 100, 2);	/* append, partial tail */
	splice_at(fd, path, 30 * PAGE, 4 * PAGE, 3);	/* after a hole */
	splice_at(fd, path, 3 * PAGE + 7, 2 * PAGE, 4);	/* unaligned overwrite */
	splice_at(fd, path, 8 * PAGE, 4 * PAGE, 5);	/* aligned overwrite of cached pages */
	splice_at(fd, path, 40 * PAGE + 2048, 3 * PAGE, 6);	/* unaligned append after a hole */
	verify(path, "from the page cache");
	close(fd);
	if (drop_caches())
		printf("warning: drop_caches failed\n");
	verify(path, "after drop_caches");
	tee_case(dir);
	mmap_case(dir, can_punch);
	truncate_case(dir, can_punch);
}

#define ENOSPC_PAGES 64

/*
 * Fills the filesystem of dir with a file of unwritten extents, then gives
 * back room for about 16 pages. Returns the filler's fd, or -1.
 */
static int fill_but_16_pages(const char *filler)
{
	off_t off = 0, chunk = 1L << 30;
	int fd = open(filler, O_CREAT | O_TRUNC | O_RDWR, 0644);

	if (fd < 0)
		return -1;
	while (chunk >= PAGE) {
		if (!fallocate(fd, 0, off, chunk))
			off += chunk;
		else if (errno == ENOSPC)
			chunk /= 2;
		else
			goto out;
	}
	if (!ftruncate(fd, off > 16 * PAGE ? off - 16 * PAGE : 0) && !fsync(fd))
		return fd;
out:
	close(fd);
	return -1;
}

static void enospc_case(const char *dir)
{
	static unsigned char want[ENOSPC_PAGES * PAGE], got[ENOSPC_PAGES * PAGE];
	char path[256], filler[256];
	long moved = vmstat("splice_move");
	loff_t off = 0;
	int p[2], fd, ffd, status, hit = 0;
	struct statvfs sv;
	pid_t pid;
	ssize_t n;

	snprintf(path, sizeof(path), "%s/enospc", dir);
	snprintf(filler, sizeof(filler), "%s/filler", dir);
	pattern(want, sizeof(want), 9);
	ffd = fill_but_16_pages(filler);
	fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0644);
	if (ffd < 0 || fd < 0 || pipe(p)) {
		fail("ENOSPC setup", path);
		goto out;
	}
	pid = fork();
	if (pid == 0) {
		/* An open filler would keep its blocks after the unlink. */
		close(ffd);
		close(fd);
		close(p[0]);
		_exit(write(p[1], want, sizeof(want)) != sizeof(want));
	}
	close(p[1]);
	while ((n = splice(p[0], NULL, fd, &off, sizeof(want), SPLICE_F_MOVE)) > 0)
		;
	if (n < 0 && errno == ENOSPC) {
		hit = 1;
	} else {
		statvfs(dir, &sv);
		printf("FAIL: %s: no ENOSPC with %lu blocks free: %zd at %lld\n",
		       path, (unsigned long)sv.f_bfree, n, (long long)off);
		failures++;
	}
	if (hit && (pread(fd, got, off, 0) != off || memcmp(got, want, off))) {
		fail("data before ENOSPC differs", path);
		hit = 0;
	}
	/* Make room: the rest of the pipe must complete the file. */
	close(ffd);
	ffd = -1;
	unlink(filler);
	sync();
	if (hit) {
		printf("%s: ENOSPC after %lld of %zu bytes\n", path,
		       (long long)off, sizeof(want));
		if (splice_full(p[0], fd, &off, sizeof(want) - off))
			fail("splice after freeing space", path);
		else if (pread(fd, got, sizeof(got), 0) != sizeof(got) ||
			 memcmp(got, want, sizeof(want)))
			fail("file differs after ENOSPC and retry", path);
		else if (drop_caches() || pread(fd, got, sizeof(got), 0) != sizeof(got) ||
			 memcmp(got, want, sizeof(want)))
			fail("file differs after drop_caches", path);
	}
	/* A writer still blocked on a full pipe gets EPIPE and exits. */
	close(p[0]);
	waitpid(pid, &status, 0);
	if (moved >= 0)
		printf("%s: ENOSPC case moved %ld pages\n", path,
		       vmstat("splice_move") - moved);
out:
	if (ffd >= 0)
		close(ffd);
	if (fd >= 0)
		close(fd);
	unlink(filler);
	unlink(path);
}

/* run_on() on a new filesystem on its scratch disk. */
static void run_on_disk(const char *type, int can_punch)
{
	char name[32];
	struct blockfs b;
	int rc;

	snprintf(name, sizeof(name), "integrity-%s", type);
	rc = blockfs_setup(&b, name, type, "", "");
	if (rc == -2) {
		printf("skip: no %s disk\n", type);
		return;
	}
	if (rc) {
		printf("FAIL: %s setup\n", type);
		failures++;
		return;
	}
	run_on(b.mnt, can_punch);
	if (!strcmp(type, "ext4"))
		enospc_case(b.mnt);
	blockfs_teardown(&b);
}

int main(void)
{
	const char *tmpfs = "/tmp/zcsplice-integrity-tmpfs";
	const char *ramfs = "/tmp/zcsplice-integrity-ramfs";
	long moved, copied;

	if (mount_tmpfs_ramfs(tmpfs, "size=64m", ramfs))
		return 1;
	moved = vmstat("splice_move");
	copied = vmstat("splice_move_fallback");
	run_on(tmpfs, 1);
	run_on(ramfs, 0);
	run_on_disk("ext4", 1);
	run_on_disk("ext2", 0);
	odirect_case();
	odirect_tmpfs_case(tmpfs);
	if (moved >= 0)
		printf("pages moved: %ld, taken then copied: %ld\n",
		       vmstat("splice_move") - moved,
		       vmstat("splice_move_fallback") - copied);
	umount(tmpfs);
	umount(ramfs);
	printf("%s: %d failures\n", failures ? "FAIL" : "PASS", failures);
	return failures != 0;
}
