"""Fresh copies at a real distance (issue 18): the backfill function runs overseas, the domestic
origin is an ocean away. N objects on nginx, behind the WAN link of test-support (one-way delay,
per-connection rate); S3 (s3s-fs), DynamoDB and SQS (moto) on the loopback, in the function's
region. The N objects are copied once into the bucket by the function; then k of them change at
the origin (new bytes, a later modification time, the same size); then the bucket is brought up
to date:

- ours: one revalidation sweep (the schedule's message, with REVALIDATION_BUDGET = N so that it
  sends every object) on the change queue, which this script drains as Lambda's event source
  mapping would: BatchSize 1, W invocations at once, one sandbox (the function under the Runtime
  Interface Emulator) each, a record deleted unless its invocation failed or reported it. The
  sweep claims the objects due and sends one refresh each; each refresh is a conditional GET to
  the origin, and a replacement with If-Match where the origin answered with a new body.
- the peer: `rclone copy --transfers W` from the origin (its http remote, through the same link)
  into the same S3, which compares size and modification time and copies what changed.

Interleaved rounds (ours, then rclone), each from the same starting state: the bucket's objects,
their metadata and the freshness table as they were after the first copy (restored from a
snapshot, s3s-fs's files and the table's items), the origin as changed. Each run reports wall time,
origin requests (nginx's access log) and bytes (the link's counters), and is checked: every
changed object holds the new bytes, every other one is untouched (its file and metadata as in the
snapshot). Ours also: the outcomes the function logged, its own counters, the paths it sent to be
invalidated, and each invocation's duration.

Run through bench/fresh/run.sh, which installs the tools and starts s3s-fs and the local stack.
"""

import argparse
import base64
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backfill"))
import bench  # noqa: E402  (the backfill bench: the emulator, free ports, rclone's environment)
import ranged  # noqa: E402  (the ranged bench: sandboxes, SQS events)

ROOT = bench.ROOT
KIB = 1024
DELAY = "150ms"
RATE = "4MB/s"
RTT_MS = 300
LINK = "fresh-origin"
LEASE_TABLE = "fresh-bench-leases"
FRESHNESS_TABLE = "fresh-bench-freshness"
CHANGE_QUEUE = "fresh-bench-changes"
INVALIDATION_QUEUE = "fresh-bench-invalidations"
# The template's BackfillTimeout default; the change queue's visibility is shorter than its six
# times here, so that a record reported failed comes back within a round (none should).
FUNCTION_TIMEOUT = 900
VISIBILITY = 30
WWW = ROOT / ".local" / "bench-www"
STATE = ROOT / ".local" / "fresh"
ORIGIN_DIR = "fresh/objects"  # under WWW: what the origin serves, and our copies' keys
PEER_PREFIX = "fresh-rclone"  # rclone's copies
SWEEP = json.dumps({"version": 1, "kind": "sweep", "period_seconds": 60})


def say(text):
    print(text, flush=True)


def version_bytes(i, version, size):
    """Object i's bytes at `version` (1: as first copied, 2: changed): seeded, never repeating."""
    return random.Random(f"fresh-{i}-{version}-{size}").randbytes(size)


def sha(data):
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------------------- origin

class Origin:
    """nginx serving WWW (directory listings on, for rclone's http remote), every request in its
    access log: method, status, bytes sent, the conditional headers."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="bench-fresh-nginx-"))
        self.port = bench.free_port()
        self.log = self.dir / "access.log"
        user = ""
        if os.geteuid() == 0:
            import pwd
            user = f"user {pwd.getpwuid(os.geteuid()).pw_name};"
        (self.dir / "nginx.conf").write_text(f"""
{user}
worker_processes 2;
daemon off;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log;
events {{ worker_connections 1024; }}
http {{
  log_format fresh '$request_method $status $bytes_sent $request_length "$uri" "$http_if_none_match"';
  access_log {self.log} fresh;
  sendfile on;
  keepalive_requests 100000;
  keepalive_timeout 120s;
  client_body_temp_path {self.dir};
  proxy_temp_path {self.dir};
  fastcgi_temp_path {self.dir};
  uwsgi_temp_path {self.dir};
  scgi_temp_path {self.dir};
  types {{ application/octet-stream bin; }}
  server {{
    listen 127.0.0.1:{self.port};
    root {WWW};
    autoindex on;
  }}
}}
""")
        self.process = subprocess.Popen(["nginx", "-c", str(self.dir / "nginx.conf"), "-p", str(self.dir)])
        bench.wait_for(f"http://127.0.0.1:{self.port}/")

    def mark(self):
        return self.log.stat().st_size if self.log.exists() else 0

    def requests_since(self, mark):
        """The requests logged since `mark`, counted: by method and status, bytes sent, and how
        many carried If-None-Match. nginx writes a request's line once it has answered it."""
        with open(self.log, "rb") as f:
            f.seek(mark)
            lines = f.read().decode(errors="replace").splitlines()
        counts, sent, conditional = {}, 0, 0
        for line in lines:
            parts = line.split(" ", 4)
            if len(parts) < 5:
                continue
            method, status, bytes_sent = parts[0], parts[1], int(parts[2])
            counts[f"{method} {status}"] = counts.get(f"{method} {status}", 0) + 1
            sent += bytes_sent
            if not parts[4].endswith('"-"'):
                conditional += 1
        return {"requests": sum(counts.values()), "by_method_status": dict(sorted(counts.items())),
                "bytes_sent": sent, "conditional": conditional}

    def stop(self):
        self.process.terminate()
        self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class Link:
    """The WAN link in front of the origin (scripts/wan), one for the whole run: the copies the
    freshness table records name its port. Its counters are read before and after each run."""

    def __init__(self, upstream_port):
        out = subprocess.run(
            [str(ROOT / "scripts" / "wan"), "up", LINK, "--upstream", f"127.0.0.1:{upstream_port}",
             "--delay", DELAY, "--rate", RATE],
            check=True, capture_output=True, text=True).stdout
        env = dict(line[len("export "):].split("=", 1) for line in out.splitlines() if line.startswith("export "))
        self.endpoint = env["WAN_FRESH_ORIGIN_ENDPOINT"]
        self.port = int(self.endpoint.rsplit(":", 1)[1])

    def stats(self):
        out = subprocess.run([str(ROOT / "scripts" / "wan"), "stats", LINK], check=True,
                             capture_output=True, text=True).stdout
        return json.loads(out.strip().splitlines()[-1])

    def down(self):
        subprocess.run([str(ROOT / "scripts" / "wan"), "down", LINK], check=True)


def diff(after, before):
    return {k: after[k] - before.get(k, 0) for k in after if isinstance(after[k], int)}


# ------------------------------------------------------------------------------------ AWS stand-ins

class Aws:
    def __init__(self):
        local = ranged.read_env_file(ROOT / ".local" / "env")
        config = BotoConfig(retries={"max_attempts": 3}, s3={"addressing_style": "path"})
        creds = dict(aws_access_key_id=bench.ACCESS_KEY, aws_secret_access_key=bench.SECRET_KEY,
                     region_name="us-east-1")
        self.moto, self.strict, self.bucket = local["AWS_ENDPOINT_URL"], bench.ENDPOINT, bench.BUCKET
        self.sqs = boto3.client("sqs", endpoint_url=self.moto, config=config, **creds)
        self.ddb = boto3.client("dynamodb", endpoint_url=self.moto, config=config, **creds)

    def setup(self):
        self.table(LEASE_TABLE, due_index=False)
        self.table(FRESHNESS_TABLE, due_index=True)
        self.change_url = self.queue(CHANGE_QUEUE)
        self.invalidation_url = self.queue(INVALIDATION_QUEUE)
        self.change_arn = self.sqs.get_queue_attributes(
            QueueUrl=self.change_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    def table(self, name, due_index):
        """The table afresh (an earlier run's items gone): as the template defines it."""
        try:
            self.ddb.delete_table(TableName=name)
            self.ddb.get_waiter("table_not_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
        except ClientError as err:
            if err.response["Error"]["Code"] != "ResourceNotFoundException":
                raise
        definitions = [{"AttributeName": "pk", "AttributeType": "S"}]
        extra = {}
        if due_index:
            definitions += [{"AttributeName": "shard", "AttributeType": "S"},
                            {"AttributeName": "due_at", "AttributeType": "N"}]
            extra["GlobalSecondaryIndexes"] = [{
                "IndexName": "due", "Projection": {"ProjectionType": "ALL"},
                "KeySchema": [{"AttributeName": "shard", "KeyType": "HASH"},
                              {"AttributeName": "due_at", "KeyType": "RANGE"}]}]
        self.ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST", AttributeDefinitions=definitions,
                              KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}], **extra)
        self.ddb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
        self.ddb.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "ttl"})

    def queue(self, name):
        url = self.sqs.create_queue(QueueName=name)["QueueUrl"]
        self.sqs.set_queue_attributes(QueueUrl=url, Attributes={
            "VisibilityTimeout": str(VISIBILITY), "ReceiveMessageWaitTimeSeconds": "0"})
        self.drain(url)
        return url

    def drain(self, url):
        """Every message received and deleted, however many; how many there were."""
        count = 0
        while True:
            got = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60,
                                           WaitTimeSeconds=0).get("Messages", [])
            if not got:
                if self.depth(url) == 0:
                    return count
                time.sleep(0.2)
                continue
            count += len(got)
            self.sqs.delete_message_batch(QueueUrl=url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)])

    def depth(self, url):
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                                          "ApproximateNumberOfMessagesDelayed"])["Attributes"]
        return sum(int(v) for v in attributes.values())

    def send(self, url, bodies):
        for start in range(0, len(bodies), 10):
            self.sqs.send_message_batch(QueueUrl=url, Entries=[
                {"Id": str(i), "MessageBody": body} for i, body in enumerate(bodies[start:start + 10])])

    def items(self, table):
        items, start = [], None
        while True:
            page = self.ddb.scan(TableName=table, **({"ExclusiveStartKey": start} if start else {}))
            items += page.get("Items", [])
            start = page.get("LastEvaluatedKey")
            if not start:
                return items

    def put_items(self, table, items):
        for start in range(0, len(items), 25):
            request = {table: [{"PutRequest": {"Item": item}} for item in items[start:start + 25]]}
            while request:
                request = self.ddb.batch_write_item(RequestItems=request).get("UnprocessedItems") or None

    def delete_items(self, table, items):
        for start in range(0, len(items), 25):
            request = {table: [{"DeleteRequest": {"Key": {"pk": item["pk"]}}} for item in items[start:start + 25]]}
            while request:
                request = self.ddb.batch_write_item(RequestItems=request).get("UnprocessedItems") or None

    def counters(self):
        """The function's counters of today (and yesterday's, should the run cross midnight)."""
        totals = {}
        for item in self.items(FRESHNESS_TABLE):
            if item["pk"]["S"].startswith("stats#"):
                for name, value in item.items():
                    if "N" in value and name != "ttl":
                        totals[name] = totals.get(name, 0) + int(value["N"])
        return totals


# ------------------------------------------------------------------------------ the bucket's files

def sidecars(key):
    """s3s-fs's files beside an object: its metadata and its internal record (the ETag)."""
    encode = lambda s: base64.urlsafe_b64encode(s.encode()).decode().rstrip("=")
    stem = f".bucket-{encode(bench.BUCKET)}.object-{encode(key)}"
    root = bench.S3_DATA.parent
    return [root / f"{stem}.metadata.json", root / f"{stem}.internal.json"]


def object_files(key):
    return [bench.S3_DATA / key] + sidecars(key)


def remove_objects(keys):
    for key in keys:
        for path in object_files(key):
            path.unlink(missing_ok=True)


class Snapshot:
    """The bucket's objects under a set of keys, as files (s3s-fs keeps an object as its file plus
    two JSON files beside it), and optionally the freshness table's object items: taken once after
    the first copy, put back before each run, so that every run starts from the same state."""

    def __init__(self, name, keys, aws=None):
        self.dir = STATE / "snapshot" / name
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        self.keys, self.aws = keys, aws
        self.files = {}
        for key in keys:
            for n, path in enumerate(object_files(key)):
                if not path.exists():
                    raise RuntimeError(f"{key}: no {path.name} after the first copy")
                copy = self.dir / f"{hashlib.sha1(key.encode()).hexdigest()}.{n}"
                shutil.copy2(path, copy)
                self.files[path] = (copy, path.stat().st_mtime_ns)
        self.items = []
        if aws:
            self.items = [i for i in aws.items(FRESHNESS_TABLE) if not i["pk"]["S"].startswith("stats#")]
            if len(self.items) != len(keys):
                raise RuntimeError(f"the freshness table tracks {len(self.items)} objects, not {len(keys)}")

    def restore(self):
        for path, (copy, _) in self.files.items():
            shutil.copy2(copy, path)
        if self.aws:
            # Every object due again, as the snapshot left it (its due_at is in the past); no lease.
            self.aws.put_items(FRESHNESS_TABLE, self.items)
            self.aws.delete_items(LEASE_TABLE, self.aws.items(LEASE_TABLE))

    def untouched(self, key):
        """The object's files as the snapshot has them: not written since."""
        for path in object_files(key):
            copy, mtime = self.files[path]
            if not path.exists() or path.stat().st_mtime_ns != mtime or path.read_bytes() != copy.read_bytes():
                return False
        return True


def check_bucket(keys, expected, changed, snapshot):
    """Problems with the bucket's copies: every changed key holding its new bytes, every other
    one untouched."""
    problems, wrong, touched = [], [], []
    for i, key in enumerate(keys):
        path = bench.S3_DATA / key
        if not path.exists() or sha(path.read_bytes()) != expected[i]:
            wrong.append(key)
        elif i not in changed and not snapshot.untouched(key):
            touched.append(key)
    if wrong:
        problems.append(f"{len(wrong)} objects without the origin's current bytes (first: {wrong[0]})")
    if touched:
        problems.append(f"{len(touched)} unchanged objects written again (first: {touched[0]})")
    return problems


# ------------------------------------------------------------------------------- the event source

class Mapping:
    """The change queue's event source mapping: BatchSize 1, W invocations at once, one sandbox
    each. A record is deleted unless its invocation failed or reported it in batchItemFailures
    (it then comes back after the queue's visibility timeout)."""

    def __init__(self, aws, sandboxes):
        self.aws, self.sandboxes = aws, sandboxes
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.busy = 0
        self.invocations = []  # (kind, start, end, ok)
        self.notes = []
        self.threads = [threading.Thread(target=self.poll, args=(s,), daemon=True) for s in sandboxes]
        for thread in self.threads:
            thread.start()

    def poll(self, sandbox):
        sqs = self.aws.sqs
        while not self.stopping.is_set():
            try:
                got = sqs.receive_message(QueueUrl=self.aws.change_url, MaxNumberOfMessages=1, WaitTimeSeconds=1,
                                          AttributeNames=["All"]).get("Messages", [])
            except ClientError as err:
                self.note(f"receive failed: {err}")
                time.sleep(0.5)
                continue
            if not got:
                continue
            message = got[0]
            try:
                kind = json.loads(message["Body"]).get("kind", "copy")
            except (ValueError, AttributeError):
                kind = "invalid"
            with self.lock:
                self.busy += 1
            began = time.perf_counter()
            response = sandbox.invoke(ranged.sqs_event(message, self.aws.change_arn), timeout=FUNCTION_TIMEOUT + 30)
            ended = time.perf_counter()
            failed = response is None or message["MessageId"] in {
                item.get("itemIdentifier") for item in response.get("batchItemFailures", [])}
            if not failed:
                try:
                    sqs.delete_message(QueueUrl=self.aws.change_url, ReceiptHandle=message["ReceiptHandle"])
                except ClientError as err:
                    self.note(f"delete failed: {err}")
            with self.lock:
                self.invocations.append((kind, began, ended, not failed))
                self.busy -= 1

    def note(self, text):
        with self.lock:
            self.notes.append(text)

    def wait_until_drained(self, started, expected_invocations, limit):
        """Until the queue is empty and no invocation runs, after at least `expected_invocations`;
        the end of the last invocation (perf_counter), or None past `limit` seconds."""
        while time.perf_counter() - started < limit:
            time.sleep(0.1)
            with self.lock:
                idle, done = self.busy == 0, len(self.invocations)
            # busy first, then the queue: a record received is in flight (not visible) until deleted
            # after its invocation, so an idle mapping with an empty queue has nothing left.
            if idle and done >= expected_invocations and self.aws.depth(self.aws.change_url) == 0:
                with self.lock:
                    if self.busy == 0:
                        return max(end for _, _, end, _ in self.invocations)
        return None

    def stop(self):
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=FUNCTION_TIMEOUT + 40)


def function_env(aws, link, objects, workers):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.pop("SSL_CERT_FILE", None)
    env.update(
        AWS_LAMBDA_FUNCTION_NAME="backfill", AWS_LAMBDA_FUNCTION_MEMORY_SIZE="1024",
        AWS_LAMBDA_FUNCTION_TIMEOUT=str(FUNCTION_TIMEOUT),
        AWS_ENDPOINT_URL_S3=aws.strict, AWS_ENDPOINT_URL_SQS=aws.moto, AWS_ENDPOINT_URL_DYNAMODB=aws.moto,
        AWS_ACCESS_KEY_ID=bench.ACCESS_KEY, AWS_SECRET_ACCESS_KEY=bench.SECRET_KEY, AWS_REGION="us-east-1",
        BUCKET=aws.bucket, ALLOWED_ORIGINS=f"http://127.0.0.1:{link.port}",
        # As the template wires them: the change queue is the part queue.
        LEASE_TABLE=LEASE_TABLE, PART_QUEUE_URL=aws.change_url, PART_WORKERS=str(workers),
        FRESHNESS_TABLE=FRESHNESS_TABLE, CHANGE_QUEUE_URL=aws.change_url,
        INVALIDATION_QUEUE_URL=aws.invalidation_url,
        # One sweep sends every object: the budget of its 60 s period is N. Copies are due a
        # second after they are made (the snapshot's items are due long before each run).
        REVALIDATION_BUDGET=str(objects), MIN_REVALIDATION="1s", MAX_STALENESS="24h",
        AWS_LAMBDA_LOG_LEVEL="INFO",
    )
    return env


class Fleet:
    """W sandboxes and the mapping feeding them, fresh for each run (so each run's log lines are its
    own, and each opens its own connections over the link)."""

    def __init__(self, aws, binary, env, workers, name):
        ranged.LOGS = STATE / "logs"  # where ranged.Sandbox writes each sandbox's log
        ranged.LOGS.mkdir(parents=True, exist_ok=True)
        self.sandboxes = [ranged.Sandbox(f"{name}-{i}", binary, env) for i in range(workers)]
        self.mapping = Mapping(aws, self.sandboxes)

    def stop(self):
        self.mapping.stop()
        for sandbox in self.sandboxes:
            sandbox.stop()

    def lines(self):
        return list(ranged.function_lines(self.sandboxes))


def record_lines(lines):
    """The function's one line per record: its outcome and duration."""
    return [r for r in lines if isinstance(r.get("outcome"), str) and isinstance(r.get("duration_ms"), int)]


def by_key(records):
    """The outcomes logged for each key, and the records beyond one per message (deliveries of
    a message already handled: the stand-in SQS delivers at least once, as SQS does)."""
    keys, seen, again = {}, set(), 0
    for r in records:
        span = r.get("span") or {}
        keys.setdefault(span.get("key"), []).append(r["outcome"])
        if span.get("message_id") in seen:
            again += 1
        seen.add(span.get("message_id"))
    return keys, again


def percentile(values, p):
    values = sorted(values)
    if not values:
        return None
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


# ------------------------------------------------------------------------------------------ runs

def ours_run(args, aws, origin, link, keys, expected, changed, snapshot, label):
    snapshot.restore()
    aws.drain(aws.change_url)
    aws.drain(aws.invalidation_url)
    fleet = Fleet(aws, args.binary, function_env(aws, link, len(keys), args.workers), args.workers, label)
    counters, mark, before = aws.counters(), origin.mark(), link.stats()
    started = time.perf_counter()
    aws.sqs.send_message(QueueUrl=aws.change_url, MessageBody=SWEEP)
    ended = fleet.mapping.wait_until_drained(started, 1 + len(keys), args.max_seconds)
    fleet.stop()
    seconds = (ended or time.perf_counter()) - started
    link_used = diff(link.stats(), before)
    requests = origin.requests_since(mark)
    counted = diff(aws.counters(), counters)
    invalidations = aws.drain(aws.invalidation_url)
    lines = fleet.lines()
    records = record_lines(lines)
    outcomes = {}
    for r in records:
        outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
    problems = [] if ended else [f"not drained within {args.max_seconds} s"]
    problems += check_bucket(keys, expected, changed, snapshot)
    # One sweep; each changed key refreshed, each other one found unchanged. A message delivered
    # again may add a record for its key: `in_flight` (its first delivery still holds the key),
    # `unchanged` (after the first replaced it) or the same outcome again.
    logged, again = by_key(records)
    wrong = [key for i, key in enumerate(keys)
             if (i in changed and "refreshed" not in logged.get(key, []))
             or (i not in changed and set(logged.get(key, [])) - {"unchanged", "in_flight"})
             or not set(logged.get(key, [])) <= {"refreshed", "unchanged", "in_flight"}
             or not logged.get(key)]
    if wrong or outcomes.get("swept") != 1 or set(outcomes) - {"swept", "refreshed", "unchanged", "in_flight"}:
        problems.append(f"outcomes {outcomes}; {len(wrong)} keys not as expected (first: "
                        f"{wrong[0] if wrong else None}: {logged.get(wrong[0]) if wrong else None})")
    # Exactly one conditional GET per revalidation (once per object unless a message came again).
    revalidations = outcomes.get("refreshed", 0) + outcomes.get("unchanged", 0)
    if requests["requests"] != revalidations or requests["conditional"] != revalidations:
        problems.append(f"origin requests {requests}, expected {revalidations} conditional GETs")
    if counted.get("origin_requests") != revalidations:
        problems.append(f"the function counted {counted.get('origin_requests')} origin requests, expected {revalidations}")
    if invalidations != outcomes.get("refreshed", 0):
        problems.append(f"{invalidations} paths sent to be invalidated, expected {outcomes.get('refreshed', 0)}")
    failed = [i for i in fleet.mapping.invocations if not i[3]]
    if failed:
        problems.append(f"{len(failed)} invocations failed or reported their record")
    problems += fleet.mapping.notes[:5]
    refresh_ms = [r["duration_ms"] for r in records if r["outcome"] in ("unchanged", "refreshed")]
    by_outcome_ms = {o: statistics.median([r["duration_ms"] for r in records if r["outcome"] == o])
                     for o in ("unchanged", "refreshed") if any(r["outcome"] == o for r in records)}
    sweep_ms = [r["duration_ms"] for r in records if r["outcome"] == "swept"]
    busy = sum(end - begin for _, begin, end, _ in fleet.mapping.invocations)
    result = {
        "seconds": round(seconds, 3), "objects_per_s": round(len(keys) / seconds, 1),
        "origin_requests": requests["requests"], "origin_requests_by_status": requests["by_method_status"],
        "origin_bytes": link_used["bytes_down"], "bytes_up": link_used["bytes_up"],
        "origin_bytes_sent_by_nginx": requests["bytes_sent"], "connections": link_used["connections"],
        "outcomes": outcomes, "invocations": len(fleet.mapping.invocations), "delivered_again": again,
        "function_counters": {k: v for k, v in sorted(counted.items()) if v},
        "invalidation_paths": invalidations,
        "refresh_ms": {"median": percentile(refresh_ms, 50), "p90": percentile(refresh_ms, 90),
                       "max": max(refresh_ms, default=None), "by_outcome_median": by_outcome_ms},
        "sweep_ms": sweep_ms[0] if sweep_ms else None,
        # The share of the W workers' time spent in invocations (the rest: the mapping's receives
        # and deletes on moto, and the start and the tail of the run).
        "workers_busy_share": round(busy / (args.workers * seconds), 3),
        "problems": problems,
    }
    say(f"  {label}, ours: {result['seconds']} s, {result['objects_per_s']} objects/s, "
        f"{result['origin_requests']} origin requests, {result['origin_bytes']} origin bytes, "
        f"{result['connections']} connections, refresh median {result['refresh_ms']['median']} ms, "
        f"sweep {result['sweep_ms']} ms" + (f", {again} delivered again" if again else "") + (f"; FAILED: {'; '.join(problems)}" if problems else "; ok"))
    return result


def rclone_argv(args, url):
    """rclone's copy from the origin at `url`. The trailing slashes say both paths are directories:
    without them rclone first sends a HEAD for each to ask (one more round trip to the origin, and
    on s3s-fs, which answers 500 for a key that is a directory on its disk, retries for minutes)."""
    return [os.environ.get("RCLONE", "rclone"), "copy", "--transfers", str(args.workers), "--http-url",
            url + "/", f":http:{ORIGIN_DIR}/", f"strict:{bench.BUCKET}/{PEER_PREFIX}/"]


def rclone_run(args, origin, link, keys, expected, changed, snapshot, label):
    snapshot.restore()
    mark, before = origin.mark(), link.stats()
    seconds, rss = bench.run_command(rclone_argv(args, link.endpoint), bench.peer_env())
    link_used = diff(link.stats(), before)
    requests = origin.requests_since(mark)
    problems = check_bucket(keys, expected, changed, snapshot)
    result = {
        "seconds": round(seconds, 3), "objects_per_s": round(len(keys) / seconds, 1),
        "origin_requests": requests["requests"], "origin_requests_by_status": requests["by_method_status"],
        "origin_bytes": link_used["bytes_down"], "bytes_up": link_used["bytes_up"],
        "origin_bytes_sent_by_nginx": requests["bytes_sent"], "connections": link_used["connections"],
        "peak_rss_mib": round(rss / 1024, 1), "problems": problems,
    }
    say(f"  {label}, rclone: {result['seconds']} s, {result['objects_per_s']} objects/s, "
        f"{result['origin_requests']} origin requests {requests['by_method_status']}, "
        f"{result['origin_bytes']} origin bytes, {result['connections']} connections"
        + (f"; FAILED: {'; '.join(problems)}" if problems else "; ok"))
    return result


def first_copy(args, aws, link, keys):
    """The N objects copied once into the bucket by the function, through the same mapping (copy
    messages on the change queue, which the function takes as it takes them from the backfill
    queue); they are then tracked in the freshness table."""
    remove_objects(keys)
    aws.drain(aws.change_url)
    fleet = Fleet(aws, args.binary, function_env(aws, link, len(keys), args.workers), args.workers, "first-copy")
    bodies = [json.dumps({
        "version": 1, "bucket": aws.bucket, "key": key,
        "origin": {"protocol": "http", "host": "127.0.0.1", "port": link.port, "path": ""},
        "uri": "/" + key, "request_id": "bench-fresh",
        "enqueued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "trigger": "operator",
    }) for key in keys]
    started = time.perf_counter()
    aws.send(aws.change_url, bodies)
    ended = fleet.mapping.wait_until_drained(started, len(keys), args.max_seconds)
    fleet.stop()
    records = record_lines(fleet.lines())
    logged, again = by_key(records)
    outcomes = {}
    for r in records:
        outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
    # Every key copied; a message delivered again finds its copy there, or in flight, or (delivered
    # twice at once: the lease names the message, so both deliveries hold it) copies it again.
    missing = [key for key in keys if "copied" not in logged.get(key, [])]
    if not ended or missing or set(outcomes) - {"copied", "already_present", "in_flight"}:
        raise RuntimeError(f"the first copy did not copy every object: {outcomes}, {len(missing)} keys not copied")
    return round(ended - started, 3), again


def median_of(runs, name):
    values = [r[name] for r in runs]
    return statistics.median(values)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=1000, help="N objects")
    parser.add_argument("--object-kib", type=int, default=64, help="their size, KiB")
    parser.add_argument("--changed", type=float, default=0.1, help="the share of them that changes")
    parser.add_argument("--workers", type=int, default=8, help="W: invocations at once (PartWorkers); rclone --transfers")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds, ours then rclone")
    parser.add_argument("--max-seconds", type=float, default=600, help="give a run up after this long")
    parser.add_argument("--binary", default=os.environ.get("BACKFILL_BINARY"))
    parser.add_argument("--quick", action="store_true", help="recorded in the results: a harness check")
    parser.add_argument("--out", type=Path, default=None, help="results file (JSON)")
    args = parser.parse_args()
    if not args.binary:
        release = ROOT / "target" / "release" / "backfill"
        args.binary = str(release if release.exists() else ROOT / "target" / "debug" / "backfill")
    size = args.object_kib * KIB
    n = args.objects
    k = max(1, round(n * args.changed))
    keys = [f"{ORIGIN_DIR}/{i:05d}.bin" for i in range(n)]
    peer_keys = [f"{PEER_PREFIX}/{i:05d}.bin" for i in range(n)]
    # The same k objects change in every round; spread over the listing.
    changed = set(random.Random(f"fresh-{n}").sample(range(n), k))
    shutil.rmtree(STATE / "logs", ignore_errors=True)

    # The origin: version 1 of every object, modified a day ago.
    folder = WWW / ORIGIN_DIR
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    first_modified = int(time.time()) - 86_400
    for i in range(n):
        path = folder / f"{i:05d}.bin"
        path.write_bytes(version_bytes(i, 1, size))
        os.utime(path, (first_modified, first_modified))

    aws = Aws()
    aws.setup()
    origin = Origin()
    link = Link(origin.port)
    failures = []
    results = {
        "quick": args.quick, "objects": n, "object_bytes": size, "changed": k, "workers": args.workers,
        "rounds": args.rounds, "binary": os.path.relpath(args.binary, ROOT),
        "link": {"delay": DELAY, "rate_per_connection": RATE, "rtt_ms": RTT_MS},
        "rclone": ranged.rclone_version(),
        "rclone_argv": " ".join(["rclone", "copy", "--transfers", str(args.workers), "--http-url", "LINK",
                                 f":http:{ORIGIN_DIR}/", f"strict:BUCKET/{PEER_PREFIX}/"]),
        "sweep": json.loads(SWEEP),
    }
    try:
        say(f"fresh: {n} objects of {args.object_kib} KiB over a {DELAY} one-way, {RATE} link; first copy by the function")
        results["first_copy_seconds"], results["first_copy_delivered_again"] = first_copy(args, aws, link, keys)
        say(f"  first copy: {results['first_copy_seconds']} s"
            + (f", {results['first_copy_delivered_again']} messages delivered again" if results["first_copy_delivered_again"] else ""))
        ours_snapshot = Snapshot("ours", keys, aws)
        # rclone's own first copy (its modification times kept in the objects' metadata), straight
        # from nginx: nothing of it is measured.
        remove_objects(peer_keys)
        bench.run_command(rclone_argv(args, f"http://127.0.0.1:{origin.port}"), bench.peer_env())
        peer_snapshot = Snapshot("rclone", peer_keys)

        # k objects change at the origin: new bytes, an hour later, the same size.
        for i in changed:
            path = folder / f"{i:05d}.bin"
            path.write_bytes(version_bytes(i, 2, size))
            os.utime(path, (first_modified + 3600, first_modified + 3600))
        expected = [sha(version_bytes(i, 2 if i in changed else 1, size)) for i in range(n)]

        runs = []
        for round_ in range(args.rounds):
            label = f"round {round_ + 1}"
            ours = ours_run(args, aws, origin, link, keys, expected, changed, ours_snapshot, label)
            peer = rclone_run(args, origin, link, peer_keys, expected, changed, peer_snapshot, label)
            failures += [f"{label}, ours: {p}" for p in ours["problems"]]
            failures += [f"{label}, rclone: {p}" for p in peer["problems"]]
            runs.append({"round": round_ + 1, "ours": ours, "rclone": peer,
                         "rclone_over_ours": round(peer["seconds"] / ours["seconds"], 2)})
    finally:
        link.down()
        origin.stop()
        # Nothing of this run is worth keeping: the copies in the bucket, the snapshots.
        remove_objects(keys + peer_keys)
        shutil.rmtree(STATE / "snapshot", ignore_errors=True)
    results["runs"] = runs
    summary = {}
    for tool in ("ours", "rclone"):
        tool_runs = [r[tool] for r in runs]
        seconds = median_of(tool_runs, "seconds")
        summary[tool] = {
            "median_seconds": round(seconds, 3), "objects_per_s": round(n / seconds, 1),
            "origin_requests": median_of(tool_runs, "origin_requests"),
            "origin_bytes": median_of(tool_runs, "origin_bytes"),
            "connections": median_of(tool_runs, "connections"),
        }
    summary["rclone_over_ours"] = round(summary["rclone"]["median_seconds"] / summary["ours"]["median_seconds"], 2)
    refresh = statistics.median(r["ours"]["refresh_ms"]["median"] for r in runs)
    per_minute = n / summary["ours"]["median_seconds"] * 60
    results["summary"] = summary
    results["budget"] = {
        # What W workers got through at this distance, the sweep included: a schedule whose
        # budget is at most this keeps up (a sweep's refreshes are done within its minute).
        "revalidations_per_minute": round(per_minute),
        "largest_budget": int(per_minute // 10 * 10),
        "refresh_ms_median": refresh,
        "refresh_ms_by_outcome": {
            outcome: statistics.median(r["ours"]["refresh_ms"]["by_outcome_median"][outcome] for r in runs)
            for outcome in ("unchanged", "refreshed")
            if all(outcome in r["ours"]["refresh_ms"]["by_outcome_median"] for r in runs)},
        # W workers each doing one refresh per invocation, back to back, at the median duration.
        "per_minute_from_refresh_time": round(args.workers * 60_000 / refresh),
        # One conditional GET a round trip per worker, nothing else.
        "ideal_per_minute": round(args.workers * 60_000 / RTT_MS),
        "sweep_ms_median": statistics.median(r["ours"]["sweep_ms"] for r in runs if r["ours"]["sweep_ms"] is not None)
        if any(r["ours"]["sweep_ms"] is not None for r in runs) else None,
    }
    results["machine"] = bench.machine()
    results["failures"] = failures
    say(f"fresh: ours {summary['ours']['median_seconds']} s ({summary['ours']['objects_per_s']} objects/s), rclone "
        f"{summary['rclone']['median_seconds']} s: {summary['rclone_over_ours']}x; about "
        f"{results['budget']['revalidations_per_minute']} revalidations a minute at W = {args.workers} "
        f"(ideal {results['budget']['ideal_per_minute']})")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        say(f"wrote {args.out}")
    if failures:
        say("fresh: FAILED\n  " + "\n  ".join(failures))
        return 1
    say("fresh: every check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
