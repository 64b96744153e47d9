#!/usr/bin/env bash
# Thumbnail benchmark: the image processor's own pipeline against sharp (libvips) and Pillow, same
# machine, same inputs, single-threaded, four renditions (160, 320, 640, 1280 wide, JPEG quality 80;
# PNG for the image with transparency). sharp and Pillow each run their typical use (one call per
# rendition) and their fastest correct use (decode once, shrunk on load, then the rest from that).
#
#   bench/images/run.sh           full run (release builds, 6 interleaved rounds): writes
#                                 bench/images/results.json and the results section of docs/images.md
#   bench/images/run.sh --quick   smoke run (small inputs, debug build, one round): writes
#                                 .local/bench-images/results.json only
#   --out DIR                     results.json in DIR instead,
#                                 docs/images.md left alone (bench/run gathers every benchmark)
#
# Installs its peers itself: npm sharp into bench/images/node_modules, PyPI Pillow into
# bench/images/.venv (both ignored by git), and nasm for the `simd` build (scripts/image-tools.sh).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
quick=false
out_dir=""
while (($#)); do
  case "$1" in
    --quick) quick=true; shift ;;
    --out) out_dir="$2"; shift 2 ;;
    *) echo "usage: $0 [--quick] [--out DIR]" >&2; exit 2 ;;
  esac
done

say() { echo "bench/images: $*" >&2; }

# Peers.
if ! node -e "require('$here/node_modules/sharp')" >/dev/null 2>&1; then
  say "installing sharp"
  npm ci --prefix "$here" --no-audit --no-fund --loglevel=error >&2
fi
pillow=12.0.0
venv="$here/.venv"
if ! "$venv/bin/python" -c "import PIL, sys; sys.exit(PIL.__version__ != '$pillow')" >/dev/null 2>&1; then
  say "installing Pillow $pillow"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "pillow==$pillow" >&2
fi

if $quick; then
  out="$root/.local/bench-images"
  divisor=4 rounds=1 iterations=1
  profile_flag=() bin_dir="$root/target/debug/examples"
else
  out="$here"
  divisor=1 rounds=6 iterations=3
  profile_flag=(--release) bin_dir="$root/target/release/examples"
fi
[[ -n "$out_dir" ]] && out="$out_dir"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"

# The Rust side: the default build (what ships), and with libjpeg-turbo's SIMD for the full run.
if $quick; then
  "$root/scripts/debug-build"
else
  (cd "$root" && cargo build --quiet "${profile_flag[@]}" -p image-processor --example thumbnail_bench)
fi
cp "$bin_dir/thumbnail_bench" "$work/rust"
variants=(rust)
if ! $quick; then
  "$root/scripts/image-tools.sh"
  (cd "$root" && cargo build --quiet "${profile_flag[@]}" -p image-processor --features simd --example thumbnail_bench)
  cp "$bin_dir/thumbnail_bench" "$work/rust-simd"
  variants+=(rust-simd)
  # Leave the default build in place for whoever builds next.
  (cd "$root" && cargo build --quiet "${profile_flag[@]}" -p image-processor --example thumbnail_bench)
fi

inputs="$here/inputs"
$quick && inputs="$root/.local/bench-images/inputs"
if [[ ! -f "$inputs/.divisor" || "$(cat "$inputs/.divisor")" != "$divisor" ]]; then
  say "generating inputs in $inputs"
  rm -rf "$inputs"
  "$work/rust" generate "$inputs" "$divisor"
  echo "$divisor" >"$inputs/.divisor"
fi

# Interleaved rounds, so that a busy neighbour slows every tool alike; raised priority where
# allowed (root), for less of that noise.
raw="$work/raw.jsonl"
run=()
nice -n -10 true 2>/dev/null && run=(nice -n -10)
export UV_THREADPOOL_SIZE=1 OMP_NUM_THREADS=1
for ((round = 1; round <= rounds; round++)); do
  say "round $round of $rounds"
  for input in "$inputs"/*.jpg "$inputs"/*.png; do
    for variant in "${variants[@]}"; do
      "${run[@]}" "$work/$variant" run "$input" "$iterations" | python3 -c \
        "import json,sys; d=json.load(sys.stdin); d['tool']='$variant'; d['mode']='pipeline'; print(json.dumps(d))" >>"$raw"
    done
    for mode in typical fastest; do
      "${run[@]}" node "$here/sharp_bench.js" "$mode" "$input" "$iterations" >>"$raw"
      "${run[@]}" "$venv/bin/python" "$here/pillow_bench.py" "$mode" "$input" "$iterations" >>"$raw"
    done
  done
done

summary_args=(--raw "$raw" --json "$out/results.json" --quick "$quick"
  --command "bench/images/run.sh$($quick && echo ' --quick')" --sharp "$(node -p "require('$here/node_modules/sharp').versions.sharp")"
  --pillow "$pillow")
$quick || [[ -n "$out_dir" ]] || summary_args+=(--markdown "$root/docs/images.md")
python3 "$here/summarize.py" "${summary_args[@]}"
say "results in $out/results.json"
