// SPDX-License-Identifier: GPL-2.0
/*
 * kunit-splice-move: the series' KUnit suite (run at boot) passed. The
 * suite proves identity: the folio in the page cache after the splice is
 * the very page the pipe held. Skips on a kernel without the series.
 */
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

int main(void)
{
	const char *res = "/sys/kernel/debug/kunit/splice_move/results";
	char line[512];
	int ok = 0, bad = 0;
	FILE *f;

	if (access("/proc/sys/vm/splice_move", F_OK)) {
		printf("SKIP: kernel without the series (no vm.splice_move)\n");
		return 77;
	}
	mount("debugfs", "/sys/kernel/debug", "debugfs", 0, NULL);
	f = fopen(res, "r");
	if (!f) {
		perror(res);
		return 1;
	}
	while (fgets(line, sizeof(line), f)) {
		fputs(line, stdout);
		if (strstr(line, "not ok "))
			bad++;
		else if (strstr(line, "ok "))
			ok++;
	}
	fclose(f);
	printf("%s: %d ok, %d not ok\n", bad || !ok ? "FAIL" : "PASS", ok, bad);
	return bad || !ok;
}
