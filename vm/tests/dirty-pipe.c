// SPDX-License-Identifier: GPL-2.0
/*
 * dirty-pipe: pages the pipe does not own must never be written through or
 * taken away (CVE-2022-0847, xfstests generic/680), on tmpfs, ramfs, ext4
 * and ext2 (on the scratch disks zcsplice attaches):
 *
 * - Dirty Pipe: a file with known content, chmod 0444 and opened O_RDONLY;
 *   1 byte of it is spliced into a pipe whose buffers were all used (and
 *   so once mergeable) before, then bytes are write(2)n into the pipe.
 *   They must come out of the pipe, and must not land in the file's page
 *   cache: the file is unchanged, also after drop_caches. Done on a file
 *   written with write(2), on one whose pages were moved in from a pipe by
 *   splice, and (tmpfs) on a hole, whose pipe buffer is the shared zero
 *   page.
 * - Page-cache pages through a pipe: a read-only file (on each filesystem)
 *   spliced into a pipe and on into a file on each filesystem, whole
 *   aligned pages, with SPLICE_F_MOVE: nothing may be moved or even taken
 *   (splice_move and splice_move_fallback stay put); the copy holds the
 *   data, and writing over the copy leaves the source intact.
 * - vmsplice: a user buffer vmspliced (plain, and with SPLICE_F_GIFT) into
 *   a pipe and spliced into a file on each filesystem; changing the buffer
 *   afterwards must not change the file, and nothing may be moved.
 *
 * On a kernel without the series the counters are absent: the data is
 * checked all the same.
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

#include "guest.h"

#define PAGE 4096
#define PAGES 16			/* every file here: 16 pages */
#define LEN (PAGES * PAGE)

static int failures;
static int counters;			/* the kernel has splice_move */
static int require_moves;		/* ... and vm.splice_move is 1 */

struct fs {
	const char *name;
	char dir[128];
	int moves;			/* the series moves pages into it */
};

static void fail(const char *what, const char *path)
{
	printf("FAIL: %s: %s (%s)\n", path, what, strerror(errno));
	failures++;
}

static void pattern(unsigned char *buf, size_t len, unsigned int seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (unsigned char)(seed * 59 + i * 11 + (i / PAGE) * 71 + 1);
}

/* The file must hold exactly want[0..len). */
static int same(const char *path, const unsigned char *want, size_t len,
		const char *when)
{
	static unsigned char got[LEN + 1];
	int fd = open(path, O_RDONLY);
	ssize_t n;

	if (fd < 0) {
		fail("open", path);
		return 1;
	}
	n = pread(fd, got, sizeof(got), 0);
	close(fd);
	if (n != (ssize_t)len) {
		printf("FAIL: %s %s: %zd bytes, want %zu\n", path, when, n, len);
		failures++;
		return 1;
	}
	for (size_t i = 0; i < len; i++) {
		if (got[i] != want[i]) {
			printf("FAIL: %s %s: byte %zu (page %zu) is %#x, want %#x\n",
			       path, when, i, i / PAGE, got[i], want[i]);
			failures++;
			return 1;
		}
	}
	return 0;
}

/* The two counters, to see that nothing was moved or taken. */
struct moves {
	long moved, taken;
};

static struct moves moves_now(void)
{
	struct moves m = { vmstat("splice_move"), vmstat("splice_move_fallback") };

	return m;
}

/* Nothing may have been moved or taken since m. */
static void no_moves(struct moves m, const char *what)
{
	struct moves n = moves_now();

	if (!counters)
		return;
	if (n.moved != m.moved || n.taken != m.taken) {
		printf("FAIL: %s: %ld pages moved and %ld taken, want none\n",
		       what, n.moved - m.moved, n.taken - m.taken);
		failures++;
	} else {
		printf("ok: %s: nothing moved or taken\n", what);
	}
}

/* Creates path with data, by write(2) or by splice from a write(2)-fed pipe. */
static int create(const char *path, const unsigned char *data, int by_splice)
{
	int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
	int p[2], ret = 0;

	if (fd < 0) {
		fail("create", path);
		return -1;
	}
	if (!by_splice) {
		if (write(fd, data, LEN) != LEN)
			ret = -1;
	} else if (pipe(p)) {
		ret = -1;
	} else {
		/*
		 * The default pipe holds exactly PAGES pages. A page per splice:
		 * write(2) of a page gets an order-0 folio on every kernel, so
		 * the pages move in even where files have large folios.
		 */
		if (write(p[1], data, LEN) != LEN)
			ret = -1;
		for (int i = 0; !ret && i < PAGES; i++)
			if (splice_full(p[0], fd, NULL, PAGE))
				ret = -1;
		close(p[0]);
		close(p[1]);
	}
	if (ret)
		fail("fill", path);
	if (fsync(fd))
		fail("fsync", path);
	close(fd);
	if (!ret && chmod(path, 0444))
		fail("chmod 0444", path);
	return ret;
}

/* A pipe all of whose buffers have been used, as in the exploit. */
static int used_pipe(int p[2])
{
	static unsigned char junk[PAGE];
	int size;

	if (pipe(p))
		return -1;
	size = fcntl(p[1], F_GETPIPE_SZ);
	memset(junk, 'J', sizeof(junk));
	for (int i = 0; i < size / PAGE; i++)
		if (write(p[1], junk, PAGE) != PAGE)
			return -1;
	for (int i = 0; i < size / PAGE; i++)
		if (read(p[0], junk, PAGE) != PAGE)
			return -1;
	return 0;
}

/*
 * The exploit, at off: splice 1 byte of rfd into a used pipe, write(2)
 * the payload after it. The pipe must give back that byte and the payload.
 */
static void dirty_pipe_at(int rfd, const char *path, loff_t off, unsigned char want)
{
	static const char payload[] = "DIRTY PIPE 0847!";
	char got[sizeof(payload) + 8];
	loff_t o = off;
	int p[2];
	ssize_t n;

	if (used_pipe(p)) {
		fail("prepare the pipe", path);
		return;
	}
	n = splice(rfd, &o, p[1], NULL, 1, 0);
	if (n != 1) {
		printf("FAIL: %s: splice 1 byte at %lld: %zd (%s)\n", path,
		       (long long)off, n, strerror(errno));
		failures++;
		goto out;
	}
	if (write(p[1], payload, sizeof(payload) - 1) != sizeof(payload) - 1) {
		fail("write after the spliced byte", path);
		goto out;
	}
	n = read(p[0], got, sizeof(got));
	if (n == 1)	/* separate buffers may come out in separate reads */
		n += read(p[0], got + 1, sizeof(got) - 1);
	if (n != sizeof(payload) || (unsigned char)got[0] != want ||
	    memcmp(got + 1, payload, sizeof(payload) - 1)) {
		printf("FAIL: %s: the pipe gave back %zd bytes, not the spliced byte and the payload\n",
		       path, n);
		failures++;
	}
out:
	close(p[0]);
	close(p[1]);
}

static void dirty_pipe_case(struct fs *fs, int by_splice)
{
	static const loff_t offs[] = {
		0, 1, 100, PAGE - 17, PAGE + 1, 5 * PAGE + 2000, 15 * PAGE + 7,
	};
	static unsigned char data[LEN];
	struct moves m = moves_now();
	char path[256];
	int fd;

	snprintf(path, sizeof(path), "%s/victim-%s", fs->dir,
		 by_splice ? "spliced" : "written");
	pattern(data, LEN, by_splice ? 2 : 1);
	if (create(path, data, by_splice))
		return;
	if (by_splice && counters) {
		long moved = vmstat("splice_move") - m.moved;

		printf("%s: %s: %ld of %d pages moved in\n", fs->name, path, moved, PAGES);
		if (require_moves && fs->moves && moved < PAGES) {
			printf("FAIL: %s: its pages were not moved in\n", path);
			failures++;
		}
	}
	fd = open(path, O_RDONLY);
	if (fd < 0) {
		fail("open O_RDONLY", path);
		return;
	}
	for (size_t k = 0; k < sizeof(offs) / sizeof(offs[0]); k++)
		dirty_pipe_at(fd, path, offs[k], data[offs[k]]);
	close(fd);
	if (!same(path, data, LEN, "after Dirty Pipe, from the page cache"))
		printf("ok: %s: Dirty Pipe left it unchanged\n", path);
	if (drop_caches())
		printf("warning: drop_caches failed\n");
	if (!same(path, data, LEN, "after Dirty Pipe and drop_caches"))
		printf("ok: %s: unchanged after drop_caches\n", path);
}

/* tmpfs splices a hole as the shared zero page: it must stay zero. */
static void zero_page_case(struct fs *fs)
{
	static unsigned char zeros[4 * PAGE];
	char path[256];
	unsigned char *anon;
	int fd;

	snprintf(path, sizeof(path), "%s/hole", fs->dir);
	fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0644);
	if (fd < 0 || ftruncate(fd, sizeof(zeros))) {
		fail("sparse file", path);
		return;
	}
	close(fd);
	chmod(path, 0444);
	fd = open(path, O_RDONLY);
	if (fd < 0) {
		fail("open O_RDONLY", path);
		return;
	}
	dirty_pipe_at(fd, path, 100, 0);
	dirty_pipe_at(fd, path, 2 * PAGE, 0);
	close(fd);
	if (!same(path, zeros, sizeof(zeros), "(a hole) after Dirty Pipe"))
		printf("ok: %s: the hole still reads as zeroes\n", path);
	/* A read fault on fresh anonymous memory maps the zero page. */
	anon = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (anon == MAP_FAILED) {
		fail("mmap", "anonymous memory");
	} else {
		if (memcmp(anon, zeros, PAGE)) {
			printf("FAIL: the zero page is not zero any more\n");
			failures++;
		} else {
			printf("ok: the zero page is still zero\n");
		}
		munmap(anon, PAGE);
	}
}

/* src (read-only, page cache) -> pipe -> dst, whole aligned pages. */
static void pagecache_case(struct fs *src_fs, struct fs *dst_fs)
{
	static unsigned char data[LEN], other[LEN];
	char src[256], dst[256], what[300];
	loff_t in = 0, out = 0;
	struct moves m;
	int sfd, dfd, p[2];

	snprintf(src, sizeof(src), "%s/read-only", src_fs->dir);
	snprintf(dst, sizeof(dst), "%s/copy-of-%s", dst_fs->dir, src_fs->name);
	pattern(data, LEN, 3);
	pattern(other, LEN, 4);
	sfd = open(src, O_RDONLY);
	dfd = open(dst, O_CREAT | O_TRUNC | O_RDWR, 0644);
	if (sfd < 0 || dfd < 0 || pipe(p)) {
		fail("open/pipe", dst);
		return;
	}
	m = moves_now();
	while (in < LEN) {
		ssize_t n = splice(sfd, &in, p[1], NULL, LEN - in, SPLICE_F_MOVE);

		if (n <= 0) {
			fail("splice file -> pipe", src);
			break;
		}
		while (n > 0) {
			ssize_t w = splice(p[0], NULL, dfd, &out, n, SPLICE_F_MOVE);

			if (w <= 0) {
				fail("splice pipe -> file", dst);
				goto done;
			}
			n -= w;
		}
	}
done:
	snprintf(what, sizeof(what), "%s page cache -> pipe -> %s", src_fs->name,
		 dst_fs->name);
	no_moves(m, what);
	close(p[0]);
	close(p[1]);
	same(dst, data, LEN, "(the copy)");
	/* Writing over the copy must not write into the source's pages. */
	if (pwrite(dfd, other, LEN, 0) != LEN)
		fail("write over the copy", dst);
	close(dfd);
	close(sfd);
	if (!same(src, data, LEN, "after writing over its copy") &&
	    !same(dst, other, LEN, "(the copy, written over)"))
		printf("ok: %s: source intact, the copy holds what was written\n", what);
	if (drop_caches())
		printf("warning: drop_caches failed\n");
	if (!same(src, data, LEN, "after writing over its copy, drop_caches") &&
	    !same(dst, other, LEN, "(the copy, written over), drop_caches"))
		printf("ok: %s: so after drop_caches too\n", what);
	unlink(dst);
}

/* A user buffer vmspliced into a pipe and spliced on into a file. */
static void vmsplice_case(struct fs *fs, int gift)
{
	static unsigned char data[LEN];
	unsigned char *buf = aligned_alloc(PAGE, LEN);
	struct iovec iov;
	char path[256], what[300];
	struct moves m;
	int fd, p[2];

	snprintf(path, sizeof(path), "%s/vmspliced%s", fs->dir, gift ? "-gift" : "");
	snprintf(what, sizeof(what), "vmsplice%s -> pipe -> %s",
		 gift ? " (SPLICE_F_GIFT)" : "", fs->name);
	pattern(data, LEN, gift ? 6 : 5);
	fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0644);
	if (!buf || fd < 0 || pipe(p)) {
		fail("buffer/open/pipe", path);
		return;
	}
	memcpy(buf, data, LEN);
	m = moves_now();
	iov.iov_base = buf;
	iov.iov_len = LEN;
	while (iov.iov_len) {
		ssize_t n = vmsplice(p[1], &iov, 1, gift ? SPLICE_F_GIFT : 0);

		if (n <= 0) {
			fail("vmsplice", path);
			goto out;
		}
		iov.iov_base = (char *)iov.iov_base + n;
		iov.iov_len -= n;
		if (splice_full(p[0], fd, NULL, n)) {
			fail("splice pipe -> file", path);
			goto out;
		}
	}
	/* The buffer is the process's again: the file must not follow it. */
	memset(buf, 0x5a, LEN);
	no_moves(m, what);
	if (!same(path, data, LEN, "after changing the vmspliced buffer"))
		printf("ok: %s: the file kept the data\n", what);
	close(fd);
	fd = -1;
	if (drop_caches())
		printf("warning: drop_caches failed\n");
	if (!same(path, data, LEN, "after changing the vmspliced buffer, drop_caches"))
		printf("ok: %s: so after drop_caches too\n", what);
out:
	if (fd >= 0)
		close(fd);
	close(p[0]);
	close(p[1]);
	free(buf);
	unlink(path);
}

int main(void)
{
	struct fs tmpfs = { "tmpfs", "/tmp/zcsplice-dirty-pipe-tmpfs", 1 };
	struct fs ramfs = { "ramfs", "/tmp/zcsplice-dirty-pipe-ramfs", 1 };
	struct fs ext4 = { "ext4", "", 1 };
	struct fs ext2 = { "ext2", "", 1 };
	struct fs *all[4] = { &tmpfs, &ramfs, &ext4, &ext2 };
	struct fs *on_disk[2] = { &ext4, &ext2 };
	static unsigned char data[LEN];
	struct blockfs disk[2];
	long sw = read_number("/proc/sys/vm/splice_move");
	int nfs = 2, ndisks = 0, rc;

	counters = vmstat("splice_move") >= 0;
	require_moves = moves_required();
	if (!counters)
		printf("splice_move counter: absent (unpatched kernel), checking data only\n");
	else
		printf("vm.splice_move = %ld\n", sw);
	mkdir(tmpfs.dir, 0755);
	mkdir(ramfs.dir, 0755);
	if (mount("tmpfs", tmpfs.dir, "tmpfs", 0, "size=32m") ||
	    mount("ramfs", ramfs.dir, "ramfs", 0, NULL)) {
		perror("mount");
		return 1;
	}
	/* ext4 and ext2 on their disks, as far as they exist. */
	for (int i = 0; i < 2; i++) {
		char name[32];

		snprintf(name, sizeof(name), "dirty-pipe-%s", on_disk[i]->name);
		rc = blockfs_setup(&disk[ndisks], name, on_disk[i]->name, "", "");
		if (rc == -2) {
			printf("skip: no %s disk\n", on_disk[i]->name);
			continue;
		}
		if (rc) {
			printf("FAIL: %s setup\n", on_disk[i]->name);
			failures++;
			continue;
		}
		snprintf(on_disk[i]->dir, sizeof(on_disk[i]->dir), "%s",
			 disk[ndisks].mnt);
		all[nfs++] = on_disk[i];
		ndisks++;
	}

	for (int i = 0; i < nfs; i++) {
		char path[256];

		dirty_pipe_case(all[i], 0);
		dirty_pipe_case(all[i], 1);
		snprintf(path, sizeof(path), "%s/read-only", all[i]->dir);
		pattern(data, LEN, 3);
		create(path, data, 0);
	}
	zero_page_case(&tmpfs);
	if (drop_caches())	/* the sources come from disk on ext4 and ext2 */
		printf("warning: drop_caches failed\n");
	for (int i = 0; i < nfs; i++)
		for (int j = 0; j < nfs; j++)
			pagecache_case(all[i], all[j]);
	for (int j = 0; j < nfs; j++) {
		vmsplice_case(all[j], 0);
		vmsplice_case(all[j], 1);
	}
	for (int i = 0; i < ndisks; i++) {
		char path[256];

		if (blockfs_remount(&disk[i])) {
			failures++;
			continue;
		}
		/* The victims, read from disk again. */
		snprintf(path, sizeof(path), "%s/victim-written", disk[i].mnt);
		pattern(data, LEN, 1);
		if (!same(path, data, LEN, "after umount/mount"))
			printf("ok: %s unchanged after umount/mount\n", path);
		snprintf(path, sizeof(path), "%s/victim-spliced", disk[i].mnt);
		pattern(data, LEN, 2);
		if (!same(path, data, LEN, "after umount/mount"))
			printf("ok: %s unchanged after umount/mount\n", path);
		blockfs_teardown(&disk[i]);
	}
	umount(tmpfs.dir);
	umount(ramfs.dir);
	rmdir(tmpfs.dir);
	rmdir(ramfs.dir);
	printf("%s: %d failures\n", failures ? "FAIL" : "PASS", failures);
	return failures != 0;
}
