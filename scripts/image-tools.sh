#!/usr/bin/env bash
# Installs what the image processor's build needs from Debian: nasm, the assembler of
# libjpeg-turbo's x86-64 SIMD (cargo feature `simd` of functions/image-processor, on by default;
# `--no-default-features` needs only a C compiler). Idempotent: does nothing when nasm is there;
# `apt-get update` only if needed; waits for another apt (scripts/tools.sh may run beside it).
set -euo pipefail
if command -v nasm >/dev/null 2>&1; then
  exit 0
fi
echo "image-tools: installing nasm (the image processor's SIMD build)" >&2
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -q -o DPkg::Lock::Timeout=600 nasm >/dev/null 2>&1; then
  apt-get update -q -o DPkg::Lock::Timeout=600 >/dev/null
  apt-get install -y -q -o DPkg::Lock::Timeout=600 nasm >/dev/null
fi
command -v nasm >/dev/null 2>&1 || { echo "image-tools: nasm did not install" >&2; exit 1; }
