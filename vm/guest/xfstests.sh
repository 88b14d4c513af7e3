#!/bin/sh
# Runs inside the guest (vng --exec): xfstests.sh RESULTS XFSTESTS
#
# RESULTS (the rwdir) holds what the host prepared: local.config (FSTYP,
# TEST_DEV, SCRATCH_DEV, mount points, RESULT_BASE=RESULTS/results, mkfs
# and mount options) and check.args (./check's arguments, one a line).
# XFSTESTS is an installed (built) xfstests tree, read-only here: results
# go to RESULT_BASE. Writes check.out (./check's output), check.rc,
# vmstat.before and vmstat.after, dmesg.txt and, last, "done".
#
# One ./check per boot: its start-up costs most of a minute under TCG.
# xfstests writes "run fstests NAME at ..." to /dev/kmsg before each test;
# the host reads those markers to tell which test a kernel report belongs to.
res=$1
xfs=$2
mark() { echo "zcsplice-guest: $*" > /dev/kmsg; }

mark "kernel $(uname -r) up, running xfstests"
# virtme-ng bind-mounts files over /etc/shadow and /etc/gshadow: useradd
# cannot replace them until they are unmounted. /etc is a throwaway overlay.
umount /etc/shadow /etc/gshadow 2>/dev/null
for u in fsgqa fsgqa2; do
	id "$u" > /dev/null 2>&1 || useradd -m "$u" 2>> "$res/setup.log"
done
id 123456-fsgqa > /dev/null 2>&1 ||
	useradd -m --badname 123456-fsgqa 2>> "$res/setup.log"

set -a
. "$res/local.config"
set +a
mkdir -p "$TEST_DIR" "$SCRATCH_MNT" "$RESULT_BASE"

# TEST_DEV needs a filesystem before ./check; xfstests makes SCRATCH_DEV's.
case $FSTYP in
ext2 | ext3 | ext4) force=-F ;;
*) force=-f ;;
esac
mark "mkfs.$FSTYP $TEST_DEV"
# shellcheck disable=SC2086 # MKFS_OPTIONS is a list of options
if ! mkfs -t "$FSTYP" $force -q $MKFS_OPTIONS "$TEST_DEV" >> "$res/setup.log" 2>&1; then
	echo "mkfs -t $FSTYP $TEST_DEV failed" > "$res/setup.err"
	mark "all done"
	echo done > "$res/done"
	exit 1
fi

# The series' counters, before and after: did a test reach the move path?
# (None on a kernel without the series: the files stay empty.)
grep '^splice_' /proc/vmstat > "$res/vmstat.before"
# shellcheck disable=SC2046 # one argument a line, none with blanks
set -- $(cat "$res/check.args")
mark "check $*"
cd "$xfs" || exit 1
# The console shows check's progress too.
{
	HOST_OPTIONS=$res/local.config ./check "$@"
	echo $? > "$res/check.rc"
} 2>&1 | tee "$res/check.out"
mark "end check"
grep '^splice_' /proc/vmstat > "$res/vmstat.after"
dmesg > "$res/dmesg.txt" 2>&1
mark "all done"
echo done > "$res/done"
