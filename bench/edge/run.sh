#!/usr/bin/env bash
# The edge hook's benchmark: the Rust hook as deployed (index.js + the addon, built by
# scripts/edge-build) against a plain Node.js peer with @aws-sdk/client-sqs, each as overhead over
# an empty handler, on Node 22 and the local stack's SQS; then both at a real distance, run by the
# emulator and frozen between invocations as Lambda freezes them (bench/edge/distance.py). Not a
# test: figures vary with the machine.
#
#   bench/edge/run.sh [--quick] [--no-distance] [--out FILE]
#
# Writes bench/edge/results.json (or FILE) and prints a summary table. --quick: a smoke run of a
# few seconds with few samples (its figures are not worth quoting). Starts the local stack if it is
# not running, and stops it again then.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=scripts/edge-common.sh
. "$root/scripts/edge-common.sh"
bench="$root/bench/edge"

quick=()
distance=true
out="$bench/results.json"
while (($#)); do
  case "$1" in
    --quick) quick=(--quick); shift ;;
    --no-distance) distance=false; shift ;;
    --out) out="$2"; shift 2 ;;
    *) echo "run.sh: unknown argument $1 (expected --quick, --no-distance or --out FILE)" >&2; exit 2 ;;
  esac
done

"$root/scripts/edge-setup"
"$root/scripts/edge-build"

stamp="$bench/node_modules/.edge-bench-stamp"
want="$(sha256sum "$bench/package-lock.json" | cut -d' ' -f1)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  echo "edge bench: installing the peer's @aws-sdk/client-sqs (npm ci)" >&2
  (cd "$bench" && npm ci --loglevel=error >/dev/null)
  echo "$want" >"$stamp"
fi

started_stack=false
stop_stack() {
  if $started_stack; then
    "$root/scripts/local-stack" down
  fi
}
trap stop_stack EXIT
if [[ -z "${AWS_ENDPOINT_URL:-}" ]]; then
  if ! "$root/scripts/local-stack" status >/dev/null 2>&1; then
    "$root/scripts/local-stack" up >/dev/null
    started_stack=true
  fi
  stack_env="$("$root/scripts/local-stack" env)"
  set -a
  eval "$stack_env"
  set +a
fi

"$EDGE_NODE22" "$bench/measure.js" "${quick[@]}" --rust "$EDGE_PACKAGE" --zip "$EDGE_ZIP" --out "$out"

if ! $distance; then
  echo "edge bench: results in $out" >&2
  exit 0
fi

# At a real distance: SQS over HTTPS through a WAN link of 220 ms round trip (test-support's
# aws-wan: 105 ms one way plus 0-10 ms of jitter, the TLS handshake behind the delay), idle
# connections closed after 120 s as SQS closes them. A recorder (aws-wire) sits between the link
# and moto, which closes every connection itself; its record is checked against the wire contract.
work="$(mktemp -d)"
link="edge-sqs-$$"
recorder_pid=""
stop_distance() {
  "$root/scripts/wan" down "$link" >/dev/null 2>&1 || true
  if [[ -n "$recorder_pid" ]]; then
    kill "$recorder_pid" 2>/dev/null || true
    wait "$recorder_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
  stop_stack
}
trap stop_distance EXIT
if ((${#quick[@]})); then idle=6 idle_timeout=4s; else idle=600 idle_timeout=120s; fi
"$root/scripts/debug-build"
"$root/target/debug/aws-wire" record --upstream "$AWS_ENDPOINT_URL" --log "$work/wire.jsonl" \
  --port-file "$work/wire.port" >"$work/wire.log" 2>&1 &
recorder_pid=$!
for _ in $(seq 1 100); do [[ -s "$work/wire.port" ]] && break; sleep 0.1; done
link_options=(--delay 105ms --jitter 10ms --idle-timeout "$idle_timeout" --tls)
"$root/scripts/wan" up "$link" --upstream "127.0.0.1:$(cat "$work/wire.port")" "${link_options[@]}" >"$work/link.env"
set -a
# shellcheck disable=SC1091
source "$work/link.env"
set +a
var="WAN_$(echo "$link" | tr 'a-z-' 'A-Z_')"
endpoint_var="${var}_ENDPOINT" ca_var="${var}_CA_FILE"
"$root/.venv/bin/python" "$bench/distance.py" "${quick[@]}" --idle "$idle" \
  --rie "$(edge_rie_binary)" --bootstrap "$EDGE_BOOTSTRAP" --rust "$EDGE_PACKAGE" --peer "$bench/peer" \
  --endpoint "${!endpoint_var}" --ca-file "${!ca_var}" --queue-endpoint "$AWS_ENDPOINT_URL" \
  --link "{\"delay\": \"105ms\", \"jitter\": \"0-10ms\", \"idle_timeout\": \"$idle_timeout\", \"tls\": true}" \
  --out "$work/distance.json"
"$root/target/debug/aws-wire" check "$work/wire.jsonl"
"$root/.venv/bin/python" - "$out" "$work/distance.json" <<'PY'
import json, sys
results = json.load(open(sys.argv[1]))
results["distance"] = json.load(open(sys.argv[2]))
open(sys.argv[1], "w").write(json.dumps(results, indent=2) + "\n")
PY
echo "edge bench: results in $out" >&2
