#!/usr/bin/env bash
# The test command (README, .ci/run): installs what the tests need on a
# fresh Debian machine, then runs every test. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

# The Debian kernel series the series is kept working on, newest first
# (tests/kernel_loop.rs runs the first one Debian offers). Debian moves
# them on (6.12.117, .118, ...): the newest release the archive has is
# taken, and no test pins one. Those the machine's own apt sources carry are installed or
# upgraded here; the others (7.x: trixie-backports, sid) are read by
# `zcsplice tree import` through its private apt state in the cache.
supported=(7.3 7.2 6.12 6.1)

sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd=sudo
$sudo_cmd apt-get update -qq
pkgs=(git)
for s in "${supported[@]}"; do
	# Not `grep -q`: quitting at the first match would kill apt-cache
	# with SIGPIPE, and pipefail would then skip every package.
	if apt-cache policy "linux-source-$s" | grep 'Candidate: [0-9]' >/dev/null; then
		pkgs+=("linux-source-$s")
	fi
done
echo "tests/run.sh: installing or upgrading ${pkgs[*]}"
DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${pkgs[@]}"

# The kernel loop's own needs (build deps, qemu, virtme-ng).
cargo build --release --locked
target/release/zcsplice setup
# b4 (PyPI) reads the mail threads `zcsplice format` and `send` write
# (tests/mail.rs, tests/send.rs); aiosmtpd is the real SMTP server that
# tests/send.rs sends to.
command -v b4 >/dev/null || python3 -m pip install --quiet b4
python3 -c 'import aiosmtpd' 2>/dev/null || python3 -m pip install --quiet aiosmtpd

# The cache is tests/debian_trees.rs' own (CARGO_TARGET_TMPDIR), so the
# trees are imported once.
zcsplice=(target/release/zcsplice --cache target/tmp/zcsplice-test-cache)

# Which supported series Debian offers this machine. A mirror may serve
# an older archive: a series it lacks is skipped by every test, loudly
# (the error names the dates of the lists read). apt failing, or no
# series at all, stops here.
offered=()
for s in "${supported[@]}"; do
	rc=0
	"${zcsplice[@]}" tree versions "$s" || rc=$?
	case $rc in
	0) offered+=("$s") ;;
	1) echo "tests/run.sh: WARNING: Debian offers this machine no linux-source-$s; its tests are skipped" >&2 ;;
	*) exit "$rc" ;;
	esac
done
if [ ${#offered[@]} -eq 0 ]; then
	echo "tests/run.sh: Debian offers none of linux-source-{${supported[*]}}" >&2
	exit 1
fi
export ZCSPLICE_DEBIAN_SERIES="${offered[*]}"

# First, in words: does the newest release of every supported series
# still take the series? (A failure names the release and the patch.)
debian_args=()
for s in "${offered[@]}"; do debian_args+=(--debian "$s"); done
"${zcsplice[@]}" matrix --until apply --force "${debian_args[@]}"

# Every tier: the fast one (plain `cargo test`: no root, network or
# kernel) and the ignored real-tree and kernel tiers (serialized inside
# their binaries where they share a tree and the CPUs).
export ZCSPLICE_TEST_KERNEL="${offered[0]}"
cargo test --release --locked -- --include-ignored --test-threads=2
