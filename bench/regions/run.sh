#!/usr/bin/env bash
# What a second regional stack buys a viewer far from the first, at real distances
# (bench/regions/regions.py): the edge simulator (tools/local-pipeline `edge`, the real
# viewer-request function and the real edge hook on each origin attempt) in front of the two
# regional buckets of the demo (us-east-1 = slot 1, eu-central-1 = slot 2), each bucket origin's S3
# requests through a WAN link of its own; the single-region deployment (slot 1 only) against the
# two-region one, interleaved, for viewers in Germany and in the US, on cache misses the bucket
# serves (the simulator's cache off).
#
#   bench/regions/run.sh [--quick] [--out FILE]      (bench/run --only regions)
#
# Runs on a local stack of its own (LOCAL_STACK_DIR=.local/regions-stack, stopped at the end),
# never the shared one. Writes bench/regions/results.json (or FILE); exits 1 if any timed request
# was not served by the bucket its deployment must route it to. The simulator is the release build;
# --quick: its debug build, 3 rounds, objects up to 4 MiB (CI's harness check; its figures mean
# nothing).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

quick=()
out="$root/bench/regions/results.json"
while (($#)); do
  case "$1" in
    --quick) quick=(--quick); shift ;;
    --out) out="$2"; shift 2 ;;
    *) echo "regions: unknown argument $1 (expected --quick or --out FILE)" >&2; exit 2 ;;
  esac
done

say() { echo "regions: $*" >&2; }

scripts/tools.sh
scripts/edge-setup >/dev/null
scripts/edge-build >/dev/null
# aws-wan and aws-wire (and local-pipeline), as the tests build them.
scripts/debug-build
build=debug
if ((${#quick[@]} == 0)); then
  cargo build --quiet --release --locked -p local-pipeline --bin local-pipeline
  build=release
fi
simulator="target/$build/local-pipeline"
# shellcheck source=scripts/edge-common.sh
source scripts/edge-common.sh

# Distances, from a CloudFront edge in Europe (Frankfurt):
# - FAR: the us-east-1 bucket. Frankfurt - N. Virginia is about 90 ms round trip (AWS's
#   inter-region figures for eu-central-1 <-> us-east-1, e.g. cloudping.co's matrix, p50 about
#   88-92 ms; WonderNetwork's Frankfurt - Washington pings are in the same range): 43 ms one way
#   plus 0-4 ms of jitter each way. 20 MB/s per connection: what one TCP connection carries
#   across the Atlantic without tuning, far below the path's capacity.
# - NEAR: the eu-central-1 bucket, in the same metro as the edge: 3 ms one way plus 0-1 ms,
#   100 MB/s per connection.
far_options=(--delay 43ms --jitter 4ms --rate 20MB/s)
near_options=(--delay 3ms --jitter 1ms --rate 100MB/s)
links_json='{"far": {"to": "us-east-1", "delay": "43ms", "jitter": "0-4ms", "rate": "20MB/s", "rtt_ms": 90},
 "near": {"to": "eu-central-1", "delay": "3ms", "jitter": "0-1ms", "rate": "100MB/s", "rtt_ms": 7}}'

export LOCAL_STACK_DIR="$root/.local/regions-stack"
work="$(mktemp -d)"
far="regions-far-$$" near="regions-near-$$"
group_pids=() hook_pids=()
cleanup() {
  local pid
  for pid in "${group_pids[@]}"; do stop_process_group "$pid"; done
  for pid in "${hook_pids[@]}"; do edge_rie_stop "$pid"; done
  scripts/wan down "$far" >/dev/null 2>&1 || true
  scripts/wan down "$near" >/dev/null 2>&1 || true
  rm -f .local/wan/"$far".{log,stats} .local/wan/"$near".{log,stats}
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

# Both links reach moto through a wire recorder, which keeps its client connections open (moto
# closes each after its answer, where S3 keeps them alive) and checks the simulator's requests
# against the wire contract.
setsid target/debug/aws-wire record --upstream "$AWS_ENDPOINT_URL" --log "$work/wire.jsonl" \
  --port-file "$work/wire.port" >"$work/wire.log" 2>&1 </dev/null &
group_pids+=($!)
for _ in $(seq 1 100); do [[ -s "$work/wire.port" ]] && break; sleep 0.1; done
[[ -s "$work/wire.port" ]] || { cat "$work/wire.log" >&2; say "the wire recorder did not start"; exit 1; }
recorder="127.0.0.1:$(cat "$work/wire.port")"
scripts/wan up "$far" --upstream "$recorder" "${far_options[@]}" >"$work/far.env"
scripts/wan up "$near" --upstream "$recorder" "${near_options[@]}" >"$work/near.env"
var() { echo "WAN_$(echo "$1" | tr 'a-z-' 'A-Z_')_ENDPOINT"; }
# shellcheck disable=SC1091
source "$work/far.env"
# shellcheck disable=SC1091
source "$work/near.env"
far_var="$(var "$far")" near_var="$(var "$near")"
far_endpoint="${!far_var}" near_endpoint="${!near_var}"

# The domestic origin behind each bucket's failover: an empty one (a failover is a routing
# failure here, and shows as `x-served-by: domestic`).
mkdir -p "$work/domestic"
domestic_port="$(edge_free_port)"
setsid .venv/bin/python -m http.server "$domestic_port" --bind 127.0.0.1 --directory "$work/domestic" \
  >"$work/domestic.log" 2>&1 </dev/null &
group_pids+=($!)

# One edge hook sandbox per deployment (the origin-request trigger runs on the S3 attempt too).
export AWS_LAMBDA_FUNCTION_NAME="us-east-1.regions-bench-origin-request"
hooks=()
for deployment in single two; do
  edge_rie_start "$EDGE_PACKAGE" "$work/hook-$deployment.log"
  hook_pids+=("$EDGE_RIE_PID")
  hooks+=("$EDGE_RIE_URL")
done
unset AWS_LAMBDA_FUNCTION_NAME

# The two deployments: slot 1 only, and slots 1 and 2; the same links for the same buckets.
endpoints=(--s3-endpoint-for "$AWS_REGION=$far_endpoint" --s3-endpoint-for "$REGION2=$near_endpoint")
start_edge() { # deployment hook [--second-region]
  local deployment="$1" hook="$2"
  shift 2
  setsid "$simulator" edge --origin-port "$domestic_port" --edge-hook "$hook" \
    --port-file "$work/edge-$deployment.port" "${endpoints[@]}" \
    --node "$EDGE_NODE22" --viewer-function functions/viewer-request/viewer-request.js \
    --function-loader tests/lib/cloudfront-function.js \
    --function-runner tools/local-pipeline/viewer-function.js "$@" \
    >"$work/edge-$deployment.log" 2>&1 </dev/null &
  group_pids+=($!)
  for _ in $(seq 1 150); do [[ -s "$work/edge-$deployment.port" ]] && return; sleep 0.1; done
  cat "$work/edge-$deployment.log" >&2
  say "the $deployment-region edge simulator did not start"
  exit 1
}
start_edge single "${hooks[0]}"
start_edge two "${hooks[1]}" --second-region

.venv/bin/python bench/regions/regions.py "${quick[@]}" \
  --single "http://127.0.0.1:$(cat "$work/edge-single.port")" \
  --two "http://127.0.0.1:$(cat "$work/edge-two.port")" \
  --s3-endpoint "$AWS_ENDPOINT_URL" --bucket "$BUCKET" --region "$AWS_REGION" \
  --bucket-2 "$BUCKET_2" --region-2 "$REGION2" \
  --far-link "$far" --near-link "$near" --links "$links_json" --simulator-build "$build" --out "$out"
target/debug/aws-wire check "$work/wire.jsonl"
say "results in $out"
