# Runs a built Lambda function the way Lambda does, on this host: the AWS Lambda Runtime Interface
# Emulator (shipped inside the aws-sam-cli package) starts the function's bootstrap and answers
# invocations on 127.0.0.1. Source this file; it needs the project's .venv (scripts/tools.sh).
#
#   rie_start NAME BOOTSTRAP [ENV=VALUE ...]   starts it; sets RIE_URL_<NAME>
#   rie_invoke NAME EVENT_FILE                 prints the function's response
#   rie_stop_all                               stops every emulator started here (also on exit)

rie_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
rie_pids=()

rie_binary() {
  local found
  found="$(ls "$rie_root"/.venv/lib/python3*/site-packages/samcli/local/rapid/aws-lambda-rie-x86_64 2>/dev/null | head -1)"
  if [[ -z "$found" ]]; then
    echo "the Runtime Interface Emulator is missing: run scripts/tools.sh" >&2
    return 1
  fi
  chmod +x "$found"
  echo "$found"
}

rie_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

rie_start() {
  local name="$1" bootstrap="$2"
  shift 2
  local rie port api_port log
  rie="$(rie_binary)"
  port="$(rie_free_port)"
  # Each emulator needs its own Runtime API port (the default, 9001, would be shared).
  api_port="$(rie_free_port)"
  log="$rie_root/.local/rie-$name.log"
  mkdir -p "$rie_root/.local"
  env AWS_LAMBDA_FUNCTION_NAME="$name" AWS_LAMBDA_FUNCTION_MEMORY_SIZE=1024 "$@" \
    "$rie" --log-level error --runtime-interface-emulator-address "127.0.0.1:$port" \
    --runtime-api-address "127.0.0.1:$api_port" "$bootstrap" >"$log" 2>&1 &
  rie_pids+=("$!")
  local url="http://127.0.0.1:$port/2015-03-31/functions/function/invocations"
  for _ in $(seq 1 100); do
    if curl -s -o /dev/null "http://127.0.0.1:$port/"; then
      break
    fi
    sleep 0.05
  done
  printf -v "RIE_URL_${name//-/_}" '%s' "$url"
}

rie_invoke() {
  local name="$1" event="$2" var
  var="RIE_URL_${name//-/_}"
  curl -sS --max-time 60 -X POST --data-binary @"$event" "${!var}"
}

rie_stop_all() {
  local pid
  for pid in "${rie_pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${rie_pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rie_pids=()
}
