"""Cold start of each built function, run the way Lambda runs it: the Runtime Interface Emulator
(from the aws-sam-cli package in .venv) starts the function's bootstrap on the first invocation,
as a new sandbox does. Per sample: a new emulator, one cold invocation, one warm one.

Measured: the emulator's own INIT REPORT (process start to the runtime's first request for work:
what Lambda reports as Init Duration), the cold invocation as the caller sees it (init + first
call), a warm invocation, and the function process's peak RSS. Functions take turns in every
round (the order rotates), so that a busy neighbour slows each alike.

    coldstart.py --rounds N --profile release|debug --out FILE

Needs the built binaries (target/<profile>/backfill, image-processor, upload-api,
upload-metadata), the edge package (scripts/edge-build), the edge peer's node_modules
(bench/edge/run.sh installs it) and the Node 22 runtime interface client (scripts/edge-setup). No
AWS endpoint is called: the events used need none (an empty batch, an s3:TestEvent, an
origin-request for the S3 attempt, an upload API request without a token, refused before any
call).
"""

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INIT_REPORT = re.compile(r"INIT REPORT\(durationMs: ([0-9.]+)\)")
# Credentials and an endpoint that nobody answers: building the SDK clients at init must not call out.
AWS_ENV = {
    "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench", "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_LAMBDA_LOG_LEVEL": "WARN",
}


def functions(profile):
    target = ROOT / "target" / profile
    node_bootstrap = [str(ROOT / "scripts" / "edge-node" / "bootstrap"), "index.handler"]
    return {
        "backfill": {
            "command": [str(target / "backfill")],
            "env": {"BUCKET": "overseas-origin", "ALLOWED_ORIGINS": "http://127.0.0.1:9"},
            "event": {"Records": []},
            "expect": {"batchItemFailures": []},
        },
        "image-processor": {
            "command": [str(target / "image-processor")],
            "env": {"TASK_TABLE": "image-tasks"},
            "event": json.loads((ROOT / "events" / "image-test-event.json").read_text()),
            "expect": {"batchItemFailures": []},
        },
        "upload-api": {
            "command": [str(target / "upload-api")],
            "env": {"BUCKET": "overseas-origin", "UPLOADS_TABLE": "uploads", "FILES_TABLE": "files",
                    "AUTH_TOKENS": "alice:" + "0" * 64},
            "event": json.loads((ROOT / "events" / "upload-api-unauthenticated.json").read_text()),
            "expect_status": 401,
        },
        "upload-metadata": {
            "command": [str(target / "upload-metadata")],
            "env": {"FILES_TABLE": "files", "CHANGES_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:changes"},
            "event": {"Records": []},
            "expect": {"batchItemFailures": []},
        },
        "edge hook (Rust addon, Node 22)": {
            "command": node_bootstrap,
            "env": {"LAMBDA_TASK_ROOT": str(ROOT / "target" / "edge" / "package")},
            "event": json.loads((ROOT / "events" / "origin-request-s3.json").read_text()),
            "peer": "edge peer (Node.js, @aws-sdk/client-sqs)",
            "baseline": "empty Node 22 handler",
        },
        "edge peer (Node.js, @aws-sdk/client-sqs)": {
            "command": node_bootstrap,
            "env": {"LAMBDA_TASK_ROOT": str(ROOT / "bench" / "edge" / "peer")},
            "event": json.loads((ROOT / "events" / "origin-request-s3.json").read_text()),
            "baseline": "empty Node 22 handler",
        },
        "empty Node 22 handler": {
            "command": node_bootstrap,
            "env": {"LAMBDA_TASK_ROOT": str(ROOT / "bench" / "edge" / "empty")},
            "event": json.loads((ROOT / "events" / "origin-request-s3.json").read_text()),
        },
    }


def rie_binary():
    found = sorted(ROOT.glob(".venv/lib/python3*/site-packages/samcli/local/rapid/aws-lambda-rie-x86_64"))
    if not found:
        raise SystemExit("the Runtime Interface Emulator is missing from .venv: run scripts/tools.sh")
    found[0].chmod(0o755)
    return str(found[0])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, process, seconds=10):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the emulator exited ({process.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.01)
    raise RuntimeError("the emulator did not start")


def invoke(url, event):
    request = urllib.request.Request(url, data=json.dumps(event).encode(), method="POST")
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        body = json.loads(response.read() or b"null")
    return (time.perf_counter() - started) * 1000, body


def runtime_peak_rss_kib(rie_pid):
    """VmHWM of the function process: the emulator's child (the bootstrap, or node it exec'd)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) != rie_pid:
                continue
            for line in (stat.parent / "status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        except (OSError, ValueError):
            continue
    return None


def sample(rie, spec, log_path):
    port = free_port()
    env = {**os.environ, **AWS_ENV, "AWS_LAMBDA_FUNCTION_NAME": "bench", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
           **spec["env"]}
    with open(log_path, "w") as log:
        # A session of its own, so that stopping it stops the runtime it started too.
        process = subprocess.Popen(
            [rie, "--log-level", "info", "--runtime-interface-emulator-address", f"127.0.0.1:{port}",
             "--runtime-api-address", f"127.0.0.1:{free_port()}", *spec["command"]],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        wait_for_port(port, process)
        url = f"http://127.0.0.1:{port}/2015-03-31/functions/function/invocations"
        cold_ms, body = invoke(url, spec["event"])
        if "expect" in spec and body != spec["expect"]:
            raise RuntimeError(f"unexpected reply {body}; log: {log_path.read_text()[-2000:]}")
        if "expect_status" in spec and (body or {}).get("statusCode") != spec["expect_status"]:
            raise RuntimeError(f"unexpected reply {body}; log: {log_path.read_text()[-2000:]}")
        if body is None or "errorType" in (body if isinstance(body, dict) else {}):
            raise RuntimeError(f"the function failed: {body}; log: {log_path.read_text()[-2000:]}")
        warm_ms, _ = invoke(url, spec["event"])
        rss = runtime_peak_rss_kib(process.pid)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    reports = INIT_REPORT.findall(log_path.read_text())
    if not reports:
        raise RuntimeError(f"no INIT REPORT in the emulator's log: {log_path.read_text()[-2000:]}")
    return {"init_ms": float(reports[0]), "cold_invoke_ms": cold_ms, "warm_invoke_ms": warm_ms, "rss_kib": rss}


def summary(samples):
    def median(key):
        values = [s[key] for s in samples if s[key] is not None]
        return round(statistics.median(values), 2) if values else None

    return {
        "init_ms_median": median("init_ms"),
        "init_ms_min": round(min(s["init_ms"] for s in samples), 2),
        "init_ms_max": round(max(s["init_ms"] for s in samples), 2),
        "cold_invoke_ms_median": median("cold_invoke_ms"),
        "warm_invoke_ms_median": median("warm_invoke_ms"),
        "peak_rss_mib_median": round(median("rss_kib") / 1024, 1) if median("rss_kib") else None,
        "init_ms": [round(s["init_ms"], 2) for s in samples],
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--profile", choices=["release", "debug"], default="release")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    specs = functions(args.profile)
    for name, spec in specs.items():
        if not Path(spec["command"][0]).exists():
            raise SystemExit(f"{name}: {spec['command'][0]} is not built")
        root = spec["env"].get("LAMBDA_TASK_ROOT")
        if root and not (Path(root) / "index.js").exists():
            raise SystemExit(f"{name}: {root}/index.js is missing")
    rie = rie_binary()
    names = list(specs)
    samples = {name: [] for name in names}
    load_before = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="bench-coldstart-") as work:
        for round_ in range(args.rounds):
            for i in range(len(names)):
                name = names[(round_ + i) % len(names)]
                samples[name].append(sample(rie, specs[name], Path(work) / "rie.log"))
            print(f"cold start: round {round_ + 1} of {args.rounds}", flush=True)
    results = {
        "rounds": args.rounds, "profile": args.profile,
        "load_average_before": load_before, "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "functions": {name: summary(s) for name, s in samples.items()},
    }
    for name, spec in specs.items():
        row = results["functions"][name]
        if "baseline" in spec:
            row["init_over_baseline_ms"] = round(row["init_ms_median"] - results["functions"][spec["baseline"]]["init_ms_median"], 2)
            row["baseline"] = spec["baseline"]
        if "peer" in spec:
            peer = results["functions"][spec["peer"]]
            row["peer"] = spec["peer"]
            row["init_peer_over_ours"] = round(peer["init_ms_median"] / row["init_ms_median"], 2)
    for name, row in results["functions"].items():
        print(f"  {name}: init {row['init_ms_median']} ms (median), cold invoke {row['cold_invoke_ms_median']} ms, "
              f"warm {row['warm_invoke_ms_median']} ms, {row['peak_rss_mib_median']} MiB", flush=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
