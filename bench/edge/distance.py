#!/usr/bin/env python3
"""The edge hook at a real distance: the packaged handler (index.js + the Rust addon) and the plain
Node.js peer (bench/edge/peer), each run as Lambda runs it (the Runtime Interface Emulator and
AWS's Node.js runtime interface client), sending over HTTPS through a WAN link (test-support's
aws-wan: a set one-way delay, the TLS handshake behind it) to the local SQS. Run by
bench/edge/run.sh --distance, which starts the link and passes its endpoint.

Lambda freezes a sandbox between invocations; the emulator does not. So each runtime is stopped
(SIGSTOP) as soon as it has answered and continued (SIGCONT) just before its next invocation: the
kernel still moves the bytes of a frozen sandbox's connections, its code does not run. That is
what decides whether a send that outlives the viewer's wait reaches the queue.

Scenarios, each for both handlers, interleaved (the same link, the same moments):
  fresh   the first miss of a fresh sandbox (the emulator starts the runtime for it: cold start)
  later   misses after the first, each preceded by the origin group's S3 attempt, with the
          sandbox frozen between them
  idle    a miss after the sandbox sat frozen for --idle seconds (the link closes connections idle
          longer than its idle timeout, as SQS closes idle connections)
A miss counts as enqueued "before the next invocation" when its message is in the queue after
the sandbox has stayed frozen for --settle seconds, and "eventually" when it is there after
--later further invocations. The latency the hook adds to the viewer's request is the miss's
invocation time less the median of the same handler's pass-through invocations (the S3 attempt,
which neither handler sends for): in warm sandboxes, and for the fresh scenario in fresh ones
(a cold start without a send). Each budget is measured in turn; the idle period is shared.

  distance.py --rie BIN --bootstrap FILE --rust DIR --peer DIR --endpoint URL --ca-file FILE
              --queue-endpoint URL --out FILE [--budgets 300ms,500ms] [--quick] [--idle S]
"""
import argparse
import copy
import datetime
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parent.parent.parent
EVENTS = ROOT / "events"
HANDLERS = ("rust", "peer")


def load(name):
    return json.loads((EVENTS / f"{name}.json").read_text())


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid):
    """Every process below `pid` (the runtime the emulator started, and its children)."""
    children = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class Sandbox:
    """One emulator with one runtime; frozen between invocations, as Lambda does."""

    def __init__(self, args, kind, package, env, work):
        self.kind = kind
        port, api = free_port(), free_port()
        self.log_path = Path(work) / f"{kind}-{port}.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [args.rie, "--log-level", "error", "--runtime-interface-emulator-address", f"127.0.0.1:{port}",
             "--runtime-api-address", f"127.0.0.1:{api}", args.bootstrap, "index.handler"],
            env={**env, "LAMBDA_TASK_ROOT": str(package)},
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        self.url = f"http://127.0.0.1:{port}/2015-03-31/functions/function/invocations"
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError(f"the emulator did not start: {self.log_path.read_text()}")
        self.frozen = []
        self.runtime = []

    def _signal(self, sig, pids):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def thaw(self):
        self._signal(signal.SIGCONT, self.frozen)
        self.frozen = []

    def freeze(self):
        # The runtime's processes, found once (a scan of /proc takes milliseconds, during which
        # the runtime would go on running).
        if not self.runtime:
            self.runtime = descendants(self.proc.pid)
        self.frozen = self.runtime
        self._signal(signal.SIGSTOP, self.frozen)

    def invoke(self, event):
        """Thaws, invokes, freezes; returns (reply, milliseconds)."""
        self.thaw()
        body = json.dumps(event).encode()
        started = time.perf_counter()
        with urllib.request.urlopen(urllib.request.Request(self.url, data=body, method="POST"), timeout=60) as r:
            raw = r.read()
        elapsed = (time.perf_counter() - started) * 1000
        self.freeze()
        reply = json.loads(raw)
        if isinstance(reply, dict) and "errorType" in reply:
            raise RuntimeError(f"{self.kind}: the handler failed: {reply}")
        return reply, elapsed

    def stop(self):
        self.thaw()
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()


class Bench:
    def __init__(self, args):
        self.args = args
        self.sqs = boto3.client("sqs", endpoint_url=args.queue_endpoint, region_name="us-east-1")
        self.queue = self.sqs.create_queue(QueueName=f"edge-distance-{os.getpid()}")["QueueUrl"]
        # The queue's URL as the edge knows it: behind the link. The JavaScript SDK sends to the
        # queue URL's host, the Rust SDK to the configured endpoint: the same link for both.
        self.queue_at_edge = args.endpoint + urllib.parse.urlparse(self.queue).path
        self.seen = set()  # keys found in the queue so far
        self.count = 0
        self.work = tempfile.mkdtemp(prefix="edge-distance-")
        base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        self.env = {
            **base,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": args.endpoint,
            # The Rust SDK's client trusts the system's roots, read from here when set
            # (rustls-native-certs); Node adds these to its own.
            "SSL_CERT_FILE": args.ca_file,
            "NODE_EXTRA_CA_CERTS": args.ca_file,
            "AWS_LAMBDA_FUNCTION_NAME": "us-east-1.edge-distance",
        }
        self.packages = {"rust": args.rust, "peer": args.peer}

    def sandbox(self, kind):
        return Sandbox(self.args, kind, self.packages[kind], self.env, self.work)

    def miss_event(self, kind, budget):
        self.count += 1
        event = load("origin-request-domestic")
        cf = event["Records"][0]["cf"]
        headers = cf["request"]["origin"]["custom"]["customHeaders"]
        headers["x-backfill-queue-url"] = [{"key": "X-Backfill-Queue-Url", "value": self.queue_at_edge}]
        headers["x-backfill-send-budget"] = [{"key": "X-Backfill-Send-Budget", "value": budget}]
        key = f"distance/{kind}/{os.getpid()}-{self.count}.jpg"
        cf["request"]["uri"] = "/" + key
        cf["config"]["requestId"] = f"distance-{self.count}"
        return event, key

    def s3_attempt(self):
        return load("origin-request-s3")

    def arrived(self):
        """Keys in the queue now (every message is taken off it)."""
        while True:
            batch = self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
            if not batch:
                return self.seen
            self.sqs.delete_message_batch(
                QueueUrl=self.queue,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)],
            )
            for message in batch:
                self.seen.add(json.loads(message["Body"])["key"])

    def miss(self, sandbox, record, budget, with_s3_attempt=True):
        """The origin group's S3 attempt (a pass-through), then the domestic attempt (the miss);
        records the pass-through and the miss's times and the key."""
        if with_s3_attempt:
            _, ms = sandbox.invoke(self.s3_attempt())
            record["pass_ms"].append(ms)
            # S3 answers its 403 from the bucket's region, as far as the queue.
            time.sleep(self.args.rtt_ms / 1000)
        event, key = self.miss_event(sandbox.kind, budget)
        _, ms = sandbox.invoke(event)
        record["miss_ms"].append(ms)
        record["keys"].append(key)
        return key

    def settle(self, pairs, field="before_next"):
        """After the sandboxes stayed frozen for --settle seconds: which keys arrived."""
        time.sleep(self.args.settle)
        arrived = self.arrived()
        for record, key in pairs:
            record[field].append(key in arrived)

    def later_invocations(self, sandboxes, records):
        for _ in range(self.args.later):
            for sandbox, record in zip(sandboxes, records):
                _, ms = sandbox.invoke(self.s3_attempt())
                record["pass_ms"].append(ms)
            time.sleep(self.args.gap)

    def fresh(self, rounds, budget):
        records = {kind: new_record() for kind in HANDLERS}
        for i in range(rounds):
            progress(f"{budget}: fresh sandboxes {i + 1}/{rounds}")
            sandboxes = {kind: self.sandbox(kind) for kind in HANDLERS}
            # A fresh sandbox whose first invocation is the S3 attempt: a cold start without a send.
            cold = {kind: self.sandbox(kind) for kind in HANDLERS}
            try:
                pairs = []
                for kind in order(i):
                    _, ms = cold[kind].invoke(self.s3_attempt())
                    records[kind]["cold_pass_ms"].append(ms)
                    pairs.append((records[kind], self.miss(sandboxes[kind], records[kind], budget, with_s3_attempt=False)))
                self.settle(pairs)
                self.later_invocations([sandboxes[k] for k in HANDLERS], [records[k] for k in HANDLERS])
                self.settle(pairs, "eventually")
            finally:
                for sandbox in [*sandboxes.values(), *cold.values()]:
                    sandbox.stop()
        return records

    def later(self, misses, budget):
        records = {kind: new_record() for kind in HANDLERS}
        sandboxes = {kind: self.sandbox(kind) for kind in HANDLERS}
        try:
            for kind in HANDLERS:  # the first miss of each, not counted here
                self.miss(sandboxes[kind], new_record(), budget, with_s3_attempt=False)
            self.settle([])
            self.later_invocations(list(sandboxes.values()), [new_record() for _ in HANDLERS])
            for i in range(misses):
                if i % 25 == 0:
                    progress(f"{budget}: later misses {i}/{misses}")
                pairs = [(records[kind], self.miss(sandboxes[kind], records[kind], budget)) for kind in order(i)]
                # Frozen until the next viewer: the gap between misses.
                time.sleep(self.args.gap)
                arrived = self.arrived()
                for record, key in pairs:
                    record["before_next"].append(key in arrived)
            self.later_invocations([sandboxes[k] for k in HANDLERS], [records[k] for k in HANDLERS])
            self.settle([(records[kind], key) for kind in HANDLERS for key in records[kind]["keys"]], "eventually")
        finally:
            for sandbox in sandboxes.values():
                sandbox.stop()
        return records

    def idle(self, count, seconds, budgets):
        """One idle period for every budget: `count` sandboxes of each handler per budget."""
        records = {budget: {kind: new_record() for kind in HANDLERS} for budget in budgets}
        sandboxes = [(budget, self.sandbox(kind)) for budget in budgets for _ in range(count) for kind in HANDLERS]
        try:
            for budget, sandbox in sandboxes:
                self.miss(sandbox, new_record(), budget, with_s3_attempt=False)
            self.settle([])
            progress(f"idle: {len(sandboxes)} sandboxes frozen for {seconds:.0f} s")
            time.sleep(seconds)
            pairs = [(records[b][s.kind], self.miss(s, records[b][s.kind], b)) for b, s in sandboxes]
            self.settle(pairs)
            self.later_invocations([s for _, s in sandboxes], [records[b][s.kind] for b, s in sandboxes])
            self.settle(pairs, "eventually")
        finally:
            for _, sandbox in sandboxes:
                sandbox.stop()
        return records


def new_record():
    return {"miss_ms": [], "pass_ms": [], "cold_pass_ms": [], "keys": [], "before_next": [], "eventually": []}


def order(i):
    """Alternates which handler goes first."""
    return HANDLERS if i % 2 == 0 else HANDLERS[::-1]


def progress(text):
    print(f"edge distance: {text}", file=sys.stderr, flush=True)


def percentile(samples, q):
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(record, baseline_ms):
    n = len(record["keys"])
    miss = record["miss_ms"]
    added = [ms - baseline_ms for ms in miss]
    return {
        "misses": n,
        "enqueued_before_next_invocation": sum(record["before_next"]),
        "enqueued_eventually": sum(record["eventually"]),
        "share_before_next_invocation": round(sum(record["before_next"]) / n, 4),
        "share_eventually": round(sum(record["eventually"]) / n, 4),
        "baseline_ms": round(baseline_ms, 2),
        "miss_ms": {"p50": round(percentile(miss, 0.5), 1), "p99": round(percentile(miss, 0.99), 1), "max": round(max(miss), 1)},
        "added_ms": {"p50": round(percentile(added, 0.5), 1), "p99": round(percentile(added, 0.99), 1), "max": round(max(added), 1)},
    }


def main():
    parser = argparse.ArgumentParser()
    for name in ("--rie", "--bootstrap", "--rust", "--peer", "--endpoint", "--ca-file", "--queue-endpoint", "--out"):
        parser.add_argument(name, required=True)
    parser.add_argument("--budgets", default="300ms,500ms", help="send budgets to measure, the configured default first")
    parser.add_argument("--rtt-ms", type=float, default=220)
    parser.add_argument("--link", default="{}", help="the link's settings, as JSON, for the results")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--idle", type=float, default=600)
    args = parser.parse_args()
    args.settle = 1.0  # frozen this long after a miss before the queue is looked at
    args.gap = 0.5 if args.quick else 1.0
    args.later = 3
    budgets = args.budgets.split(",")
    fresh_rounds, later_misses, idle_count = (1, 5, 1) if args.quick else (15, 150, 4)

    bench = Bench(args)
    scenarios = {budget: {} for budget in budgets}
    try:
        for budget in budgets:
            scenarios[budget]["fresh"] = bench.fresh(fresh_rounds, budget)
            scenarios[budget]["later"] = bench.later(later_misses, budget)
        for budget, records in bench.idle(idle_count, args.idle, budgets).items():
            scenarios[budget]["idle"] = records
    finally:
        bench.sqs.delete_queue(QueueUrl=bench.queue)
    every = [records for by_name in scenarios.values() for records in by_name.values()]
    # What a viewer's request costs without a send: the S3 attempt's invocation, in a warm
    # sandbox and in a fresh one (its cold start included).
    warm = {kind: statistics.median([ms for r in every for ms in r[kind]["pass_ms"]]) for kind in HANDLERS}
    cold = {kind: statistics.median([ms for r in every for ms in r[kind]["cold_pass_ms"]]) for kind in HANDLERS}
    results = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
        "link": json.loads(args.link),
        "rtt_ms": args.rtt_ms,
        "idle_s": args.idle,
        "settle_s": args.settle,
        "gap_s": args.gap,
        "later_invocations": args.later,
        "pass_through_ms": {"warm": {k: round(v, 2) for k, v in warm.items()}, "cold": {k: round(v, 2) for k, v in cold.items()}},
        "budgets": {
            budget: {
                name: {kind: summary(records[kind], (cold if name == "fresh" else warm)[kind]) for kind in HANDLERS}
                for name, records in by_name.items()
            }
            for budget, by_name in scenarios.items()
        },
    }
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))


def table(results):
    lines = [
        f"edge hook at {results['rtt_ms']:.0f} ms round trip, sandboxes frozen between invocations",
        f"{'budget':<7} {'scenario':<8} {'handler':<6} {'misses':>6} {'before next':>12} {'eventually':>11} {'added p50':>10} {'added p99':>10}",
    ]
    for budget, by_name in results["budgets"].items():
        for name, kinds in by_name.items():
            for kind, s in kinds.items():
                lines.append(
                    f"{budget:<7} {name:<8} {kind:<6} {s['misses']:>6} {s['share_before_next_invocation']:>12.2%} {s['share_eventually']:>11.2%}"
                    f" {s['added_ms']['p50']:>9.1f}ms {s['added_ms']['p99']:>9.1f}ms"
                )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
