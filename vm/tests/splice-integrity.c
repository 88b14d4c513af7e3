// SPDX-License-Identifier: GPL-2.0
/*
 * splice-integrity: every byte spliced from a write(2)-fed pipe lands
 * where it should on tmpfs and ramfs, whether pages are moved or copied:
 * aligned and unaligned offsets, partial pages, appends, holes, overwrites
 * of cached pages, and a tee'd pipe whose other reader must still see the
 * original bytes. Runs in the runner's child memory cgroup (kmem charges
 * only show there) and checks each file again after drop_caches (a moved page that
 * was not dirtied reads back as zeroes).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
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
		ssize_t w = write(p[1], buf + done, chunk), s;

		if (w != (ssize_t)chunk) {
			fail("write pipe", path);
			break;
		}
		for (size_t left = chunk; left; left -= s) {
			s = splice(p[0], NULL, fd, &o, left, 0);
			if (s <= 0) {
				fail("splice", path);
				goto out;
			}
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
	for (size_t left = sizeof(buf); left; ) {
		n = splice(a[0], NULL, fd, NULL, left, 0);
		if (n <= 0) {
			fail("splice after tee", path);
			return;
		}
		left -= n;
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

static void run_on(const char *dir)
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
}

int main(void)
{
	const char *tmpfs = "/tmp/zcsplice-integrity-tmpfs";
	const char *ramfs = "/tmp/zcsplice-integrity-ramfs";
	long moved, copied;

	mkdir(tmpfs, 0755);
	mkdir(ramfs, 0755);
	if (mount("tmpfs", tmpfs, "tmpfs", 0, "size=64m") ||
	    mount("ramfs", ramfs, "ramfs", 0, NULL)) {
		perror("mount");
		return 1;
	}
	moved = vmstat("splice_move");
	copied = vmstat("splice_move_fallback");
	run_on(tmpfs);
	run_on(ramfs);
	if (moved >= 0)
		printf("pages moved: %ld, taken then copied: %ld\n",
		       vmstat("splice_move") - moved,
		       vmstat("splice_move_fallback") - copied);
	umount(tmpfs);
	umount(ramfs);
	printf("%s: %d failures\n", failures ? "FAIL" : "PASS", failures);
	return failures != 0;
}
