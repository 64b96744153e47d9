"""Image processor time as the pixels grow, against sharp and Pillow: the image benchmark's own
tools (the thumbnail_bench example, sharp_bench.js, pillow_bench.py, with the peers that
bench/images/run.sh installs), on its generated photographs (baseline JPEG, quality 92) at every
side divided by 1, 2 and 4: 0.75 to 24 megapixels. Every tool single-threaded; in each round,
for each size, every tool runs once, in turn.

    pixels.py --binary THUMBNAIL_BENCH --divisors 1,2,4 --rounds 3 --iterations 2 --out FILE
"""

import argparse
import json
import os
import statistics
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "bench" / "images"
# The generator's sizes at divisor 1 (functions/image-processor/examples/thumbnail_bench.rs).
PHOTOS = {"photo-24mp.jpg": (6000, 4000), "photo-12mp.jpg": (4000, 3000)}
TOOLS = ["rust", "sharp/typical", "sharp/fastest", "pillow/typical", "pillow/fastest"]


def inputs(binary, divisor):
    """The generated inputs at this divisor: the image bench's own for 1, cached here otherwise."""
    folder = IMAGES / "inputs" if divisor == 1 else ROOT / ".local" / "bench-pixels" / f"divisor-{divisor}"
    stamp = folder / ".divisor"
    if not (stamp.exists() and stamp.read_text().strip() == str(divisor)):
        subprocess.run([binary, "generate", str(folder), str(divisor)], check=True, stderr=subprocess.DEVNULL)
        stamp.write_text(f"{divisor}\n")
    return folder


def command(tool, binary, path, iterations):
    if tool == "rust":
        return [binary, "run", str(path), str(iterations)]
    name, mode = tool.split("/")
    if name == "sharp":
        return ["node", str(IMAGES / "sharp_bench.js"), mode, str(path), str(iterations)]
    return [str(IMAGES / ".venv" / "bin" / "python"), str(IMAGES / "pillow_bench.py"), mode, str(path), str(iterations)]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", required=True, help="the thumbnail_bench example, built")
    parser.add_argument("--divisors", default="1,2,4")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    env = {**os.environ, "UV_THREADPOOL_SIZE": "1", "OMP_NUM_THREADS": "1"}
    cases = []
    for divisor in (int(d) for d in args.divisors.split(",")):
        folder = inputs(args.binary, divisor)
        for photo, (width, height) in PHOTOS.items():
            w, h = width // divisor, height // divisor
            cases.append({"path": folder / photo, "width": w, "height": h})
    cases.sort(key=lambda c: c["width"] * c["height"])
    times = {(i, tool): [] for i in range(len(cases)) for tool in TOOLS}
    for round_ in range(args.rounds):
        for i, case in enumerate(cases):
            for tool in TOOLS:
                line = subprocess.run(command(tool, args.binary, case["path"], args.iterations),
                                      env=env, check=True, capture_output=True, text=True).stdout
                times[(i, tool)].extend(json.loads(line.strip().splitlines()[-1])["times_ms"])
        print(f"pixels: round {round_ + 1} of {args.rounds}", flush=True)
    rows = []
    for i, case in enumerate(cases):
        medians = {tool: round(statistics.median(times[(i, tool)]), 2) for tool in TOOLS}
        rows.append({
            "megapixels": round(case["width"] * case["height"] / 1e6, 2),
            "width": case["width"], "height": case["height"],
            "median_ms": medians,
            "speedup": {tool: round(medians[tool] / medians["rust"], 2) for tool in TOOLS if tool != "rust"},
        })
        print(f"  {rows[-1]['megapixels']} MP: " + ", ".join(f"{t} {m} ms" for t, m in medians.items()), flush=True)
    args.out.write_text(json.dumps({"rounds": args.rounds, "iterations": args.iterations,
                                          "divisors": [int(d) for d in args.divisors.split(",")], "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
