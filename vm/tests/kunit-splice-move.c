// SPDX-License-Identifier: GPL-2.0
/*
 * kunit-splice-move: the series' KUnit suites passed. They prove identity:
 * the folio in the page cache after the splice is the very page the pipe
 * held. splice_move_tmpfs and splice_move_ramfs ran at boot. The
 * splice_move_blockfs suite needs a mounted block filesystem, which does
 * not exist at boot: it is run here, once on ext4 and once on ext2 (the
 * scratch disks zcsplice attaches), by writing the mount point to
 * /sys/module/splice_kunit/parameters/kunit_blockfs (v1 of the series:
 * /sys/module/splice/...); the write fails unless
 * every case passed, and the KTAP results go to the kernel log (and so to
 * the console zcsplice checks). Skips on a kernel without the series.
 */
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

#include "guest.h"

#define KUNIT "/sys/kernel/debug/kunit"
#define BLOCKFS_PARAM "/sys/module/splice_kunit/parameters/kunit_blockfs"
#define BLOCKFS_PARAM_V1 "/sys/module/splice/parameters/kunit_blockfs"

/* Counts the "ok" and "not ok" cases in one suite's results; -1 if none. */
static int suite(const char *name, int *ok, int *bad)
{
	char path[256], line[512];
	int seen = 0;
	FILE *f;

	snprintf(path, sizeof(path), KUNIT "/%s/results", name);
	f = fopen(path, "r");
	if (!f) {
		perror(path);
		return -1;
	}
	while (fgets(line, sizeof(line), f)) {
		fputs(line, stdout);
		/* Case lines are indented; the suite's own line is not. */
		if (line[0] != ' ' && line[0] != '\t')
			continue;
		if (strstr(line, "not ok ")) {
			(*bad)++;
		} else if (strstr(line, "ok ")) {
			if (strstr(line, "# SKIP"))
				(*bad)++;
			else
				(*ok)++;
		} else {
			continue;
		}
		seen++;
	}
	fclose(f);
	return seen ? 0 : -1;
}

/* Runs splice_move_blockfs on a new type filesystem; 0 when it passed. */
static int blockfs_suite(const char *type, int *ok, int *bad)
{
	char path[256];
	struct blockfs b;
	int rc;

	if (blockfs_setup(&b, "kunit", type, "", "")) {
		printf("FAIL: no %s to run splice_move_blockfs on\n", type);
		return -1;
	}
	rc = write_file(access(BLOCKFS_PARAM, F_OK) ? BLOCKFS_PARAM_V1 : BLOCKFS_PARAM,
			b.mnt);
	printf("%s splice_move_blockfs on %s (KTAP on the console)\n",
	       rc ? "not ok" : "ok", type);
	if (rc)
		(*bad)++;
	else
		(*ok)++;
	snprintf(path, sizeof(path), "%s/splice_move_kunit", b.mnt);
	unlink(path);
	blockfs_teardown(&b);
	return 0;
}

int main(void)
{
	int ok = 0, bad = 0, missing = 0;

	if (access("/proc/sys/vm/splice_move", F_OK)) {
		printf("SKIP: kernel without the series (no vm.splice_move)\n");
		return 77;
	}
	mount("debugfs", "/sys/kernel/debug", "debugfs", 0, NULL);
	missing |= suite("splice_move_tmpfs", &ok, &bad);
	missing |= suite("splice_move_ramfs", &ok, &bad);
	missing |= blockfs_suite("ext4", &ok, &bad);
	missing |= blockfs_suite("ext2", &ok, &bad);
	printf("%s: %d ok, %d not ok\n", bad || !ok || missing ? "FAIL" : "PASS",
	       ok, bad);
	return bad || !ok || missing;
}
