// SPDX-License-Identifier: GPL-2.0
/* Harness selftest: crash the guest kernel; the verdict must be "crash". */
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

int main(void)
{
	int fd = open("/proc/sysrq-trigger", O_WRONLY);

	if (fd < 0) {
		perror("/proc/sysrq-trigger");
		return 1;
	}
	sync();
	return write(fd, "c", 1) == 1 ? 0 : 1;
}
