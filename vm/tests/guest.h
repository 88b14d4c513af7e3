/* SPDX-License-Identifier: GPL-2.0 */
/* Helpers shared by the guest tests (each test is one static binary). */
#ifndef ZCSPLICE_GUEST_H
#define ZCSPLICE_GUEST_H

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Where run-tests.sh puts the tests: a child memory cgroup. */
#define MEMCG_PARENT "/sys/fs/cgroup/zcsplice"

/* A /proc/vmstat counter, or -1 when the kernel has none by that name. */
static inline long vmstat(const char *name)
{
	char key[64];
	long val;
	FILE *f = fopen("/proc/vmstat", "r");

	if (!f)
		return -1;
	while (fscanf(f, "%63s %ld", key, &val) == 2) {
		if (!strcmp(key, name)) {
			fclose(f);
			return val;
		}
	}
	fclose(f);
	return -1;
}

/* Writes a string to a file in /proc or /sys; 0 on success. */
static inline int write_file(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = write(fd, val, strlen(val));
	close(fd);
	return n == (ssize_t)strlen(val) ? 0 : -1;
}

/* Reads the first number of a file in /proc or /sys, or -1. */
static inline long read_number(const char *path)
{
	FILE *f = fopen(path, "r");
	long v = -1;

	if (!f)
		return -1;
	if (fscanf(f, "%ld", &v) != 1)
		v = -1;
	fclose(f);
	return v;
}

/* The switch the series adds; -1 on a kernel without it. */
static inline int set_splice_move(int on)
{
	return write_file("/proc/sys/vm/splice_move", on ? "1" : "0");
}

/* Syncs and drops clean page cache: a moved page not dirtied is lost. */
static inline int drop_caches(void)
{
	sync();
	return write_file("/proc/sys/vm/drop_caches", "3");
}

/*
 * Moves this process into MEMCG_PARENT/name, created with memory.max and
 * memory.swap.max (NULL: no limit). Returns 0, or -1 with errno set.
 */
static inline int memcg_enter(const char *name, const char *max,
			      const char *swap_max)
{
	char path[256], pid[32];

	snprintf(path, sizeof(path), MEMCG_PARENT "/%s", name);
	if (mkdir(path, 0755) && errno != EEXIST)
		return -1;
	snprintf(path, sizeof(path), MEMCG_PARENT "/%s/memory.max", name);
	if (max && write_file(path, max))
		return -1;
	snprintf(path, sizeof(path), MEMCG_PARENT "/%s/memory.swap.max", name);
	if (swap_max && write_file(path, swap_max))
		return -1;
	snprintf(path, sizeof(path), MEMCG_PARENT "/%s/cgroup.procs", name);
	snprintf(pid, sizeof(pid), "%d", getpid());
	return write_file(path, pid);
}

#endif
