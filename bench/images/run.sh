#!/usr/bin/env bash
# Thumbnail benchmark: the image processor's own pipeline against sharp (libvips) and Pillow, same
# machine, same inputs, single-threaded, four renditions (160, 320, 640, 1280 wide, JPEG quality 80;
# PNG for the image with transparency). sharp and Pillow each run their typical use (one call per
# rendition) and their fastest correct use (decode once, shrunk on load, then the rest from that).
# Ours and sharp's fastest mode also run with WebP (quality 75) and with AVIF (quality 60)
# renditions beside the JPEG ones (in the first rounds only: AVIF encoding takes seconds), for
# their bytes, scores and added time. The renditions of ours and of sharp are scored with
# SSIMULACRA2 against one reference per rendition size (thumbnail_bench score: the source decoded
# at full size, converted to sRGB through its ICC profile, resized with Lanczos3).
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

# The same WebP and AVIF settings for every tool (thumbnail_bench passes them to the
# configuration). JPEG: each at its default, since the numbers mean different tables: ours 79 on
# MozJPEG's quantisation tables (the configuration's default), sharp's and Pillow's 80 on libjpeg's
# standard ones; the perceptual score says which renditions are better.
# AVIF likewise: ours 70 on rav1e's scale (the configuration's default), sharp's 60 on libaom's.
export WEBP_QUALITY=75
unset JPEG_QUALITY AVIF_QUALITY
peer_jpeg_quality=80 ours_jpeg_quality=79 peer_avif_quality=60 ours_avif_quality=70

if $quick; then
  out="$root/.local/bench-images"
  divisor=4 rounds=1 iterations=1 format_rounds=1
  # rav1e's fastest speed: a debug build takes a minute per AVIF otherwise.
  export AVIF_SPEED=10
  profile_flag=() bin_dir="$root/target/debug/examples"
else
  out="$here"
  divisor=1 rounds=6 iterations=3 format_rounds=2
  profile_flag=(--release) bin_dir="$root/target/release/examples"
fi
[[ -n "$out_dir" ]] && out="$out_dir"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"

# The Rust side: the default build (what ships: libjpeg-turbo's SIMD, assembled with nasm), and
# for the full run the build with a C compiler alone (--no-default-features).
"$root/scripts/image-tools.sh"
if $quick; then
  "$root/scripts/debug-build"
else
  (cd "$root" && cargo build --quiet "${profile_flag[@]}" -p image-processor --example thumbnail_bench)
fi
cp "$bin_dir/thumbnail_bench" "$work/rust"
variants=(rust)
if ! $quick; then
  (cd "$root" && cargo build --quiet "${profile_flag[@]}" -p image-processor --no-default-features --example thumbnail_bench)
  cp "$bin_dir/thumbnail_bench" "$work/rust-nosimd"
  variants+=(rust-nosimd)
  # Leave the default build in place for whoever builds next.
  (cd "$root" && cargo build --quiet "${profile_flag[@]}" -p image-processor --example thumbnail_bench)
fi

inputs="$here/inputs"
$quick && inputs="$root/.local/bench-images/inputs"
# The generator's version beside the divisor: other inputs, other marker.
marker="divisor $divisor, inputs v3"
if [[ ! -f "$inputs/.divisor" || "$(cat "$inputs/.divisor")" != "$marker" ]]; then
  say "generating inputs in $inputs"
  rm -rf "$inputs"
  "$work/rust" generate "$inputs" "$divisor"
  echo "$marker" >"$inputs/.divisor"
fi
all_inputs=("$inputs"/*.jpg "$inputs"/*.png)
# The extra formats on every input; a smoke run's debug build takes minutes per AVIF of a large
# rendition, so it has them on the smallest photograph only.
format_inputs=("${all_inputs[@]}")
$quick && format_inputs=("$inputs/adobergb-8mp.jpg")

# The extra formats, unless this build makes none of one (AVIF renditions are opt-in and newer
# than the benchmark): the first run of each tells.
formats=(webp avif)
missing=" "
# Round 1 keeps every scored tool's renditions (a mode with an extra format keeps only that
# format's: its JPEG or PNG ones are the plain mode's).
renditions="$work/renditions"
keep() {
  local round="$1" input="$2" name="$3"
  ((round == 1)) && echo --keep "$renditions/$(basename "$input")/$name"
  return 0
}
tag() {
  python3 -c "import json,sys; d=json.load(sys.stdin); d['tool']='$1'; d['mode']='$2'; print(json.dumps(d))"
}

# Interleaved rounds, so that a busy neighbour slows every tool alike; raised priority where
# allowed (root), for less of that noise.
raw="$work/raw.jsonl"
run=()
nice -n -10 true 2>/dev/null && run=(nice -n -10)
export UV_THREADPOOL_SIZE=1 OMP_NUM_THREADS=1
for ((round = 1; round <= rounds; round++)); do
  say "round $round of $rounds"
  for input in "${all_inputs[@]}"; do
    for variant in "${variants[@]}"; do
      keep_flag=()
      [[ "$variant" == rust ]] && read -ra keep_flag <<<"$(keep "$round" "$input" rust~pipeline)"
      "${run[@]}" "$work/$variant" run "$input" "$iterations" "${keep_flag[@]}" | tag "$variant" pipeline >>"$raw"
    done
    for mode in typical fastest; do
      read -ra keep_flag <<<"$(keep "$round" "$input" "sharp~$mode")"
      JPEG_QUALITY=$peer_jpeg_quality AVIF_QUALITY=$peer_avif_quality "${run[@]}" node "$here/sharp_bench.js" "$mode" "$input" "$iterations" "${keep_flag[@]}" >>"$raw"
      JPEG_QUALITY=$peer_jpeg_quality "${run[@]}" "$venv/bin/python" "$here/pillow_bench.py" "$mode" "$input" "$iterations" >>"$raw"
    done
    if ((round <= format_rounds)) && [[ " ${format_inputs[*]} " == *" $input "* ]]; then
      for format in "${formats[@]}"; do
        [[ "$missing" == *" $format "* ]] && continue
        read -ra keep_flag <<<"$(keep "$round" "$input" "rust~pipeline+$format")"
        if ! "${run[@]}" "$work/rust" run "$input" 1 --formats "$format" "${keep_flag[@]}" >"$work/line" 2>"$work/error"; then
          cat "$work/error" >&2
          grep -q "makes no $format renditions" "$work/error" || exit 1
          say "leaving $format out"
          missing+="$format "
          continue
        fi
        tag rust "pipeline+$format" <"$work/line" >>"$raw"
        read -ra keep_flag <<<"$(keep "$round" "$input" "sharp~fastest+$format")"
        JPEG_QUALITY=$peer_jpeg_quality AVIF_QUALITY=$peer_avif_quality "${run[@]}" node "$here/sharp_bench.js" fastest "$input" 1 --formats "$format" "${keep_flag[@]}" >>"$raw"
      done
    fi
  done
done

# The scores, once (the renditions are the same every round), on both cores.
say "scoring the renditions"
scores="$work/scores.jsonl"
for input in "${all_inputs[@]}"; do
  dirs=()
  for dir in "$renditions/$(basename "$input")"/*; do
    if [[ "$dir" == *+* ]]; then
      find "$dir" -type f ! -name "*.${dir##*+}" -delete
    fi
    node "$here/sharp_bench.js" decode "$dir"
    dirs+=("$dir")
  done
  "$work/rust" score "$input" "${dirs[@]}" >>"$scores"
done

summary_args=(--raw "$raw" --scores "$scores" --json "$out/results.json" --quick "$quick"
  --jpeg-quality "$ours_jpeg_quality/$peer_jpeg_quality" --webp-quality "$WEBP_QUALITY" --avif-quality "$ours_avif_quality/$peer_avif_quality"
  --command "bench/images/run.sh$($quick && echo ' --quick')" --sharp "$(node -p "require('$here/node_modules/sharp').versions.sharp")"
  --pillow "$pillow")
$quick || [[ -n "$out_dir" ]] || summary_args+=(--markdown "$root/docs/images.md")
python3 "$here/summarize.py" "${summary_args[@]}"
say "results in $out/results.json"
