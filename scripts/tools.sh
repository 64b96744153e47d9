#!/usr/bin/env bash
# Installs the Python tools the project needs into the project's own venv (.venv, ignored by git).
# Idempotent: a second run only checks that the pinned versions are present.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
stamp="$venv/.tools-installed"
want="moto[server,s3crc32c]==5.2.5 aws-sam-cli==1.170.0 cargo-lambda==1.9.2 cargo-zigbuild==0.24.0 ziglang==0.17.1"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi
if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check --upgrade pip >/dev/null
# shellcheck disable=SC2086
"$venv/bin/pip" install --quiet --disable-pip-version-check $want
echo "$want" > "$stamp"
