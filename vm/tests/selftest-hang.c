// SPDX-License-Identifier: GPL-2.0
/* Harness selftest: never finish; the verdict must be "timeout". */
#include <unistd.h>

int main(void)
{
	for (;;)
		pause();
}
