#!/usr/bin/env bash
# Unauthenticated load in token mode (issue 21): a flood of bad-token requests at the upload API
# while the backfill copies a batch of objects, on a modelled account concurrency
# (tools/local-pipeline `flood`, src/flood.rs and src/concurrency.rs): the backfill's throughput
# with no flood, with the flood and the upload API's reservation, and with the flood and no
# reservation (the counter-case), interleaved round after round. The upload API and the backfill
# are their built binaries in the Runtime Interface Emulator, one emulator per execution
# environment; the origin is local. Every round checks the invariants (every bad-token request
# answered 401 or 429, nothing lost, the reservation held): a broken one fails the run.
#
#   bench/token-flood/run.sh [--quick] [--out FILE]      (bench/run --only token-flood)
#
# Runs on a local stack of its own (LOCAL_STACK_DIR=.local/token-flood-stack, stopped at the end),
# never the shared one. Writes bench/token-flood/results.json (or FILE). Release builds, an
# account of 12 (4 kept unreserved), a reservation of 4, 4 backfill environments, 64 connections,
# 120 objects of 256 KiB, 3 rounds, each timed for at most 60 s; --quick: debug builds, an account
# of 6, a reservation of 2, 2 backfill environments, 32 connections, 30 objects of 64 KiB, 1 round
# of at most 20 s (tests/token-flood and CI's harness check: the invariants hold, the figures mean
# nothing).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

quick=false
out="$root/bench/token-flood/results.json"
while (($#)); do
  case "$1" in
    --quick) quick=true; shift ;;
    --out) out="$2"; shift 2 ;;
    *) echo "token-flood: unknown argument $1 (expected --quick or --out FILE)" >&2; exit 2 ;;
  esac
done

say() { echo "token-flood: $*" >&2; }

if $quick; then
  build=debug limit=6 min_unreserved=2 reservation=2 backfills=2 connections=32 objects=30
  object_bytes=65536 rounds=1 round_cap=20
else
  build=release limit=12 min_unreserved=4 reservation=4 backfills=4 connections=64 objects=120
  object_bytes=262144 rounds=3 round_cap=60
fi

scripts/tools.sh
if $quick; then
  scripts/debug-build
else
  cargo build --quiet --release --locked -p backfill --bin backfill -p upload-api --bin upload-api \
    -p local-pipeline --bin local-pipeline
fi

binaries="${CARGO_TARGET_DIR:-$root/target}/$build"
# shellcheck source=../../scripts/lib/rie.sh
source scripts/lib/rie.sh
export LOCAL_STACK_DIR="$root/.local/token-flood-stack"
work="$(mktemp -d)"
cleanup() {
  rie_stop_all
  scripts/local-stack down >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

say "starting a local stack of its own ($LOCAL_STACK_DIR)"
scripts/local-stack up >/dev/null 2>&1
set -a
# shellcheck disable=SC1091
source "$LOCAL_STACK_DIR/env"
set +a

origin_port="$(rie_free_port)"
backfill_urls=()
for i in $(seq 1 "$backfills"); do
  rie_start "flood-backfill-$i" "$binaries/backfill" \
    BUCKET="$BUCKET" ALLOWED_ORIGINS="http://127.0.0.1:$origin_port" AWS_LAMBDA_LOG_LEVEL=WARN
  var="RIE_URL_flood_backfill_$i"
  backfill_urls+=(--backfill-function "${!var}")
done
# Token mode with one caller, whose token the flood never has: every request fails authentication,
# before the token bucket and the tables (which therefore need not exist).
token_hash="$(head -c 32 /dev/urandom | sha256sum | cut -d' ' -f1)"
# The upload API's environments run at the lowest CPU priority (SCHED_IDLE: the emulator, all its
# threads, and the function it has started or will start, which inherits it): in Lambda each
# environment has a CPU share of its own and takes none from the backfill's, where here they share
# this machine's cores; so they get only what the backfill leaves idle. They still hold their
# concurrency while they wait for the CPU, and that is what the account model counts.
lowest_priority() {
  local pid
  chrt --idle -a -p 0 "$1" >/dev/null
  while read -r pid; do
    chrt --idle -a -p 0 "$pid" >/dev/null
  done < <(pgrep -P "$1" || true)
}
api_urls=()
for i in $(seq 1 "$limit"); do
  rie_start "flood-upload-api-$i" "$binaries/upload-api" \
    BUCKET="$BUCKET" UPLOADS_TABLE=flood-uploads FILES_TABLE=flood-files AUTH_TOKENS="alice:$token_hash" \
    AWS_LAMBDA_LOG_LEVEL=WARN
  lowest_priority "${rie_pids[-1]}"
  var="RIE_URL_flood_upload_api_$i"
  api_urls+=(--upload-api-function "${!var}")
done

say "$rounds round(s) of three cases: $objects objects of $object_bytes bytes, $connections connections"
"$binaries/local-pipeline" flood --catalogue "$root/.local/token-flood-catalogue" \
  --origin-port "$origin_port" "${backfill_urls[@]}" "${api_urls[@]}" \
  --account-limit "$limit" --min-unreserved "$min_unreserved" --reservation "$reservation" \
  --connections "$connections" --objects "$objects" --object-bytes "$object_bytes" --rounds "$rounds" \
  --round-cap "$round_cap" \
  --report "$work/flood.json"
mkdir -p "$(dirname "$out")"
.venv/bin/python - "$work/flood.json" "$out" "$build" "$(nproc)" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
report["build"] = sys.argv[3]
report["cores"] = int(sys.argv[4])
open(sys.argv[2], "w").write(json.dumps(report, indent=2) + "\n")
PY
say "results in $out"
