// SPDX-License-Identifier: GPL-2.0
/*
 * Harness selftest: provoke a kernel WARNING through LKDTM and pass; the
 * run must still fail because the console is not clean.
 */
#include <fcntl.h>
#include <stdio.h>
#include <sys/mount.h>
#include <unistd.h>

int main(void)
{
	const char *p = "/sys/kernel/debug/provoke-crash/DIRECT";
	int fd;

	mount("debugfs", "/sys/kernel/debug", "debugfs", 0, NULL);
	fd = open(p, O_WRONLY);
	if (fd < 0) {
		perror(p);
		return 1;
	}
	if (write(fd, "WARNING", 7) != 7)
		perror("write");
	close(fd);
	printf("provoked a WARNING; this test itself passes\n");
	return 0;
}
