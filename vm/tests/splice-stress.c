// SPDX-License-Identifier: GPL-2.0
/*
 * splice-stress: the host's fio and stress-ng, run in the guest against a
 * tmpfs and a ramfs mount, and ext4 and ext2 on the scratch disks zcsplice
 * attaches.
 *
 * fio, ioengine=splice: writes with verify (crc32c) at 64k, 4k, 64k from an
 * unaligned offset and an odd 3000-byte block size, then verifies again
 * after drop_caches. fio vmsplices its user buffers into the pipe, so those
 * pages belong to a user mapping and must never be moved: splice_move must
 * not grow while fio runs.
 *
 * stress-ng --splice/--vm-splice/--tee: pipe <-> pipe and pipe -> /dev/null
 * only; no file is written, so no page can be moved there. It churns the
 * pipe buffer code the series changed, while a mover of ours splices
 * write(2)-fed pipes into new pages of files on the same mount (every page
 * must move) and checks every round.
 *
 * fio and stress-ng come from the host (the guest shares its root); the
 * harness installs them, so a missing one is a failure, not a skip.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "guest.h"
#include "check.h"

#define MiB		(1L << 20)
#define TOOL_TIMEOUT	240		/* seconds, any one tool run */
#define MOVER_FILES	8		/* the mover's files, 1 MiB each */
#define TOOL_CG		"stress-tools"	/* sibling cgroup the tools run in */

static int have_counters;
static char fio[256], stress_ng[256];
static int use_cgroup;	/* run the tools in TOOL_CG, to kill them all */

static int find_exe(const char *name, char *out, size_t size)
{
	const char *path = getenv("PATH");
	char dirs[1024];

	snprintf(dirs, sizeof(dirs), "%s:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		 path ? path : "");
	for (char *save, *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
		snprintf(out, size, "%s/%s", d, name);
		if (*d && !access(out, X_OK))
			return 0;
	}
	return -1;
}

/*
 * Runs argv in its own process group, stdout and stderr echoed with "| "
 * (except lines starting with @hide) and kept in @out. Returns the exit
 * status, or -1 when it could not run or was killed after TOOL_TIMEOUT.
 */
static int run(char *const argv[], const char *hide, char *out, size_t size)
{
	double deadline = now() + TOOL_TIMEOUT;
	size_t len = 0, line = 0;
	int p[2], status;
	pid_t pid;

	printf("$");
	for (int i = 0; argv[i]; i++)
		printf(" %s", argv[i]);
	printf("\n");
	if (pipe(p))
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (!pid) {
		/* fio's job processes call setsid(): the cgroup holds them all. */
		if (use_cgroup)
			memcg_enter(TOOL_CG, NULL, NULL);
		setpgid(0, 0);
		dup2(p[1], 1);
		dup2(p[1], 2);
		close(p[0]);
		close(p[1]);
		execv(argv[0], argv);
		perror("execv");
		_exit(127);
	}
	setpgid(pid, pid);
	close(p[1]);
	for (;;) {
		struct pollfd pfd = { .fd = p[0], .events = POLLIN };
		int left = (int)((deadline - now()) * 1000);
		ssize_t n;

		if (left <= 0 || poll(&pfd, 1, left) == 0) {
			printf("killing %s after %d s\n", argv[0], TOOL_TIMEOUT);
			if (use_cgroup)
				write_file(MEMCG_PARENT "/" TOOL_CG "/cgroup.kill", "1");
			kill(-pid, SIGKILL);
			waitpid(pid, &status, 0);
			close(p[0]);
			return -1;
		}
		if (len + 1 >= size)
			len = line = 0;	/* keep the tail only */
		n = read(p[0], out + len, size - len - 1);
		if (n <= 0)
			break;
		len += n;
		out[len] = 0;
		/* Echo whole lines. */
		for (char *nl; (nl = strchr(out + line, '\n')); line = nl + 1 - out) {
			if (!hide || strncmp(out + line, hide, strlen(hide)))
				printf("| %.*s\n", (int)(nl - (out + line)), out + line);
		}
	}
	close(p[0]);
	waitpid(pid, &status, 0);
	printf("(%.1f s)\n", now() - deadline + TOOL_TIMEOUT);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

struct counters {
	long moved, fallback;
};

static void counters_get(struct counters *c)
{
	c->moved = vmstat("splice_move");
	c->fallback = vmstat("splice_move_fallback");
}

static void counters_print(const char *what, const struct counters *a, struct counters *d)
{
	struct counters b;

	counters_get(&b);
	d->moved = b.moved - a->moved;
	d->fallback = b.fallback - a->fallback;
	if (have_counters)
		printf("%s: splice_move %ld -> %ld (+%ld), splice_move_fallback %ld -> %ld (+%ld)\n",
		       what, a->moved, b.moved, d->moved, a->fallback, b.fallback,
		       d->fallback);
}

/* Field @n (1-based) of the terse line of fio's output, or -1. */
static long terse_field(const char *out, int n)
{
	const char *s = strstr(out, "\n3;fio-");

	s = s ? s + 1 : (!strncmp(out, "3;fio-", 6) ? out : NULL);
	for (int i = 1; s && i < n; i++) {
		s = strchr(s, ';');
		if (s)
			s++;
	}
	return s ? strtol(s, NULL, 10) : -1;
}

struct fio_job {
	const char *name, *bs, *offset;
	long bs_bytes, size;
};

/* Sizes keep the whole test within ~3 minutes under TCG. */
static const struct fio_job fio_jobs[] = {
	{ "bs64k", "64k", "0", 65536, 64 * MiB },
	{ "bs4k", "4k", "0", 4096, 32 * MiB },
	{ "bs64k-off1000", "64k", "1000", 65536, 16 * MiB },	/* unaligned offset */
	{ "bs3000", "3000", "0", 3000, 16 * MiB },		/* not a page multiple */
};
#define NR_JOBS (sizeof(fio_jobs) / sizeof(fio_jobs[0]))

/* fio's command line for job @j on @dir; @verify_only for the second pass. */
static int fio_run(const char *dir, const struct fio_job *j, int verify_only,
		   char *out, size_t size)
{
	char name[64], directory[300], bs[32], offset[32], bytes[32];
	char *argv[] = {
		fio, name, directory, "--ioengine=splice", "--rw=write", bs, bytes,
		offset, "--verify=crc32c",
		verify_only ? "--verify_only" : "--do_verify=1", "--verify_fatal=1",
		"--verify_state_save=0", "--output-format=terse", NULL
	};

	snprintf(name, sizeof(name), "--name=%s", j->name);
	snprintf(directory, sizeof(directory), "--directory=%s", dir);
	snprintf(bs, sizeof(bs), "--bs=%s", j->bs);
	/* A multiple of bs: else verify_only lays the file out anew. */
	snprintf(bytes, sizeof(bytes), "--size=%ld", j->size / j->bs_bytes * j->bs_bytes);
	snprintf(offset, sizeof(offset), "--offset=%s", j->offset);
	return run(argv, "3;fio-", out, size);
}

static long fio_want_kb(const struct fio_job *j)
{
	return j->size / j->bs_bytes * j->bs_bytes >> 10;
}

static void fio_path(char *path, size_t size, const char *dir, const struct fio_job *j)
{
	snprintf(path, size, "%s/%s.0.0", dir, j->name);
}

/* Pass 1: write with fio's splice engine, fio verifies from the page cache. */
static void fio_write(const char *dir, const struct fio_job *j, struct stat *st)
{
	static char out[1 << 16];
	long want_kb = fio_want_kb(j);
	struct counters c0, d;
	char path[400];
	int rc;

	counters_get(&c0);
	rc = fio_run(dir, j, 0, out, sizeof(out));
	check(rc == 0 && terse_field(out, 5) == 0 && terse_field(out, 47) == want_kb &&
	      terse_field(out, 6) == want_kb,
	      "fio %s on %s: write and verify: exit %d, error %ld, %ld KiB written, %ld KiB verified (want %ld)",
	      j->name, dir, rc, terse_field(out, 5), terse_field(out, 47),
	      terse_field(out, 6), want_kb);
	counters_print("fio", &c0, &d);
	if (have_counters)
		check(d.moved == 0 && d.fallback == 0,
		      "fio %s: no vmspliced page moved or taken (+%ld, +%ld)", j->name,
		      d.moved, d.fallback);
	fio_path(path, sizeof(path), dir, j);
	memset(st, 0, sizeof(*st));
	stat(path, st);
}

/* Pass 2, after drop_caches: fio verifies the same file again. */
static void fio_verify(const char *dir, const struct fio_job *j, const struct stat *st0)
{
	static char out[1 << 16];
	long want_kb = fio_want_kb(j);
	struct stat st1 = { 0 };
	char path[400];
	int rc;

	rc = fio_run(dir, j, 1, out, sizeof(out));
	check(rc == 0 && terse_field(out, 5) == 0 && terse_field(out, 6) == want_kb,
	      "fio %s on %s: verify after drop_caches: exit %d, error %ld, %ld KiB verified (want %ld)",
	      j->name, dir, rc, terse_field(out, 5), terse_field(out, 6), want_kb);
	fio_path(path, sizeof(path), dir, j);
	stat(path, &st1);
	check(st0->st_ino && st0->st_ino == st1.st_ino && st0->st_size == st1.st_size &&
	      st0->st_mtime == st1.st_mtime,
	      "fio %s: verify_only read the file written before (inode %lu, %lld bytes), not a new one",
	      j->name, (unsigned long)st1.st_ino, (long long)st1.st_size);
	unlink(path);
}

/*
 * The mover: splices write(2)-fed pipes into files on the mount, each
 * round 1 MiB into one of MOVER_FILES files, truncated first so that its
 * pages are new (a page already cached is written over by copying), and
 * reads each round back.
 */
struct mover {
	volatile int stop;
	long rounds, errors;
	unsigned int seed[MOVER_FILES];	/* what each file holds, 0: nothing */
};

static unsigned char pat(unsigned int seed, long o)
{
	return (unsigned char)(seed * 31 + o * 13 + (o >> 12) * 101);
}

static void mover_path(char *path, size_t size, const char *dir, int n)
{
	snprintf(path, size, "%s/mover-%d", dir, n);
}

/* Does the file hold 1 MiB of pat(@seed)? */
static int mover_check(const char *path, unsigned int seed)
{
	static unsigned char got[MiB];
	int fd = open(path, O_RDONLY);
	ssize_t n;

	if (fd < 0)
		return 0;
	n = pread(fd, got, MiB, 0);
	close(fd);
	if (n != MiB)
		return 0;
	for (long i = 0; i < MiB; i++)
		if (got[i] != pat(seed, i))
			return 0;
	return 1;
}

static void mover_run(const char *dir, struct mover *m)
{
	static unsigned char buf[MiB];
	char path[300];
	int p[2];

	if (pipe(p) || fcntl(p[1], F_SETPIPE_SZ, MiB) < MiB) {
		m->errors++;
		_exit(1);
	}
	for (unsigned int r = 1; !m->stop; r++) {
		int n = r % MOVER_FILES, fd;
		loff_t pos = 0;

		mover_path(path, sizeof(path), dir, n);
		fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
		for (long i = 0; i < MiB; i++)
			buf[i] = pat(r, i);
		if (fd < 0 || write(p[1], buf, MiB) != MiB) {
			m->errors++;
			_exit(1);
		}
		/*
		 * A page per splice: write(2) of a page gets an order-0 folio
		 * on every kernel, so pages move even where files have large
		 * folios (ext4 from 6.16), and the mover moves everywhere.
		 */
		for (long off = 0; off < MiB; off += 4096) {
			if (splice_full(p[0], fd, &pos, 4096)) {
				m->errors++;
				_exit(1);
			}
		}
		close(fd);
		m->seed[n] = r;
		if (!mover_check(path, r)) {
			printf("FAIL: mover: %s differs after round %u\n", path, r);
			m->errors++;
		}
		m->rounds++;
	}
	_exit(m->errors ? 1 : 0);
}

/* The mover's files must hold what its last round wrote to each. */
static void mover_verify(const char *dir, const struct mover *m, const char *when)
{
	char path[300];
	int bad = 0;

	for (int n = 0; n < MOVER_FILES; n++) {
		mover_path(path, sizeof(path), dir, n);
		if (m->seed[n] && !mover_check(path, m->seed[n]))
			bad++;
	}
	check(!bad, "mover's files on %s %s: %d of %d differ", dir, when, bad,
	      MOVER_FILES);
}

static void mover_remove(const char *dir)
{
	char path[300];

	for (int n = 0; n < MOVER_FILES; n++) {
		mover_path(path, sizeof(path), dir, n);
		unlink(path);
	}
}

/* stress-ng with the mover beside it; the mover's record stays in @m. */
static void stress_one(const char *dir, struct mover *m)
{
	static char out[1 << 16];
	struct counters c0, d;
	pid_t mover;
	int rc, status;
	char *argv[] = {
		stress_ng, "--splice", "2", "--vm-splice", "2", "--tee", "2",
		"--timeout", "15s", "--temp-path", (char *)dir, "--verify",
		"--metrics-brief", NULL
	};

	memset(m, 0, sizeof(*m));
	counters_get(&c0);
	mover = fork();
	if (!mover)
		mover_run(dir, m);
	rc = run(argv, NULL, out, sizeof(out));
	m->stop = 1;
	waitpid(mover, &status, 0);
	check(rc == 0 && strstr(out, "successful run completed"),
	      "stress-ng on %s: exit %d", dir, rc);
	counters_print("stress-ng and the mover", &c0, &d);
	check(WIFEXITED(status) && !WEXITSTATUS(status) && !m->errors && m->rounds > 0,
	      "mover on %s: %ld rounds of 1 MiB spliced while stress-ng ran, each read back as written (%ld errors)",
	      dir, m->rounds, m->errors);
	/* Every page, and maybe some of the round cut short by stop. */
	if (have_counters)
		check((!moves_required() || d.moved >= m->rounds * (MiB / 4096)) &&
		      d.moved <= (m->rounds + 1) * (MiB / 4096) && d.fallback == 0,
		      "mover on %s: %ld pages moved under stress, %ld taken then copied (%ld pages spliced in whole rounds)",
		      dir, d.moved, d.fallback, m->rounds * (MiB / 4096));

	mover_verify(dir, m, "from the page cache");
}

int main(void)
{
	static char out[4096];
	const char *types[] = { "tmpfs", "ramfs", "ext4", "ext2" };
	const char *opts[] = { "size=256m", NULL };
	const char *dir;
	char *version[] = { stress_ng, "--version", NULL };
	struct stat st[NR_JOBS];
	struct counters all0, all;
	double t0 = now();
	struct mover *m;

	setvbuf(stdout, NULL, _IOLBF, 0);
	have_counters = vmstat("splice_move") >= 0;
	use_cgroup = !mkdir(MEMCG_PARENT "/" TOOL_CG, 0755) || errno == EEXIST;
	if (!check(!find_exe("fio", fio, sizeof(fio)), "fio: %s", fio) ||
	    !check(!find_exe("stress-ng", stress_ng, sizeof(stress_ng)), "stress-ng: %s",
		   stress_ng)) {
		printf("FAIL: fio and stress-ng must be installed on the host (zcsplice setup)\n");
		return 1;
	}
	run(version, NULL, out, sizeof(out));
	printf("what runs: fio ioengine=splice vmsplices its buffers into a pipe and splices them to the file: user pages, copied, never moved; its verify reads splice the file into a pipe\n");
	printf("what runs: stress-ng --splice (/dev/zero -> pipe -> pipe -> /dev/null), --vm-splice (user memory -> pipe -> /dev/null), --tee (pipe -> pipe, -> /dev/null): no file, nothing to move; --temp-path only places their temporary directory\n");
	printf("what runs: meanwhile a mover splices write(2)-fed pipes into truncated files on the same mount: whole new pages, every one must move\n");
	if (!have_counters)
		printf("no splice_move counters: unpatched kernel, data checks only\n");

	m = mmap(NULL, sizeof(*m), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
		 -1, 0);
	if (m == MAP_FAILED) {
		printf("FAIL: mmap: %s\n", strerror(errno));
		return 1;
	}
	counters_get(&all0);
	for (int i = 0; i < 4; i++) {
		char mnt[64];
		struct blockfs b;

		if (i < 2) {
			snprintf(mnt, sizeof(mnt), "/tmp/zcsplice-stress-%s", types[i]);
			mkdir(mnt, 0755);
			if (!check(!mount(types[i], mnt, types[i], 0, opts[i]),
				   "mount %s", types[i]))
				continue;
			dir = mnt;
		} else {
			snprintf(mnt, sizeof(mnt), "stress-%s", types[i]);
			if (!check(!blockfs_setup(&b, mnt, types[i], "", ""),
				   "%s on its scratch disk", types[i]))
				continue;
			dir = b.mnt;
		}
		printf("--- %s at %s ---\n", types[i], dir);
		/*
		 * One drop_caches per mount: it also drops the tools' binaries,
		 * which come back over 9p, slowly under TCG.
		 */
		stress_one(dir, m);
		for (size_t j = 0; j < NR_JOBS; j++)
			fio_write(dir, &fio_jobs[j], &st[j]);
		if (drop_caches())
			check(0, "drop_caches: %s", strerror(errno));
		mover_verify(dir, m, "after drop_caches");
		for (size_t j = 0; j < NR_JOBS; j++)
			fio_verify(dir, &fio_jobs[j], &st[j]);
		mover_remove(dir);
		if (i >= 2) {
			blockfs_teardown(&b);
			continue;
		}
		if (umount(dir))
			check(0, "umount %s: %s", dir, strerror(errno));
		rmdir(dir);
	}
	if (use_cgroup)
		rmdir(MEMCG_PARENT "/" TOOL_CG);
	counters_print("whole test", &all0, &all);
	printf("%.0f s\n", now() - t0);
	printf("%s: %d of %d checks failed\n", failures ? "FAIL" : "PASS", failures,
	       checks);
	return failures ? 1 : 0;
}
