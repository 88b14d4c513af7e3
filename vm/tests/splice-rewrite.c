// SPDX-License-Identifier: GPL-2.0
/*
 * splice-rewrite: pages moved into a block filesystem inside EOF take no
 * placeholder folio where none is needed. Inside EOF the series used to
 * prepare an ordinary folio for the write and swap the pipe's page in for
 * it (counted as splice_move_placeholder); now the page goes straight into
 * the page cache
 * - over blocks that are allocated and written (a file rewritten while not
 *   cached), on ext2 and on ext4 with and without delayed allocation;
 * - over holes and unwritten extents, on ext4 with delayed allocation,
 *   which reserves them into the page's own buffers.
 * Over holes and unwritten extents, ext2 and ext4 nodelalloc still use the
 * placeholder; data=journal moves nothing.
 *
 * Each phase splices NPAGES pages, one page per splice (ext4 wants a large
 * folio for a longer write, 6.16+), into a file, then checks the counters
 * and the data, in the cache and again from disk after a remount:
 * - rewrite: the file was written, synced and evicted (remount) before;
 * - sparse: the file was ftruncate()d to NPAGES pages of holes;
 * - unwritten: the file was fallocate()d (not on ext2);
 * - racing: sparse, while children fault the file's pages in through a
 *   mapping and zap them, read them, and evict the clean ones, at random:
 *   a page they bring in first is copied into, the others move while they
 *   race, and the data must be right.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "guest.h"

#define PAGE 4096
#define NPAGES 64

enum phase { REWRITE, SPARSE, UNWRITTEN, RACING, NPHASES };

static const char *const phase_name[NPHASES] = {
	"rewrite", "sparse", "unwritten", "racing",
};

/* A filesystem under test, and whether each phase may use a placeholder. */
struct target {
	const char *type, *mkfs_opts, *opts, *name;
	int moves;			/* 0: data=journal takes no donor */
	int placeholder[NPHASES];	/* 1: every page goes through one */
};

/*
 * The event ext4 traces each journal handle start with (by inode since 6.5),
 * or NULL: ext4_write_begin() must start at most one per page it writes.
 */
static const char *handle_event;

static const struct target targets[] = {
	{ "ext4", "", "", "ext4", 1, { 0, 0, 0, 0 } },
	{ "ext4", "-b 1024", "", "ext4 1k", 1, { 0, 0, 0, 0 } },
	{ "ext4", "", "nodelalloc", "ext4 nodelalloc", 1, { 0, 1, 1, 1 } },
	{ "ext2", "", "", "ext2", 1, { 0, 1, -1, 1 } },
	{ "ext4", "", "data=journal", "ext4 data=journal", 0, { 0, 0, 0, 0 } },
};

/* Splices NPAGES pages of @seed into @fd, one page per splice. */
static int splice_pages(int fd, unsigned int seed, const char *what)
{
	static unsigned char buf[PAGE];
	int p[2], rc = 0;

	if (pipe(p))
		return check(0, "%s: pipe: %s", what, strerror(errno)) - 1;
	for (long pg = 0; pg < NPAGES && !rc; pg++) {
		loff_t off = pg * PAGE;

		for (long i = 0; i < PAGE; i++)
			buf[i] = page_pattern(seed, pg, i);
		if (write(p[1], buf, PAGE) != PAGE ||
		    splice_full(p[0], fd, &off, PAGE))
			rc = check(0, "%s: page %ld: %s", what, pg,
				   strerror(errno)) - 1;
	}
	close(p[0]);
	close(p[1]);
	return rc;
}

/* Faults pages of @path in through a mapping and zaps them, at random. */
static void mapper(const char *path)
{
	int fd = open(path, O_RDONLY);
	volatile char *map;

	if (fd < 0)
		_exit(1);
	map = mmap(NULL, NPAGES * PAGE, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		_exit(1);
	/* One page per fault, not a readahead window of (large) folios. */
	madvise((char *)map, NPAGES * PAGE, MADV_RANDOM);
	for (unsigned int r = getpid();; r = r * 1103515245 + 12345) {
		long pg = (r >> 8) % NPAGES;

		(void)map[pg * PAGE];
		if (r & 1)
			madvise((char *)map + pg * PAGE, PAGE, MADV_DONTNEED);
		usleep(200);
	}
}

/* Reads pages of @path at random. */
static void reader(const char *path)
{
	static char buf[PAGE];
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		_exit(1);
	posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM);
	for (unsigned int r = getpid();; r = r * 1103515245 + 12345) {
		if (pread(fd, buf, PAGE, ((r >> 8) % NPAGES) * PAGE) < 0)
			_exit(1);
		usleep(200);
	}
}

/* Evicts the clean pages of @path, over and over. */
static void evictor(const char *path)
{
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		_exit(1);
	for (;;) {
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		usleep(1000);
	}
}

/* Makes @path, NPAGES pages long, as @phase wants it; the open fd. */
static int prepare(struct blockfs *b, const char *path, enum phase phase,
		   const char *what)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);

	if (fd < 0)
		return check(0, "%s: open: %s", what, strerror(errno)) - 1;
	if (phase == REWRITE) {
		if (splice_pages(fd, 100, what) || fsync(fd)) {
			close(fd);
			return -1;
		}
		close(fd);
		/* Evicted: the file's pages come from no cache. */
		if (blockfs_remount(b))
			return check(0, "%s: remount", what) - 1;
		fd = open(path, O_RDWR);
		if (fd < 0)
			return check(0, "%s: open: %s", what, strerror(errno)) - 1;
	} else if (phase == UNWRITTEN) {
		if (fallocate(fd, 0, 0, NPAGES * PAGE)) {
			close(fd);
			return check(0, "%s: fallocate: %s", what,
				     strerror(errno)) - 1;
		}
	} else if (ftruncate(fd, NPAGES * PAGE)) {
		close(fd);
		return check(0, "%s: ftruncate: %s", what, strerror(errno)) - 1;
	}
	return fd;
}

static void run_phase(const struct target *t, struct blockfs *b,
		      enum phase phase, int require)
{
	long moved, fallback, placeholder, handles;
	unsigned int seed = 1 + phase;
	pid_t kids[3] = { -1, -1, -1 };
	char what[96], path[192];
	int fd;

	snprintf(what, sizeof(what), "%s: %s", t->name, phase_name[phase]);
	snprintf(path, sizeof(path), "%s/rewrite", b->mnt);
	fd = prepare(b, path, phase, what);
	if (fd < 0)
		return;
	if (phase == RACING) {
		kids[0] = fork();
		if (kids[0] == 0)
			mapper(path);
		kids[1] = fork();
		if (kids[1] == 0)
			reader(path);
		kids[2] = fork();
		if (kids[2] == 0)
			evictor(path);
		usleep(20000);
	}

	trace_clear();
	moved = vmstat("splice_move");
	fallback = vmstat("splice_move_fallback");
	placeholder = vmstat("splice_move_placeholder");
	splice_pages(fd, seed, what);
	moved = vmstat("splice_move") - moved;
	fallback = vmstat("splice_move_fallback") - fallback;
	placeholder = vmstat("splice_move_placeholder") - placeholder;
	handles = handle_event ? trace_lines("caller ext4_write_begin+") : -1;

	for (int k = 0; k < 3; k++) {
		if (kids[k] > 0) {
			kill(kids[k], SIGKILL);
			waitpid(kids[k], NULL, 0);
		}
	}

	printf("%s: %ld of %d pages moved, %ld through a placeholder, %ld taken then copied, %ld ext4_write_begin() handles\n",
	       what, moved, NPAGES, placeholder, fallback, handles);
	if (require && !t->moves) {
		check(moved == 0, "%s: nothing moved", what);
	} else if (require) {
		/* Racing, a page faulted or read in first is copied into. */
		if (phase == RACING)
			check(moved > 0, "%s: pages moved while faults and reads raced",
			      what);
		else
			check(moved == NPAGES, "%s: every page moved", what);
		if (phase != RACING)
			check(fallback == 0, "%s: no page taken then copied",
			      what);
		if (t->placeholder[phase])
			check(placeholder == moved,
			      "%s: each move took a placeholder's place", what);
		else
			check(placeholder == 0, "%s: no placeholder folio", what);
	}
	/* Not one more to find out that a page goes over a hole. */
	if (handles >= 0)
		check(handles <= NPAGES,
		      "%s: %ld journal handles from ext4_write_begin() for %d pages",
		      what, handles, NPAGES);
	check_pattern(fd, NPAGES, seed, what, "cached");
	close(fd);
	if (blockfs_remount(b)) {
		check(0, "%s: remount", what);
		return;
	}
	fd = open(path, O_RDONLY);
	if (fd < 0) {
		check(0, "%s: open: %s", what, strerror(errno));
		return;
	}
	check_pattern(fd, NPAGES, seed, what, "from disk");
	close(fd);
	unlink(path);
}

int main(void)
{
	int require = moves_required();

	if (vmstat("splice_move_placeholder") < 0) {
		printf("kernel without splice_move_placeholder: nothing to test\n");
		return 77;
	}
	if (!trace_event("ext4/ext4_journal_start_inode", 1))
		handle_event = "ext4/ext4_journal_start_inode";
	else if (!trace_event("ext4/ext4_journal_start", 1))
		handle_event = "ext4/ext4_journal_start";
	else
		printf("no ext4 journal_start trace event: handles not counted\n");
	for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++) {
		const struct target *t = &targets[i];
		struct blockfs b;
		int rc = blockfs_setup(&b, "rewrite", t->type, t->mkfs_opts,
				       t->opts);

		if (rc == -1)
			check(0, "%s: setup", t->name);
		if (rc)
			continue;
		for (int phase = 0; phase < NPHASES; phase++)
			if (t->placeholder[phase] >= 0)
				run_phase(t, &b, phase, require);
		blockfs_teardown(&b);
	}
	if (handle_event)
		trace_event(handle_event, 0);
	printf("%s: %d failures\n", failures ? "FAIL" : "PASS", failures);
	return failures != 0;
}
