#!/usr/bin/env bash
# The test command (README, .ci/run): installs what the tests need on a
# fresh Debian machine, then runs every test. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

need_debs=(linux-source-6.12 linux-source-6.1 git)
missing=()
for p in "${need_debs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "tests/run.sh: installing ${missing[*]}"
	sudo_cmd=""
	[ "$(id -u)" -eq 0 ] || sudo_cmd=sudo
	$sudo_cmd apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The kernel loop's own needs (build deps, qemu, virtme-ng).
cargo build --release --locked
target/release/zcsplice setup

cargo test --release --locked -- --test-threads=2
