// SPDX-License-Identifier: GPL-2.0
/*
 * splice-copy-reasons: every page a splice asks to move and copies after
 * all is reported by the trace event splice:splice_copy, with the reason.
 * Each case makes one reason happen on purpose, on a file of its own, and
 * checks that the event names that file's inode with that reason, and
 * that the data is right:
 * - no_donors: into ext4 data=journal, whose ->write_begin() takes none;
 * - partial: half a page;
 * - not_anon: a page the pipe got by splicing from a file;
 * - large_folio: 64 KiB into ext4, where that gets a large folio (6.16+);
 * - cached: over a cached tmpfs page, vm.splice_move_replace=0;
 * - gift_refused: vmsplice(SPLICE_F_GIFT) of memory still mapped;
 * - shared: a pipe page that tee() shares with another pipe;
 * - not_taken: into a full tmpfs, whose ->write_begin() fails (ENOSPC).
 * The placement reason (zone, node, minimum folio order) is left to
 * splice-numa, which checks what is copied under memory policies.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
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
#define EVENT "splice/splice_copy"
#define TMPFS "/tmp/zcsplice-reasons-tmpfs"
#define FULL "/tmp/zcsplice-reasons-full"

static unsigned char page[16 * PAGE];

/* Does the trace hold a splice_copy of @fd's inode with @reason? */
static int traced(int fd, const char *reason)
{
	char line[512], ino[48], why[48];
	struct stat st;
	int found = 0;
	FILE *f;

	if (fstat(fd, &st))
		return 0;
	snprintf(ino, sizeof(ino), " ino %llu ", (unsigned long long)st.st_ino);
	snprintf(why, sizeof(why), " reason %s\n", reason);
	f = fopen(TRACING "/trace", "r");
	if (!f)
		return 0;
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, "splice_copy:") && strstr(line, ino) &&
			strstr(line, why);
	fclose(f);
	return found;
}

/* Splices @len bytes of @p's read end into @fd at 0 with SPLICE_F_MOVE. */
static ssize_t splice_in(int *p, int fd, size_t len)
{
	loff_t off = 0;

	return splice(p[0], NULL, fd, &off, len, SPLICE_F_MOVE);
}

/* Checks the case @reason: traced as such, and @len bytes of @c at 0. */
static void expect(int fd, const char *reason, size_t len, int c)
{
	static unsigned char got[16 * PAGE];
	size_t i = 0;

	check(traced(fd, reason), "%s: traced as %s", reason, reason);
	if (pread(fd, got, len, 0) != (ssize_t)len) {
		check(0, "%s: short read", reason);
		return;
	}
	while (i < len && got[i] == c)
		i++;
	check(i == len, "%s: the file holds the data", reason);
}

/* Opens a new file @name in @dir; -1 after a FAIL line. */
static int new_file(const char *dir, const char *name)
{
	char path[256];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0644);
	if (fd < 0)
		check(0, "open %s: %s", path, strerror(errno));
	return fd;
}

/* A whole page of @c written into the pipe, then spliced into @fd at 0. */
static void one_page(int *p, int fd, int c, const char *what)
{
	memset(page, c, PAGE);
	if (write(p[1], page, PAGE) != PAGE || splice_in(p, fd, PAGE) != PAGE)
		check(0, "%s: splice: %s", what, strerror(errno));
}

static void partial(int *p)
{
	int fd = new_file(TMPFS, "partial");

	if (fd < 0)
		return;
	trace_clear();
	memset(page, 0x21, PAGE / 2);
	if (write(p[1], page, PAGE / 2) != PAGE / 2 ||
	    splice_in(p, fd, PAGE / 2) != PAGE / 2)
		check(0, "partial: splice: %s", strerror(errno));
	expect(fd, "partial", PAGE / 2, 0x21);
	close(fd);
}

static void not_anon(int *p)
{
	int src = new_file(TMPFS, "not-anon-src"), fd = new_file(TMPFS, "not-anon");
	loff_t off = 0;

	if (src < 0 || fd < 0)
		goto out;
	memset(page, 0x22, PAGE);
	if (pwrite(src, page, PAGE, 0) != PAGE ||
	    splice(src, &off, p[1], NULL, PAGE, 0) != PAGE) {
		check(0, "not_anon: fill the pipe from a file: %s", strerror(errno));
		goto out;
	}
	trace_clear();
	if (splice_in(p, fd, PAGE) != PAGE)
		check(0, "not_anon: splice: %s", strerror(errno));
	expect(fd, "not_anon", PAGE, 0x22);
out:
	if (src >= 0)
		close(src);
	if (fd >= 0)
		close(fd);
}

static void cached(int *p)
{
	long saved = read_number(SPLICE_MOVE_REPLACE_SYSCTL);
	int fd = new_file(TMPFS, "cached");

	if (fd < 0)
		return;
	memset(page, 0x23, PAGE);
	if (pwrite(fd, page, PAGE, 0) != PAGE) {
		check(0, "cached: write: %s", strerror(errno));
		close(fd);
		return;
	}
	write_number(SPLICE_MOVE_REPLACE_SYSCTL, 0);
	trace_clear();
	one_page(p, fd, 0x24, "cached");
	expect(fd, "cached", PAGE, 0x24);
	if (saved >= 0)
		write_number(SPLICE_MOVE_REPLACE_SYSCTL, saved);
	close(fd);
}

static void gift_refused(int *p)
{
	int fd = new_file(TMPFS, "gift");
	struct iovec iov;
	char *map;

	if (fd < 0)
		return;
	map = mmap(NULL, PAGE, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (map == MAP_FAILED) {
		check(0, "gift_refused: mmap: %s", strerror(errno));
		close(fd);
		return;
	}
	memset(map, 0x25, PAGE);
	iov.iov_base = map;
	iov.iov_len = PAGE;
	trace_clear();
	/* Still mapped when spliced: the process may write to it yet. */
	if (vmsplice(p[1], &iov, 1, SPLICE_F_GIFT) != PAGE ||
	    splice_in(p, fd, PAGE) != PAGE)
		check(0, "gift_refused: splice: %s", strerror(errno));
	expect(fd, "gift_refused", PAGE, 0x25);
	munmap(map, PAGE);
	close(fd);
}

static void shared(int *p)
{
	int fd = new_file(TMPFS, "shared"), q[2] = { -1, -1 };
	char drain[PAGE];

	if (fd < 0 || pipe(q)) {
		check(0, "shared: setup");
		goto out;
	}
	memset(page, 0x26, PAGE);
	/* tee() gives the second pipe a reference to the same page. */
	if (write(p[1], page, PAGE) != PAGE ||
	    tee(p[0], q[1], PAGE, 0) != PAGE) {
		check(0, "shared: tee: %s", strerror(errno));
		goto out;
	}
	trace_clear();
	if (splice_in(p, fd, PAGE) != PAGE)
		check(0, "shared: splice: %s", strerror(errno));
	expect(fd, "shared", PAGE, 0x26);
	check(read(q[0], drain, PAGE) == PAGE && !memcmp(drain, page, PAGE),
	      "shared: the other pipe still holds the data");
out:
	for (int i = 0; i < 2; i++)
		if (q[i] >= 0)
			close(q[i]);
	if (fd >= 0)
		close(fd);
}

/* A tmpfs of 16 pages, full: shmem_write_begin() fails with ENOSPC. */
static void not_taken(void)
{
	int p[2] = { -1, -1 }, fd, filler;

	mkdir(FULL, 0755);
	if (mount("tmpfs", FULL, "tmpfs", 0, "size=64k,huge=never")) {
		check(0, "not_taken: mount: %s", strerror(errno));
		return;
	}
	filler = new_file(FULL, "filler");
	fd = new_file(FULL, "not-taken");
	if (filler < 0 || fd < 0 || pipe(p))
		goto out;
	memset(page, 0x28, sizeof(page));
	if (write(filler, page, sizeof(page)) != sizeof(page)) {
		check(0, "not_taken: fill the tmpfs: %s", strerror(errno));
		goto out;
	}
	trace_clear();
	memset(page, 0x29, PAGE);
	if (write(p[1], page, PAGE) != PAGE) {
		check(0, "not_taken: write the pipe: %s", strerror(errno));
		goto out;
	}
	errno = 0;
	if (splice_in(p, fd, PAGE) < 0 && errno == ENOSPC)
		check(1, "not_taken: the splice fails with ENOSPC");
	else
		check(0, "not_taken: the splice did not fail with ENOSPC: %s",
		      strerror(errno));
	check(traced(fd, "not_taken"), "not_taken: traced as not_taken");
out:
	for (int i = 0; i < 2; i++)
		if (p[i] >= 0)
			close(p[i]);
	if (fd >= 0)
		close(fd);
	if (filler >= 0)
		close(filler);
	umount(FULL);
}

/* Cases on ext4: data=journal takes no donor; 64 KiB gets a large folio. */
static void on_ext4(void)
{
	struct blockfs b;
	int p[2], fd, rc;

	rc = blockfs_setup(&b, "reasons", "ext4", "", "data=journal");
	if (rc == -1)
		check(0, "ext4 data=journal: setup");
	if (rc == 0 && !pipe(p)) {
		fd = new_file(b.mnt, "journal");
		if (fd >= 0) {
			trace_clear();
			one_page(p, fd, 0x2a, "no_donors");
			expect(fd, "no_donors", PAGE, 0x2a);
			close(fd);
		}
		close(p[0]);
		close(p[1]);
	}
	blockfs_teardown(&b);

	rc = blockfs_setup(&b, "reasons", "ext4", "", "");
	if (rc == -1)
		check(0, "ext4: setup");
	if (rc == 0 && large_folio_writes(b.mnt) == 1 && !pipe(p)) {
		fd = new_file(b.mnt, "large");
		memset(page, 0x2b, sizeof(page));
		if (fd >= 0) {
			trace_clear();
			if (write(p[1], page, sizeof(page)) != sizeof(page) ||
			    splice_in(p, fd, sizeof(page)) != sizeof(page))
				check(0, "large_folio: splice: %s", strerror(errno));
			expect(fd, "large_folio", sizeof(page), 0x2b);
			close(fd);
		}
		close(p[0]);
		close(p[1]);
	} else if (rc == 0) {
		printf("ext4 here writes 64 KiB in order-0 folios: no large_folio case\n");
	}
	blockfs_teardown(&b);
}

int main(void)
{
	int p[2];

	if (trace_event(EVENT, 1)) {
		printf("kernel without the %s event: nothing to test\n", EVENT);
		return 77;
	}
	if (set_splice_move(1)) {
		printf("FAIL: enable vm.splice_move\n");
		return 1;
	}
	mkdir(TMPFS, 0755);
	if (mount("tmpfs", TMPFS, "tmpfs", 0, "size=64m,huge=never") || pipe(p)) {
		printf("FAIL: mount %s: %s\n", TMPFS, strerror(errno));
		return 1;
	}
	partial(p);
	not_anon(p);
	cached(p);
	gift_refused(p);
	shared(p);
	close(p[0]);
	close(p[1]);
	umount(TMPFS);
	not_taken();
	on_ext4();
	trace_event(EVENT, 0);
	printf("%s: %d failures\n", failures ? "FAIL" : "PASS", failures);
	return failures != 0;
}
