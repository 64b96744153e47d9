#!/usr/bin/env bash
# The edge hook's benchmark (issue 3): the Rust hook as deployed (index.js + the addon, built by
# scripts/edge-build) against a plain Node.js peer with @aws-sdk/client-sqs, each as overhead over
# an empty handler, on Node 22 and the local stack's SQS. Not a test: figures vary with the machine.
#
#   bench/edge/run.sh [--quick] [--out FILE]
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
out="$bench/results.json"
while (($#)); do
  case "$1" in
    --quick) quick=(--quick); shift ;;
    --out) out="$2"; shift 2 ;;
    *) echo "run.sh: unknown argument $1 (expected --quick or --out FILE)" >&2; exit 2 ;;
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
echo "edge bench: results in $out" >&2
