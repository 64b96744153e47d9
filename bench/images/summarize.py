"""Summarises the thumbnail benchmark's raw lines (one JSON object per tool, mode, input and round)
into results.json and, for a full run, the results section of docs/images.md."""
import argparse
import json
import os
import platform
import statistics
import subprocess

START = "<!-- benchmark:start -->"
END = "<!-- benchmark:end -->"
PEERS = [("sharp", "typical"), ("sharp", "fastest"), ("pillow", "typical"), ("pillow", "fastest")]


def machine():
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
    except OSError:
        pass
    mem_kb = 0
    try:
        with open("/proc/meminfo") as f:
            mem_kb = int(next(l.split()[1] for l in f if l.startswith("MemTotal")))
    except (OSError, StopIteration):
        pass

    def version(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return "unknown"

    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "os": platform.platform(),
        "rustc": version(["rustc", "--version"]),
        "node": version(["node", "--version"]),
        "python": platform.python_version(),
    }


def summarise(raw_path):
    groups = {}
    for line in open(raw_path):
        d = json.loads(line)
        key = (d["file"], d["tool"], d["mode"])
        g = groups.setdefault(key, {"times": [], "cpu": [], "rss": [], "renditions": d["renditions"]})
        g["times"].extend(d["times_ms"])
        g["cpu"].extend(d["cpu_ms"])
        if d.get("peak_rss_kb"):
            g["rss"].append(d["peak_rss_kb"])
    inputs = {}
    for (file, tool, mode), g in sorted(groups.items()):
        inputs.setdefault(file, {})[f"{tool}/{mode}"] = {
            "median_ms": round(statistics.median(g["times"]), 2),
            "min_ms": round(min(g["times"]), 2),
            "median_cpu_ms": round(statistics.median(g["cpu"]), 2),
            "runs": len(g["times"]),
            "peak_rss_mib": round(max(g["rss"]) / 1024, 1) if g["rss"] else None,
            "output_bytes": sum(r["bytes"] for r in g["renditions"]),
            "renditions": g["renditions"],
        }
    for results in inputs.values():
        ours = results.get("rust/pipeline")
        if not ours:
            continue
        for name, metric in (("speedup", "median_ms"), ("cpu_speedup", "median_cpu_ms")):
            ours[name] = {
                f"{tool}/{mode}": round(results[f"{tool}/{mode}"][metric] / ours[metric], 2)
                for tool, mode in PEERS
                if f"{tool}/{mode}" in results
            }
    return inputs


def markdown(summary):
    m = summary["machine"]
    lines = [
        START,
        "",
        f"Command: `{summary['command']}` (sharp {summary['versions']['sharp']}, Pillow "
        f"{summary['versions']['pillow']}, {m['rustc']}, Node {m['node']}, Python {m['python']}).",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['os']}. Every tool "
        "single-threaded; rounds interleaved so that a busy neighbour slows all alike.",
        "",
        "`rust` is the Lambda's pipeline as built by default (no nasm); `rust-simd` the same with "
        "libjpeg-turbo's SIMD (cargo feature `simd`). Speed-up = peer's median / `rust`'s median "
        "(above 1: ours is faster), in wall time and in CPU time (the process's, all threads: less "
        "disturbed by other work on a shared machine).",
        "",
    ]
    for file, results in summary["inputs"].items():
        ours = results.get("rust/pipeline", {})
        lines += [
            f"### {file}",
            "",
            "| tool / mode | median ms | min ms | median CPU ms | speed-up of `rust` (wall / CPU) "
            "| peak RSS MiB | output bytes (4 renditions) | 1280 rendition bytes |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name, r in results.items():
            tool, mode = name.split("/")
            label = tool if mode == "pipeline" else f"{tool} {mode}"
            speedup = ""
            if name in ours.get("speedup", {}):
                speedup = f"{ours['speedup'][name]} / {ours['cpu_speedup'][name]}"
            largest = max(r["renditions"], key=lambda x: x["width"])["bytes"]
            lines.append(
                f"| {label} | {r['median_ms']} | {r['min_ms']} | {r['median_cpu_ms']} | {speedup} | {r['peak_rss_mib']} | "
                f"{r['output_bytes']} | {largest} |"
            )
        lines.append("")
    lines.append(END)
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--raw", required=True)
    p.add_argument("--json", required=True)
    p.add_argument("--markdown")
    p.add_argument("--command", required=True)
    p.add_argument("--quick", default="false")
    p.add_argument("--sharp", required=True)
    p.add_argument("--pillow", required=True)
    a = p.parse_args()
    summary = {
        "command": a.command,
        "quick": a.quick == "true",
        "machine": machine(),
        "versions": {"sharp": a.sharp, "pillow": a.pillow},
        "inputs": summarise(a.raw),
    }
    with open(a.json, "w") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    if a.markdown:
        text = open(a.markdown).read()
        if START not in text or END not in text:
            raise SystemExit(f"{a.markdown} lacks the {START} / {END} markers")
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
        with open(a.markdown, "w") as f:
            f.write(head + markdown(summary) + tail)
    for file, results in summary["inputs"].items():
        ours = results.get("rust/pipeline", {})
        print(
            f"{file}: rust {ours.get('median_ms')} ms ({ours.get('median_cpu_ms')} ms CPU), "
            f"speed-up {ours.get('speedup')}, in CPU time {ours.get('cpu_speedup')}"
        )


if __name__ == "__main__":
    main()
