#!/usr/bin/env bash
# Installs what the image processor's extra builds need from Debian: nasm, the assembler of
# libjpeg-turbo's SIMD (cargo feature `simd` of functions/image-processor; the default build needs
# only a C compiler). Idempotent: does nothing when nasm is there; `apt-get update` only if needed.
set -euo pipefail
if command -v nasm >/dev/null 2>&1; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -q nasm >/dev/null 2>&1; then
  apt-get update -q >/dev/null
  apt-get install -y -q nasm >/dev/null
fi
command -v nasm >/dev/null 2>&1 || { echo "image-tools: nasm did not install" >&2; exit 1; }
