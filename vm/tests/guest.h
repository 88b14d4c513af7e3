/* SPDX-License-Identifier: GPL-2.0 */
/* Helpers shared by the guest tests (each test is one static binary). */
#ifndef ZCSPLICE_GUEST_H
#define ZCSPLICE_GUEST_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE		/* splice(), loff_t */
#endif

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
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

/* Seconds on the monotonic clock. */
static inline double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
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

/* Writes a number to a file in /proc or /sys; 0 on success. */
static inline int write_number(const char *path, long long val)
{
	char s[24];

	snprintf(s, sizeof(s), "%lld", val);
	return write_file(path, s);
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

#define TRACING "/sys/kernel/tracing"

/*
 * Switches the trace event @event ("system/name") on or off, mounting
 * tracefs first if need be; -1 when the kernel has no such event.
 *
 * Without recording task names: that hooks sched_switch and sched_wakeup
 * while any event is on, and switching those tracepoints patches the
 * scheduler's hottest code as every CPU runs it. Under TCG a CPU once
 * trapped on the patch's int3 (Oops in ttwu_do_activate, 7.3.4), as at
 * boot on the sched_clock key (see tsc=unstable in src/guest/boot.rs).
 */
static inline int trace_event(const char *event, int on)
{
	char path[256];

	if (access(TRACING "/trace", F_OK))
		mount("tracefs", TRACING, "tracefs", 0, NULL);
	write_file(TRACING "/options/record-cmd", "0");
	snprintf(path, sizeof(path), TRACING "/events/%s/enable", event);
	return write_file(path, on ? "1" : "0");
}

/* Empties the trace buffer: only an open with O_TRUNC does. */
static inline void trace_clear(void)
{
	int fd = open(TRACING "/trace", O_WRONLY | O_TRUNC);

	if (fd >= 0)
		close(fd);
}

/* How many lines of the trace hold @needle; -1 without a trace. */
static inline long trace_lines(const char *needle)
{
	FILE *f = fopen(TRACING "/trace", "r");
	char line[512];
	long n = 0;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		n += strstr(line, needle) != NULL;
	fclose(f);
	return n;
}

/*
 * The switch the series adds: 0 never moves, 1 moves when the splice asks
 * with SPLICE_F_MOVE (what the tests do), 2 always. -1 on a kernel
 * without it.
 */
static inline int set_splice_move(int mode)
{
	return write_number("/proc/sys/vm/splice_move", mode);
}

/*
 * The series' switch for moves over a cached page (tmpfs, ramfs): 0, the
 * default, copies over it; 1 replaces it. Absent before v3.
 */
#define SPLICE_MOVE_REPLACE_SYSCTL "/proc/sys/vm/splice_move_replace"

/*
 * Page @pg of pattern @seed, byte @i: each page of each pattern differs,
 * so a page read back names the pattern and the page it came from.
 */
static inline unsigned char page_pattern(unsigned int seed, long pg, long i)
{
	return (unsigned char)(seed * 73 + pg * 31 + i * 7 + 1);
}

/*
 * Whether the tests may require pages to move: the kernel has the series'
 * counters, vm.splice_move is 1, and zcsplice did not boot it for a step
 * of an in-series bisect (ZCSPLICE_MOVES=optional), where the filesystem
 * under test may not take donors yet. Data checks, and checks that a page
 * must not move, hold on every kernel.
 */
static inline int moves_required(void)
{
	const char *m = getenv("ZCSPLICE_MOVES");

	return vmstat("splice_move") >= 0 &&
	       read_number("/proc/sys/vm/splice_move") == 1 &&
	       !(m && !strcmp(m, "optional"));
}

/*
 * Makes directories @tmpfs and @ramfs and mounts a tmpfs (options
 * @tmpfs_opts) and a ramfs on them. Returns 0, or -1 after printing a FAIL
 * line.
 */
static inline int mount_tmpfs_ramfs(const char *tmpfs, const char *tmpfs_opts,
				    const char *ramfs)
{
	mkdir(tmpfs, 0755);
	mkdir(ramfs, 0755);
	if (mount("tmpfs", tmpfs, "tmpfs", 0, tmpfs_opts) ||
	    mount("ramfs", ramfs, "ramfs", 0, NULL)) {
		printf("FAIL: mount tmpfs/ramfs: %s\n", strerror(errno));
		return -1;
	}
	return 0;
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

/* memory.current of MEMCG_PARENT/name, in bytes; -1 without it. */
static inline long memcg_current(const char *name)
{
	char path[256];

	snprintf(path, sizeof(path), MEMCG_PARENT "/%s/memory.current", name);
	return read_number(path);
}

/* A reproducible pseudo-random number (xorshift64*); *state must not be 0. */
static inline uint32_t xrand(uint64_t *state)
{
	uint64_t x = *state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return (uint32_t)((x * 0x2545f4914f6cdd1dULL) >> 32);
}

/*
 * Splices exactly len bytes from the pipe read end pfd to fd (at *off, or
 * at the file position when off is NULL), with SPLICE_F_MOVE: pages may be
 * moved. Returns 0, or -1 with errno set (ENODATA when the pipe ran dry).
 */
#ifdef SPLICE_F_MOVE	/* not when <fcntl.h> came before _GNU_SOURCE */
static inline int splice_full(int pfd, int fd, loff_t *off, size_t len)
{
	while (len) {
		ssize_t n = splice(pfd, NULL, fd, off, len, SPLICE_F_MOVE);

		if (n == 0)
			errno = ENODATA;
		if (n <= 0)
			return -1;
		len -= n;
	}
	return 0;
}
#endif

/* Folio orders folio_orders() tells apart: 0 (a page) to 2 MiB and more. */
#define FOLIO_ORDERS 10

/*
 * The PFN behind each of the @pages pages at @addr of this process, faulted
 * in first (/proc/self/pagemap: root only). Returns 0, or -1 after printing
 * why not.
 */
static inline int mem_pfns(volatile const char *addr, long pages, uint64_t *pfn,
			   const char *who)
{
	const uint64_t mask = (1ull << 55) - 1;	/* PM_PFRAME_MASK */
	long page = sysconf(_SC_PAGESIZE);
	int pm = open("/proc/self/pagemap", O_RDONLY);
	int ret = 0;

	if (pm < 0) {
		printf("%s: pagemap: %s\n", who, strerror(errno));
		return -1;
	}
	for (long i = 0; i < pages && !ret; i++) {
		uint64_t ent = 0;

		(void)addr[i * page];
		if (pread(pm, &ent, 8, ((uintptr_t)addr / page + i) * 8) != 8 ||
		    !(ent >> 63) || !(ent & mask)) {
			printf("%s: no PFN for page %ld\n", who, i);
			ret = -1;
		}
		pfn[i] = ent & mask;
	}
	close(pm);
	return ret;
}

/*
 * The PFN behind each of the first @pages pages of @fd's page cache, read
 * through a shared mapping (mem_pfns()). Returns 0, or -1 after printing why.
 */
static inline int file_pfns(int fd, long pages, uint64_t *pfn, const char *who)
{
	long page = sysconf(_SC_PAGESIZE);
	void *map;
	int ret;

	if (!pages)
		return 0;
	map = mmap(NULL, pages * page, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED) {
		printf("%s: mmap: %s\n", who, strerror(errno));
		return -1;
	}
	ret = mem_pfns(map, pages, pfn, who);
	munmap(map, pages * page);
	return ret;
}

/*
 * How the page cache holds the first len bytes of fd (pages that are not
 * cached are read in): counts[k] is the number of pages that sit in folios
 * of order k, the last bucket taking every larger order. Read from the PFNs
 * (file_pfns()) and the compound-page bits in /proc/kpageflags (root
 * only). Returns the pages counted, or -1 after printing why not.
 */
static inline long folio_orders(int fd, size_t len,
				long counts[FOLIO_ORDERS])
{
	const uint64_t tail = 1ull << 16;	/* KPF_COMPOUND_TAIL */
	long page = sysconf(_SC_PAGESIZE), pages = len / page, done = 0;
	uint64_t *pfn = calloc(pages ? pages : 1, sizeof(*pfn));
	int kpf = open("/proc/kpageflags", O_RDONLY);
	long start = 0;

	memset(counts, 0, FOLIO_ORDERS * sizeof(counts[0]));
	if (!pfn || kpf < 0) {
		printf("folio sizes: kpageflags: %s\n", strerror(errno));
		done = -1;
		goto out;
	}
	if (file_pfns(fd, pages, pfn, "folio sizes")) {
		done = -1;
		goto out;
	}
	/* A folio starts at a page that is no compound tail. */
	for (long i = 0; i <= pages; i++) {
		uint64_t flags = 0;

		if (i < pages && pread(kpf, &flags, 8, pfn[i] * 8) != 8) {
			printf("folio sizes: no page flags for page %ld\n", i);
			done = -1;
			goto out;
		}
		if (i && (i == pages || !(flags & tail))) {
			long n = i - start, order = 0;

			while (order < FOLIO_ORDERS - 1 && (2l << order) <= n)
				order++;
			counts[order] += n;
			done += n;
			start = i;
		}
	}
out:
	free(pfn);
	if (kpf >= 0)
		close(kpf);
	return done;
}

/* Prints counts[] from folio_orders() after prefix: pages per folio order. */
static inline void print_folio_orders(const char *prefix,
				      const long counts[FOLIO_ORDERS])
{
	printf("%s: pages in folios of order", prefix);
	for (int k = 0; k < FOLIO_ORDERS; k++)
		if (counts[k])
			printf(" %d%s: %ld", k, k == FOLIO_ORDERS - 1 ? "+" : "",
			       counts[k]);
	printf("\n");
}

/*
 * Does a write(2) of 64 KiB at offset 0 of a new file in dir get a large
 * folio? 1 yes, 0 no, -1 when it cannot tell (printed).
 */
static inline int large_folio_writes(const char *dir)
{
	static char buf[65536];
	long counts[FOLIO_ORDERS];
	char path[256];
	long pages;
	int fd;

	snprintf(path, sizeof(path), "%s/large-folio-probe", dir);
	fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0644);
	memset(buf, 0x5a, sizeof(buf));
	if (fd < 0 || write(fd, buf, sizeof(buf)) != sizeof(buf)) {
		printf("large folio probe in %s: %s\n", dir, strerror(errno));
		if (fd >= 0)
			close(fd);
		unlink(path);
		return -1;
	}
	pages = folio_orders(fd, sizeof(buf), counts);
	close(fd);
	unlink(path);
	if (pages < 0)
		return -1;
	return counts[0] < pages;
}

/* Waits until the pipe read end rfd holds want bytes, which are coming. */
static inline void pipe_wait_for(int rfd, unsigned long long want)
{
	int n;

	while (!ioctl(rfd, FIONREAD, &n) && (unsigned long long)n < want)
		usleep(100);
}

/*
 * A block filesystem on one of the scratch disks zcsplice attaches to every
 * boot (src/guest/disks.rs): ext4 and its variants on /dev/vda, ext2 on /dev/vdb.
 * Each setup makes the filesystem anew, with mkfs from the host root the
 * guest runs on, and mounts it on /tmp/zcsplice-<name>.
 */
struct blockfs {
	char type[8];		/* "ext4" or "ext2" */
	char dev[16];
	char mnt[128];
	char opts[128];		/* mount options */
};

/* Unmounts and mounts again: nothing cached survives, data comes from disk. */
static inline int blockfs_remount(struct blockfs *b)
{
	sync();
	if (umount(b->mnt)) {
		printf("umount %s: %s\n", b->mnt, strerror(errno));
		return -1;
	}
	if (mount(b->dev, b->mnt, b->type, 0, b->opts)) {
		printf("mount %s on %s: %s\n", b->dev, b->mnt, strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * Makes a type filesystem (mkfs options mkfs_opts) on its disk and mounts it
 * with the options opts on /tmp/zcsplice-<name>. Returns 0; -2 when this
 * boot has no such disk or no mkfs (the caller skips); -1 after printing why.
 */
static inline int blockfs_setup(struct blockfs *b, const char *name,
				const char *type, const char *mkfs_opts,
				const char *opts)
{
	char cmd[512];

	memset(b, 0, sizeof(*b));
	snprintf(b->type, sizeof(b->type), "%s", type);
	snprintf(b->dev, sizeof(b->dev), "/dev/%s",
		 strcmp(type, "ext2") ? "vda" : "vdb");
	snprintf(b->opts, sizeof(b->opts), "%s", opts);
	if (access(b->dev, F_OK)) {
		printf("no disk %s for %s (zcsplice attaches it)\n", b->dev, type);
		return -2;
	}
	snprintf(cmd, sizeof(cmd),
		 "PATH=/usr/sbin:/sbin:/usr/bin:/bin mkfs.%s -q -F %s %s",
		 type, mkfs_opts, b->dev);
	if (system(cmd)) {
		printf("failed: %s\n", cmd);
		return -1;
	}
	snprintf(b->mnt, sizeof(b->mnt), "/tmp/zcsplice-%s", name);
	mkdir(b->mnt, 0755);
	if (mount(b->dev, b->mnt, type, 0, opts)) {
		printf("mount %s (%s) on %s: %s\n", b->dev, opts, b->mnt,
		       strerror(errno));
		rmdir(b->mnt);
		b->mnt[0] = 0;
		return -1;
	}
	return 0;
}

/* Undoes blockfs_setup(), as far as it got. */
static inline void blockfs_teardown(struct blockfs *b)
{
	if (!b->mnt[0])
		return;
	if (umount(b->mnt))
		printf("umount %s: %s\n", b->mnt, strerror(errno));
	rmdir(b->mnt);
	b->mnt[0] = 0;
}

#endif
