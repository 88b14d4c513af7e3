// SPDX-License-Identifier: GPL-2.0
/*
 * splice-basic: data written into a pipe and spliced into a tmpfs file
 * reads back intact (from the page cache, and after drop_caches), and
 * /proc/vmstat shows whether pages were moved.
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

#define PAGES 64
#define PAGE 4096

static void fill(unsigned char *buf, size_t len, unsigned int seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (unsigned char)(seed * 131 + i * 7 + i / PAGE);
}

static int check(const char *path, const unsigned char *want, size_t len)
{
	static unsigned char got[PAGES * PAGE];
	int fd = open(path, O_RDONLY);
	ssize_t n;

	if (fd < 0 || (n = read(fd, got, len)) != (ssize_t)len) {
		printf("FAIL: read back %s: %s\n", path, strerror(errno));
		return 1;
	}
	close(fd);
	for (size_t i = 0; i < len; i++) {
		if (got[i] != want[i]) {
			printf("FAIL: %s differs at byte %zu\n", path, i);
			return 1;
		}
	}
	return 0;
}

int main(void)
{
	static unsigned char data[PAGES * PAGE];
	const char *dir = "/tmp/zcsplice-basic";
	char path[128];
	long moved0 = vmstat("splice_move"), moved1;
	int p[2], fd, err = 0;
	size_t done = 0;

	mkdir(dir, 0755);
	if (mount("tmpfs", dir, "tmpfs", 0, "size=16m")) {
		perror("mount tmpfs");
		return 1;
	}
	snprintf(path, sizeof(path), "%s/file", dir);
	fill(data, sizeof(data), 1);
	fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
	if (fd < 0 || pipe(p)) {
		perror("open/pipe");
		return 1;
	}
	while (done < sizeof(data)) {
		size_t chunk = 16 * PAGE;
		ssize_t w = write(p[1], data + done, chunk);
		ssize_t s;

		if (w != (ssize_t)chunk) {
			perror("write pipe");
			return 1;
		}
		for (ssize_t left = w; left > 0; left -= s) {
			s = splice(p[0], NULL, fd, NULL, left, 0);
			if (s <= 0) {
				perror("splice");
				return 1;
			}
		}
		done += chunk;
	}
	close(fd);
	err |= check(path, data, sizeof(data));
	if (system("echo 3 > /proc/sys/vm/drop_caches"))
		printf("drop_caches failed\n");
	err |= check(path, data, sizeof(data));
	moved1 = vmstat("splice_move");
	if (moved0 < 0)
		printf("splice_move counter: absent (unpatched kernel)\n");
	else
		printf("splice_move counter: %ld pages moved\n", moved1 - moved0);
	umount(dir);
	printf("%s: %zu bytes spliced and verified\n", err ? "FAIL" : "PASS", done);
	return err;
}
