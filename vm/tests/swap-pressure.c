// SPDX-License-Identifier: GPL-2.0
/*
 * swap-pressure: tmpfs pages moved in from a pipe must be swappable like
 * any tmpfs page. With zram as swap and a memory cgroup limited to 24 MiB
 * (swap unlimited), 96 MiB are spliced into a tmpfs file: most of it must
 * go to swap (memory.swap.current, pswpout), and every byte must read back
 * (swapped in), again after drop_caches, and again after swapoff, when
 * everything has been pulled back into memory.
 *
 * A moved page that is not swap-backed, not charged or not dirty would be
 * lost, read back as zeroes, or trip reclaim (see the shmem patch).
 * Skips (77) when the kernel has no zram.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/swap.h>
#include <unistd.h>

#include "guest.h"
#include "check.h"

#define PAGE		4096L
#define MiB		(1L << 20)
#define FILE_SIZE	(96 * MiB)
#define MEM_MAX		(24 * MiB)
#define CHUNK		MiB		/* pipe size, bytes per splice round */
#define ZRAM_SIZE	"256M"
#define ZRAM		"/dev/zram0"
#define ZRAM_SYS	"/sys/block/zram0"
#define DIR		"/tmp/zcsplice-swap"
#define CG		"swap"
#define CG_PATH		MEMCG_PARENT "/" CG


/* The 8 bytes at file offset @o (a multiple of 8): unique, hard to compress. */
static uint64_t word(uint64_t o)
{
	uint64_t x = (o >> 3) * 0x9e3779b97f4a7c15ULL;

	x ^= x >> 29;
	return x * 0xbf58476d1ce4e5b9ULL;
}

static void fill(uint64_t *buf, long off, long len)
{
	for (long i = 0; i < len / 8; i++)
		buf[i] = word(off + i * 8);
}

static long cg_number(const char *file)
{
	char path[256];

	snprintf(path, sizeof(path), CG_PATH "/%s", file);
	return read_number(path);
}

/* mkswap: a version 1 swap header in the first page of the device. */
static int make_swap(const char *dev, long size)
{
	static union {
		unsigned char page[PAGE];
		struct {
			char bootbits[1024];
			uint32_t version, last_page, nr_badpages;
			unsigned char uuid[16], label[16];
		} info;
	} h;
	int fd = open(dev, O_WRONLY);
	ssize_t n;

	if (fd < 0)
		return -1;
	h.info.version = 1;
	h.info.last_page = size / PAGE - 1;
	memcpy(h.page + PAGE - 10, "SWAPSPACE2", 10);
	n = pwrite(fd, h.page, PAGE, 0);
	fsync(fd);
	close(fd);
	return n == PAGE ? 0 : -1;
}

static int swap_listed(void)
{
	char line[256];
	int found = 0;
	FILE *f = fopen("/proc/swaps", "r");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, ZRAM " ", strlen(ZRAM) + 1)) {
			printf("/proc/swaps: %s", line);
			found = 1;
		}
	}
	fclose(f);
	return found;
}

static int verify(const char *path, const char *when)
{
	static uint64_t got[CHUNK / 8], want[CHUNK / 8];
	int fd = open(path, O_RDONLY);
	struct stat st;

	if (fd < 0 || fstat(fd, &st))
		return check(0, "%s %s: open: %s", path, when, strerror(errno));
	if (st.st_size != FILE_SIZE) {
		close(fd);
		return check(0, "%s %s: size %lld, want %ld", path, when,
			      (long long)st.st_size, FILE_SIZE);
	}
	for (long off = 0; off < FILE_SIZE; off += CHUNK) {
		ssize_t n = pread(fd, got, CHUNK, off);

		if (n != CHUNK) {
			close(fd);
			return check(0, "%s %s: read at %ld: %zd (%s)", path, when, off,
				      n, strerror(errno));
		}
		fill(want, off, CHUNK);
		if (memcmp(got, want, CHUNK)) {
			long i = 0;

			while (got[i] == want[i])
				i++;
			close(fd);
			return check(0, "%s %s: bytes at %ld are %#llx, want %#llx%s",
				      path, when, off + i * 8,
				      (unsigned long long)got[i],
				      (unsigned long long)want[i],
				      got[i] ? "" : " (a zeroed page: data lost)");
		}
	}
	close(fd);
	return check(1, "%s %s: all %ld MiB as written", path, when, FILE_SIZE / MiB);
}

static int splice_in(const char *path)
{
	static uint64_t buf[CHUNK / 8];
	int p[2], fd, ret = -1;
	loff_t pos = 0;

	fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
	if (fd < 0) {
		check(0, "create %s: %s", path, strerror(errno));
		return -1;
	}
	if (pipe(p)) {
		check(0, "pipe: %s", strerror(errno));
		close(fd);
		return -1;
	}
	if (fcntl(p[1], F_SETPIPE_SZ, CHUNK) < CHUNK) {
		check(0, "F_SETPIPE_SZ: %s", strerror(errno));
		goto out;
	}
	while (pos < FILE_SIZE) {
		fill(buf, pos, CHUNK);
		if (write(p[1], buf, CHUNK) != CHUNK) {
			check(0, "write into the pipe: %s", strerror(errno));
			goto out;
		}
		if (splice_full(p[0], fd, &pos, CHUNK)) {
			check(0, "splice at %lld: %s", (long long)pos, strerror(errno));
			goto out;
		}
	}
	ret = 0;
out:
	close(p[0]);
	close(p[1]);
	close(fd);
	return ret;
}

static int swap_on;

static void cleanup(void)
{
	char pid[32];

	umount(DIR);
	rmdir(DIR);
	if (swap_on && swapoff(ZRAM))
		printf("warning: swapoff %s: %s\n", ZRAM, strerror(errno));
	if (write_file(ZRAM_SYS "/reset", "1"))
		printf("warning: cannot reset zram0: %s\n", strerror(errno));
	snprintf(pid, sizeof(pid), "%d", getpid());
	write_file(MEMCG_PARENT "/tests/cgroup.procs", pid);
	rmdir(CG_PATH);
}

int main(void)
{
	const char *path = DIR "/f";
	long pages = FILE_SIZE / PAGE, moved0, fallback0, out0, in0;
	long moved, fallback, swapped, out, in;
	int have_counters = vmstat("splice_move") >= 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (access(ZRAM_SYS "/disksize", F_OK)) {
		printf("SKIP: no zram0 (kernel built without CONFIG_ZRAM?)\n");
		return 77;
	}
	if (access(MEMCG_PARENT "/tests/memory.swap.max", F_OK)) {
		printf("SKIP: no memory.swap.max (no swap accounting in this kernel)\n");
		return 77;
	}
	if (read_number(ZRAM_SYS "/disksize") > 0 &&
	    write_file(ZRAM_SYS "/reset", "1")) {
		printf("FAIL: zram0 is in use and cannot be reset\n");
		return 1;
	}
	if (!check(!write_file(ZRAM_SYS "/disksize", ZRAM_SIZE),
		   "zram0 disksize " ZRAM_SIZE) ||
	    !check(!make_swap(ZRAM, read_number(ZRAM_SYS "/disksize")),
		   "swap header on " ZRAM))
		goto out;
	swap_on = !swapon(ZRAM, 0);
	if (!check(swap_on, "swapon " ZRAM " (%s)", swap_on ? "on" : strerror(errno)) ||
	    !check(swap_listed(), ZRAM " listed in /proc/swaps"))
		goto out;

	mkdir(DIR, 0755);
	if (!check(!mount("tmpfs", DIR, "tmpfs", 0, "size=256m"),
		   "mount tmpfs size=256m"))
		goto out;
	if (memcg_enter(CG, "24M", "max")) {
		check(0, "enter memcg " CG ": %s", strerror(errno));
		goto out;
	}
	check(1, "in memcg " CG " (memory.max 24M, memory.swap.max max)");

	moved0 = vmstat("splice_move");
	fallback0 = vmstat("splice_move_fallback");
	out0 = vmstat("pswpout");
	in0 = vmstat("pswpin");
	if (splice_in(path))
		goto out;
	moved = vmstat("splice_move") - moved0;
	fallback = vmstat("splice_move_fallback") - fallback0;
	out = vmstat("pswpout") - out0;
	swapped = cg_number("memory.swap.current");
	printf("spliced %ld MiB: memory.current %ld KiB, memory.swap.current %ld KiB, pswpout +%ld pages",
	       FILE_SIZE / MiB, cg_number("memory.current") >> 10, swapped >> 10, out);
	if (have_counters)
		printf(", pages moved: %ld, taken then copied: %ld", moved, fallback);
	printf("\n");
	swap_listed();
	check(cg_number("memory.max") == MEM_MAX, "memory.max is %ld", cg_number("memory.max"));
	/* At most MEM_MAX of the file is in memory: the rest must be in swap. */
	check(swapped >= FILE_SIZE - MEM_MAX,
	      "memory.swap.current %ld KiB >= %ld KiB (the file minus memory.max)",
	      swapped >> 10, (FILE_SIZE - MEM_MAX) >> 10);
	check(out * PAGE >= FILE_SIZE - MEM_MAX, "pswpout +%ld pages >= %ld",
	      out, (FILE_SIZE - MEM_MAX) / PAGE);
	if (have_counters)
		check((!moves_required() || moved == pages) && fallback == 0,
		      "every page moved: %ld of %ld, %ld taken then copied", moved,
		      pages, fallback);

	verify(path, "from the page cache and swap");
	in = vmstat("pswpin") - in0;
	check(in > 0, "reading swapped pages back in: pswpin +%ld", in);
	if (drop_caches())
		check(0, "drop_caches: %s", strerror(errno));
	verify(path, "after drop_caches");

	/* Everything back into memory: lift the limit first. */
	check(!write_file(CG_PATH "/memory.max", "max"), "memory.max lifted");
	swap_on = !!swapoff(ZRAM);
	if (check(!swap_on, "swapoff " ZRAM " (%s)", swap_on ? strerror(errno) : "off")) {
		check(!swap_listed(), ZRAM " gone from /proc/swaps");
		check(cg_number("memory.swap.current") == 0,
		      "memory.swap.current %ld after swapoff",
		      cg_number("memory.swap.current"));
		check(cg_number("memory.current") >= FILE_SIZE,
		      "memory.current %ld KiB: the whole file is in memory",
		      cg_number("memory.current") >> 10);
	}
	verify(path, "after swapoff");
	if (drop_caches())
		check(0, "drop_caches: %s", strerror(errno));
	verify(path, "after swapoff and drop_caches");
	check(!unlink(path), "unlink");
out:
	cleanup();
	printf("%s: %d of %d checks failed\n", failures ? "FAIL" : "PASS", failures,
	       checks);
	return failures ? 1 : 0;
}
