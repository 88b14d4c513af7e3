// SPDX-License-Identifier: GPL-2.0
/*
 * splice-fsx: fsx-style random operations on one file, with moves among
 * them, every read checked against a model of the file. xfstests' fsx and
 * fsstress never splice whole pages of a write(2)-fed pipe with
 * SPLICE_F_MOVE, so they cannot reach the move path; this mixes it with
 * what they do.
 *
 * Operations, at random offsets and lengths in a file of up to MAXLEN:
 * - splice from a write(2)-fed pipe with SPLICE_F_MOVE: mostly whole,
 *   page-aligned pages (which move), also partial and unaligned ones;
 * - gift: pages of an anonymous mapping vmspliced with SPLICE_F_GIFT,
 *   unmapped, then spliced (they move);
 * - pwrite, and writes through a shared mapping (msync'ed now and then);
 * - pread, and reads through a shared mapping, compared with the model.
 *   Mappings are made for the operation, or are the one mapping of the
 *   whole file kept from start to end: a page replaced or moved in under
 *   it must not leave it showing another page than read(2) does;
 * - ftruncate up and down, hole punching (tmpfs, ext4, ext2 has none);
 * - fsync, fdatasync, POSIX_FADV_DONTNEED, and drop_caches every
 *   DROP_EVERY operations.
 * At the end the whole file is compared, again after drop_caches and, on
 * a block filesystem, after a remount.
 *
 * Targets: tmpfs and ramfs with vm.splice_move_replace=1 (moves over
 * cached pages replace them), ext4 with and without delayed allocation,
 * and ext2. Where moves are required (guest.h), each target must have
 * moved pages. The seed of each target is printed: ZCSPLICE_FSX_SEED and
 * ZCSPLICE_FSX_OPS run it again.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/uio.h>
#include <unistd.h>

#include "check.h"
#include "guest.h"

#define PAGE 4096
#define MAXPAGES 64
#define MAXLEN (MAXPAGES * PAGE)
#define MAXSPLICE (8 * PAGE)	/* within the pipe's default 64 KiB */
#define NOPS 8000
#define DROP_EVERY 1000
#define HISTORY 16

struct target {
	const char *name;
	const char *type;	/* tmpfs, ramfs, or the blockfs type */
	const char *mkfs_opts;
	const char *mount_opts;
	int punch;		/* FALLOC_FL_PUNCH_HOLE works */
	uint64_t seed;
};

static const struct target targets[] = {
	{ "tmpfs", "tmpfs", NULL, "size=64m", 1, 0x5eed0001 },
	{ "ramfs", "ramfs", NULL, "", 0, 0x5eed0002 },
	{ "ext4", "ext4", "", "", 1, 0x5eed0003 },
	{ "ext4 nodelalloc", "ext4", "", "nodelalloc", 1, 0x5eed0004 },
	{ "ext2", "ext2", "", "", 0, 0x5eed0005 },
};

struct fsx {
	const struct target *t;
	int fd;
	char path[160];
	uint64_t rng;
	unsigned char *model;	/* MAXLEN bytes: the file as it must read */
	long size;
	unsigned char *buf;
	unsigned char *map;	/* a shared mapping of all MAXLEN, kept */
	char history[HISTORY][96];
	long done;
};

static long rnd(struct fsx *f, long n)
{
	return n ? (long)(xrand(&f->rng) % n) : 0;
}

static void fill(struct fsx *f, unsigned char *p, long len)
{
	for (long i = 0; i < len; i++)
		p[i] = (unsigned char)xrand(&f->rng) | 1;	/* never 0 */
}

/* Records what operation f->done does, for print_history(). */
__attribute__((format(printf, 2, 3)))
static void note(struct fsx *f, const char *fmt, ...)
{
	char *h = f->history[f->done % HISTORY];
	size_t n = sizeof(f->history[0]);
	int used = snprintf(h, n, "%ld: ", f->done);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(h + used, n - used, fmt, ap);
	va_end(ap);
}

/* Prints the last operations, oldest first. */
static void print_history(struct fsx *f)
{
	long first = f->done >= HISTORY ? f->done - HISTORY + 1 : 0;

	printf("%s: the last operations (seed %#llx):\n", f->t->name,
	       (unsigned long long)f->t->seed);
	for (long i = first; i <= f->done; i++)
		printf("  %s\n", f->history[i % HISTORY]);
}

/* Compares got (read at off) with the model; -1 after printing a FAIL. */
static int compare(struct fsx *f, const unsigned char *got, long off, long len,
		   const char *how)
{
	for (long i = 0; i < len; i++) {
		unsigned char want = off + i < f->size ? f->model[off + i] : 0;

		if (got[i] != want) {
			check(0, "%s: %s: byte %ld (page %ld +%ld) is 0x%02x, want 0x%02x",
			      f->t->name, how, off + i, (off + i) / PAGE,
			      (off + i) % PAGE, got[i], want);
			print_history(f);
			return -1;
		}
	}
	return 0;
}

static int read_check(struct fsx *f, long off, long len, const char *how)
{
	ssize_t n = pread(f->fd, f->buf, len, off);
	long want = off >= f->size ? 0 : (off + len > f->size ? f->size - off : len);

	if (n != want) {
		check(0, "%s: %s: pread of %ld at %ld gave %zd, want %ld (%s)",
		      f->t->name, how, len, off, n, want, strerror(errno));
		print_history(f);
		return -1;
	}
	return compare(f, f->buf, off, want, how);
}

/* The model after writing len bytes of data at off. */
static void model_write(struct fsx *f, long off, const unsigned char *data,
			long len)
{
	memcpy(f->model + off, data, len);
	if (off + len > f->size)
		f->size = off + len;
}

/* An offset and a length for a write: mostly whole pages. */
static void pick_extent(struct fsx *f, long *off, long *len, long max)
{
	if (rnd(f, 4)) {
		long pages = 1 + rnd(f, max / PAGE);

		*off = rnd(f, MAXPAGES - pages + 1) * PAGE;
		*len = pages * PAGE;
	} else {
		*len = 1 + rnd(f, max);
		*off = rnd(f, MAXLEN - *len + 1);
	}
}

/*
 * Splices len bytes of the pipe p to off: at once, or a page at a time
 * (ext4 on 6.16+ wants a large folio for a longer write, and a donor is
 * a single page). 0, or -1 after printing a FAIL.
 */
static int splice_out(struct fsx *f, int p, long off, long len, int by_page,
		      const char *what)
{
	for (long done = 0; done < len;) {
		long n = by_page ? PAGE : len;
		loff_t pos = off + done;

		if (splice_full(p, f->fd, &pos, n))
			return check(0, "%s: splice of %s, %ld at %ld: %s",
				     f->t->name, what, n, off + done,
				     strerror(errno)) - 1;
		done += n;
	}
	return 0;
}

static int op_splice(struct fsx *f)
{
	long off, len;
	int p[2], ret = -1, by_page;

	pick_extent(f, &off, &len, MAXSPLICE);
	by_page = !(off % PAGE) && !(len % PAGE) && rnd(f, 2);
	note(f, "splice %ld+%ld%s", off, len, by_page ? " a page at a time" : "");
	fill(f, f->buf, len);
	if (pipe(p))
		return check(0, "%s: pipe: %s", f->t->name, strerror(errno)) - 1;
	if (write(p[1], f->buf, len) != len)
		check(0, "%s: write into a pipe: %s", f->t->name, strerror(errno));
	else if (!splice_out(f, p[0], off, len, by_page, "a pipe"))
		ret = 0;
	if (!ret)
		model_write(f, off, f->buf, len);
	close(p[0]);
	close(p[1]);
	return ret;
}

/* Whole pages of an anonymous mapping, gifted, unmapped, then spliced. */
static int op_gift(struct fsx *f)
{
	long pages = 1 + rnd(f, MAXSPLICE / PAGE), len = pages * PAGE;
	long off = rnd(f, MAXPAGES - pages + 1) * PAGE;
	struct iovec iov;
	unsigned char *m;
	int p[2], ret = -1;

	note(f, "gift %ld+%ld", off, len);
	if (pipe(p))
		return check(0, "%s: pipe: %s", f->t->name, strerror(errno)) - 1;
	m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		 -1, 0);
	if (m == MAP_FAILED) {
		check(0, "%s: mmap: %s", f->t->name, strerror(errno));
		goto out;
	}
	fill(f, m, len);
	memcpy(f->buf, m, len);
	iov.iov_base = m;
	iov.iov_len = len;
	if (vmsplice(p[1], &iov, 1, SPLICE_F_GIFT) != len) {
		check(0, "%s: vmsplice: %s", f->t->name, strerror(errno));
		munmap(m, len);
		goto out;
	}
	/* Only the pipe holds the pages now: they may move. */
	munmap(m, len);
	if (!splice_out(f, p[0], off, len, 1, "a gift"))
		ret = 0;
	if (!ret)
		model_write(f, off, f->buf, len);
out:
	close(p[0]);
	close(p[1]);
	return ret;
}

static int op_write(struct fsx *f)
{
	long off, len;

	pick_extent(f, &off, &len, MAXSPLICE);
	note(f, "pwrite %ld+%ld", off, len);
	fill(f, f->buf, len);
	if (pwrite(f->fd, f->buf, len, off) != len)
		return check(0, "%s: pwrite: %s", f->t->name, strerror(errno)) - 1;
	model_write(f, off, f->buf, len);
	return 0;
}

/* Maps the pages holding [off, off + len) of the file, shared. */
static unsigned char *map_range(struct fsx *f, long off, long len, int prot,
				long *map_off, long *map_len)
{
	void *m;

	*map_off = off / PAGE * PAGE;
	*map_len = off + len - *map_off;
	m = mmap(NULL, *map_len, prot, MAP_SHARED, f->fd, *map_off);
	if (m == MAP_FAILED) {
		check(0, "%s: mmap of %ld at %ld: %s", f->t->name, *map_len,
		      *map_off, strerror(errno));
		return NULL;
	}
	return m;
}

/*
 * Writes through a mapping of the range, or through the one kept all along
 * (a page replaced under it would leave it showing the old page).
 */
static int op_mapwrite(struct fsx *f)
{
	long off, len, moff = 0, mlen = 0;
	int kept = rnd(f, 2);
	unsigned char *m;

	if (f->size == 0)
		return 0;
	len = 1 + rnd(f, f->size < MAXSPLICE ? f->size : MAXSPLICE);
	off = rnd(f, f->size - len + 1);
	note(f, "mapwrite %ld+%ld%s", off, len, kept ? " (kept mapping)" : "");
	m = kept ? f->map : map_range(f, off, len, PROT_READ | PROT_WRITE,
				      &moff, &mlen);
	if (!m)
		return -1;
	fill(f, f->buf, len);
	memcpy(m + (off - moff), f->buf, len);
	if (rnd(f, 2) && msync(m + (off - moff) / PAGE * PAGE,
			       (off - moff) % PAGE + len, MS_SYNC)) {
		check(0, "%s: msync: %s", f->t->name, strerror(errno));
		if (!kept)
			munmap(m, mlen);
		return -1;
	}
	if (!kept)
		munmap(m, mlen);
	model_write(f, off, f->buf, len);
	return 0;
}

static int op_read(struct fsx *f)
{
	long len = 1 + rnd(f, MAXSPLICE), off = rnd(f, MAXLEN - len + 1);

	note(f, "pread %ld+%ld", off, len);
	return read_check(f, off, len, "pread");
}

static int op_mapread(struct fsx *f)
{
	long off, len, moff = 0, mlen = 0;
	int kept = rnd(f, 2), ret;
	unsigned char *m;

	if (f->size == 0)
		return 0;
	len = 1 + rnd(f, f->size < MAXSPLICE ? f->size : MAXSPLICE);
	off = rnd(f, f->size - len + 1);
	note(f, "mapread %ld+%ld%s", off, len, kept ? " (kept mapping)" : "");
	if (kept)
		return compare(f, f->map + off, off, len,
			       "read through the mapping kept all along");
	m = map_range(f, off, len, PROT_READ, &moff, &mlen);
	if (!m)
		return -1;
	ret = compare(f, m + (off - moff), off, len, "read through a mapping");
	munmap(m, mlen);
	return ret;
}

static int op_truncate(struct fsx *f)
{
	long size = rnd(f, 4) ? rnd(f, MAXLEN + 1) : rnd(f, MAXPAGES + 1) * PAGE;

	note(f, "truncate %ld (from %ld)", size, f->size);
	if (ftruncate(f->fd, size))
		return check(0, "%s: ftruncate: %s", f->t->name, strerror(errno)) - 1;
	if (size < f->size)
		memset(f->model + size, 0, f->size - size);
	f->size = size;
	return 0;
}

static int op_punch(struct fsx *f)
{
	long off, len;

	if (!f->t->punch || f->size == 0)
		return 0;
	pick_extent(f, &off, &len, MAXSPLICE);
	note(f, "punch %ld+%ld", off, len);
	if (fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len))
		return check(0, "%s: punch: %s", f->t->name, strerror(errno)) - 1;
	if (off < f->size)
		memset(f->model + off, 0, (off + len > f->size ? f->size : off + len) - off);
	return 0;
}

static int op_fsync(struct fsx *f)
{
	if (rnd(f, 2) ? fsync(f->fd) : fdatasync(f->fd))
		return check(0, "%s: fsync: %s", f->t->name, strerror(errno)) - 1;
	return 0;
}

static int op_fadvise(struct fsx *f)
{
	int r = posix_fadvise(f->fd, 0, 0, POSIX_FADV_DONTNEED);

	if (r)
		return check(0, "%s: fadvise: %s", f->t->name, strerror(r)) - 1;
	return 0;
}

/* The operations, and how often each is drawn (out of the sum). */
static const struct fsx_op {
	const char *name;
	int weight;
	int (*run)(struct fsx *f);
} ops[] = {
	{ "splice", 30, op_splice },
	{ "gift", 6, op_gift },
	{ "pwrite", 12, op_write },
	{ "mapwrite", 7, op_mapwrite },
	{ "pread", 15, op_read },
	{ "mapread", 8, op_mapread },
	{ "truncate", 7, op_truncate },
	{ "punch", 5, op_punch },
	{ "fsync", 5, op_fsync },
	{ "fadvise", 5, op_fadvise },
};

#define NOPS_KINDS ((int)(sizeof(ops) / sizeof(ops[0])))

/* An operation at random, by weight; none the target cannot do. */
static const struct fsx_op *pick_op(struct fsx *f)
{
	int sum = 0, r, i;

	for (i = 0; i < NOPS_KINDS; i++)
		sum += ops[i].weight;
	do {
		r = rnd(f, sum);
		for (i = 0; r >= ops[i].weight; i++)
			r -= ops[i].weight;
	} while (ops[i].run == op_punch && !f->t->punch);
	return &ops[i];
}

/* The whole file against the model: its size, then every byte. */
static int check_whole(struct fsx *f, const char *when)
{
	struct stat st;

	if (fstat(f->fd, &st) || st.st_size != f->size) {
		check(0, "%s: %s: size %lld, want %ld", f->t->name, when,
		      (long long)st.st_size, f->size);
		print_history(f);
		return -1;
	}
	if (read_check(f, 0, MAXLEN, when))
		return -1;
	return check(1, "%s: %s: all %ld bytes as the model has them",
		     f->t->name, when, f->size) - 1;
}

static int reopen(struct fsx *f)
{
	if (f->fd >= 0)
		close(f->fd);
	f->fd = open(f->path, O_RDWR);
	if (f->fd < 0)
		return check(0, "%s: reopen: %s", f->t->name, strerror(errno)) - 1;
	return 0;
}

/* Runs nops operations on a new file in dir; 0, or -1 after a FAIL. */
static int run_fsx(struct fsx *f, const char *dir, long nops, struct blockfs *b)
{
	long counts[NOPS_KINDS] = { 0 };

	snprintf(f->path, sizeof(f->path), "%s/fsx", dir);
	f->fd = open(f->path, O_CREAT | O_TRUNC | O_RDWR, 0644);
	if (f->fd < 0)
		return check(0, "%s: open: %s", f->t->name, strerror(errno)) - 1;
	f->size = 0;
	memset(f->model, 0, MAXLEN);
	f->map = mmap(NULL, MAXLEN, PROT_READ | PROT_WRITE, MAP_SHARED, f->fd, 0);
	if (f->map == MAP_FAILED) {
		f->map = NULL;
		return check(0, "%s: mmap: %s", f->t->name, strerror(errno)) - 1;
	}
	for (f->done = 0; f->done < nops; f->done++) {
		const struct fsx_op *op = pick_op(f);

		counts[op - ops]++;
		note(f, "%s", op->name);
		if (op->run(f))
			return -1;
		if ((f->done + 1) % DROP_EVERY == 0) {
			note(f, "drop_caches");
			if (drop_caches())
				return check(0, "drop_caches: %s", strerror(errno)) - 1;
		}
	}
	f->done--;	/* the history's last entry */
	printf("%s: %ld operations:", f->t->name, nops);
	for (int i = 0; i < NOPS_KINDS; i++)
		printf(" %s %ld", ops[i].name, counts[i]);
	printf("\n");
	if (check_whole(f, "at the end") ||
	    compare(f, f->map, 0, f->size, "the mapping kept all along, at the end"))
		return -1;
	munmap(f->map, MAXLEN);
	f->map = NULL;
	if (drop_caches() || reopen(f) || check_whole(f, "after drop_caches"))
		return -1;
	if (!b)
		return 0;
	close(f->fd);
	f->fd = -1;
	if (blockfs_remount(b))
		return check(0, "%s: remount", f->t->name) - 1;
	return reopen(f) || check_whole(f, "after a remount") ? -1 : 0;
}

static long env_number(const char *name, long dflt)
{
	const char *s = getenv(name);

	return s ? strtol(s, NULL, 0) : dflt;
}

int main(void)
{
	long nops = env_number("ZCSPLICE_FSX_OPS", NOPS);
	long replace_was = read_number(SPLICE_MOVE_REPLACE_SYSCTL);
	int skipped = 0;
	struct fsx f = { .fd = -1 };

	setvbuf(stdout, NULL, _IOLBF, 0);
	f.model = malloc(MAXLEN);
	f.buf = malloc(MAXLEN);
	if (!f.model || !f.buf)
		return 1;
	if (replace_was >= 0)
		write_number(SPLICE_MOVE_REPLACE_SYSCTL, 1);

	for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++) {
		const struct target *t = &targets[i];
		const char *dir = "/tmp/zcsplice-fsx";
		struct blockfs b, *bp = NULL;
		long moved = vmstat("splice_move");
		long gifts = vmstat("splice_move_gift");
		long replaced = vmstat("splice_move_replace");

		f.t = t;
		f.rng = env_number("ZCSPLICE_FSX_SEED", t->seed);
		if (!strcmp(t->type, "tmpfs") || !strcmp(t->type, "ramfs")) {
			mkdir(dir, 0755);
			if (mount(t->type, dir, t->type, 0, t->mount_opts)) {
				check(0, "%s: mount: %s", t->name, strerror(errno));
				continue;
			}
		} else {
			int rc = blockfs_setup(&b, "fsx", t->type, t->mkfs_opts,
					       t->mount_opts);

			if (rc == -2) {
				printf("%s: skipped\n", t->name);
				skipped++;
				continue;
			}
			if (rc) {
				check(0, "%s: setup", t->name);
				continue;
			}
			bp = &b;
			dir = b.mnt;
		}
		printf("%s: seed %#llx\n", t->name, (unsigned long long)f.rng);
		if (!run_fsx(&f, dir, nops, bp)) {
			moved = vmstat("splice_move") - moved;
			gifts = vmstat("splice_move_gift") - gifts;
			replaced = vmstat("splice_move_replace") - replaced;
			printf("%s: pages moved %ld (gifts %ld, over cached pages %ld)\n",
			       t->name, moved, gifts, replaced);
			if (moves_required())
				check(moved > 0 && gifts > 0,
				      "%s: the splices moved pages, gifts among them",
				      t->name);
		}
		if (f.map)
			munmap(f.map, MAXLEN);
		f.map = NULL;
		if (f.fd >= 0)
			close(f.fd);
		f.fd = -1;
		if (bp) {
			blockfs_teardown(bp);
		} else {
			umount(dir);
			rmdir(dir);
		}
	}
	if (replace_was >= 0)
		write_number(SPLICE_MOVE_REPLACE_SYSCTL, replace_was);
	printf("%d checks, %d failed, %d targets skipped\n", checks, failures,
	       skipped);
	return failures ? 1 : 0;
}
