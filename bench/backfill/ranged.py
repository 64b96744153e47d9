"""Ranged copies (issue 17): one object of SIZE bytes on nginx, behind the WAN link of test-support
(per-connection rate, one-way delay, no total cap), copied into s3s-fs by the backfill function, and
by rclone over the same link for comparison.

This script is the Lambda service around the function:
- N + 1 sandboxes, each the function's binary under the Runtime Interface Emulator, with a scaled
  function timeout (AWS_LAMBDA_FUNCTION_TIMEOUT) so that a large object needs many invocations;
- the event source mappings: one copy message goes on a copy queue, whose mapping invokes sandbox 0;
  the part queue's mapping long-polls with BatchSize 1 and up to N invocations at once, one sandbox
  each. A record is deleted unless its invocation failed or reported it in batchItemFailures;
  the others come back after the queue's visibility timeout (3 x the function timeout here).

Each copy reports wall time, throughput, the link's bytes_down / object size and connections, peak
RSS per sandbox (sampled from /proc), invocations by kind, and checks: the object byte-identical
(SHA-256 of the source), HeadObject answering 404 until the whole object is there (nothing partial
visible), and no multipart upload left. Faults (one copy each, combined when several are given):
--kill-mid-part (SIGKILL a sandbox's function while it receives a part), --reset-mid-range (the
link resets a part's connection mid-body), --origin-change (the file is replaced mid-copy: the new
bytes must land).

Run through bench/backfill/ranged.sh, which installs the tools and starts s3s-fs and the local
stack (moto: the lease table and the queues).
"""

import argparse
import hashlib
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (the backfill bench: nginx, the emulator, rclone's environment)

ROOT = bench.ROOT
MIB = bench.MIB
GIB = 1024 * MIB
RATE = 20_000_000
DELAY = "100ms"
LEASE_TABLE = "copy-leases"
PART_QUEUE = "backfill-parts"
PART_DLQ = "backfill-parts-dlq"
COPY_QUEUE = "backfill-ranged-copies"
LINK = "ranged-origin"
WWW = ROOT / ".local" / "bench-www"
LOGS = ROOT / ".local" / "ranged"


def say(text):
    print(text, flush=True)


def read_env_file(path):
    env = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line.startswith("export "):
            line = line[len("export "):]
        if "=" in line and not line.startswith("#"):
            name, value = line.split("=", 1)
            env[name] = value.strip("'\"")
    return env


# ------------------------------------------------------------------------------------ the source

def make_source(path, size):
    """`size` bytes that never repeat (a part put at the wrong offset would not go unnoticed), and
    their SHA-256; both kept for the next run."""
    digest_file = path.with_suffix(".sha256")
    if path.exists() and path.stat().st_size == size and digest_file.exists() \
            and digest_file.stat().st_mtime >= path.stat().st_mtime:
        return digest_file.read_text().strip()
    digest = write_random(path, size)
    digest_file.write_text(digest + "\n")
    return digest


def write_random(path, size):
    """Writes `size` random bytes at `path` (whole or not at all); their SHA-256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    partial = path.with_suffix(".partial")
    with open(partial, "wb") as f:
        left = size
        while left > 0:
            block = os.urandom(min(left, 16 * MIB))
            digest.update(block)
            f.write(block)
            left -= len(block)
    os.replace(partial, path)
    return digest.hexdigest()


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(16 * MIB):
            digest.update(block)
    return digest.hexdigest()


# -------------------------------------------------------------------------------------- the link

class Link:
    """The WAN link in front of the origin (scripts/wan): fresh for each copy, so that its
    counters are that copy's."""

    def __init__(self, upstream_port, extra=()):
        out = subprocess.run(
            [str(ROOT / "scripts" / "wan"), "up", LINK, "--upstream", f"127.0.0.1:{upstream_port}",
             "--delay", DELAY, "--rate", f"{RATE // 1_000_000}MB/s", *extra],
            check=True, capture_output=True, text=True).stdout
        env = {}
        for line in out.splitlines():
            if line.startswith("export "):
                name, value = line[len("export "):].split("=", 1)
                env[name] = value
        self.endpoint = env["WAN_RANGED_ORIGIN_ENDPOINT"]
        self.port = int(self.endpoint.rsplit(":", 1)[1])
        self.options = [f"--delay {DELAY}", f"--rate {RATE // 1_000_000}MB/s", *extra]

    def stats(self):
        out = subprocess.run([str(ROOT / "scripts" / "wan"), "stats", LINK], check=True,
                             capture_output=True, text=True).stdout
        return json.loads(out.strip().splitlines()[-1])

    def down(self):
        subprocess.run([str(ROOT / "scripts" / "wan"), "down", LINK], check=True)
        return json.loads((ROOT / ".local" / "wan" / f"{LINK}.stats").read_text().strip().splitlines()[-1])


# ---------------------------------------------------------------------------------- the sandboxes

def proc_children(pid):
    """The children of `pid`: from each of its threads' `children` list (cheap: this is sampled
    several times a second for every sandbox), else by a scan of every process."""
    tasks = list(Path(f"/proc/{pid}/task").glob("*/children"))
    if tasks:
        found = []
        for children in tasks:
            try:
                found += [int(child) for child in children.read_text().split()]
            except (OSError, ValueError):
                continue
        return found
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def received_from(pid, port):
    """Bytes the process `pid` has received on its TCP connections to 127.0.0.1:`port` (the
    kernel's `bytes_received` of each socket, through ss: socket reads do not count in
    /proc/PID/io). None when ss cannot tell."""
    try:
        out = subprocess.run(["ss", "-tinpH", "state", "established", f"( dport = :{port} )"],
                             capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    total, ours = 0, False
    for line in out.splitlines():
        if not line.startswith(("\t", " ")):
            ours = f"pid={pid}," in line
            continue
        if ours:
            for field in line.split():
                if field.startswith("bytes_received:"):
                    total += int(field.split(":", 1)[1])
    return total


def proc_field(pid, file, name):
    try:
        for line in Path(f"/proc/{pid}/{file}").read_text().splitlines():
            if line.startswith(name):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


class Sandbox:
    """The function's binary under the Runtime Interface Emulator: one invocation at a time."""

    def __init__(self, name, binary, env):
        self.name, self.binary, self.env = name, binary, env
        self.peak_rss_kib = 0
        self.invocations = 0
        self.current = None  # (record kind, part range bytes, rchar at start) while invoking
        self.log = open(LOGS / f"{name}.log", "w")  # this copy's lines only
        self.start()

    def start(self):
        self.port = bench.free_port()
        self.process = subprocess.Popen(
            [bench.rie_binary(), "--log-level", "error", "--runtime-interface-emulator-address",
             f"127.0.0.1:{self.port}", "--runtime-api-address", f"127.0.0.1:{bench.free_port()}", self.binary],
            env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        bench.wait_for(f"http://127.0.0.1:{self.port}/")

    def function_pid(self):
        children = proc_children(self.process.pid)
        return children[0] if children else None

    def sample(self):
        pid = self.function_pid()
        if pid:
            hwm = proc_field(pid, "status", "VmHWM:")
            if hwm:
                self.peak_rss_kib = max(self.peak_rss_kib, hwm)
        return pid

    def invoke(self, event, timeout):
        """The function's response, or None when the invocation failed (an error, a timeout, the
        process killed): the whole batch then counts as failed, as with Lambda."""
        self.invocations += 1
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/2015-03-31/functions/function/invocations",
            data=json.dumps(event).encode(), method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                body = json.loads(response.read() or b"null")
        except (OSError, ValueError) as err:
            self.log.write(f"ranged: invocation failed: {err}\n")
            return None
        if isinstance(body, dict) and "batchItemFailures" in body:
            return body
        self.log.write(f"ranged: invocation answered {json.dumps(body)[:500]}\n")
        return None

    def restart(self):
        self.stop(close=False)
        self.start()

    def stop(self, close=True):
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if close:
            self.log.close()


# ------------------------------------------------------------------------------------- AWS stand-ins

class Aws:
    def __init__(self, local_env, strict_env):
        config = BotoConfig(retries={"max_attempts": 3}, s3={"addressing_style": "path"})
        moto = local_env["AWS_ENDPOINT_URL"]
        creds = dict(aws_access_key_id=strict_env["STRICT_S3_ACCESS_KEY"],
                     aws_secret_access_key=strict_env["STRICT_S3_SECRET_KEY"], region_name="us-east-1")
        self.moto, self.strict = moto, strict_env["STRICT_S3_ENDPOINT"]
        self.bucket = strict_env["STRICT_S3_BUCKET"]
        self.s3 = boto3.client("s3", endpoint_url=self.strict, config=config, **creds)
        self.sqs = boto3.client("sqs", endpoint_url=moto, config=config, **creds)
        self.ddb = boto3.client("dynamodb", endpoint_url=moto, config=config, **creds)

    def queue(self, name, visibility, dlq_arn=None):
        attributes = {"VisibilityTimeout": str(visibility), "ReceiveMessageWaitTimeSeconds": "0"}
        if dlq_arn:
            attributes["RedrivePolicy"] = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"})
        url = self.sqs.create_queue(QueueName=name)["QueueUrl"]
        self.sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
        self.drain(url)
        arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return url, arn

    def drain(self, url):
        """Empties the queue: PurgeQueue, or where one ran in the last 60 s (two runs in a row),
        every message received and deleted (with a zero visibility timeout, so none in flight from
        an earlier run escapes for long)."""
        try:
            self.sqs.purge_queue(QueueUrl=url)
            return
        except ClientError as err:
            if "PurgeQueueInProgress" not in err.response["Error"]["Code"]:
                raise
        while True:
            got = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30,
                                           WaitTimeSeconds=0).get("Messages", [])
            if not got:
                return
            self.sqs.delete_message_batch(QueueUrl=url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)])

    def setup(self, visibility):
        """The lease table and the part queue (names of the local stack), and this harness's copy
        queue; emptied, with the part queue's visibility set for this run."""
        try:
            self.ddb.create_table(TableName=LEASE_TABLE, BillingMode="PAY_PER_REQUEST",
                                  AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                                  KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
            self.ddb.get_waiter("table_exists").wait(TableName=LEASE_TABLE, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
            self.ddb.update_time_to_live(TableName=LEASE_TABLE,
                                         TimeToLiveSpecification={"Enabled": True, "AttributeName": "ttl"})
        except ClientError as err:
            if err.response["Error"]["Code"] != "ResourceInUseException":
                raise
        _, dlq_arn = self.queue(PART_DLQ, 60)
        self.part_url, self.part_arn = self.queue(PART_QUEUE, visibility, dlq_arn)
        self.copy_url, self.copy_arn = self.queue(COPY_QUEUE, visibility)

    def forget(self, key):
        """No object and no lease left from an earlier copy of `key`."""
        self.s3.delete_object(Bucket=self.bucket, Key=key)
        self.ddb.delete_item(TableName=LEASE_TABLE, Key={"pk": {"S": f"{self.bucket}/{key}"}})

    def head(self, key):
        try:
            return self.s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as err:
            if err.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def uploads(self):
        """Multipart uploads still open in the bucket: ListMultipartUploads, or where the server
        lacks it (s3s-fs 0.14), the uploads its data folder still holds (`.upload-<id>.json`, gone
        once the upload is completed or aborted)."""
        try:
            listed = self.s3.list_multipart_uploads(Bucket=self.bucket)
            return [u["UploadId"] for u in listed.get("Uploads", [])]
        except ClientError as err:
            if err.response["Error"]["Code"] != "NotImplemented":
                raise
        return [p.name[len(".upload-"):-len(".json")] for p in bench.S3_DATA.parent.glob(".upload-*.json")]

    def queue_depth(self, url):
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                                          "ApproximateNumberOfMessagesDelayed"])["Attributes"]
        return sum(int(v) for v in attributes.values())


# ------------------------------------------------------------------------- the event source mappings

def sqs_event(message, arn):
    attributes = dict(message.get("Attributes", {}))
    attributes.setdefault("ApproximateReceiveCount", "1")
    return {"Records": [{
        "messageId": message["MessageId"], "receiptHandle": message["ReceiptHandle"], "body": message["Body"],
        "attributes": attributes, "messageAttributes": {}, "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs", "eventSourceARN": arn, "awsRegion": "us-east-1"}]}


def record_kind(body):
    try:
        message = json.loads(body)
    except ValueError:
        return "invalid", None
    if message.get("kind") == "part":
        first, last = message.get("first"), message.get("last")
        length = last - first + 1 if isinstance(first, int) and isinstance(last, int) else None
        return "part", length
    return message.get("kind") or "copy", None


class Poller(threading.Thread):
    """One sandbox's share of a mapping: receive one record, invoke, delete it unless it failed."""

    def __init__(self, run, sandbox, url, arn):
        super().__init__(daemon=True)
        self.run_, self.sandbox, self.url, self.arn = run, sandbox, url, arn

    def run(self):
        try:
            self.poll()
        except Exception as err:  # noqa: BLE001 (reported with the copy's results, not lost)
            self.run_.note(f"{self.sandbox.name}: poller stopped: {err!r}")

    def poll(self):
        run, sandbox, sqs = self.run_, self.sandbox, self.run_.aws.sqs
        while not run.stopping.is_set():
            try:
                got = sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=1, WaitTimeSeconds=1,
                                          AttributeNames=["All"]).get("Messages", [])
            except ClientError as err:
                run.note(f"receive failed: {err}")
                time.sleep(0.5)
                continue
            if not got:
                continue
            message = got[0]
            kind, length = record_kind(message["Body"])
            pid = sandbox.sample()
            received = received_from(pid, run.link_port) if pid else None
            with run.lock:
                run.invocations[kind] = run.invocations.get(kind, 0) + 1
                run.busy += 1
                sandbox.current = (kind, length, received, time.monotonic())
            response = sandbox.invoke(sqs_event(message, self.arn), timeout=run.timeout + 30)
            with run.lock:
                sandbox.current = None
                run.busy -= 1
                killed = sandbox in run.killed_sandboxes
            if response is None:
                with run.lock:
                    run.failed_invocations += 1
                if killed:
                    # The emulator lost its function: a fresh sandbox takes its place.
                    sandbox.restart()
                    with run.lock:
                        run.killed_sandboxes.discard(sandbox)
                continue
            failed = {item.get("itemIdentifier") for item in response.get("batchItemFailures", [])}
            if message["MessageId"] in failed:
                with run.lock:
                    run.reported_failures += 1
                continue
            try:
                sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])
            except ClientError as err:
                run.note(f"delete failed: {err}")


# ----------------------------------------------------------------------------------------- one copy

class Copy:
    """One copy of the object by our function, watched to the end."""

    def __init__(self, args, aws, nginx, source, expected, workers, faults):
        self.args, self.aws, self.nginx, self.source = args, aws, nginx, source
        self.expected = expected  # (size, sha256) of what must land
        self.workers, self.faults = workers, faults
        self.timeout = args.timeout
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.invocations, self.busy, self.failed_invocations, self.reported_failures = {}, 0, 0, 0
        self.killed_sandboxes, self.kills, self.notes = set(), [], []

    def note(self, text):
        with self.lock:
            self.notes.append(text)

    def function_env(self, link):
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.pop("SSL_CERT_FILE", None)
        env.update(
            AWS_LAMBDA_FUNCTION_NAME="backfill", AWS_LAMBDA_FUNCTION_MEMORY_SIZE="1024",
            AWS_LAMBDA_FUNCTION_TIMEOUT=str(self.timeout),
            AWS_ENDPOINT_URL_S3=self.aws.strict, AWS_ENDPOINT_URL_SQS=self.aws.moto,
            AWS_ENDPOINT_URL_DYNAMODB=self.aws.moto,
            AWS_ACCESS_KEY_ID=bench.ACCESS_KEY, AWS_SECRET_ACCESS_KEY=bench.SECRET_KEY, AWS_REGION="us-east-1",
            BUCKET=self.aws.bucket, ALLOWED_ORIGINS=f"http://127.0.0.1:{link.port}",
            LEASE_TABLE=LEASE_TABLE, PART_QUEUE_URL=self.aws.part_url, PART_WORKERS=str(self.workers),
            RECORD_CONCURRENCY="1", RETRY_BASE="2s", RETRY_CAP="10s",
            AWS_LAMBDA_LOG_LEVEL="INFO",
        )
        if self.args.part_seconds:
            # The function reads whole units only ("2.0s" fails its init).
            env["PART_SECONDS"] = f"{round(self.args.part_seconds * 1000)}ms"
        return env

    def run(self, key, uri):
        extra = []
        if "reset-mid-range" in self.faults:
            extra = ["--reset-connections", self.args.reset_connections, "--reset-after", str(self.args.reset_after)]
        link = Link(self.nginx.port, extra)
        self.link_port = link.port
        self.aws.forget(key)
        env = self.function_env(link)
        sandboxes = [Sandbox(f"{key.replace('/', '_')}-{i}", self.args.binary, env) for i in range(self.workers + 1)]
        pollers = [Poller(self, sandboxes[0], self.aws.copy_url, self.aws.copy_arn)]
        pollers += [Poller(self, s, self.aws.part_url, self.aws.part_arn) for s in sandboxes[1:]]
        message = {
            "version": 1, "bucket": self.aws.bucket, "key": key,
            "origin": {"protocol": "http", "host": "127.0.0.1", "port": link.port, "path": ""},
            "uri": uri, "request_id": "bench-ranged",
            "enqueued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "trigger": "operator",
        }
        uploads_before = set(self.aws.uploads())
        heads = {"404": 0, "whole": 0, "partial": []}
        changed_at = None
        started = time.perf_counter()
        self.aws.sqs.send_message(QueueUrl=self.aws.copy_url, MessageBody=json.dumps(message))
        for poller in pollers:
            poller.start()
        deadline = started + self.args.max_seconds
        finished = None
        last_sample = 0.0
        try:
            while time.perf_counter() < deadline:
                now = time.perf_counter()
                if now - last_sample >= 0.25:
                    last_sample = now
                    for sandbox in sandboxes:
                        self.watch(sandbox)
                if "origin-change" in self.faults and changed_at is None:
                    if link.stats()["bytes_down"] >= self.args.change_at * self.expected_old_size:
                        os.replace(self.source.with_suffix(".next"), self.source)
                        self.source.with_suffix(".sha256").unlink(missing_ok=True)
                        changed_at = round(time.perf_counter() - started, 3)
                        say(f"    origin changed at {changed_at} s")
                head = self.aws.head(key)
                if head is None:
                    heads["404"] += 1
                elif head["ContentLength"] != self.expected[0]:
                    heads["partial"].append(head["ContentLength"])
                else:
                    heads["whole"] += 1
                    with self.lock:
                        idle = self.busy == 0
                    if idle and self.aws.queue_depth(self.aws.part_url) == 0:
                        finished = time.perf_counter()
                        break
                time.sleep(0.2)
        finally:
            self.stopping.set()
            for poller in pollers:
                poller.join(timeout=self.timeout + 40)
            for sandbox in sandboxes:
                sandbox.sample()
                sandbox.stop()
            stats = link.down()
        seconds = (finished or time.perf_counter()) - started
        stored = bench.S3_DATA / key
        sha = sha256_of(stored) if finished and stored.exists() else None
        uploads = set(self.aws.uploads()) - uploads_before
        size = self.expected[0]
        result = {
            "workers": self.workers, "faults": sorted(self.faults), "finished": finished is not None,
            "seconds": round(seconds, 3), "mb_per_s": round(size / seconds / 1e6, 1) if finished else None,
            "link": stats, "link_options": link.options,
            "bytes_down_over_size": round(stats["bytes_down"] / size, 4),
            "connections": stats["connections"],
            "invocations": dict(self.invocations, total=sum(self.invocations.values())),
            "failed_invocations": self.failed_invocations, "reported_failures": self.reported_failures,
            "peak_rss_mib": [round(s.peak_rss_kib / 1024, 1) for s in sandboxes],
            "invocations_per_sandbox": [s.invocations for s in sandboxes],
            "byte_identical": sha == self.expected[1],
            "heads": {"not_found": heads["404"], "whole": heads["whole"], "partial_lengths": heads["partial"][:10]},
            "nothing_partial_visible": not heads["partial"],
            "uploads_left": len(uploads),
            "kills": self.kills,
            "outcomes": outcomes(sandboxes),
        }
        # The sink's share: s3s-fs re-reads every part at CompleteMultipartUpload, where S3 answers
        # in seconds. What the copy took without it is the link's and the workers' share.
        part_rates = [r["bytes"] / r["duration_ms"] / 1000 for r in function_lines(sandboxes)
                      if r.get("message") == "part uploaded" and r.get("duration_ms")]
        if part_rates:
            result["part_mb_per_s"] = round(statistics.median(part_rates), 1)
        completion = completion_seconds(sandboxes)
        if completion is not None and finished:
            result["completion_s"] = round(completion, 3)
            result["mb_per_s_before_completion"] = round(size / max(seconds - completion, 1e-3) / 1e6, 1)
        if changed_at is not None:
            result["origin_changed_at_s"] = changed_at
        if self.notes:
            result["notes"] = self.notes[:20]
        self.aws.forget(key)
        return result

    def watch(self, sandbox):
        """Samples the sandbox's memory; with --kill-mid-part, kills the first function process found
        receiving a part (what it received from the origin's link since the invocation began grown
        past a third of the part's range)."""
        pid = sandbox.sample()
        if "kill-mid-part" not in self.faults or self.kills or pid is None:
            return
        with self.lock:
            current = sandbox.current
        if not current or current[0] != "part":
            return
        kind, length, received_at_start, began = current
        # A process the emulator started for this invocation had received nothing before it.
        received_at_start = received_at_start or 0
        received = received_from(pid, self.link_port)
        threshold = min(length // 3, 16 * MIB) if length else 4 * MIB
        if received is not None and received - received_at_start >= threshold:
            with self.lock:
                self.killed_sandboxes.add(sandbox)
            os.kill(pid, signal.SIGKILL)
            self.kills.append({"sandbox": sandbox.name, "after_s_of_invocation": round(time.monotonic() - began, 2),
                               "bytes_received": received - received_at_start, "part_bytes": length})
            say(f"    killed {sandbox.name}'s function after it received {(received - received_at_start) / MIB:.1f} MiB "
                f"of a {length / MIB:.0f} MiB part")


def function_lines(sandboxes):
    """The function's JSON log lines, of every sandbox."""
    for sandbox in sandboxes:
        try:
            lines = Path(sandbox.log.name).read_text(errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                yield record


def completion_seconds(sandboxes):
    """How long the completing part's ListParts and CompleteMultipartUpload took (the function's
    `upload completion answered` line), or None."""
    times = [r["completion_ms"] / 1000 for r in function_lines(sandboxes)
             if r.get("message") == "upload completion answered" and isinstance(r.get("completion_ms"), int)]
    return max(times) if times else None


def outcomes(sandboxes):
    """What the function logged of each record, counted: its outcome (`outcome` of its JSON
    lines), or for a failure the batch runner's `reason`, as `retried: REASON` or
    `permanent: REASON`."""
    counts = {}
    for record in function_lines(sandboxes):
        name = record.get("outcome")
        if not isinstance(name, str) and isinstance(record.get("reason"), str):
            kind = "permanent" if record.get("level") == "ERROR" else "retried"
            name = f"{kind}: {record['reason']}"
        if isinstance(name, str):
            counts[name] = counts.get(name, 0) + 1
    return counts


# ---------------------------------------------------------------------------------------- the peer

def rclone_copy(args, aws, nginx, path, size, sha, workers):
    """rclone from the same origin URL over the same link into the same S3: its http remote as the
    source, so that with N > 1 it copies the object as N streams of ranged GETs, each chunk an
    UploadPart of a multipart upload (rclone 1.64 and later; RCLONE names the binary)."""
    link = Link(nginx.port)
    key = f"ranged-rclone/{path}"
    aws.forget(key)
    argv = [os.environ.get("RCLONE", "rclone"), "copyto", "--http-url", link.endpoint, f":http:{path}",
            f"strict:{aws.bucket}/{key}", "--multi-thread-streams", str(workers), "--multi-thread-cutoff", "0",
            # Its default 5 MiB chunks would each pay a request's round trip on this link.
            "--s3-chunk-size", "64Mi"]
    try:
        seconds, rss = bench.run_command(argv, bench.peer_env())
    finally:
        stats = link.down()
    stored = bench.S3_DATA / key
    result = {
        "workers": workers, "seconds": round(seconds, 3), "mb_per_s": round(size / seconds / 1e6, 1),
        "link": stats, "bytes_down_over_size": round(stats["bytes_down"] / size, 4),
        "connections": stats["connections"], "peak_rss_mib": round(rss / 1024, 1),
        "byte_identical": stored.exists() and sha256_of(stored) == sha,
        "argv": " ".join(["rclone", "copyto", "--http-url", "LINK", ":http:PATH", "strict:BUCKET/KEY"] + argv[6:]),
        "version": RCLONE_VERSION,
    }
    aws.forget(key)
    return result


def rclone_version():
    try:
        out = subprocess.run([os.environ.get("RCLONE", "rclone"), "version"], capture_output=True, text=True).stdout
    except OSError:
        return None
    return out.split()[1] if out.startswith("rclone ") else None


RCLONE_VERSION = rclone_version()


# ----------------------------------------------------------------------------------------- the runs

# What check() allows: origin bytes at most 1.01 x the object, plus --overread-allowance.
LIMITS = {"size": 1, "overread_allowance": 0}


def check(result, faults, failures, label):
    problems = []
    if not result["finished"]:
        problems.append("did not finish")
    if not result["byte_identical"]:
        problems.append("not byte-identical")
    if not result["nothing_partial_visible"]:
        problems.append(f"something partial was visible: {result['heads']['partial_lengths']}")
    if result["uploads_left"]:
        problems.append(f"{result['uploads_left']} multipart uploads left")
    bound = 1.01 + LIMITS["overread_allowance"] / LIMITS["size"]
    if not faults and result["bytes_down_over_size"] > bound:
        problems.append(f"origin bytes / object bytes {result['bytes_down_over_size']} > {bound:.4f}")
    problems += [n for n in result.get("notes", []) if "poller stopped" in n]
    if "kill-mid-part" in faults and not result["kills"]:
        problems.append("no function was killed mid-part")
    if "reset-mid-range" in faults and result["link"]["resets"] < 1:
        problems.append("the link reset nothing")
    for problem in problems:
        failures.append(f"{label}: {problem}")
    say(f"  {label}: {result['seconds']} s, {result['mb_per_s']} MB/s, bytes {result['bytes_down_over_size']}, "
        f"{result['connections']} connections, invocations {result['invocations']}, peak RSS {result['peak_rss_mib']} MiB"
        + (f"; FAILED: {'; '.join(problems)}" if problems else "; ok"))


def parse_size(text):
    units = {"KiB": 1024, "MiB": MIB, "GiB": GIB}
    for unit, factor in units.items():
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(text)


def median_row(runs, size):
    seconds = [r["seconds"] for r in runs]
    median = statistics.median(seconds)
    return {"median_seconds": round(median, 3), "mb_per_s": round(size / median / 1e6, 1),
            "seconds": seconds, "runs": runs}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_size, default=4 * GIB, help="object size (4GiB, 160MiB)")
    parser.add_argument("--workers", default="1,4,8,16", help="part workers N, comma-separated")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds, ours then rclone")
    parser.add_argument("--timeout", type=int, default=30, help="the function timeout, seconds (scaled down)")
    parser.add_argument("--part-seconds", type=float, default=None, help="PART_SECONDS for the function")
    parser.add_argument("--max-seconds", type=float, default=None, help="give a copy up this long")
    parser.add_argument("--no-peer", action="store_true", help="leave rclone out")
    parser.add_argument("--kill-mid-part", action="store_true")
    parser.add_argument("--reset-mid-range", action="store_true")
    parser.add_argument("--reset-connections", default="3", help="which link connections --reset-mid-range resets")
    parser.add_argument("--reset-after", type=parse_size, default=4 * MIB, help="bytes down before that reset")
    parser.add_argument("--origin-change", action="store_true")
    parser.add_argument("--fault-run", action="store_true",
                        help="after the rounds, one copy at the largest N with --kill-mid-part and --reset-mid-range")
    parser.add_argument("--change-at", type=float, default=0.3,
                        help="--origin-change replaces the file once this share of it went down the link")
    parser.add_argument("--overread-allowance", type=parse_size, default=0,
                        help="origin bytes allowed past 1.01 x the object: what the holder's open answer "
                             "delivers past part 1 while a slow reader (the debug build) lags behind the link")
    parser.add_argument("--binary", default=os.environ.get("BACKFILL_BINARY"))
    parser.add_argument("--quick", action="store_true", help="recorded in the results: a harness check")
    parser.add_argument("--out", type=Path, default=None, help="results file (JSON)")
    args = parser.parse_args()
    LIMITS.update(size=args.size, overread_allowance=args.overread_allowance)
    if not args.binary:
        release = ROOT / "target" / "release" / "backfill"
        args.binary = str(release if release.exists() else ROOT / "target" / "debug" / "backfill")
    workers = [int(n) for n in args.workers.split(",")]
    faults = {f for f, on in (("kill-mid-part", args.kill_mid_part), ("reset-mid-range", args.reset_mid_range),
                              ("origin-change", args.origin_change)) if on}
    if args.max_seconds is None:
        # Far above the time one connection alone needs, plus room for redeliveries.
        args.max_seconds = args.size / RATE * 3 + 12 * args.timeout + 60
    LOGS.mkdir(parents=True, exist_ok=True)
    for old in LOGS.glob("*.log"):
        old.unlink()
    aws = Aws(read_env_file(ROOT / ".local" / "env"), read_env_file(ROOT / ".local" / "strict-s3.env"))
    aws.setup(visibility=3 * args.timeout)
    nginx = bench.Nginx(WWW)
    failures = []
    results = {"quick": args.quick, "object_bytes": args.size, "timeout_s": args.timeout,
               "part_seconds": args.part_seconds, "link": {"delay": DELAY, "rate_per_connection": "20MB/s", "total_rate": None},
               "binary": os.path.relpath(args.binary, ROOT), "rounds": args.rounds, "faults": sorted(faults),
               "rclone": None if args.no_peer else RCLONE_VERSION}
    try:
        if faults:
            results["fault_runs"] = fault_runs(args, aws, nginx, workers, faults, failures)
        else:
            results["workers"] = bench_runs(args, aws, nginx, workers, failures)
            if args.fault_run:
                say(f"fault run: N = {max(workers)}, a SIGKILL mid-part and a reset mid-range")
                results["fault_runs"] = fault_runs(args, aws, nginx, [max(workers)],
                                                   {"kill-mid-part", "reset-mid-range"}, failures)
    finally:
        nginx.stop()
    results["machine"] = bench.machine()
    results["failures"] = failures
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        say(f"wrote {args.out}")
    if failures:
        say("ranged: FAILED\n  " + "\n  ".join(failures))
        return 1
    say("ranged: every check passed")
    return 0


def bench_runs(args, aws, nginx, workers, failures):
    name = f"ranged-{args.size}.bin"
    path = f"ranged/{name}"
    sha = make_source(WWW / path, args.size)
    rows = []
    runs = {n: {"ours": [], "rclone": []} for n in workers}
    for round_ in range(args.rounds):
        for n in workers:
            copy = Copy(args, aws, nginx, WWW / path, (args.size, sha), n, set())
            copy.expected_old_size = args.size
            result = copy.run(f"ranged/{name}", f"/{path}")
            check(result, set(), failures, f"round {round_ + 1}, N = {n}, ours")
            runs[n]["ours"].append(result)
            if not args.no_peer:
                peer = rclone_copy(args, aws, nginx, path, args.size, sha, n)
                if not peer["byte_identical"]:
                    failures.append(f"round {round_ + 1}, N = {n}, rclone: not byte-identical")
                say(f"  round {round_ + 1}, N = {n}, rclone: {peer['seconds']} s, {peer['mb_per_s']} MB/s, "
                    f"bytes {peer['bytes_down_over_size']}, {peer['connections']} connections, {peer['peak_rss_mib']} MiB")
                runs[n]["rclone"].append(peer)
    for n in workers:
        ours = median_row(runs[n]["ours"], args.size)
        ours["peak_rss_mib"] = max(max(r["peak_rss_mib"]) for r in runs[n]["ours"])
        ours["bytes_down_over_size"] = max(r["bytes_down_over_size"] for r in runs[n]["ours"])
        row = {"workers": n, "ideal_mb_per_s": round(n * RATE / 1e6, 1), "ours": ours}
        if runs[n]["rclone"]:
            peer = median_row(runs[n]["rclone"], args.size)
            peer["peak_rss_mib"] = max(r["peak_rss_mib"] for r in runs[n]["rclone"])
            row["rclone"] = peer
            row["rclone_over_ours"] = round(peer["median_seconds"] / ours["median_seconds"], 2)
        rows.append(row)
    return rows


def fault_runs(args, aws, nginx, workers, faults, failures):
    out = []
    for n in workers:
        # The benchmark's own object, unless this run replaces it.
        name = f"ranged-{'faults-' if 'origin-change' in faults else ''}{args.size}.bin"
        path = f"ranged/{name}"
        source = WWW / path
        size = args.size
        expected = (size, make_source(source, size))
        if "origin-change" in faults:
            # The version that replaces it mid-copy, of another length: the old version's plan
            # cannot pass for the new one.
            new_size = size - 3 * MIB - 7
            expected = (new_size, write_random(source.with_suffix(".next"), new_size))
        copy = Copy(args, aws, nginx, source, expected, n, faults)
        copy.expected_old_size = size
        result = copy.run(f"ranged/{name}", f"/{path}")
        check(result, faults, failures, f"N = {n}, faults {', '.join(sorted(faults))}")
        out.append(result)
    return out


if __name__ == "__main__":
    sys.exit(main())
