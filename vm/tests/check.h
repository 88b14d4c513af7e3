/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Counted checks for the guest tests that report one line per check:
 * "ok: ..." or "FAIL: ...", and a count of each at the end.
 */
#ifndef ZCSPLICE_CHECK_H
#define ZCSPLICE_CHECK_H

#include <stdarg.h>
#include <stdio.h>

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

#endif
