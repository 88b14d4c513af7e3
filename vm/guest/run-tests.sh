#!/bin/sh
# Runs inside the guest (vng --exec): run-tests.sh RESULTS BIN TEST...
# Each test's output goes to RESULTS/NAME.out and its verdict to
# RESULTS/NAME.result ("pass|fail|skip SECONDS"); markers go to /dev/kmsg
# so that the console shows which test a kernel report belongs to.
#
# Every test runs inside a child memory cgroup, zcsplice/tests: in the root
# cgroup kmem is not accounted, and a kmem charge left on a page that moves
# into the page cache would pass unnoticed. Tests that need a memory limit
# make a sibling under zcsplice/ (see guest.h).
#
# ZCSPLICE_FAULT, when set, is written to the series' fault-injection knob
# before the first test (negative controls: the tests must then fail).
# ZCSPLICE_CMD, when set, is the shell command the test named "command"
# runs (zcsplice run --cmd, bisect --cmd); $ZCSPLICE_TESTS names BIN there,
# so that it can run a test again with other settings.
# ZCSPLICE_MOVES=optional: only part of the series is applied (a step of
# an in-series bisect); the tests do not require moves (moves_required()
# in vm/tests/guest.h). The tests read it from their environment.
res=$1
bin=$2
shift 2
export ZCSPLICE_TESTS="$bin"
mark() { echo "zcsplice-guest: $*" > /dev/kmsg; }
now() { cut -d' ' -f1 /proc/uptime; }

cg=/sys/fs/cgroup
grep -q " $cg cgroup2 " /proc/mounts || mount -t cgroup2 none $cg
echo +memory > $cg/cgroup.subtree_control
mkdir -p $cg/zcsplice/tests
echo +memory > $cg/zcsplice/cgroup.subtree_control
if ! echo $$ > $cg/zcsplice/tests/cgroup.procs; then
	mark "cannot enter a child memory cgroup"
	echo "cannot enter a child memory cgroup" > "$res/setup.err"
fi

if [ -n "$ZCSPLICE_FAULT" ]; then
	grep -q " /sys/kernel/debug " /proc/mounts ||
		mount -t debugfs none /sys/kernel/debug
	knob=/sys/kernel/debug/splice_move/fault
	if ! echo "$ZCSPLICE_FAULT" > $knob; then
		echo "cannot set $knob to $ZCSPLICE_FAULT" > "$res/setup.err"
	fi
	mark "fault injected: $(cat $knob)"
fi

mark "kernel $(uname -r) up, running $#"
for t in "$@"; do
	mark "start $t"
	t0=$(now)
	if [ "$t" = command ] && [ -n "$ZCSPLICE_CMD" ]; then
		sh -c "$ZCSPLICE_CMD" > "$res/$t.out" 2>&1
		rc=$?
	elif [ -x "$bin/$t" ]; then
		"$bin/$t" > "$res/$t.out" 2>&1
		rc=$?
	else
		echo "no such guest test: $t" > "$res/$t.out"
		rc=1
	fi
	t1=$(now)
	case $rc in
	0) r=pass ;;
	77) r=skip ;;
	*) r=fail ;;
	esac
	secs=$(awk "BEGIN { print $t1 - $t0 }")
	echo "$r $secs" > "$res/$t.result"
	mark "end $t $r"
done
dmesg > "$res/dmesg.txt" 2>&1
mark "all done"
echo done > "$res/done"
