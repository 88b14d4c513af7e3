/* SPDX-License-Identifier: GPL-2.0 */
/* Helpers shared by the guest tests (each test is one static binary). */
#ifndef ZCSPLICE_GUEST_H
#define ZCSPLICE_GUEST_H

#include <stdio.h>
#include <string.h>

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

#endif
