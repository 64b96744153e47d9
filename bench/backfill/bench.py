"""Backfill benchmark: our function (release build, run by the Lambda Runtime Interface Emulator)
against rclone and s5cmd, same nginx origin, same s3s-fs S3, interleaved rounds. Run through
bench/backfill/run.sh, which installs the peers and starts s3s-fs."""

import argparse
import base64
import json
import re
import os
import platform
import pwd
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024
BUCKET = os.environ["STRICT_S3_BUCKET"]
ENDPOINT = os.environ["STRICT_S3_ENDPOINT"]
ACCESS_KEY = os.environ["STRICT_S3_ACCESS_KEY"]
SECRET_KEY = os.environ["STRICT_S3_SECRET_KEY"]
S3_DATA = ROOT / ".local" / "strict-s3" / "data" / BUCKET


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url, seconds=10):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer")


class Nginx:
    """A static origin serving `root`, with directory listings for rclone's http remote."""

    def __init__(self, root):
        self.dir = Path(tempfile.mkdtemp(prefix="bench-nginx-"))
        self.port = free_port()
        conf = self.dir / "nginx.conf"
        # Run as root, nginx hands the requests to an unprivileged worker, which cannot read a
        # checkout under a private directory (a clone in `mktemp -d`, say): keep the workers ours.
        user = f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else ""
        conf.write_text(
            f"""
{user}
worker_processes 2;
daemon off;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000;
  client_body_temp_path {self.dir};
  proxy_temp_path {self.dir};
  fastcgi_temp_path {self.dir};
  uwsgi_temp_path {self.dir};
  scgi_temp_path {self.dir};
  types {{ application/octet-stream bin; }}
  server {{
    listen 127.0.0.1:{self.port};
    root {root};
    autoindex on;
    # A backfill message's key is what its uri names (the function refuses any other), so the
    # function asks for each object by its key; these map the keys back to the files.
    rewrite ^/bench/ours/[^/]+/(.*)$ /$1 break;
    rewrite ^/bench/mem/(.*)$ /single/$1 break;
  }}
}}
"""
        )
        self.process = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(self.dir)])
        wait_for(f"http://127.0.0.1:{self.port}/")

    def url(self, path):
        return f"http://127.0.0.1:{self.port}/{path}"

    def stop(self):
        self.process.terminate()
        self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def rie_binary():
    found = sorted(ROOT.glob(".venv/lib/python3*/site-packages/samcli/local/rapid/aws-lambda-rie-x86_64"))
    found[0].chmod(0o755)
    return str(found[0])


class Function:
    """The backfill binary behind the Runtime Interface Emulator."""

    def __init__(self, origin_port, record_concurrency=8):
        self.port = free_port()
        env = dict(os.environ)
        # One function copying into S3 alone, as its peers do: every AWS call goes to s3s-fs, so no
        # lease table nor part queue (the local stack's, exported by scripts/test) is named. The
        # ranged bench measures those.
        for name in ("LEASE_TABLE", "PART_QUEUE_URL", "PART_DLQ_URL"):
            env.pop(name, None)
        env.update(
            AWS_LAMBDA_FUNCTION_NAME="backfill",
            AWS_LAMBDA_FUNCTION_MEMORY_SIZE="1024",
            AWS_LAMBDA_FUNCTION_TIMEOUT="900",
            AWS_ENDPOINT_URL=ENDPOINT,
            AWS_ACCESS_KEY_ID=ACCESS_KEY,
            AWS_SECRET_ACCESS_KEY=SECRET_KEY,
            AWS_REGION="us-east-1",
            BUCKET=BUCKET,
            ALLOWED_ORIGINS=f"http://127.0.0.1:{origin_port}",
            RECORD_CONCURRENCY=str(record_concurrency),
            AWS_LAMBDA_LOG_LEVEL="WARN",
        )
        self.log = open(ROOT / ".local" / "bench-backfill-rie.log", "w")
        self.process = subprocess.Popen(
            [rie_binary(), "--log-level", "error", "--runtime-interface-emulator-address", f"127.0.0.1:{self.port}",
             "--runtime-api-address", f"127.0.0.1:{free_port()}", os.environ["BACKFILL_BINARY"]],
            env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        wait_for(f"http://127.0.0.1:{self.port}/")

    def invoke(self, event):
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/2015-03-31/functions/function/invocations",
            data=json.dumps(event).encode(), method="POST",
        )
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=1800) as response:
            body = json.loads(response.read())
        elapsed = time.perf_counter() - started
        if body != {"batchItemFailures": []}:
            raise RuntimeError(f"backfill reported failures: {body}")
        return elapsed

    def peak_rss_kib(self):
        """VmHWM of the function process (the emulator's child)."""
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.process.pid:
                children.append(stat.parent.name)
        for child in children:
            for line in Path(f"/proc/{child}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        raise RuntimeError("no function process under the emulator")

    def stop(self):
        self.process.terminate()
        self.process.wait()
        self.log.close()


def message(key, uri, port):
    """A message for `key`; nginx maps the key's own uri back to the file at `uri`."""
    own = "/" + key
    assert nginx_path(own) == uri, (key, uri)
    return {
        "version": 1, "bucket": BUCKET, "key": key,
        "origin": {"protocol": "http", "host": "127.0.0.1", "port": port, "path": ""},
        "uri": own, "request_id": "bench", "enqueued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "trigger": "operator",
    }


def nginx_path(uri):
    """The file nginx serves for `uri` (its rewrites, in Python)."""
    for pattern, replacement in ((r"^/bench/ours/[^/]+/(.*)$", r"/\1"), (r"^/bench/mem/(.*)$", r"/single/\1")):
        if re.match(pattern, uri):
            return re.sub(pattern, replacement, uri)
    return uri


def sqs_event(messages):
    return {"Records": [
        {"messageId": f"m{i}", "receiptHandle": f"r{i}", "body": json.dumps(m),
         "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
         "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:backfill",
         "awsRegion": "us-east-1"}
        for i, m in enumerate(messages)
    ]}


def run_command(argv, env=None):
    """Runs a command; returns (seconds, peak RSS in KiB of it or its largest child)."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    if status != 0:
        raise RuntimeError(f"{argv[0]} failed ({status}): {process.stderr.read().decode()[-2000:]}")
    return elapsed, usage.ru_maxrss


def peer_env():
    env = dict(os.environ)
    env.pop("AWS_CA_BUNDLE", None)
    env.update(
        AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_REGION="us-east-1",
        RCLONE_CONFIG_STRICT_TYPE="s3", RCLONE_CONFIG_STRICT_PROVIDER="Other",
        RCLONE_CONFIG_STRICT_ENDPOINT=ENDPOINT, RCLONE_CONFIG_STRICT_ACCESS_KEY_ID=ACCESS_KEY,
        RCLONE_CONFIG_STRICT_SECRET_ACCESS_KEY=SECRET_KEY, RCLONE_CONFIG_STRICT_REGION="us-east-1",
        RCLONE_CONFIG_STRICT_FORCE_PATH_STYLE="true",
    )
    return env


def s5cmd():
    return str(ROOT / ".venv" / "bin" / "s5cmd")


def clear(prefix):
    shutil.rmtree(S3_DATA / prefix, ignore_errors=True)


def make_file(path, size):
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.stat().st_size == size:
        return
    with open(path, "wb") as f:
        remaining = size
        block = os.urandom(4 * MIB)
        while remaining > 0:
            f.write(block[: min(remaining, len(block))])
            remaining -= len(block)


def bench_single(www, nginx, name, size, rounds):
    make_file(www / "single" / name, size)
    path = f"single/{name}"
    url = nginx.url(path)
    encoded, _ = aws_chunked(www / path)
    env = peer_env()
    tools = {
        "ours": None,
        "rclone copyurl": lambda key: ["rclone", "copyurl", url, f"strict:{BUCKET}/{key}"],
        "curl | s5cmd pipe": lambda key: ["bash", "-o", "pipefail", "-c",
                                          f"curl -sf {url} | {s5cmd()} --endpoint-url {ENDPOINT} pipe s3://{BUCKET}/{key}"],
        "ceiling: plain PUT from disk": lambda key: [
            "curl", "-sf", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user", f"{ACCESS_KEY}:{SECRET_KEY}",
            "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD", "-T", str(www / path), f"{ENDPOINT}/{BUCKET}/{key}"],
        # The same PUT carrying the checksum the issue requires of every write: the server's own
        # cost of verifying it, with nothing of ours in the way.
        "ceiling with CRC32C: PUT from disk, trailing checksum": lambda key: [
            "curl", "-sf", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user", f"{ACCESS_KEY}:{SECRET_KEY}",
            "-H", "x-amz-content-sha256: STREAMING-UNSIGNED-PAYLOAD-TRAILER", "-H", "content-encoding: aws-chunked",
            "-H", f"x-amz-decoded-content-length: {size}", "-H", "x-amz-trailer: x-amz-checksum-crc32c",
            "-H", "x-amz-sdk-checksum-algorithm: CRC32C", "-T", str(encoded), f"{ENDPOINT}/{BUCKET}/{key}"],
    }
    results = {tool: {"seconds": [], "rss_kib": []} for tool in tools}
    for round_ in range(rounds):
        for tool, argv in tools.items():
            key = f"bench/{tool.split()[0]}/{round_}/{path}"
            if argv is None:
                function = Function(nginx.port)
                seconds = function.invoke(sqs_event([message(key, "/" + path, nginx.port)]))
                rss = function.peak_rss_kib()
                function.stop()
            else:
                seconds, rss = run_command(argv(key), env)
            check_size(key, size)
            clear(f"bench/{tool.split()[0]}")
            results[tool]["seconds"].append(seconds)
            results[tool]["rss_kib"].append(rss)
    return summarize(results, size)


def bench_many(www, nginx, name, count, size, rounds):
    folder = www / name
    for i in range(count):
        make_file(folder / f"{i:05d}.bin", size)
    env = peer_env()
    results = {"ours": {"seconds": [], "rss_kib": []}, "rclone copy --transfers 8": {"seconds": [], "rss_kib": []}}
    for round_ in range(rounds):
        function = Function(nginx.port)
        messages = [message(f"bench/ours/{round_}/{name}/{i:05d}.bin", f"/{name}/{i:05d}.bin", nginx.port) for i in range(count)]
        seconds = function.invoke(sqs_event(messages))
        results["ours"]["seconds"].append(seconds)
        results["ours"]["rss_kib"].append(function.peak_rss_kib())
        function.stop()
        check_size(f"bench/ours/{round_}/{name}/{count - 1:05d}.bin", size)
        clear("bench/ours")
        seconds, rss = run_command(
            ["rclone", "copy", "--transfers", "8", "--http-url", nginx.url(""), f":http:{name}",
             f"strict:{BUCKET}/bench/rclone/{round_}/{name}"], env)
        results["rclone copy --transfers 8"]["seconds"].append(seconds)
        results["rclone copy --transfers 8"]["rss_kib"].append(rss)
        check_size(f"bench/rclone/{round_}/{name}/{count - 1:05d}.bin", size)
        clear("bench/rclone")
    return summarize(results, count * size)


def bench_memory(www, nginx, sizes):
    env = peer_env()
    rows = []
    for size in sizes:
        name = f"mem-{size}.bin"
        make_file(www / "single" / name, size)
        function = Function(nginx.port)
        seconds = function.invoke(sqs_event([message(f"bench/mem/{name}", f"/single/{name}", nginx.port)]))
        ours = function.peak_rss_kib()
        function.stop()
        clear("bench/mem")
        rclone_seconds, rclone = run_command(
            ["rclone", "copyurl", nginx.url(f"single/{name}"), f"strict:{BUCKET}/bench/mem/{name}"], env)
        clear("bench/mem")
        rows.append({"bytes": size, "ours_rss_mib": round(ours / 1024, 1), "rclone_rss_mib": round(rclone / 1024, 1),
                     "ours_seconds": round(seconds, 3), "rclone_seconds": round(rclone_seconds, 3)})
        (www / "single" / name).unlink()
        print(f"memory {size / MIB:.0f} MiB: ours {ours / 1024:.0f} MiB, rclone {rclone / 1024:.0f} MiB", flush=True)
    return rows


def bench_concurrency(www, nginx, name, count, size, levels, rounds):
    """One batch of `count` objects at each RECORD_CONCURRENCY, with rclone at as many transfers,
    interleaved: every round runs each level, ours then rclone."""
    folder = www / name
    for i in range(count):
        make_file(folder / f"{i:05d}.bin", size)
    env = peer_env()
    results = {level: {"ours": [], "rclone": []} for level in levels}
    for round_ in range(rounds):
        for level in levels:
            function = Function(nginx.port, record_concurrency=level)
            messages = [message(f"bench/ours/{round_}/{name}/{i:05d}.bin", f"/{name}/{i:05d}.bin", nginx.port)
                        for i in range(count)]
            results[level]["ours"].append(function.invoke(sqs_event(messages)))
            function.stop()
            check_size(f"bench/ours/{round_}/{name}/{count - 1:05d}.bin", size)
            clear("bench/ours")
            seconds, _ = run_command(
                ["rclone", "copy", "--transfers", str(level), "--http-url", nginx.url(""), f":http:{name}",
                 f"strict:{BUCKET}/bench/rclone/{round_}/{name}"], env)
            results[level]["rclone"].append(seconds)
            check_size(f"bench/rclone/{round_}/{name}/{count - 1:05d}.bin", size)
            clear("bench/rclone")
    rows = []
    for level, runs in results.items():
        ours, rclone = statistics.median(runs["ours"]), statistics.median(runs["rclone"])
        rows.append({"concurrency": level, "objects": count, "object_bytes": size,
                     "ours_median_seconds": round(ours, 3), "ours_objects_per_s": round(count / ours, 1),
                     "rclone_median_seconds": round(rclone, 3), "rclone_objects_per_s": round(count / rclone, 1),
                     "ours_seconds": [round(s, 3) for s in runs["ours"]],
                     "rclone_seconds": [round(s, 3) for s in runs["rclone"]]})
        print(f"  concurrency {level}: ours {ours:.3f} s, rclone --transfers {level} {rclone:.3f} s", flush=True)
    return rows


def parse_size(text):
    units = {"KiB": 1024, "MiB": MIB, "GiB": 1024 * MIB}
    for unit, factor in units.items():
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(text)


def check_size(key, size):
    stored = (S3_DATA / key).stat().st_size
    if stored != size:
        raise RuntimeError(f"{key}: {stored} bytes stored, {size} expected")


def aws_chunked(path, chunk=64 * 1024):
    """`path` encoded as S3's aws-chunked body with a trailing CRC32C (what our streamed PutObject
    sends, unsigned), in a file next to it; returns (file, decoded length)."""
    import crc32c
    out = path.with_suffix(".aws-chunked")
    size = path.stat().st_size
    if not out.exists() or out.stat().st_mtime < path.stat().st_mtime:
        crc = 0
        with open(path, "rb") as src, open(out, "wb") as dst:
            while block := src.read(chunk):
                crc = crc32c.crc32c(block, crc)
                dst.write(f"{len(block):x}\r\n".encode() + block + b"\r\n")
            trailer = base64.b64encode(crc.to_bytes(4, "big")).decode()
            dst.write(f"0\r\nx-amz-checksum-crc32c:{trailer}\r\n\r\n".encode())
    return out, size


def summarize(results, total_bytes):
    summary = {}
    for tool, runs in results.items():
        median = statistics.median(runs["seconds"])
        summary[tool] = {
            "median_seconds": round(median, 3),
            "mb_per_s": round(total_bytes / median / 1e6, 1),
            "peak_rss_mib": round(max(runs["rss_kib"]) / 1024, 1),
            "seconds": [round(s, 3) for s in runs["seconds"]],
        }
    peers = [t for t in summary if t != "ours" and not t.startswith("ceiling")]
    best = min(peers, key=lambda t: summary[t]["median_seconds"])
    summary["ours"]["speed_vs_best_peer"] = round(summary[best]["median_seconds"] / summary["ours"]["median_seconds"], 2)
    summary["ours"]["best_peer"] = best
    ceilings = [t for t in summary if t.startswith("ceiling")]
    if ceilings:
        summary["ours"]["fraction_of_ceiling"] = round(
            summary[ceilings[0]]["median_seconds"] / summary["ours"]["median_seconds"], 2)
    if len(ceilings) > 1:
        summary["ours"]["fraction_of_checksummed_ceiling"] = round(
            summary[ceilings[1]]["median_seconds"] / summary["ours"]["median_seconds"], 2)
    for tool, row in summary.items():
        print(f"  {tool}: {row['median_seconds']} s, {row['mb_per_s']} MB/s, {row['peak_rss_mib']} MiB", flush=True)
    return summary


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown")
    memory = next(l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal"))

    def version(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True).stdout.splitlines()[0].strip()
        except (OSError, IndexError):
            return "unknown"

    return {
        "cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(int(memory) / 1024 / 1024, 1),
        "kernel": platform.release(),
        "versions": {
            "rclone": version(["rclone", "version"]),
            "s5cmd": version([s5cmd(), "version"]),
            "nginx": subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip(),
            "s3s-fs": version(["s3s-fs", "--version"]),
            "ours": version(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
        },
    }


def write_report(results, path):
    lines = ["# Backfill benchmark", "",
             f"Machine: {results['machine']['cpu']}, {results['machine']['cores']} cores, "
             f"{results['machine']['memory_gib']} GiB. Origin nginx, S3 s3s-fs {results['machine']['versions']['s3s-fs']} "
             "(strict: checks signatures and checksums, on one thread per request). Ceilings: a plain PUT from "
             "disk, and the same PUT with the trailing CRC32C every write of ours carries.",
             f"Rounds: {results['rounds']}, interleaved. Reproduce: `bench/backfill/run.sh`.", "",
             "| case | tool | median s | MB/s | peak RSS MiB |", "|---|---|---|---|---|"]
    for case, rows in results["cases"].items():
        for tool, row in rows.items():
            lines.append(f"| {case} | {tool} | {row['median_seconds']} | {row['mb_per_s']} | {row['peak_rss_mib']} |")
    lines += ["", "| case | ours vs best peer (speed) | ours vs plain ceiling | ours vs ceiling with CRC32C |", "|---|---|---|---|"]
    for case, rows in results["cases"].items():
        ours = rows["ours"]
        lines.append(f"| {case} | {ours['speed_vs_best_peer']}x ({ours['best_peer']}) | "
                     f"{ours.get('fraction_of_ceiling', '-')} | {ours.get('fraction_of_checksummed_ceiling', '-')} |")
    lines += ["", "Peak RSS of the function process as the object grows (rclone copyurl for comparison):", "",
              "| object | ours MiB | rclone MiB | ours s |", "|---|---|---|---|"]
    for row in results["memory"]:
        lines.append(f"| {row['bytes'] / MIB:.0f} MiB | {row['ours_rss_mib']} | {row['rclone_rss_mib']} | {row['ours_seconds']} |")
    lines += ["", "Scaling with concurrency (RECORD_CONCURRENCY, and rclone copy --transfers as many):", "",
              "| concurrency | objects | ours s | ours objects/s | rclone s | rclone objects/s |", "|---|---|---|---|---|---|"]
    for row in results["concurrency"]:
        lines.append(f"| {row['concurrency']} | {row['objects']} x {row['object_bytes'] // MIB} MiB | {row['ours_median_seconds']} | "
                     f"{row['ours_objects_per_s']} | {row['rclone_median_seconds']} | {row['rclone_objects_per_s']} |")
    path.write_text("\n".join(lines) + "\n")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small inputs, one round: a harness check")
    parser.add_argument("--max-size", type=parse_size, default=None,
                        help="largest object of the memory series (e.g. 1GiB: leaves out the 4 GiB point)")
    parser.add_argument("--out", type=Path, default=None,
                        help="results file (default bench/backfill/results.json); the docs page is written only without it")
    parser.add_argument("--cases", default="single,many,memory,concurrency",
                        help="which parts to run, comma-separated (single, many, memory, concurrency); "
                             "a partial run needs --out")
    args = parser.parse_args()
    cases = set(args.cases.split(","))
    if cases != {"single", "many", "memory", "concurrency"} and args.out is None and not args.quick:
        parser.error("a partial run (--cases) needs --out, so that it does not replace the full results")
    www = ROOT / ".local" / "bench-www"
    nginx = Nginx(www)
    try:
        if args.quick:
            rounds, single, many1m, many10k, sizes = 1, 8 * MIB, 10, 50, [1 * MIB, 32 * MIB]
            scaling_count = 10
        else:
            rounds, single, many1m, many10k, sizes = 3, 1024 * MIB, 100, 1000, [MIB, 64 * MIB, 256 * MIB, 1024 * MIB, 4096 * MIB]
            scaling_count = 100
        if args.max_size is not None:
            sizes = [size for size in sizes if size <= args.max_size]
        results = {"machine": machine(), "rounds": rounds, "quick": args.quick, "cases": {}}
        if "single" in cases:
            label = f"1 x {single // MIB} MiB"
            print(label, flush=True)
            results["cases"][label] = bench_single(www, nginx, f"{single}.bin", single, rounds)
        if "many" in cases:
            label = f"{many1m} x 1 MiB"
            print(label, flush=True)
            results["cases"][label] = bench_many(www, nginx, f"many-{many1m}x1m", many1m, MIB, rounds)
            label = f"{many10k} x 10 KiB"
            print(label, flush=True)
            results["cases"][label] = bench_many(www, nginx, f"many-{many10k}x10k", many10k, 10 * 1024, rounds)
        if "memory" in cases:
            results["memory"] = bench_memory(www, nginx, sizes)
        if "concurrency" in cases:
            print(f"concurrency, {scaling_count} x 1 MiB", flush=True)
            results["concurrency"] = bench_concurrency(
                www, nginx, f"many-{scaling_count}x1m", scaling_count, MIB, [1, 2, 4, 8], rounds)
    finally:
        nginx.stop()
    out = args.out or ROOT / "bench" / "backfill" / ("results-quick.json" if args.quick else "results.json")
    out.write_text(json.dumps(results, indent=2) + "\n")
    if not args.quick and args.out is None:
        write_report(results, ROOT / "docs" / "backfill-bench.md")
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(main())
