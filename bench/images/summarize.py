"""Summarises the thumbnail benchmark's raw lines (one JSON object per tool, mode, input and round)
into results.json and, for a full run, the results section of docs/images.md. With the scores
(`thumbnail_bench score`, one line per tool, mode and input) each rendition gets its SSIMULACRA2
score, and each input the comparison of ours with sharp's fastest mode that issue 19 sets as the
goal: at least 1.25x its speed, at most 0.95x its bytes, an equal or better score."""
import argparse
import json
import os
import platform
import statistics
import subprocess

START = "<!-- benchmark:start -->"
END = "<!-- benchmark:end -->"
PEERS = [("sharp", "typical"), ("sharp", "fastest"), ("pillow", "typical"), ("pillow", "fastest")]
OURS, FASTEST = "rust/pipeline", "sharp/fastest"
# The goal (issue 19), against sharp's fastest mode.
GOAL_SPEEDUP, GOAL_BYTES = 1.25, 0.95
# Extra formats: each made beside the JPEG (or PNG) renditions by a mode of its own, ours and sharp's.
EXTRA_FORMATS = ["webp", "avif"]
LARGEST = 1280


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


def load_scores(path):
    """{(input, tool/mode): {(width, format): score}} from `thumbnail_bench score`'s lines, whose
    directories are named TOOL~MODE."""
    scores = {}
    if not path:
        return scores
    for line in open(path):
        d = json.loads(line)
        tool, mode = d["dir"].split("~", 1)
        scores[(d["source"], f"{tool}/{mode}")] = {
            (r["width"], r["format"]): r["score"] for r in d["renditions"]
        }
    return scores


def by_format(renditions):
    """Bytes and scores of one format's four renditions."""
    out = {}
    for fmt in sorted({r["format"] for r in renditions}):
        rs = [r for r in renditions if r["format"] == fmt]
        largest = max(rs, key=lambda r: r["width"])
        entry = {"bytes": sum(r["bytes"] for r in rs), "bytes_1280": largest["bytes"]}
        scored = [r["score"] for r in rs if r.get("score") is not None]
        if len(scored) == len(rs):
            entry["mean_score"] = round(statistics.mean(scored), 2)
            entry["score_1280"] = largest["score"]
        out[fmt] = entry
    return out


def ratio(a, b):
    return round(a / b, 3) if a is not None and b else None


def compare(results):
    """Ours against sharp's fastest mode: the goal's figures, per format."""
    ours, peer = results.get(OURS), results.get(FASTEST)
    if not ours or not peer:
        return None
    main = next(iter(f for f in ours["formats"] if f not in EXTRA_FORMATS))
    o, p = ours["formats"][main], peer["formats"].get(main, {})
    out = {
        "format": main,
        "speedup": ours["speedup"][FASTEST],
        "cpu_speedup": ours["cpu_speedup"][FASTEST],
        "bytes_ratio": ratio(o["bytes"], p.get("bytes")),
        "bytes_ratio_1280": ratio(o["bytes_1280"], p.get("bytes_1280")),
    }
    if "mean_score" in o and "mean_score" in p:
        out["score"] = o["mean_score"]
        out["sharp_score"] = p["mean_score"]
        out["score_diff"] = round(o["mean_score"] - p["mean_score"], 2)
        out["score_diff_1280"] = round(o["score_1280"] - p["score_1280"], 2)
        out["goal"] = {
            "speed": out["speedup"] >= GOAL_SPEEDUP,
            "bytes": out["bytes_ratio"] is not None and out["bytes_ratio"] <= GOAL_BYTES,
            "score": out["score_diff"] >= 0,
        }
        out["goal"]["met"] = all(out["goal"].values())
    for fmt in EXTRA_FORMATS:
        ours_f, peer_f = results.get(f"{OURS}+{fmt}"), results.get(f"{FASTEST}+{fmt}")
        if not ours_f or fmt not in ours_f["formats"]:
            continue
        o = ours_f["formats"][fmt]
        entry = {
            "bytes": o["bytes"],
            "mean_score": o.get("mean_score"),
            "score_1280": o.get("score_1280"),
            # What adding the format costs: that mode's median less the JPEG (or PNG) one's.
            "added_ms": round(ours_f["median_ms"] - ours["median_ms"], 1),
            "added_cpu_ms": round(ours_f["median_cpu_ms"] - ours["median_cpu_ms"], 1),
        }
        if peer_f and fmt in peer_f["formats"]:
            p = peer_f["formats"][fmt]
            entry.update({
                "sharp_bytes": p["bytes"],
                "sharp_mean_score": p.get("mean_score"),
                "sharp_score_1280": p.get("score_1280"),
                "bytes_ratio": ratio(o["bytes"], p["bytes"]),
                "sharp_added_ms": round(peer_f["median_ms"] - peer["median_ms"], 1),
                "sharp_added_cpu_ms": round(peer_f["median_cpu_ms"] - peer["median_cpu_ms"], 1),
            })
            if o.get("mean_score") is not None and p.get("mean_score") is not None:
                entry["score_diff"] = round(o["mean_score"] - p["mean_score"], 2)
        out[fmt] = entry
    return out


def summarise(raw_path, scores_path=None):
    scores = load_scores(scores_path)
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
        scored = scores.get((file, f"{tool}/{mode}"), {})
        for r in g["renditions"]:
            if (r["width"], r["format"]) in scored:
                r["score"] = scored[(r["width"], r["format"])]
        inputs.setdefault(file, {})[f"{tool}/{mode}"] = {
            "median_ms": round(statistics.median(g["times"]), 2),
            "min_ms": round(min(g["times"]), 2),
            "median_cpu_ms": round(statistics.median(g["cpu"]), 2),
            "runs": len(g["times"]),
            "peak_rss_mib": round(max(g["rss"]) / 1024, 1) if g["rss"] else None,
            "output_bytes": sum(r["bytes"] for r in g["renditions"]),
            "formats": by_format(g["renditions"]),
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
    for results in inputs.values():
        comparison = compare(results)
        if comparison:
            results[OURS]["against_sharp_fastest"] = comparison
    return inputs


def cell(value, suffix=""):
    return "" if value is None else f"{value}{suffix}"


def markdown(summary):
    m = summary["machine"]
    q = summary["quality"]
    lines = [
        START,
        "",
        f"Command: `{summary['command']}` (sharp {summary['versions']['sharp']}, Pillow "
        f"{summary['versions']['pillow']}, {m['rustc']}, Node {m['node']}, Python {m['python']}).",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['os']}. Every tool "
        "single-threaded; rounds interleaved so that a busy neighbour slows all alike.",
        f"Quality: JPEG {q['jpeg']} (ours / sharp's and Pillow's: each at its default, the numbers "
        "scaling different tables, MozJPEG's for ours and libjpeg's standard ones for the peers; the "
        f"score compares the results), WebP {q['webp']} for every tool, AVIF {q['avif']} (ours on "
        "rav1e's scale at the configuration's default speed / sharp's on libaom's at its default "
        "effort).",
        "",
        "`rust` is the Lambda's pipeline as built by default (with libjpeg-turbo's SIMD, cargo feature "
        "`simd`, nasm at build time); `rust-nosimd` the same built with a C compiler alone "
        "(`--no-default-features`). Speed-up = peer's median / `rust`'s median "
        "(above 1: ours is faster), in wall time and in CPU time (the process's, all threads: less "
        "disturbed by other work on a shared machine). Score: SSIMULACRA2 of each rendition against the "
        "source decoded at full size, converted to sRGB through its ICC profile and resized to that "
        "rendition's size (Lanczos3, 32-bit float); 90 is visually lossless, 70 high quality, 50 medium.",
        "",
        f"### Against sharp's fastest mode (goal: at least {GOAL_SPEEDUP}x its speed, at most "
        f"{GOAL_BYTES}x its bytes, an equal or better score)",
        "",
        "| input | speed-up (wall / CPU) | bytes ratio (4 / 1280) | mean score, ours / sharp (diff) "
        "| 1280 score diff | goal |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    extra_rows = []
    for file, results in summary["inputs"].items():
        c = results.get(OURS, {}).get("against_sharp_fastest")
        if not c:
            continue
        goal = c.get("goal")
        verdict = ""
        if goal:
            missed = [k for k in ("speed", "bytes", "score") if not goal[k]]
            verdict = "met" if goal["met"] else "not met: " + ", ".join(missed)
        score = ""
        if "score" in c:
            score = f"{c['score']} / {c['sharp_score']} ({c['score_diff']:+})"
        lines.append(
            f"| {file} ({c['format']}) | {c['speedup']} / {c['cpu_speedup']} | {cell(c['bytes_ratio'])} / "
            f"{cell(c['bytes_ratio_1280'])} | {score} | {cell(c.get('score_diff_1280'))} | {verdict} |"
        )
        for fmt in EXTRA_FORMATS:
            e = c.get(fmt)
            if e:
                extra_rows.append(
                    f"| {file} | {fmt} | {e['bytes']} / {cell(e.get('sharp_bytes'))} | {cell(e.get('bytes_ratio'))} | "
                    f"{cell(e['mean_score'])} / {cell(e.get('sharp_mean_score'))} | "
                    f"{cell(e['score_1280'])} / {cell(e.get('sharp_score_1280'))} | "
                    f"{e['added_ms']} / {cell(e.get('sharp_added_ms'))} | "
                    f"{e['added_cpu_ms']} / {cell(e.get('sharp_added_cpu_ms'))} |"
                )
    if extra_rows:
        lines += [
            "",
            "### WebP and AVIF renditions, ours / sharp's fastest mode",
            "",
            "Each made beside the JPEG (or PNG) renditions, from the same resized pixels; added time = that "
            "mode's median less the JPEG-only one's (ours: the AVIF or WebP encoding of four renditions). "
            "AVIF renditions are decoded by sharp (libheif) for scoring.",
            "",
            "| input | format | bytes (4) | bytes ratio | mean score | 1280 score | added ms (wall) | added ms (CPU) |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ] + extra_rows
    lines.append("")
    for file, results in summary["inputs"].items():
        ours = results.get(OURS, {})
        lines += [
            f"### {file}",
            "",
            "| tool / mode | median ms | min ms | median CPU ms | speed-up of `rust` (wall / CPU) "
            "| peak RSS MiB | output bytes (4 renditions) | 1280 rendition bytes | mean score | 1280 score |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name, r in results.items():
            tool, mode = name.split("/")
            if "+" in mode:
                continue
            label = tool if mode == "pipeline" else f"{tool} {mode}"
            speedup = ""
            if name in ours.get("speedup", {}):
                speedup = f"{ours['speedup'][name]} / {ours['cpu_speedup'][name]}"
            largest = max(r["renditions"], key=lambda x: x["width"])
            main_format = r["formats"].get(largest["format"], {})
            lines.append(
                f"| {label} | {r['median_ms']} | {r['min_ms']} | {r['median_cpu_ms']} | {speedup} | {r['peak_rss_mib']} | "
                f"{r['output_bytes']} | {largest['bytes']} | {cell(main_format.get('mean_score'))} | "
                f"{cell(main_format.get('score_1280'))} |"
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
    p.add_argument("--scores", help="thumbnail_bench score's lines")
    p.add_argument("--jpeg-quality", default="79/80", help="ours/peers'")
    p.add_argument("--webp-quality", type=int, default=75)
    p.add_argument("--avif-quality", default="70/60", help="ours/sharp's")
    a = p.parse_args()
    summary = {
        "command": a.command,
        "quick": a.quick == "true",
        "machine": machine(),
        "versions": {"sharp": a.sharp, "pillow": a.pillow},
        "quality": {"jpeg": a.jpeg_quality, "webp": a.webp_quality, "avif": a.avif_quality},
        "inputs": summarise(a.raw, a.scores),
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
        c = ours.get("against_sharp_fastest") or {}
        print(
            f"{file}: rust {ours.get('median_ms')} ms ({ours.get('median_cpu_ms')} ms CPU); against sharp fastest: "
            f"speed-up {c.get('speedup')} (CPU {c.get('cpu_speedup')}), bytes {c.get('bytes_ratio')}, "
            f"score {c.get('score')} vs {c.get('sharp_score')}, goal {(c.get('goal') or {}).get('met')}"
        )


if __name__ == "__main__":
    main()
