// SPDX-License-Identifier: GPL-2.0
/*
 * splice-bench: throughput and system CPU time of splice(pipe -> file)
 * into tmpfs, ramfs and ext4, with SPLICE_F_MOVE (pipe pages are moved into
 * the page cache) and without it (they are copied), in one boot, with
 * vm.splice_move=1: the flag is the switch.
 *
 * A writer process write(2)s ZCSPLICE_BENCH_SIZE bytes into a pipe of the
 * default size, 64 KiB at a time; this process splices them into a fresh
 * file, as much as the pipe holds per call, or ZCSPLICE_BENCH_SPLICE bytes
 * per call once the pipe holds them (when set and not 0). Every pipe page
 * is then whole and lands on a page-aligned file offset, so with the flag
 * every page can be moved where the page cache would have allocated an
 * order-0 folio for it. After each rep (untimed) the pages of the file are
 * counted by the order of the folio that holds them. The cells (fs x
 * mode) are interleaved rep by rep, each mode first in every other rep
 * (ABBA), so that drift and the order hit both modes alike; rep 0 of
 * every cell is a warm-up.
 *
 * The rows (ZCSPLICE_BENCH_FS, comma-separated, in the order to run):
 * tmpfs (huge=never), ramfs, ext4 and ext4+fsync, and tmpfs-overwrite,
 * ramfs-overwrite and ext4-overwrite, where the file already holds @size
 * bytes in the page cache (written, untimed, before each rep; on ext4
 * also synced, so that its pages are clean) and the splice writes over
 * them: tmpfs and ramfs replace each cached page with the pipe's (the
 * bench sets vm.splice_move_replace=1 for that), ext4 copies over it.
 * ext4-rewrite writes over a file whose blocks hold data but which is not
 * cached (written, synced and evicted, untimed, before each rep): the
 * series moves each page in with no placeholder folio. In tmpfs-gift,
 * ramfs-gift and ext4-gift there is no writer child: the splicing process
 * itself writes each 64 KiB into fresh anonymous memory, vmsplices it with
 * SPLICE_F_GIFT, unmaps it and splices it, in both modes, as a program
 * moving its own memory into a file does, so that a move takes its own
 * pages (zero copies); on ext4 it goes in as on row ext4, beyond EOF. A
 * gift moves only once its giver has unmapped it, and only from the CPU
 * that faulted it in (a page fresh in another CPU's LRU batch is copied).
 * The ext4 rows use one filesystem that mkfs.ext4 (default options) makes
 * on the scratch disk /dev/vda; it is mounted noinit_itable, so that no
 * lazy inode table initialisation writes behind the reps. The ext4 row is
 * timed in the page cache only: the dirty limits are raised above the file
 * size and periodic writeback is off, so no writeback starts while a rep
 * is timed. Its file is then fsynced, removed and the filesystem synced,
 * untimed, so the next rep starts clean. The ext4+fsync row times the
 * fsync() as well.
 *
 * Results go to ZCSPLICE_BENCH_OUT, one JSON object per line: a header,
 * then one line per rep. Exits 77 on a kernel without the series.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "guest.h"

#define WRITE_SIZE (64 << 10)
#define ROOT "/tmp/zcsplice-bench"
#define CALIBRATE_SIZE (16 << 20)

static char buf[WRITE_SIZE];
static long page_size;

struct sample {
	double seconds, sys_seconds, user_seconds;
	long splice_move, splice_move_fallback, splice_move_replace;
	long splice_move_gift, splice_move_placeholder;
	long written;		/* pages written back while timed */
	long folios[FOLIO_ORDERS];	/* pages per folio order, after it */
};

/*
 * A row of the table, as its name says: FS[+fsync][-overwrite|-gift|-rewrite]
 * (zcsplice reads the names the same way). The filesystem; whether fsync()
 * is timed; whether the splice writes over a file that holds data already
 * (-overwrite: in the page cache; -rewrite: on disk only, @evict); whether
 * the writer gives the pipe its own pages (vmsplice(SPLICE_F_GIFT)).
 */
struct row {
	const char *name;
	const char *fs;
	int fsync;
	int overwrite;
	int gift;
	int evict;
};

#define MAX_ROWS 16

static const char *const filesystems[] = { "tmpfs", "ramfs", "ext4" };

#define NR_FILESYSTEMS (sizeof(filesystems) / sizeof(filesystems[0]))

/* The writeback knobs the ext4 rows change, saved to restore them. */
static const char *const dirty_knobs[] = {
	"/proc/sys/vm/dirty_ratio",
	"/proc/sys/vm/dirty_background_ratio",
	"/proc/sys/vm/dirty_writeback_centisecs",
};
static long dirty_saved[3];

/* vm.splice_move_replace before the bench, to restore; -1: none. */
static long replace_saved;

/* The growth of vmstat counter @name since @before; 0 if there is none. */
static long counted_since(const char *name, long before)
{
	return before < 0 ? 0 : vmstat(name) - before;
}

static double secs(struct timeval tv)
{
	return tv.tv_sec + tv.tv_usec / 1e6;
}

static unsigned long long env_number(const char *name)
{
	const char *s = getenv(name);

	if (!s || !*s) {
		fprintf(stderr, "splice-bench: %s is not set\n", name);
		exit(2);
	}
	return strtoull(s, NULL, 10);
}

/*
 * The copy a move saves is the kernel's memcpy() of a page (x86-64
 * arch/x86/lib/memcpy_64.S): rep movsb on a CPU with FSRM, else
 * memcpy_orig's loop of 4 x 8-byte moves. Under emulation the two differ
 * several-fold, so copy the way this CPU makes the kernel copy.
 */
static void rep_movsb(void *dst, const void *src, size_t n)
{
	asm volatile("rep movsb" : "+D"(dst), "+S"(src), "+c"(n) : : "memory");
}

/* @n: a multiple of 32. */
static void movq_loop(void *dst, const void *src, size_t n)
{
	asm volatile("1:\n\t"
		     "movq 0(%1), %%r8\n\t"
		     "movq 8(%1), %%r9\n\t"
		     "movq 16(%1), %%r10\n\t"
		     "movq 24(%1), %%r11\n\t"
		     "leaq 32(%1), %1\n\t"
		     "movq %%r8, 0(%0)\n\t"
		     "movq %%r9, 8(%0)\n\t"
		     "movq %%r10, 16(%0)\n\t"
		     "movq %%r11, 24(%0)\n\t"
		     "leaq 32(%0), %0\n\t"
		     "subq $32, %2\n\t"
		     "jnz 1b"
		     : "+D"(dst), "+S"(src), "+c"(n)
		     :
		     : "r8", "r9", "r10", "r11", "memory", "cc");
}

static int cpu_has(const char *flag)
{
	char line[4096], word[64];
	FILE *f = fopen("/proc/cpuinfo", "r");
	int found = 0;

	if (!f)
		return 0;
	snprintf(word, sizeof(word), " %s", flag);
	while (!found && fgets(line, sizeof(line), f)) {
		char *at = strncmp(line, "flags", 5) ? NULL : strstr(line, word);

		found = at && (at[strlen(word)] == ' ' || at[strlen(word)] == '\n');
	}
	fclose(f);
	return found;
}

/*
 * What the kernel's copy of one page costs here, in microseconds: the
 * fastest of four passes over 16 MiB. Sets *routine to what was timed.
 */
static double copy_us_per_page(long page, const char **routine)
{
	static char src[CALIBRATE_SIZE], dst[CALIBRATE_SIZE];
	int fsrm = cpu_has("fsrm");
	double best = 1e9;

	*routine = fsrm ? "rep movsb" : "movq loop";
	memset(src, 1, sizeof(src));
	memset(dst, 0, sizeof(dst));
	for (int pass = 0; pass < 4; pass++) {
		double t0 = now(), us;

		for (size_t off = 0; off < sizeof(src); off += page) {
			if (fsrm)
				rep_movsb(dst + off, src + off, page);
			else
				movq_loop(dst + off, src + off, page);
		}
		us = (now() - t0) * 1e6 / (sizeof(src) / page);
		if (us < best)
			best = us;
	}
	if (memcmp(src, dst, sizeof(src)))
		fprintf(stderr, "splice-bench: the calibration copy is wrong\n");
	return best;
}

/* The writer child: @size bytes into the pipe @fd, in WRITE_SIZE writes. */
static void writer(int fd, unsigned long long size)
{
	for (; size; size -= WRITE_SIZE)
		if (write(fd, buf, WRITE_SIZE) != WRITE_SIZE)
			_exit(1);
	_exit(0);
}

/*
 * Gives the pipe @fd WRITE_SIZE bytes of fresh anonymous memory with
 * vmsplice(SPLICE_F_GIFT), then unmaps it; 0 or -1.
 */
static int give(int fd)
{
	struct iovec iov;
	char *mem;

	mem = mmap(NULL, WRITE_SIZE, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		return -1;
	memcpy(mem, buf, WRITE_SIZE);
	iov.iov_base = mem;
	iov.iov_len = WRITE_SIZE;
	while (iov.iov_len) {
		ssize_t n = vmsplice(fd, &iov, 1, SPLICE_F_GIFT);

		if (n <= 0) {
			munmap(mem, WRITE_SIZE);
			return -1;
		}
		iov.iov_base = (char *)iov.iov_base + n;
		iov.iov_len -= n;
	}
	return munmap(mem, WRITE_SIZE);
}

/* The first and the last write must read back as written. */
static int verify(int fd, unsigned long long size)
{
	static char got[WRITE_SIZE];
	off_t at[2] = { 0, size - WRITE_SIZE };
	struct stat st;

	if (fstat(fd, &st) || (unsigned long long)st.st_size != size) {
		fprintf(stderr, "splice-bench: file has %lld bytes, want %llu\n",
			(long long)st.st_size, size);
		return -1;
	}
	for (int i = 0; i < 2; i++) {
		if (pread(fd, got, WRITE_SIZE, at[i]) != WRITE_SIZE ||
		    memcmp(got, buf, WRITE_SIZE)) {
			fprintf(stderr, "splice-bench: data differs at %lld\n",
				(long long)at[i]);
			return -1;
		}
	}
	return 0;
}

/* The splice flags of the mode being timed: SPLICE_F_MOVE or none. */
static unsigned int splice_flags;
/* Bytes per splice() call, once the pipe holds them; 0: what it holds. */
static unsigned long long splice_size;

/*
 * Fills @fd with @size bytes that are not the writer's, untimed; with
 * @evict, then drops them from the page cache, clean.
 */
static int prefill(int fd, unsigned long long size, int block, int evict)
{
	static char old[WRITE_SIZE];

	memset(old, 0xa5, sizeof(old));
	for (unsigned long long done = 0; done < size; done += WRITE_SIZE)
		if (write(fd, old, WRITE_SIZE) != WRITE_SIZE)
			return -1;
	if (block && fsync(fd))
		return -1;
	if (evict && posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED))
		return -1;
	return lseek(fd, 0, SEEK_SET) ? -1 : 0;
}

/*
 * One rep: a fresh file (for an overwrite row, filled first, untimed), a
 * writer child (in a gift row, this process gives between splices), splice
 * until @size bytes are in (then fsync() it, for a row that times it).
 * Timed from before the fork to the writer reaped; system CPU time is this
 * process's plus the writer's. Removing the file
 * is not timed; on a block filesystem (@block) neither are its fsync()
 * nor the sync() after the removal, which leave nothing for the next rep
 * to write back.
 */
static int one_rep(const char *file, unsigned long long size,
		   const struct row *row, int block, struct sample *s)
{
	long moved, fallback, replaced, gifts, placeholders, written;
	struct rusage self0, self1, child;
	unsigned long long done = 0, given = 0;
	int p[2], fd, status, err = 0;
	pid_t pid = 0;
	double t0;

	fd = open(file, O_CREAT | O_EXCL | O_RDWR, 0644);
	if (fd < 0 || pipe(p)) {
		perror(file);
		return -1;
	}
	if (row->overwrite && prefill(fd, size, block, row->evict)) {
		perror("splice-bench: writing the file to overwrite");
		return -1;
	}
	moved = vmstat("splice_move");
	fallback = vmstat("splice_move_fallback");
	replaced = vmstat("splice_move_replace");
	gifts = vmstat("splice_move_gift");
	placeholders = vmstat("splice_move_placeholder");
	written = vmstat("nr_written");
	getrusage(RUSAGE_SELF, &self0);
	memset(&child, 0, sizeof(child));
	t0 = now();
	if (!row->gift) {
		pid = fork();
		if (pid < 0) {
			perror("fork");
			return -1;
		}
		if (!pid) {
			close(p[0]);
			writer(p[1], size);
		}
		close(p[1]);
	}
	while (done < size) {
		unsigned long long len = size - done;
		ssize_t n;

		if (splice_size && len > splice_size)
			len = splice_size;
		if (row->gift) {
			if (given == done) {
				if (give(p[1])) {
					perror("splice-bench: vmsplice");
					err = -1;
					break;
				}
				given += WRITE_SIZE;
			}
			if (len > given - done)
				len = given - done;
		}
		if (splice_size)
			pipe_wait_for(p[0], len);
		n = splice(p[0], NULL, fd, NULL, len, splice_flags);

		if (n <= 0) {
			fprintf(stderr, "splice-bench: splice at %llu: %s\n",
				done, n ? strerror(errno) : "early EOF");
			err = -1;
			break;
		}
		done += n;
	}
	close(p[0]);
	if (row->gift)
		close(p[1]);
	if (!err && row->fsync && fsync(fd)) {
		perror("fsync");
		err = -1;
	}
	if (pid && (wait4(pid, &status, 0, &child) != pid ||
		    !WIFEXITED(status) || WEXITSTATUS(status))) {
		fprintf(stderr, "splice-bench: the writer failed\n");
		err = -1;
	}
	s->seconds = now() - t0;
	getrusage(RUSAGE_SELF, &self1);
	s->sys_seconds = secs(self1.ru_stime) - secs(self0.ru_stime) +
			 secs(child.ru_stime);
	s->user_seconds = secs(self1.ru_utime) - secs(self0.ru_utime) +
			  secs(child.ru_utime);
	s->splice_move = vmstat("splice_move") - moved;
	s->splice_move_fallback = vmstat("splice_move_fallback") - fallback;
	/* Counters of later patches: 0 on a kernel without them. */
	s->splice_move_replace = counted_since("splice_move_replace", replaced);
	s->splice_move_gift = counted_since("splice_move_gift", gifts);
	s->splice_move_placeholder = counted_since("splice_move_placeholder",
						   placeholders);
	s->written = vmstat("nr_written") - written;
	if (!err)
		err = verify(fd, size);
	if (!err && folio_orders(fd, size, s->folios) != (long)(size / page_size))
		err = -1;
	if (!err && block && fsync(fd)) {
		perror("fsync");
		err = -1;
	}
	close(fd);
	if (unlink(file)) {
		perror(file);
		err = -1;
	}
	if (block)
		sync();
	return err;
}

/* Reads the row @name (kept, not copied) into @row; -1 if it is no row. */
static int parse_row(const char *name, struct row *row)
{
	size_t len = strcspn(name, "+-");
	const char *rest = name + len;

	memset(row, 0, sizeof(*row));
	row->name = name;
	for (size_t i = 0; i < NR_FILESYSTEMS; i++)
		if (strlen(filesystems[i]) == len &&
		    !strncmp(name, filesystems[i], len))
			row->fs = filesystems[i];
	if (!strncmp(rest, "+fsync", 6)) {
		row->fsync = 1;
		rest += 6;
	}
	if (!strcmp(rest, "-overwrite")) {
		row->overwrite = 1;
	} else if (!strcmp(rest, "-gift")) {
		row->gift = 1;
	} else if (!strcmp(rest, "-rewrite")) {
		row->overwrite = 1;
		row->evict = 1;
	} else if (*rest) {
		return -1;
	}
	return row->fs ? 0 : -1;
}

/* Parses ZCSPLICE_BENCH_FS into @rows; returns their number, 0 if bad. */
static int parse_rows(const char *list, struct row *rows)
{
	static char copy[256];
	char *tok, *save;
	int n = 0;

	snprintf(copy, sizeof(copy), "%s", list);
	for (tok = strtok_r(copy, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		if (n == MAX_ROWS || parse_row(tok, &rows[n])) {
			fprintf(stderr, "splice-bench: bad row %s\n", tok);
			return 0;
		}
		n++;
	}
	return n;
}

static int uses(const struct row *rows, int n, const char *fs)
{
	for (int i = 0; i < n; i++)
		if (!strcmp(rows[i].fs, fs))
			return 1;
	return 0;
}

/*
 * Keeps a file of @size dirty in the page cache without writeback: the
 * background limit above it, the hard limit (and the throttling that
 * starts halfway between the two) further up, no periodic writeback.
 */
static int hold_dirty(unsigned long long size, unsigned long long *bg,
		      unsigned long long *limit)
{
	for (int i = 0; i < 3; i++)
		dirty_saved[i] = read_number(dirty_knobs[i]);
	*bg = size + (64 << 20);
	*limit = 2 * size + (128 << 20);
	if (write_number("/proc/sys/vm/dirty_bytes", *limit))
		return -1;
	if (write_number("/proc/sys/vm/dirty_background_bytes", *bg))
		return -1;
	return write_file("/proc/sys/vm/dirty_writeback_centisecs", "0");
}

/* Writing the ratios clears the byte limits. */
static void restore_dirty(void)
{
	for (int i = 0; i < 3; i++)
		if (dirty_saved[i] >= 0)
			write_number(dirty_knobs[i], dirty_saved[i]);
}

int main(void)
{
	static const char *const modes[] = { "move", "copy" };
	unsigned long long size = env_number("ZCSPLICE_BENCH_SIZE");
	unsigned long long reps = env_number("ZCSPLICE_BENCH_REPS");
	const char *splice_env = getenv("ZCSPLICE_BENCH_SPLICE");
	unsigned long long dirty_bg = 0, dirty_limit = 0;
	const char *path = getenv("ZCSPLICE_BENCH_OUT");
	const char *list = getenv("ZCSPLICE_BENCH_FS");
	struct row rows[MAX_ROWS];
	char dir[128], file[160], opts[64];
	struct blockfs ext4 = { 0 };
	const char *routine;
	int p[2], pipe_size, nrows, err = 0;
	double copy_us;
	struct utsname u;
	FILE *out;

	if (access("/proc/sys/vm/splice_move", F_OK)) {
		printf("kernel without the series: no /proc/sys/vm/splice_move\n");
		return 77;
	}
	/* 1: moves happen exactly where the splice passes SPLICE_F_MOVE. */
	if (set_splice_move(1) || read_number("/proc/sys/vm/splice_move") != 1) {
		perror("vm.splice_move=1");
		return 1;
	}
	/*
	 * The overwrite rows measure what a replacement costs against the copy
	 * it saves: turn it on (off by default; a kernel without the sysctl
	 * replaces wherever it can).
	 */
	replace_saved = read_number(SPLICE_MOVE_REPLACE_SYSCTL);
	if (replace_saved >= 0 && write_number(SPLICE_MOVE_REPLACE_SYSCTL, 1)) {
		perror("vm.splice_move_replace=1");
		return 1;
	}
	nrows = list ? parse_rows(list, rows) : 0;
	page_size = sysconf(_SC_PAGESIZE);
	splice_size = splice_env ? strtoull(splice_env, NULL, 10) : 0;
	if (!size || size % WRITE_SIZE || !reps || !path || !nrows ||
	    splice_size % page_size) {
		fprintf(stderr, "splice-bench: bad size, reps, rows or output\n");
		return 2;
	}
	out = fopen(path, "w");
	if (!out) {
		perror(path);
		return 1;
	}
	setvbuf(out, NULL, _IOLBF, 0);
	memset(buf, 0x5a, sizeof(buf));
	for (size_t i = 0; i < sizeof(buf); i += 64)
		buf[i] = (char)(i / 64);

	/* huge=never: a huge page is never a donor's place in the cache. */
	snprintf(opts, sizeof(opts), "size=%llu,huge=never", size + (64 << 20));
	mkdir(ROOT, 0755);
	for (int f = 0; f < 2; f++) {
		const char *fs = filesystems[f];

		if (!uses(rows, nrows, fs))
			continue;
		snprintf(dir, sizeof(dir), ROOT "/%s", fs);
		mkdir(dir, 0755);
		if (mount(fs, dir, fs, 0, f ? NULL : opts)) {
			perror(dir);
			return 1;
		}
	}
	if (uses(rows, nrows, "ext4")) {
		/* No lazy inode table init writing behind the reps. */
		if (blockfs_setup(&ext4, "bench-ext4", "ext4", "",
				  "noinit_itable")) {
			fprintf(stderr, "splice-bench: no ext4 on the scratch disk\n");
			return 1;
		}
		if (hold_dirty(size, &dirty_bg, &dirty_limit)) {
			perror("vm.dirty_bytes");
			return 1;
		}
	}

	if (pipe(p) || (pipe_size = fcntl(p[0], F_GETPIPE_SZ)) < 0) {
		perror("pipe");
		return 1;
	}
	close(p[0]);
	close(p[1]);
	if (splice_size > (unsigned long long)pipe_size) {
		fprintf(stderr, "splice-bench: splices of %llu bytes never fit a pipe of %d\n",
			splice_size, pipe_size);
		return 2;
	}
	uname(&u);
	copy_us = copy_us_per_page(page_size, &routine);
	fprintf(out, "{\"kernel\": \"%s\", \"size\": %llu, \"reps\": %llu, "
		"\"write_size\": %d, \"splice_size\": %llu, "
		"\"pipe_size\": %d, \"page_size\": %ld, "
		"\"cpus\": %ld, \"copy_us_per_page\": %.3f, "
		"\"copy_routine\": \"%s\", \"dirty_background_bytes\": %llu, "
		"\"dirty_bytes\": %llu}\n", u.release, size, reps,
		WRITE_SIZE, splice_size, pipe_size, page_size,
		sysconf(_SC_NPROCESSORS_ONLN), copy_us, routine, dirty_bg,
		dirty_limit);

	for (unsigned long long rep = 0; !err && rep <= reps; rep++) {
		for (int r = 0; !err && r < nrows; r++) {
			const struct row *row = &rows[r];
			int block = !strcmp(row->fs, "ext4");

			for (int k = 0; !err && k < 2; k++) {
				/* ABBA: each mode goes first in every other rep. */
				int m = rep & 1 ? 1 - k : k;
				struct sample s;

				splice_flags = m ? 0 : SPLICE_F_MOVE;
				if (block)
					snprintf(file, sizeof(file), "%s/file",
						 ext4.mnt);
				else
					snprintf(file, sizeof(file),
						 ROOT "/%s/file", row->fs);
				if (one_rep(file, size, row, block, &s)) {
					err = 1;
					break;
				}
				fprintf(out, "{\"fs\": \"%s\", \"mode\": \"%s\", "
					"\"rep\": %llu, \"warmup\": %s, "
					"\"seconds\": %.6f, \"sys_seconds\": %.6f, "
					"\"user_seconds\": %.6f, \"splice_move\": %ld, "
					"\"splice_move_fallback\": %ld, "
					"\"splice_move_replace\": %ld, "
					"\"splice_move_gift\": %ld, "
					"\"splice_move_placeholder\": %ld, "
					"\"written\": %ld, \"folios\": [",
					row->name, modes[m], rep,
					rep ? "false" : "true", s.seconds,
					s.sys_seconds, s.user_seconds,
					s.splice_move, s.splice_move_fallback,
					s.splice_move_replace,
					s.splice_move_gift,
					s.splice_move_placeholder, s.written);
				for (int k = 0; k < FOLIO_ORDERS; k++)
					fprintf(out, "%s%ld", k ? ", " : "",
						s.folios[k]);
				fprintf(out, "]}\n");
				printf("%s %s rep %llu: %.1f MiB/s, %.3f s sys\n",
				       row->name, modes[m], rep,
				       size / 1048576.0 / s.seconds,
				       s.sys_seconds);
				fflush(stdout);
			}
		}
	}
	if (dirty_limit)
		restore_dirty();
	blockfs_teardown(&ext4);
	for (int f = 0; f < 2; f++) {
		snprintf(dir, sizeof(dir), ROOT "/%s", filesystems[f]);
		if (uses(rows, nrows, filesystems[f]))
			umount(dir);
	}
	if (replace_saved >= 0)
		write_number(SPLICE_MOVE_REPLACE_SYSCTL, replace_saved);
	fclose(out);
	return err;
}
