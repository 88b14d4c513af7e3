// SPDX-License-Identifier: GPL-2.0
/*
 * kunit-splice-move: the series' KUnit suites (run at boot) passed, on
 * tmpfs and on ramfs. They prove identity: the folio in the page cache
 * after the splice is the very page the pipe held. Skips on a kernel
 * without the series.
 */
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

/* Counts the "ok" and "not ok" lines of one suite's results; -1 if absent. */
static int suite(const char *name, int *ok, int *bad)
{
	char path[256], line[512];
	FILE *f;

	snprintf(path, sizeof(path), "/sys/kernel/debug/kunit/%s/results", name);
	f = fopen(path, "r");
	if (!f) {
		perror(path);
		return -1;
	}
	while (fgets(line, sizeof(line), f)) {
		fputs(line, stdout);
		if (strstr(line, "not ok "))
			(*bad)++;
		else if (strstr(line, "ok "))
			(*ok)++;
	}
	fclose(f);
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
	printf("%s: %d ok, %d not ok\n", bad || !ok || missing ? "FAIL" : "PASS",
	       ok, bad);
	return bad || !ok || missing;
}
