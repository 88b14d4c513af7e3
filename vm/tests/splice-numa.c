// SPDX-License-Identifier: GPL-2.0
/*
 * splice-numa: a moved page must not get around the NUMA placement a copy
 * would get (issue #13, point 7).
 *
 * The pipe's pages are written by a task bound to node 1, so they are on
 * node 1. A copy into the page cache is allocated where the splicing
 * task's cpuset and the memory policy allow: the file's own on tmpfs
 * (mpol=), else the splicing task's. So each case says whether a move is
 * allowed there, and checks both the splice_move counter and the node of
 * every page of the file afterwards (move_pages(2) on a mapping of it):
 *
 * - tmpfs mpol=bind:1: moved, on node 1 (the test's own control: the
 *   pipe's pages are on node 1, and they do move where that is allowed);
 * - tmpfs mpol=bind:0: copied, on node 0;
 * - tmpfs mpol=bind:1 written by a task bound to node 0: moved, as the
 *   file's policy is the one a copy would follow;
 * - tmpfs without mpol, ramfs, each written by a task bound to node 0:
 *   copied, on node 0; bound to node 1: moved;
 * - ramfs written by a task in a cpuset with mems 0: copied, on node 0.
 *
 * Needs a guest with two NUMA nodes (zcsplice boots the guest tests on
 * two) and reports a skip on one.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/mempolicy.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "guest.h"
#include "check.h"

#define PAGE 4096
#define PAGES 64
#define CPUSET MEMCG_PARENT "/numa0"

static unsigned char data[PAGES * PAGE];

/* Binds this task's allocations to one node, or unbinds it (node < 0). */
static int bind_to(int node)
{
	unsigned long mask;

	if (node < 0)
		return syscall(SYS_set_mempolicy, MPOL_DEFAULT, NULL, 0);
	mask = 1UL << node;
	return syscall(SYS_set_mempolicy, MPOL_BIND, &mask, 8 * sizeof(mask));
}

/* A pipe holding the test data on pages allocated on node 1. */
static int pipe_on_node1(int p[2])
{
	ssize_t n;

	if (pipe(p))
		return -1;
	if (fcntl(p[1], F_SETPIPE_SZ, PAGES * PAGE) < PAGES * PAGE)
		return -1;
	if (bind_to(1))
		return -1;
	n = write(p[1], data, sizeof(data));
	bind_to(-1);
	return n == (ssize_t)sizeof(data) ? 0 : -1;
}

/*
 * Enters a cpuset cgroup whose tasks may allocate on node 0 only. Both
 * cgroup levels above it get the cpuset controller (run-tests.sh puts the
 * tests in MEMCG_PARENT/tests, and MEMCG_PARENT holds no task itself).
 */
static int enter_cpuset_node0(void)
{
	char pid[32];

	if (write_file("/sys/fs/cgroup/cgroup.subtree_control", "+cpuset") ||
	    write_file(MEMCG_PARENT "/cgroup.subtree_control", "+cpuset"))
		return -1;
	if (mkdir(CPUSET, 0755) && errno != EEXIST)
		return -1;
	if (write_file(CPUSET "/cpuset.mems", "0"))
		return -1;
	snprintf(pid, sizeof(pid), "%d", getpid());
	return write_file(CPUSET "/cgroup.procs", pid);
}

/*
 * Splices the pipe into fd from a child, in the placement the case asks
 * for (bound to a node, or in the cpuset), so that the policy is the
 * splicing task's and nothing of it stays behind. Returns the pages
 * moved, or -1 when the child could not do its part (it says why).
 */
static long splice_as(const char *what, int pfd, int fd, int node, int cpuset)
{
	long m0 = vmstat("splice_move");
	int status;
	pid_t pid = fork();

	if (pid < 0)
		return -1;
	if (pid == 0) {
		loff_t off = 0;

		if (node >= 0 && bind_to(node)) {
			printf("%s: cannot bind to node %d: %s\n", what, node,
			       strerror(errno));
			_exit(1);
		}
		if (cpuset && enter_cpuset_node0()) {
			printf("%s: cannot enter a cpuset of node 0: %s\n",
			       what, strerror(errno));
			_exit(1);
		}
		if (splice_full(pfd, fd, &off, sizeof(data))) {
			printf("%s: splice: %s\n", what, strerror(errno));
			_exit(1);
		}
		_exit(0);
	}
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
	    WEXITSTATUS(status))
		return -1;
	return vmstat("splice_move") - m0;
}

/*
 * Counts the pages of the file on node @node (move_pages(2) without
 * target nodes reports where each page is), and checks its data.
 */
static int pages_on(const char *what, int fd, int node)
{
	void *pages[PAGES];
	int status[PAGES];
	unsigned char *map;
	int i, on = 0;

	map = mmap(NULL, sizeof(data), PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		return -1;
	check(!memcmp(map, data, sizeof(data)),
	      "%s: the file holds the bytes written into the pipe", what);
	for (i = 0; i < PAGES; i++)
		pages[i] = map + i * PAGE;
	if (syscall(SYS_move_pages, 0, PAGES, pages, NULL, status, 0)) {
		munmap(map, sizeof(data));
		return -1;
	}
	for (i = 0; i < PAGES; i++)
		on += status[i] == node;
	munmap(map, sizeof(data));
	return on;
}

/*
 * One case: a file on a fresh mount of @fstype (@opts), spliced into by a
 * task bound to @node (-1: not bound) or in the node-0 cpuset; @moves
 * says whether a copy could have been on node 1, so that a move is right.
 */
static void one(const char *what, const char *fstype, const char *opts,
		int node, int cpuset, int moves)
{
	const char *mnt = "/tmp/zcsplice-numa";
	int want = moves ? 1 : 0;
	long moved;
	int p[2], fd, on;

	mkdir(mnt, 0755);
	if (mount(fstype, mnt, fstype, 0, opts)) {
		check(0, "%s: mount %s -o %s: %s", what, fstype, opts,
		      strerror(errno));
		return;
	}
	fd = open("/tmp/zcsplice-numa/f", O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || pipe_on_node1(p)) {
		check(0, "%s: setup: %s", what, strerror(errno));
		goto out;
	}
	moved = splice_as(what, p[0], fd, node, cpuset);
	close(p[0]);
	close(p[1]);
	if (moved < 0) {
		check(0, "%s: the splice did not complete", what);
		goto out;
	}
	on = pages_on(what, fd, want);
	if (moves && moves_required())
		check(moved == PAGES && on == PAGES,
		      "%s: %ld of %d pages moved, %d on node 1 (want all)",
		      what, moved, PAGES, on);
	else if (moves)
		check(on == PAGES, "%s: %d of %d pages on node 1 (%ld moved, not required)",
		      what, on, PAGES, moved);
	else
		check(moved == 0 && on == PAGES,
		      "%s: %ld pages moved, %d of %d on node 0 (want 0, all)",
		      what, moved, on, PAGES);
out:
	if (fd >= 0)
		close(fd);
	umount(mnt);
}

int main(void)
{
	if (vmstat("splice_move") < 0) {
		printf("no splice_move counter: not a kernel with the series\n");
		return 77;
	}
	if (access("/sys/devices/system/node/node1", F_OK)) {
		printf("one NUMA node: nothing to test\n");
		return 77;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	set_splice_move(1);
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (unsigned char)(i * 7 + (i >> 12) + 3);

	one("tmpfs mpol=bind:1", "tmpfs", "size=16m,mpol=bind:1", -1, 0, 1);
	one("tmpfs mpol=bind:0", "tmpfs", "size=16m,mpol=bind:0", -1, 0, 0);
	one("tmpfs mpol=bind:1, task bound to node 0", "tmpfs",
	    "size=16m,mpol=bind:1", 0, 0, 1);
	one("tmpfs, task bound to node 0", "tmpfs", "size=16m", 0, 0, 0);
	one("tmpfs, task bound to node 1", "tmpfs", "size=16m", 1, 0, 1);
	one("ramfs, task bound to node 0", "ramfs", "", 0, 0, 0);
	one("ramfs, task bound to node 1", "ramfs", "", 1, 0, 1);
	one("ramfs, task in a cpuset of node 0", "ramfs", "", -1, 1, 0);

	printf("%s: %d checks, %d failures\n", failures ? "FAIL" : "PASS",
	       checks, failures);
	return failures != 0;
}
