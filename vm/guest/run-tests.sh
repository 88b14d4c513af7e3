#!/bin/sh
# Runs inside the guest (vng --exec): run-tests.sh RESULTS BIN TEST...
# Each test's output goes to RESULTS/NAME.out and its verdict to
# RESULTS/NAME.result ("pass|fail|skip SECONDS"); markers go to /dev/kmsg
# so that the console shows which test a kernel report belongs to.
res=$1
bin=$2
shift 2
mark() { echo "zcsplice-guest: $*" > /dev/kmsg; }
now() { cut -d' ' -f1 /proc/uptime; }

mark "kernel $(uname -r) up, running $#"
for t in "$@"; do
	mark "start $t"
	t0=$(now)
	if [ -x "$bin/$t" ]; then
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
