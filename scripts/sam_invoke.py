#!/usr/bin/env python3
"""Invokes every function `sam build` produced (.aws-sam/build) the way Lambda runs it, against the
local AWS stack, and checks the answers; measures the Rust functions' init duration.

- Emulator mode (default): AWS's Lambda Runtime Interface Emulator, shipped inside the aws-sam-cli
  package, runs each artifact on this host: the Rust functions' `bootstrap`, and the edge hook's
  index.js + addon through Node 22 and AWS's Node.js runtime interface client
  (scripts/edge-node, installed by scripts/edge-setup).
- Docker mode (--docker, where a Docker engine runs): `sam local invoke` with a copy of the built
  template that adds the local stack's endpoint to each function's environment (SAM only passes
  variables the template declares). Init is measured with the emulator in both modes.

Each function's environment is the built template's (parameter defaults), with what points at real
AWS replaced by the local stand-ins (bucket, tables, part queue, topic, allowed origins), and Lambda's own
variables (log format and level from LoggingConfig, memory, timeout). One parameter differs from
its default: the upload API runs with UploadAuthMode=token and a sample caller's token hash, since
IAM auth happens in the function URL, before the function, and the sample events carry tokens (the
one signed with SigV4 is refused here; tests/uploads invokes it with AUTH_MODE=iam).

Checks:
  - every sample event under events/ for its function, with the answer and side effects expected;
  - a pipeline through the three built artifacts: a CloudFront origin-request event aimed at a
    local "domestic origin" -> the hook's SQS message -> the backfill function copies the object
    -> S3's notification -> the image function writes the thumbnails (and a second delivery adds
    nothing);
  - an upload through the built upload functions: the upload API signs a PUT, the image goes to
    S3 through the signed URL, its S3 event (as the upload-event topic delivers it to both queues)
    makes the metadata writer record the version and the image function write the thumbnails, and
    the API serves the version;
  - init duration (the emulator's INIT REPORT: process start to the runtime's first request for
    work) of fresh sandboxes of the Rust functions, under the limit; the figures go to the results
    file.

  sam_invoke.py [--build-dir .aws-sam/build] [--results bench/sam/results.json] [--docker]

Needs the local stack's environment exported (scripts/local-stack up; .local/env). Prints one line
per check and, last, "sam-invoke: N passed, M failed"; exits non-zero on a failure.
"""
import argparse
import base64
import copy
import hashlib
import http.server
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import string
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
import urllib.request
import uuid
import zlib
from functools import partial
from pathlib import Path

import boto3

sys.path.insert(0, str(Path(__file__).resolve().parent))
import policy_check  # noqa: E402  (the template evaluator)

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"
EDGE_NODE = ROOT / "scripts/edge-node"
INIT_LIMIT_MS = 50.0
INIT_SAMPLES = 7
# The sample backfill events name these origins (and the metadata address, which must be refused
# even when allowed).
ORIGIN_PORT = 18080
ALLOWED_ORIGINS = f"http://127.0.0.1:{ORIGIN_PORT},http://127.0.0.1:18081,http://169.254.169.254"
# What points the functions at the local stack instead of AWS (the rest of the caller's
# environment is not theirs: Lambda starts a function with its own variables only).
LOCAL_AWS_VARIABLES = {
    "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_EC2_METADATA_DISABLED",
}
# The sample edge events name the queue by its AWS URL; the local stack answers for it.
EDGE_QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/backfill"
# The sample upload events authenticate as this caller with this bearer token.
UPLOAD_CALLER = "alice"
UPLOAD_TOKEN = "sample-token-alice"
# Parameters the built template is evaluated with, other than the defaults.
PARAMETER_OVERRIDES = {
    # The generated origin secret: the backfill function gets its ARN (here the run's own secret in
    # the local Secrets Manager) and reads the value at cold start, as deployed.
    "OriginSecret": "create",
    "UploadAuthMode": "token",
    "UploadAuthTokens": f"{UPLOAD_CALLER}:{hashlib.sha256(UPLOAD_TOKEN.encode()).hexdigest()}",
}


def rie_binary():
    found = sorted(ROOT.glob(".venv/lib/python3*/site-packages/samcli/local/rapid/aws-lambda-rie-x86_64"))
    if not found:
        raise SystemExit("the Runtime Interface Emulator is missing from .venv: run scripts/tools.sh")
    found[0].chmod(0o755)
    return found[0]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url, body, timeout=120):
    request = urllib.request.Request(url, data=body, method="POST")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read()


# ---------------------------------------------------------------- functions of the built templates


class Function:
    """A built function: its artifact, what runs it, and its environment."""

    def __init__(self, logical_id, template_path, props, artifact, local_env):
        self.logical_id = logical_id
        self.template_path = template_path
        self.artifact = artifact
        self.runtime = props["Runtime"]
        self.handler = props.get("Handler")
        self.timeout = int(props.get("Timeout", 3))
        self.memory = int(props.get("MemorySize", 128))
        env = dict((props.get("Environment") or {}).get("Variables") or {})
        logging = props.get("LoggingConfig") or {}
        if logging.get("LogFormat"):
            env["AWS_LAMBDA_LOG_FORMAT"] = logging["LogFormat"]
        if logging.get("ApplicationLogLevel"):
            env["AWS_LAMBDA_LOG_LEVEL"] = logging["ApplicationLogLevel"]
        for name, value in local_env.items():
            if name in env or name.startswith("AWS_"):
                env[name] = value
        unresolved = {k: v for k, v in env.items() if "<<" in str(v)}
        if unresolved:
            raise SystemExit(f"{logical_id}: no local value for {unresolved}")
        self.template_env = {k: v for k, v in env.items() if not k.startswith("AWS_")}
        self.env = {k: str(v) for k, v in env.items()}

    @property
    def is_node(self):
        return self.runtime.startswith("nodejs")


def built_functions(build_dir, local_env):
    """Every function of the built template and its nested stacks, evaluated with the defaults
    (and PARAMETER_OVERRIDES where a template has those parameters)."""
    found = {}

    def walk(template_path, prefix):
        template = policy_check.load_template(template_path)
        scenario = next(policy_check.scenarios(template, template_path.name))
        scenario.values.update({k: v for k, v in PARAMETER_OVERRIDES.items() if k in template.get("Parameters", {})})
        for name, res in scenario.evaluated_resources().items():
            props = res["Properties"]
            if res["Type"] == "AWS::Serverless::Function":
                artifact = template_path.parent / props["CodeUri"]
                found[prefix + name] = Function(prefix + name, template_path, props, artifact, local_env)
            elif res["Type"] == "AWS::Serverless::Application":
                walk(template_path.parent / props["Location"], prefix + name + "/")

    walk(build_dir / "template.yaml", "")
    return found


# ---------------------------------------------------------------- sandboxes


class EmulatorSandbox:
    """One Lambda sandbox: the emulator starts the runtime on the first invocation."""

    def __init__(self, function, workdir):
        self.function = function
        self.port = free_port()
        self.log_path = Path(workdir) / f"{function.logical_id.replace('/', '-')}-{uuid.uuid4().hex[:8]}.log"
        env = dict(function.env, PATH=os.environ.get("PATH", "/usr/bin:/bin"), LANG="C.UTF-8", TZ=":UTC")
        env.update(
            AWS_LAMBDA_FUNCTION_NAME=function.logical_id.split("/")[-1],
            AWS_LAMBDA_FUNCTION_MEMORY_SIZE=str(function.memory),
            AWS_LAMBDA_FUNCTION_TIMEOUT=str(function.timeout),
            LAMBDA_TASK_ROOT=str(function.artifact),
        )
        command = [
            str(rie_binary()),
            "--log-level", "info",
            "--runtime-interface-emulator-address", f"127.0.0.1:{self.port}",
            "--runtime-api-address", f"127.0.0.1:{free_port()}",
        ]
        if function.is_node:
            command += [str(EDGE_NODE / "bootstrap"), function.handler]
        else:
            command += [str(function.artifact / "bootstrap")]
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            command, cwd=function.artifact, env=env, stdout=self.log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        self.url = f"http://127.0.0.1:{self.port}/2015-03-31/functions/function/invocations"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the emulator exited: {self.logs()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("the emulator did not listen within 10 s")

    def invoke(self, event):
        """The function's answer (parsed) and the wall time of the invocation in ms."""
        started = time.monotonic()
        raw = post(self.url, json.dumps(event).encode(), timeout=self.function.timeout + 30)
        return json.loads(raw), (time.monotonic() - started) * 1000

    def logs(self):
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def init_ms(self):
        m = re.search(r"INIT REPORT\(durationMs: ([0-9.]+)\)", self.logs())
        return float(m.group(1)) if m else None

    def stop(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


class DockerSandbox:
    """`sam local invoke` of the built function: each invocation is a fresh container."""

    def __init__(self, function, workdir):
        self.function = function
        self.workdir = Path(workdir)
        self.template = local_template(function.template_path, self.workdir)
        self.name = function.logical_id.split("/")[-1]
        self._logs = []

    def invoke(self, event):
        event_file = self.workdir / f"event-{uuid.uuid4().hex[:8]}.json"
        event_file.write_text(json.dumps(event))
        started = time.monotonic()
        run = subprocess.run(
            [str(ROOT / ".venv/bin/sam"), "local", "invoke", "-t", str(self.template), self.name,
             "-e", str(event_file), "--docker-network", "host"],
            capture_output=True, text=True, timeout=self.function.timeout + 300,
        )
        elapsed = (time.monotonic() - started) * 1000
        self._logs.append(run.stderr)
        if run.returncode != 0:
            raise RuntimeError(f"sam local invoke failed ({run.returncode}): {run.stderr[-2000:]}")
        answer = run.stdout.strip().splitlines()[-1]
        return json.loads(answer), elapsed

    def logs(self):
        return "\n".join(self._logs)

    def stop(self):
        pass


_local_templates = {}


def local_template(template_path, workdir):
    """A copy of a built template, beside it (its CodeUris are relative), whose functions declare
    the local stack's variables: `sam local invoke` only sets variables the template declares."""
    if template_path in _local_templates:
        return _local_templates[template_path]
    template = policy_check.load_template(template_path)
    for name, res in template.get("Resources", {}).items():
        if res.get("Type") != "AWS::Serverless::Function":
            continue
        function = FUNCTIONS[next(k for k in FUNCTIONS if k.split("/")[-1] == name)]
        res["Properties"]["Environment"] = {"Variables": dict(function.env)}
    for name, res in template.get("Resources", {}).items():
        if res.get("Type") == "AWS::Serverless::Application":
            res["Properties"]["Location"] = str(local_template(template_path.parent / res["Properties"]["Location"], workdir))
    out = template_path.parent / f"template-local-{uuid.uuid4().hex[:8]}.json"
    out.write_text(json.dumps(template, indent=1))
    _cleanup_files.append(out)
    _local_templates[template_path] = out
    return out


_cleanup_files = []
FUNCTIONS = {}


# ---------------------------------------------------------------- the local stack


class LocalStack:
    def __init__(self):
        for name in ("AWS_ENDPOINT_URL", "BUCKET", "TASK_TABLE", "BACKFILL_QUEUE_URL", "IMAGE_QUEUE_URL",
                     "LEASE_TABLE", "PART_QUEUE_URL", "FRESHNESS_TABLE", "INVALIDATION_QUEUE_URL",
                     "DISTRIBUTION_ID"):
            if not os.environ.get(name):
                raise SystemExit(f"{name} is not set: start scripts/local-stack and export .local/env")
        endpoint = os.environ["AWS_ENDPOINT_URL"]
        self.bucket = os.environ["BUCKET"]
        self.table = os.environ["TASK_TABLE"]
        # The backfill function's copy leases and part tasks (CopyLeaseTable, PartQueue).
        self.lease_table = os.environ["LEASE_TABLE"]
        self.part_queue = os.environ["PART_QUEUE_URL"]
        # Fresh copies: the freshness table, the invalidation queue, moto's distribution.
        self.freshness_table = os.environ["FRESHNESS_TABLE"]
        self.invalidation_queue = os.environ["INVALIDATION_QUEUE_URL"]
        self.distribution_id = os.environ["DISTRIBUTION_ID"]
        self.backfill_queue = os.environ["BACKFILL_QUEUE_URL"]
        self.image_queue = os.environ["IMAGE_QUEUE_URL"]
        self.s3 = boto3.client("s3", endpoint_url=endpoint)
        self.sqs = boto3.client("sqs", endpoint_url=endpoint)
        self.dynamodb = boto3.client("dynamodb", endpoint_url=endpoint)
        self.sns = boto3.client("sns", endpoint_url=endpoint)
        self.cloudfront = boto3.client("cloudfront", endpoint_url=endpoint)
        self.secrets = boto3.client("secretsmanager", endpoint_url=endpoint)
        self.upload_tables = []
        self.changes_topic = None
        self.origin_secret = None

    def create_upload_resources(self, suffix):
        """The upload functions' tables and change topic, of this run's own (as in template.yaml);
        their environment variables."""
        uploads, files = f"uploads-sam-{suffix}", f"files-sam-{suffix}"
        self.dynamodb.create_table(
            TableName=uploads, BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        )
        self.upload_tables.append(uploads)
        self.dynamodb.create_table(
            TableName=files, BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("key", "version", "owner", "change")],
            KeySchema=[{"AttributeName": "key", "KeyType": "HASH"}, {"AttributeName": "version", "KeyType": "RANGE"}],
            GlobalSecondaryIndexes=[{
                "IndexName": "feed", "Projection": {"ProjectionType": "ALL"},
                "KeySchema": [{"AttributeName": "owner", "KeyType": "HASH"}, {"AttributeName": "change", "KeyType": "RANGE"}],
            }],
        )
        self.upload_tables.append(files)
        self.changes_topic = self.sns.create_topic(Name=f"changes-sam-{suffix}")["TopicArn"]
        return {"UPLOADS_TABLE": uploads, "FILES_TABLE": files, "CHANGES_TOPIC_ARN": self.changes_topic}

    def delete_upload_resources(self):
        for table in self.upload_tables:
            self.dynamodb.delete_table(TableName=table)
        if self.changes_topic:
            self.sns.delete_topic(TopicArn=self.changes_topic)

    def create_origin_secret(self, suffix):
        """The origin secret of this run, as the template creates it (32 letters and digits); the
        backfill function's variables that name it, where the template declares them."""
        value = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(32))
        created = self.secrets.create_secret(Name=f"origin-secret-sam-{suffix}", SecretString=value)
        self.origin_secret = created["ARN"]
        return value, {"ORIGIN_SECRET_ARN": created["ARN"], "ORIGIN_SECRET_VERSION": created["VersionId"]}

    def delete_origin_secret(self):
        if self.origin_secret:
            self.secrets.delete_secret(SecretId=self.origin_secret, ForceDeleteWithoutRecovery=True)

    def file_versions(self, key):
        """The metadata writer's records of a key."""
        return self.dynamodb.query(
            TableName=self.upload_tables[1], KeyConditionExpression="#k = :k",
            ExpressionAttributeNames={"#k": "key"}, ExpressionAttributeValues={":k": {"S": key}},
        )["Items"]

    def queue_arn(self, url):
        return self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    def receive_all(self, url, wait_seconds=0):
        """Every message now visible, deleted from the queue."""
        messages = []
        while True:
            batch = self.sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_seconds,
                MessageSystemAttributeNames=["All"],
            ).get("Messages", [])
            if not batch:
                return messages
            for message in batch:
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            messages.extend(batch)
            wait_seconds = 0

    def take_notifications(self, keys, timeout=15.0):
        """The image queue's notifications about these keys (taken and deleted; others are made
        visible again), waiting for one per key."""
        wanted, found, deadline = set(keys), [], time.monotonic() + timeout
        while wanted and time.monotonic() < deadline:
            batch = self.sqs.receive_message(
                QueueUrl=self.image_queue, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                VisibilityTimeout=30, MessageSystemAttributeNames=["All"],
            ).get("Messages", [])
            for message in batch:
                key = notification_key(message["Body"])
                if key in wanted:
                    wanted.discard(key)
                    found.append(message)
                    self.sqs.delete_message(QueueUrl=self.image_queue, ReceiptHandle=message["ReceiptHandle"])
                else:
                    self.sqs.change_message_visibility(
                        QueueUrl=self.image_queue, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                    )
        return found

    def forget_tasks(self, keys):
        """Deletes the task records of these object keys."""
        for key in keys:
            items = self.dynamodb.scan(
                TableName=self.table, FilterExpression="object_key = :k",
                ExpressionAttributeValues={":k": {"S": key}}, ProjectionExpression="id",
            )["Items"]
            for item in items:
                self.dynamodb.delete_item(TableName=self.table, Key={"id": item["id"]})

    def lease(self, key):
        """The copy lease item of a key of the bucket, or None."""
        answer = self.dynamodb.get_item(
            TableName=self.lease_table, Key={"pk": {"S": f"{self.bucket}/{key}"}}, ConsistentRead=True
        )
        return answer.get("Item")

    def invalidation_count(self):
        listed = self.cloudfront.list_invalidations(DistributionId=self.distribution_id)["InvalidationList"]
        return listed.get("Quantity", 0)

    def object_bytes(self, key):
        return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def listing(self, prefix):
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return {o["Key"]: (o["ETag"], o["LastModified"]) for page in pages for o in page.get("Contents", [])}

    def delete(self, keys):
        for key in keys:
            self.s3.delete_object(Bucket=self.bucket, Key=key)


def notification_key(body):
    """The decoded key of an S3 notification body (form-encoded, as S3 and moto send it)."""
    try:
        record = json.loads(body)["Records"][0]
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    return urllib.parse.unquote_plus(record["s3"]["object"]["key"])


def sqs_event(messages, queue_arn):
    """The event Lambda's SQS event source mapping delivers for these received messages."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": queue_arn.split(":")[3],
            }
            for m in messages
        ]
    }


# ---------------------------------------------------------------- a domestic origin and an image


class DomesticOrigin:
    """A plain HTTP origin on 127.0.0.1 serving a directory (the sample events name its port).
    Given a secret header (name, value), it answers 403 to requests without it, as the ALB's rule."""

    def __init__(self, directory, port, secret_header=None):
        handler = partial(_QuietHandler, directory=str(directory), secret_header=secret_header)
        try:
            self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
        except OSError as err:
            raise SystemExit(f"port {port}, which the sample backfill events name, is taken: {err}")
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *args, secret_header=None, **kwargs):
        self.secret_header = secret_header
        super().__init__(*args, **kwargs)

    def send_head(self):
        if self.secret_header and self.headers.get(self.secret_header[0]) != self.secret_header[1]:
            self.send_error(403)
            return None
        return super().send_head()

    def log_message(self, *args):
        pass


def png(width, height):
    """An opaque RGB PNG of a gradient (no imaging library needed)."""
    rows = bytearray()
    for y in range(height):
        rows.append(0)
        for x in range(width):
            rows += bytes(((x * 255) // width, (y * 255) // height, ((x + y) * 255) // (width + height)))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(rows), 6)) + chunk(b"IEND", b"")


# ---------------------------------------------------------------- checks


class Suite:
    def __init__(self, args, stack, functions, workdir, origin_secret=None):
        self.args = args
        # The origin secret's value, where the backfill function is given one: never in its logs.
        self.origin_secret = origin_secret
        self.stack = stack
        self.functions = functions
        self.workdir = workdir
        self.passed = 0
        self.failed = 0
        self.sandboxes = []
        self.created_keys = set()
        self.run_id = uuid.uuid4().hex[:10]

    def sandbox(self, logical_id):
        kind = DockerSandbox if self.args.docker else EmulatorSandbox
        box = kind(self.functions[logical_id], self.workdir)
        self.sandboxes.append(box)
        return box

    def check(self, name, test):
        try:
            test()
        except Exception:  # a failed check is reported and the next one runs
            self.failed += 1
            print(f"FAIL: {name}\n{traceback.format_exc()}", flush=True)
        else:
            self.passed += 1
            print(f"ok: {name}", flush=True)

    def function_named(self, suffix):
        matches = [k for k in self.functions if k.split("/")[-1] == suffix]
        if len(matches) != 1:
            raise SystemExit(f"expected one built function {suffix}, found {sorted(self.functions)}")
        return matches[0]

    # -------------------------------------------------------- the artifacts themselves

    def artifacts(self):
        for logical_id, function in sorted(self.functions.items()):
            def test(function=function):
                if function.is_node:
                    names = sorted(p.name for p in function.artifact.iterdir())
                    assert names == ["index.js", "origin_request.node"], names
                    assert not function.template_env, f"environment variables on the edge function: {function.template_env}"
                    binary = function.artifact / "origin_request.node"
                else:
                    binary = function.artifact / "bootstrap"
                    assert os.access(binary, os.X_OK), f"{binary} is not executable"
                head = binary.read_bytes()[:20]
                # ELF, 64-bit, x86-64 (e_machine 0x3e): what the templates' architecture says.
                assert head[:4] == b"\x7fELF" and head[4] == 2 and head[18] == 0x3E, f"{binary} is not an x86-64 ELF"
                highest = highest_glibc(binary)
                assert highest is None or version_tuple(highest) <= (2, 34), f"{binary} needs GLIBC_{highest} (AL2023 has 2.34)"

            self.check(f"{logical_id}: built artifact for Amazon Linux 2023 x86_64", test)

    # -------------------------------------------------------- sample events

    def backfill_samples(self, origin_dir):
        function = self.function_named("BackfillFunction")
        photo = os.urandom(200_000)
        (origin_dir / "images").mkdir(exist_ok=True)
        (origin_dir / "images/cat photo.jpg").write_bytes(photo)
        self.stack.delete(["images/cat photo.jpg", "images/missing.jpg"])
        self.created_keys.add("images/cat photo.jpg")
        box = self.sandbox(function)

        def split_copies_configured():
            env = self.functions[function].env
            assert env.get("LEASE_TABLE") == self.stack.lease_table, f"LEASE_TABLE {env.get('LEASE_TABLE')!r}"
            assert env.get("PART_QUEUE_URL") == self.stack.part_queue, f"PART_QUEUE_URL {env.get('PART_QUEUE_URL')!r}"
            template = policy_check.load_template(self.functions[function].template_path)
            default = str(template["Parameters"]["PartWorkers"]["Default"])
            assert env.get("PART_WORKERS") == default, f"PART_WORKERS {env.get('PART_WORKERS')!r}, PartWorkers {default}"

        def batch():
            answer, _ = box.invoke(json.loads((EVENTS / "backfill-batch.json").read_text()))
            assert answer == {"batchItemFailures": []}, answer
            stored = self.stack.object_bytes("images/cat photo.jpg")
            assert hashlib.sha256(stored).digest() == hashlib.sha256(photo).digest(), f"{len(stored)} bytes stored"
            missing = self.stack.listing("images/missing.jpg")
            assert not missing, f"a 404 at the origin wrote {missing}"
            # A copy that is done releases its lease; nothing is left for the next viewer's miss to wait on.
            for key in ("images/cat photo.jpg", "images/missing.jpg"):
                assert self.stack.lease(key) is None, f"a lease left behind for {key}: {self.stack.lease(key)}"
            parts = self.stack.receive_all(self.stack.part_queue)
            assert parts == [], f"a small copy was split: {[m['Body'] for m in parts]}"

        self.check(f"{function}: LEASE_TABLE, PART_QUEUE_URL and PART_WORKERS are the local copy-lease table, "
                   "part queue and the template's PartWorkers", split_copies_configured)

        def origin_down():
            answer, _ = box.invoke(json.loads((EVENTS / "backfill-origin-down.json").read_text()))
            assert answer == {"batchItemFailures": [{"itemIdentifier": "backfill-5"}]}, answer

        def refresh():
            event = json.loads((EVENTS / "backfill-refresh.json").read_text())
            self.stack.receive_all(self.stack.invalidation_queue)
            # The origin (Python's http.server) sends Last-Modified and answers If-Modified-Since.
            answer, _ = box.invoke(event)
            assert answer == {"batchItemFailures": []}, answer
            assert self.stack.object_bytes("images/cat photo.jpg") == photo, "an unchanged copy was rewritten"
            assert self.stack.receive_all(self.stack.invalidation_queue) == [], "an unchanged copy was invalidated"
            changed = os.urandom(200_000)
            path = origin_dir / "images/cat photo.jpg"
            path.write_bytes(changed)
            later = time.time() + 5
            os.utime(path, (later, later))
            answer, _ = box.invoke(event)
            assert answer == {"batchItemFailures": []}, answer
            stored = self.stack.object_bytes("images/cat photo.jpg")
            assert hashlib.sha256(stored).digest() == hashlib.sha256(changed).digest(), "the copy was not replaced"
            sent = [json.loads(m["Body"]) for m in self.stack.receive_all(self.stack.invalidation_queue)]
            assert [m["paths"][0] for m in sent] == ["/images/cat%20photo.jpg"], sent
            assert self.stack.lease("images/cat photo.jpg") is None, "the refresh left its lease behind"
            item = self.stack.dynamodb.get_item(
                TableName=self.stack.freshness_table,
                Key={"pk": {"S": f"{self.stack.bucket}/images/cat photo.jpg"}}, ConsistentRead=True,
            ).get("Item")
            assert item and int(item["due_at"]["N"]) > int(time.time()), f"not scheduled: {item}"

        def invalidations():
            before = self.stack.invalidation_count()
            answer, _ = box.invoke(json.loads((EVENTS / "backfill-invalidations.json").read_text()))
            assert answer == {"batchItemFailures": []}, answer
            assert self.stack.invalidation_count() == before + 1, "not one invalidation for the batch"

        self.check(f"{function} events/backfill-batch.json: copied whole; 404, invalid and forbidden not retried", batch)
        self.check(f"{function} events/backfill-origin-down.json: reported for retry", origin_down)
        self.check(f"{function} events/backfill-refresh.json: 304 changes nothing; a newer origin file replaces "
                   "the copy, is invalidated and scheduled", refresh)
        self.check(f"{function} events/backfill-invalidations.json: two records, one CloudFront invalidation", invalidations)
        if self.origin_secret:
            def secret_unlogged():
                assert self.origin_secret not in box.logs(), "the origin secret is in the function's logs"

            self.check(f"{function}: the origin secret (read at cold start, required by the origin) is in no log line", secret_unlogged)

    def image_samples(self):
        function = self.function_named("ImageFunction")
        # The sample events name objects the local bucket must not have, nor tasks the table: their
        # outcome is "gone" (the revision they name is not there).
        sample_keys = ["images/summer 2024/café terrace.jpg", "images/logo.png"]
        self.stack.delete(sample_keys)
        self.stack.forget_tasks(sample_keys)
        expected = {
            "image-put.json": ("images/summer 2024/café terrace.jpg", "source_gone"),
            # Nothing rendered of it in the local bucket: a removal with nothing to delete.
            "image-removed.json": ("images/summer 2024/café terrace.jpg", "removed"),
            "image-sns.json": ("images/logo.png", "source_gone"),
            "image-own-output.json": (None, None),
            "image-test-event.json": (None, "s3:TestEvent dropped"),
        }
        samples = sorted(p.name for p in EVENTS.glob("image-*.json"))
        box = self.sandbox(function)

        def covered():
            assert samples == sorted(expected), f"sample events {samples}: expectations for {sorted(expected)}"

        self.check(f"{function}: every events/image-*.json has an expectation", covered)
        for name in samples:
            if name not in expected:
                continue
            key, outcome = expected[name]

            def test(name=name, key=key, outcome=outcome):
                before = len(box.logs())
                answer, _ = box.invoke(json.loads((EVENTS / name).read_text()))
                assert answer == {"batchItemFailures": []}, answer
                time.sleep(0.05)
                lines = log_records(box.logs()[before:])
                tasks = [r for r in lines if r.get("message") == "task done"]
                if key is None and outcome is None:
                    assert tasks == [], f"its own output was processed: {tasks}"
                elif key is None:
                    assert any(r.get("message") == outcome for r in lines), f"no {outcome!r} log line: {lines}"
                else:
                    assert [(t["span"]["key"], t["outcome"]) for t in tasks] == [(key, outcome)], tasks

            self.check(f"{function} events/{name}", test)

    def edge_samples(self):
        function = self.function_named("OriginRequestFunction")
        # Messages the hook should send: key and trigger of each (none for the others).
        expected = {
            "origin-request-s3.json": None,
            "origin-request-unmarked.json": None,
            "origin-request-domestic.json": ("images/cat.jpg", "origin-request"),
            "origin-request-post.json": None,
            "origin-request-traversal.json": None,
            "origin-request-encoded-key.json": ("images/café au lait+1%/寿司 2.jpg", "origin-request"),
            "origin-response-200.json": ("images/cat.jpg", "origin-response"),
            "origin-response-404.json": None,
        }
        samples = sorted(p.name for p in EVENTS.glob("origin-*.json"))

        def covered():
            assert samples == sorted(expected), f"sample events {samples}: expectations for {sorted(expected)}"

        self.check(f"{function}: every events/origin-*.json has an expectation", covered)
        self.stack.receive_all(self.stack.backfill_queue)
        for name in samples:
            if name not in expected:
                continue

            def test(name=name, message=expected[name]):
                event = json.loads((EVENTS / name).read_text())
                cf = event["Records"][0]["cf"]
                # A sandbox per event: a warm one would not enqueue a key it just enqueued.
                box = self.sandbox(function)
                try:
                    answer, _ = box.invoke(event)
                finally:
                    box.stop()
                assert "errorType" not in answer, f"the handler failed (CloudFront answers 502): {answer}"
                if cf["config"]["eventType"] == "origin-response":
                    assert answer == cf["response"], f"response changed: {answer}"
                else:
                    assert answer == stripped(cf["request"]), f"request: {json.dumps(answer)[:800]}"
                sent = self.stack.receive_all(self.stack.backfill_queue)
                if message is None:
                    assert sent == [], f"unexpected messages: {[m['Body'] for m in sent]}"
                else:
                    assert len(sent) == 1, f"expected one message, got {[m['Body'] for m in sent]}"
                    body = json.loads(sent[0]["Body"])
                    assert (body["key"], body["trigger"]) == message, body
                    assert body["bucket"] == "overseas-origin", body

            self.check(f"{function} events/{name}", test)

    def upload_samples(self):
        api = self.function_named("UploadApiFunction")
        writer = self.function_named("UploadMetadataFunction")
        # Each function URL sample: status, refusal reason (None: an answer), and what else to check.
        expected = {
            "upload-api-me.json": (200, None),
            "upload-api-unauthenticated.json": (401, "unauthenticated"),
            "upload-api-put.json": (200, None),
            "upload-api-outside-prefix.json": (403, "key_outside_prefix"),
            # Signed with SigV4, no bearer token: this API runs with token auth (tests/uploads
            # invokes the sample with AUTH_MODE=iam).
            "upload-api-iam-me.json": (401, "unauthenticated"),
            # Before the writer records the sample note (below: then the download reads it).
            "upload-api-download.json": (404, "file_not_found"),
            # The template's default UploadAccess is private: no signed cookies.
            "upload-api-cookies.json": (400, "invalid_request"),
        }
        writer_samples = ["upload-metadata-put.json"]
        samples = sorted(p.name for p in EVENTS.glob("upload-*.json"))

        def covered():
            assert samples == sorted(list(expected) + writer_samples), (
                f"sample events {samples}: expectations for {sorted(list(expected) + writer_samples)}"
            )

        self.check("upload functions: every events/upload-*.json has an expectation", covered)
        box = self.sandbox(api)
        for name in samples:
            if name not in expected:
                continue

            def test(name=name, status=expected[name][0], reason=expected[name][1]):
                answer, _ = box.invoke(json.loads((EVENTS / name).read_text()))
                assert "errorType" not in answer, f"the handler failed: {answer}"
                body = json.loads(answer.get("body") or "null")
                assert answer["statusCode"] == status, answer
                assert answer["headers"].get("x-request-id"), f"no request id: {answer['headers']}"
                if reason is not None:
                    assert body["reason"] == reason, body
                elif name == "upload-api-me.json":
                    assert (body["caller"], body["prefix"]) == (UPLOAD_CALLER, f"uploads/{UPLOAD_CALLER}/"), body
                else:
                    signed = body["url"] + " " + " ".join(body["headers"])
                    assert body["method"] == "PUT" and "x-amz-checksum-sha256" in signed, body

            self.check(f"{api} events/{name}", test)

        key = f"uploads/{UPLOAD_CALLER}/notes/sample note.bin"

        def records_the_upload():
            event = json.loads((EVENTS / "upload-metadata-put.json").read_text())
            for record in event["Records"]:
                record["body"] = record["body"].replace("overseas-origin", self.stack.bucket)
            self.stack.s3.put_object(Bucket=self.stack.bucket, Key=key, Body=b"hello")
            self.created_keys.add(key)
            answer, _ = self.sandbox(writer).invoke(event)
            assert answer == {"batchItemFailures": []}, answer
            items = self.stack.file_versions(key)
            summary = [(i["owner"]["S"], i["size"]["N"], i["notified"]["BOOL"]) for i in items]
            assert summary == [(UPLOAD_CALLER, "5", True)], items

        self.check(f"{writer} events/upload-metadata-put.json: test event dropped, the upload recorded and announced",
                   records_the_upload)

        def the_owner_downloads_it():
            answer, _ = box.invoke(json.loads((EVENTS / "upload-api-download.json").read_text()))
            assert answer["statusCode"] == 200, answer
            download = json.loads(answer["body"])["download"]
            assert download["via"] == "s3", download
            with urllib.request.urlopen(download["url"], timeout=30) as response:
                assert response.read() == b"hello"

        self.check(f"{api} events/upload-api-download.json: a presigned GET of the recorded version",
                   the_owner_downloads_it)

    # -------------------------------------------------------- the pipelines

    def upload_pipeline(self):
        api = self.function_named("UploadApiFunction")
        writer = self.function_named("UploadMetadataFunction")
        image = self.function_named("ImageFunction")
        key = f"uploads/{UPLOAD_CALLER}/sam-pipeline/{self.run_id}/poster.png"
        poster = png(800, 450)
        thumbnails = f"{self.functions[image].env['OUTPUT_PREFIX']}{key}/"
        state = {}
        box = self.sandbox(api)

        def request(method, path, body=None):
            event = json.loads((EVENTS / "upload-api-put.json").read_text())
            event["rawPath"] = event["requestContext"]["http"]["path"] = path
            event["requestContext"]["http"]["method"] = method
            event["requestContext"]["requestId"] = str(uuid.uuid4())
            if body is None:
                event.pop("body", None)
                event["headers"].pop("content-type", None)
            else:
                event["body"] = json.dumps(body)
            answer, _ = box.invoke(event)
            assert "errorType" not in answer, f"the handler failed: {answer}"
            return answer["statusCode"], json.loads(answer.get("body") or "null")

        def api_signs_and_s3_takes_the_bytes():
            checksum = base64.b64encode(hashlib.sha256(poster).digest()).decode()
            status, signed = request("POST", "/uploads", {
                "key": key, "size": len(poster), "content_type": "image/png",
                "checksum": {"algorithm": "sha256", "value": checksum},
            })
            assert status == 200 and signed["method"] == "PUT", signed
            self.created_keys.add(key)
            put = urllib.request.Request(signed["url"], data=poster, method="PUT", headers=signed["headers"])
            with urllib.request.urlopen(put, timeout=30) as response:
                assert response.status == 200, response.status
            assert self.stack.object_bytes(key) == poster, "the bucket holds other bytes"

        def writer_records_the_version():
            notices = self.stack.take_notifications([key])
            assert len(notices) == 1, "no S3 notification for the upload"
            # The upload-event topic delivers S3's own event body (raw) to both queues.
            state["event"] = sqs_event(notices, self.stack.queue_arn(self.stack.image_queue))
            answer, _ = self.sandbox(writer).invoke(state["event"])
            assert answer == {"batchItemFailures": []}, answer
            items = self.stack.file_versions(key)
            assert [(i["owner"]["S"], int(i["size"]["N"]), i["content_type"]["S"]) for i in items] == [
                (UPLOAD_CALLER, len(poster), "image/png")
            ], items

        def image_function_renders_the_upload():
            answer, _ = self.sandbox(image).invoke(state["event"])
            assert answer == {"batchItemFailures": []}, answer
            written = self.stack.listing(thumbnails)
            self.created_keys.update(written)
            widths = sorted(int(Path(k).stem) for k in written)
            assert widths == [160, 320, 640, 1280], f"renditions {sorted(written)}"
            self.stack.take_notifications(list(written), timeout=3)

        def api_serves_the_version():
            status, body = request("GET", f"/files/{key}")
            assert status == 200, body
            assert (body["latest"]["key"], body["latest"]["size"]) == (key, len(poster)), body

        steps = [
            ("the upload API signs a PUT and S3 takes the bytes through it", api_signs_and_s3_takes_the_bytes),
            ("the upload's S3 event makes the metadata writer record its version", writer_records_the_version),
            ("the same event makes the image function write the upload's thumbnails", image_function_renders_the_upload),
            ("the upload API serves the recorded version", api_serves_the_version),
        ]
        failed_before = self.failed
        for name, step in steps:
            if self.failed > failed_before:
                self.failed += 1
                print(f"FAIL: upload pipeline: {name}: not run, an earlier step failed", flush=True)
                continue
            self.check(f"upload pipeline: {name}", step)

    def pipeline(self, origin_dir):
        edge = self.function_named("OriginRequestFunction")
        backfill = self.function_named("BackfillFunction")
        image = self.function_named("ImageFunction")
        key = f"images/sam-pipeline/{self.run_id}/poster frame.png"
        poster = png(1600, 900)
        (origin_dir / Path(key).parent).mkdir(parents=True, exist_ok=True)
        (origin_dir / key).write_bytes(poster)
        self.created_keys.add(key)
        thumbnails = f"{self.functions[image].env['OUTPUT_PREFIX']}{key}/"
        state = {}

        def edge_enqueues():
            self.stack.receive_all(self.stack.backfill_queue)
            event = json.loads((EVENTS / "origin-request-domestic.json").read_text())
            request = event["Records"][0]["cf"]["request"]
            custom = request["origin"]["custom"]
            custom.update(domainName="127.0.0.1", port=ORIGIN_PORT, protocol="http")
            custom["customHeaders"]["x-backfill-queue-url"][0]["value"] = EDGE_QUEUE_URL
            custom["customHeaders"]["x-backfill-bucket"][0]["value"] = self.stack.bucket
            request["uri"] = "/" + urllib.parse.quote(key)
            box = self.sandbox(edge)
            try:
                answer, _ = box.invoke(event)
            finally:
                box.stop()
            assert answer == stripped(request), f"request: {json.dumps(answer)[:800]}"
            sent = self.stack.receive_all(self.stack.backfill_queue, wait_seconds=1)
            assert len(sent) == 1, f"expected one message, got {[m['Body'] for m in sent]}"
            assert json.loads(sent[0]["Body"])["key"] == key, sent[0]["Body"]
            state["backfill_message"] = sent

        def backfill_copies():
            event = sqs_event(state["backfill_message"], self.stack.queue_arn(self.stack.backfill_queue))
            answer, _ = self.sandbox(backfill).invoke(event)
            assert answer == {"batchItemFailures": []}, answer
            assert self.stack.object_bytes(key) == poster, "the backfilled object differs from the origin's"

        def image_renders():
            notices = self.stack.take_notifications([key])
            assert len(notices) == 1, "no S3 notification for the backfilled object"
            state["image_event"] = sqs_event(notices, self.stack.queue_arn(self.stack.image_queue))
            answer, _ = self.sandbox(image).invoke(state["image_event"])
            assert answer == {"batchItemFailures": []}, answer
            written = self.stack.listing(thumbnails)
            widths = sorted(int(Path(k).stem) for k in written)
            assert widths == [160, 320, 640, 1280], f"renditions {sorted(written)}"
            state["renditions"] = written
            self.created_keys.update(written)
            items = self.stack.dynamodb.scan(
                TableName=self.stack.table, FilterExpression="object_key = :k",
                ExpressionAttributeValues={":k": {"S": key}},
            )["Items"]
            assert [i["status"]["S"] for i in items] == ["COMPLETED"], items

        def redelivery_adds_nothing():
            box = self.sandbox(image)
            answer, _ = box.invoke(state["image_event"])
            assert answer == {"batchItemFailures": []}, answer
            assert self.stack.listing(thumbnails) == state["renditions"], "a second delivery rewrote renditions"
            time.sleep(0.05)
            tasks = [r for r in log_records(box.logs()) if r.get("message") == "task done"]
            assert [t["outcome"] for t in tasks] == ["already_completed"], tasks
            # Renditions under the output prefix notify nothing (the local stack notifies the
            # whole bucket: the function itself ignores them); drop those notices.
            self.stack.take_notifications(list(state["renditions"]), timeout=3)

        steps = [
            ("the hook sends a backfill for a miss on the domestic origin", edge_enqueues),
            ("the backfill function copies the object from the origin", backfill_copies),
            ("S3's notification makes the image function write every rendition", image_renders),
            ("a second delivery of the notification writes nothing", redelivery_adds_nothing),
        ]
        failed_before = self.failed
        for name, step in steps:
            if self.failed > failed_before:
                # Each step needs what the one before it produced.
                self.failed += 1
                print(f"FAIL: pipeline: {name}: not run, an earlier step failed", flush=True)
                continue
            self.check(f"pipeline: {name}", step)

    # -------------------------------------------------------- init duration

    def init_durations(self):
        figures = {}
        empty = {"Records": []}
        batch = (empty, lambda answer: answer == {"batchItemFailures": []})
        # Events that need no AWS call, and how to tell the function answered them.
        edge_event = (json.loads((EVENTS / "origin-request-s3.json").read_text()), lambda answer: "errorType" not in answer)
        refused = (json.loads((EVENTS / "upload-api-unauthenticated.json").read_text()),
                   lambda answer: answer.get("statusCode") == 401)
        for logical_id, limit, (event, answered) in (
            (self.function_named("BackfillFunction"), INIT_LIMIT_MS, batch),
            (self.function_named("ImageFunction"), INIT_LIMIT_MS, batch),
            (self.function_named("UploadApiFunction"), INIT_LIMIT_MS, refused),
            (self.function_named("UploadMetadataFunction"), INIT_LIMIT_MS, batch),
            (self.function_named("OriginRequestFunction"), None, edge_event),
        ):
            function = self.functions[logical_id]
            inits, firsts = [], []
            for _ in range(INIT_SAMPLES):
                box = EmulatorSandbox(function, self.workdir)
                try:
                    answer, first_ms = box.invoke(event)
                    time.sleep(0.05)
                    inits.append(box.init_ms())
                    firsts.append(round(first_ms, 2))
                finally:
                    box.stop()
                assert answered(answer), f"{logical_id}: {answer}"
            binary = function.artifact / ("origin_request.node" if function.is_node else "bootstrap")
            figures[logical_id] = {
                "runtime": function.runtime,
                "memory_mb": function.memory,
                "artifact_bytes": binary.stat().st_size,
                "init_ms": summary(inits),
                "first_invoke_wall_ms": summary(firsts),
                "limit_ms": limit,
            }

            def test(inits=inits, limit=limit, logical_id=logical_id):
                assert None not in inits, f"no INIT REPORT in the emulator's log: {inits}"
                median = statistics.median(inits)
                assert median < limit, f"median init {median:.1f} ms >= {limit} ms ({inits})"

            if limit is not None:
                self.check(
                    f"{logical_id}: init under {limit:.0f} ms (median of {INIT_SAMPLES} cold starts: "
                    f"{statistics.median([i for i in inits if i is not None] or [0]):.1f} ms)",
                    test,
                )
        return figures

    def cleanup(self):
        for box in self.sandboxes:
            box.stop()
        self.stack.delete(sorted(self.created_keys))
        self.stack.take_notifications(sorted(self.created_keys), timeout=2)


def summary(values):
    present = [v for v in values if v is not None]
    return {
        "samples": values,
        "median": round(statistics.median(present), 2) if present else None,
        "min": min(present) if present else None,
        "max": max(present) if present else None,
    }


def stripped(request):
    """The request as the hook hands it back: without its own x-backfill-* origin headers."""
    request = copy.deepcopy(request)
    headers = ((request.get("origin") or {}).get("custom") or {}).get("customHeaders")
    if headers and "x-backfill-queue-url" in headers:
        for name in [n for n in headers if n.startswith("x-backfill-")]:
            del headers[name]
    return request


def log_records(text):
    records = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                records.append(json.loads(line))
            except ValueError:
                pass
    return records


def highest_glibc(binary):
    try:
        out = subprocess.run(["objdump", "-T", str(binary)], capture_output=True, text=True, check=True).stdout
    except FileNotFoundError:
        raise AssertionError("objdump is missing (Debian binutils)") from None
    versions = re.findall(r"GLIBC_([0-9]+(?:\.[0-9]+)+)", out)
    return max(versions, key=version_tuple) if versions else None


def version_tuple(text):
    return tuple(int(p) for p in text.split("."))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build-dir", type=Path, default=ROOT / ".aws-sam/build")
    parser.add_argument("--results", type=Path, default=ROOT / "bench/sam/results.json")
    parser.add_argument("--docker", action="store_true", help="invoke with sam local invoke (needs Docker)")
    args = parser.parse_args()

    stack = LocalStack()
    try:
        return run(args, stack)
    finally:
        stack.delete_upload_resources()
        stack.delete_origin_secret()


def run(args, stack):
    local_env = {
        "BUCKET": stack.bucket,
        "TASK_TABLE": stack.table,
        "LEASE_TABLE": stack.lease_table,
        "PART_QUEUE_URL": stack.part_queue,
        "FRESHNESS_TABLE": stack.freshness_table,
        "CHANGE_QUEUE_URL": stack.part_queue,
        "INVALIDATION_QUEUE_URL": stack.invalidation_queue,
        "DISTRIBUTION_ID": stack.distribution_id,
        "ALLOWED_ORIGINS": ALLOWED_ORIGINS,
    }
    suffix = f"{int(time.time())}-{os.getpid()}"
    local_env.update(stack.create_upload_resources(suffix))
    secret_value, secret_env = stack.create_origin_secret(suffix)
    local_env.update(secret_env)
    local_env.update({k: v for k, v in os.environ.items() if k in LOCAL_AWS_VARIABLES or k.startswith("AWS_ENDPOINT_URL_")})
    FUNCTIONS.update(built_functions(args.build_dir.resolve(), local_env))

    workdir = Path(tempfile.mkdtemp(prefix="sam-invoke-"))
    origin_dir = Path(tempfile.mkdtemp(prefix="sam-origin-"))
    # Where the template gives the backfill function a secret, the origin requires it.
    backfill_env = next(f.env for k, f in FUNCTIONS.items() if k.endswith("BackfillFunction"))
    secret_header = None
    if backfill_env.get("ORIGIN_SECRET_ARN"):
        secret_header = (backfill_env["ORIGIN_SECRET_HEADER"], secret_value)
    origin = DomesticOrigin(origin_dir, ORIGIN_PORT, secret_header)
    suite = Suite(args, stack, FUNCTIONS, workdir, secret_value if secret_header else None)
    figures = {}
    try:
        suite.artifacts()
        suite.backfill_samples(origin_dir)
        suite.image_samples()
        suite.edge_samples()
        suite.upload_samples()
        suite.pipeline(origin_dir)
        suite.upload_pipeline()
        figures = suite.init_durations()
    finally:
        suite.cleanup()
        origin.stop()
        for path in _cleanup_files:
            path.unlink(missing_ok=True)
        if suite.failed:
            print(f"(emulator logs kept in {workdir})")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(origin_dir, ignore_errors=True)

    if figures:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        results = {
            "what": "Init duration of the functions sam build produced, in fresh sandboxes of AWS's "
            "Lambda Runtime Interface Emulator (its INIT REPORT: process start to the runtime's first "
            "request for work), and the wall time of each sandbox's first invocation.",
            "command": "tests/sam (scripts/sam_invoke.py; local stack up)",
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": {"cpus": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version()},
            "invocations": "sam local invoke (Docker)" if args.docker else "Runtime Interface Emulator on the host",
            "functions": figures,
        }
        args.results.write_text(json.dumps(results, indent=2) + "\n")
    print(f"sam-invoke: {suite.passed} passed, {suite.failed} failed")
    return 1 if suite.failed else 0


if __name__ == "__main__":
    sys.exit(main())
