/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Counted checks for the guest tests that report one line per check:
 * "ok: ..." or "FAIL: ...", and a count of each at the end.
 */
#ifndef ZCSPLICE_CHECK_H
#define ZCSPLICE_CHECK_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "guest.h"

static int checks, failures;

/* Reports one check; returns @ok. */
static int __attribute__((format(printf, 2, 3))) check(int ok, const char *fmt, ...)
{
	va_list ap;

	checks++;
	if (!ok)
		failures++;
	printf("%s: ", ok ? "ok" : "FAIL");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
	return ok;
}

/*
 * Checks that the first @pages pages of @fd hold pattern @seed
 * (page_pattern()), naming the first byte that differs; returns the check.
 */
static inline int check_pattern(int fd, long pages, unsigned int seed,
				const char *what, const char *when)
{
	long page = sysconf(_SC_PAGESIZE), len = pages * page;
	unsigned char *got = malloc(len);
	int ok = got && pread(fd, got, len, 0) == len;

	if (!ok) {
		free(got);
		return check(0, "%s: %s: short read", what, when);
	}
	for (long i = 0; i < len; i++) {
		unsigned char want = page_pattern(seed, i / page, i % page);
		unsigned char bad = got[i];

		if (bad != want) {
			free(got);
			return check(0, "%s: %s: page %ld byte %ld is 0x%02x, want 0x%02x",
				     what, when, i / page, i % page, bad, want);
		}
	}
	free(got);
	return check(1, "%s: %s: the file holds the data", what, when);
}

#endif
