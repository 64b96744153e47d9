#!/usr/bin/env python3
"""What a second regional stack buys a viewer far from the first: the viewer's time to first and to
last byte of a cache miss that the bucket serves, through the edge simulator, in the single-region
deployment (slot 1, us-east-1, only) and in the two-region one (eu-central-1 as slot 2), each bucket
behind the WAN link of its distance from a European edge. Run by bench/regions/run.sh, which starts
the local stack, the links, the hooks and both simulators.

The objects are put into both buckets directly before anything is timed; one request of each
deployment and country first opens the simulator's connections to the buckets (kept alive, as a
busy edge's are). Then, round after round, every size and country, the two deployments in turn
(which goes first alternates). Every timed request's `x-served-by` is checked against the bucket
its deployment must route it to (Germany: s3:us-east-1 with one region, s3:eu-central-1 with two;
the US: s3:us-east-1 in both), and its body against the object's SHA-256; any mismatch fails the
run. The viewer function's time in the simulator comes from the response's `server-timing`.

  regions.py --single URL --two URL --s3-endpoint URL --bucket B --region R --bucket-2 B --region-2 R
             --far-link NAME --near-link NAME --links JSON --out FILE [--quick] [--rounds N] [--sizes LIST]
"""
import argparse
import datetime
import hashlib
import http.client
import json
import os
import platform
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parent.parent.parent
KIB, MIB = 1024, 1024 * 1024
DEPLOYMENTS = ("single", "two")
COUNTRIES = ("DE", "US")
PREFIX = "bench-regions"


def size_label(n):
    return f"{n // MIB} MiB" if n >= MIB else f"{n // KIB} KiB"


def parse_size(raw):
    raw = raw.strip()
    for unit, scale in (("KiB", KIB), ("MiB", MIB)):
        if raw.endswith(unit):
            return int(float(raw[: -len(unit)]) * scale)
    return int(raw)


def percentile(samples, q):
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def progress(text):
    print(f"regions: {text}", file=sys.stderr, flush=True)


class Viewer:
    """A viewer's kept-alive connection to one deployment's edge simulator."""

    def __init__(self, url):
        parsed = urllib.parse.urlparse(url)
        self.host, self.port = parsed.hostname, parsed.port
        self.connection = None

    def get(self, path, country):
        """(status, headers, ms to the first body byte, ms to the last, length, sha256)."""
        if self.connection is None:
            self.connection = http.client.HTTPConnection(self.host, self.port, timeout=120)
            self.connection.connect()
        digest = hashlib.sha256()
        started = time.perf_counter()
        self.connection.request("GET", path, headers={"x-viewer-country": country})
        response = self.connection.getresponse()
        first = response.read(1)
        first_byte = time.perf_counter()
        chunks = [first]
        while True:
            chunk = response.read(MIB)
            if not chunk:
                break
            chunks.append(chunk)
        last_byte = time.perf_counter()
        length = 0
        for chunk in chunks:
            digest.update(chunk)
            length += len(chunk)
        if response.getheader("connection", "").lower() == "close":
            self.connection.close()
            self.connection = None
        return (response.status, {k.lower(): v for k, v in response.getheaders()},
                (first_byte - started) * 1000, (last_byte - started) * 1000, length, digest.hexdigest())


def expected_bucket(deployment, country, region, region_2):
    return f"s3:{region_2}" if deployment == "two" and country == "DE" else f"s3:{region}"


def function_ms(headers):
    """The viewer function's time from `server-timing: viewer-function;dur=MS`."""
    for metric in headers.get("server-timing", "").split(","):
        name, _, params = metric.strip().partition(";")
        if name == "viewer-function" and params.startswith("dur="):
            return float(params[4:])
    return None


def link_stats(name):
    out = subprocess.run([str(ROOT / "scripts" / "wan"), "stats", name], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def summary(samples):
    return {
        "n": len(samples),
        "p50": round(percentile(samples, 0.5), 2),
        "p90": round(percentile(samples, 0.9), 2),
        "min": round(min(samples), 2),
        "max": round(max(samples), 2),
    }


def main():
    parser = argparse.ArgumentParser()
    for name in ("--single", "--two", "--s3-endpoint", "--bucket", "--region", "--bucket-2", "--region-2",
                 "--far-link", "--near-link", "--out"):
        parser.add_argument(name, required=True)
    parser.add_argument("--links", default="{}", help="the links' settings, as JSON, for the results")
    parser.add_argument("--simulator-build", default="debug", help="the simulator's build, for the results")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--sizes", help="object sizes, e.g. 64KiB,1MiB,16MiB")
    args = parser.parse_args()
    rounds = args.rounds or (3 if args.quick else 30)
    sizes = [parse_size(s) for s in (args.sizes or ("64KiB,1MiB,4MiB" if args.quick else "64KiB,1MiB,16MiB")).split(",")]

    # The objects, in both buckets, put directly (each client signs for its bucket's region).
    objects = {}
    for size in sizes:
        body = os.urandom(size)
        key = f"{PREFIX}/{size_label(size).replace(' ', '')}.bin"
        for bucket, region in ((args.bucket, args.region), (args.bucket_2, args.region_2)):
            s3 = boto3.client("s3", endpoint_url=args.s3_endpoint, region_name=region)
            s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/octet-stream")
        objects[size] = {"path": "/" + key, "sha256": hashlib.sha256(body).hexdigest()}

    viewers = {"single": Viewer(args.single), "two": Viewer(args.two)}
    failures = []

    def fetch(deployment, country, size):
        status, headers, first_ms, last_ms, length, sha256 = viewers[deployment].get(objects[size]["path"], country)
        want = expected_bucket(deployment, country, args.region, args.region_2)
        served_by = headers.get("x-served-by")
        problems = []
        if status != 200:
            problems.append(f"status {status}")
        if served_by != want:
            problems.append(f"x-served-by {served_by}, expected {want}")
        if length != size or sha256 != objects[size]["sha256"]:
            problems.append(f"body of {length} bytes, not the object's")
        if problems:
            failures.append({"deployment": deployment, "country": country, "size": size, "problems": problems})
            progress(f"FAILED: {deployment}-region, viewer in {country}, {size_label(size)}: {'; '.join(problems)}")
        return first_ms, last_ms, function_ms(headers), served_by

    # Warm: each deployment's connections to both buckets open, the function and the hook loaded.
    for deployment in DEPLOYMENTS:
        for country in COUNTRIES:
            fetch(deployment, country, sizes[0])
    stats_before = {"far": link_stats(args.far_link), "near": link_stats(args.near_link)}

    samples = {d: {c: {s: {"first_ms": [], "last_ms": []} for s in sizes} for c in COUNTRIES} for d in DEPLOYMENTS}
    served = {d: {c: {} for c in COUNTRIES} for d in DEPLOYMENTS}
    function_times = []
    started = time.time()
    for i in range(rounds):
        progress(f"round {i + 1}/{rounds}")
        for j, size in enumerate(sizes):
            for country in COUNTRIES:
                order = DEPLOYMENTS if (i + j) % 2 == 0 else DEPLOYMENTS[::-1]
                for deployment in order:
                    first_ms, last_ms, fn_ms, served_by = fetch(deployment, country, size)
                    cell = samples[deployment][country][size]
                    cell["first_ms"].append(first_ms)
                    cell["last_ms"].append(last_ms)
                    served[deployment][country][served_by] = served[deployment][country].get(served_by, 0) + 1
                    if fn_ms is not None:
                        function_times.append(fn_ms)
    elapsed = time.time() - started
    stats_after = {"far": link_stats(args.far_link), "near": link_stats(args.near_link)}
    traffic = {name: {key: stats_after[name].get(key, 0) - stats_before[name].get(key, 0)
                      for key in ("connections", "bytes_up", "bytes_down")} for name in ("far", "near")}
    # Every timed body came across its bucket's link: the far one for slot 1's, the near one for
    # slot 2's (a simulator reading the local S3 directly would measure the loopback).
    for name, region in (("far", args.region), ("near", args.region_2)):
        carried = sum(size * rounds for size in sizes) * sum(
            1 for d in DEPLOYMENTS for c in COUNTRIES if expected_bucket(d, c, args.region, args.region_2) == f"s3:{region}")
        if traffic[name]["bytes_down"] < carried:
            failures.append({"link": name, "problems": [
                f"carried {traffic[name]['bytes_down']} bytes down, less than the {carried} bytes of the bodies it served"]})
            progress(f"FAILED: the {name} link carried {traffic[name]['bytes_down']} bytes, not the {carried} of its bodies")

    rows = []
    for country in COUNTRIES:
        for size in sizes:
            row = {"country": country, "bytes": size, "label": size_label(size)}
            for deployment in DEPLOYMENTS:
                cell = samples[deployment][country][size]
                row[deployment] = {
                    "bucket": expected_bucket(deployment, country, args.region, args.region_2),
                    "first_byte_ms": summary(cell["first_ms"]),
                    "last_byte_ms": summary(cell["last_ms"]),
                    "mb_per_s_at_p50": round(size / 1e6 / (percentile(cell["last_ms"], 0.5) / 1000), 1),
                }
            row["two_over_single"] = {
                measure: {q: round(row["two"][measure][q] / row["single"][measure][q], 3) for q in ("p50", "p90")}
                for measure in ("first_byte_ms", "last_byte_ms")
            }
            rows.append(row)
    results = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
        "simulator_build": args.simulator_build,
        "rounds": rounds,
        "sizes": sizes,
        "regions": {"slot_1": args.region, "slot_2": args.region_2},
        "links": json.loads(args.links),
        "link_traffic_timed": traffic,
        "link_connections_total": {name: stats_after[name].get("connections") for name in ("far", "near")},
        "timed_seconds": round(elapsed, 1),
        "rows": rows,
        "served_by": served,
        "viewer_function_ms": summary(function_times) if function_times else None,
        "failures": failures,
    }
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    if failures:
        progress(f"{len(failures)} requests were not served as their deployment routes them")
        sys.exit(1)


def table(results):
    lines = [f"{'viewer':<6} {'object':>7} {'single p50/p90 first':>21} {'two p50/p90 first':>18} {'ratio':>6}"
             f" {'single p50/p90 last':>20} {'two p50/p90 last':>17} {'ratio':>6}"]
    for row in results["rows"]:
        s, t, r = row["single"], row["two"], row["two_over_single"]
        pair = lambda m: f"{m['p50']:.1f}/{m['p90']:.1f}"  # noqa: E731
        lines.append(f"{row['country']:<6} {row['label']:>7} {pair(s['first_byte_ms']):>21} {pair(t['first_byte_ms']):>18}"
                     f" {r['first_byte_ms']['p50']:>6.2f} {pair(s['last_byte_ms']):>20} {pair(t['last_byte_ms']):>17}"
                     f" {r['last_byte_ms']['p50']:>6.2f}")
    fn = results["viewer_function_ms"]
    if fn:
        lines.append(f"viewer function in the simulator: p50 {fn['p50']} ms, p90 {fn['p90']} ms")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
