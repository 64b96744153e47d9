#!/usr/bin/env python3
"""Resources of the local stand-in stack (moto server): create, reset, ping, free-port.

Two regional stacks on the one server: the first region's (us-east-1, every resource) and a second
region's (eu-central-1: its bucket, backfill and image queues, lease and task tables), as the
multi-region product deploys one regional stack per bucket region. moto keeps SQS, DynamoDB and
CloudWatch apart by the region a request is signed for; the second region's queues and tables are
named apart all the same (suffix -2), so that a client signing for the wrong region fails instead
of quietly using the first region's. Its bucket has a LocationConstraint.

Called by scripts/local-stack with the project venv's python (boto3 comes with moto).
Diagnostics go to stderr; `create` prints the environment file (shell `export` lines) on stdout.

  local_stack_resources.py free-port
  local_stack_resources.py ping   --endpoint URL
  local_stack_resources.py create --endpoint URL
  local_stack_resources.py reset  --endpoint URL
"""
import argparse
import json
import os
import shlex
import socket
import sys
import time
import urllib.error
import urllib.request

REGION = "us-east-1"
# The second regional stack (the edge simulator's slot 2).
REGION2 = "eu-central-1"
BUCKET_2 = f"overseas-origin-{REGION2}"
ACCESS_KEY = "test"
SECRET_KEY = "test"

BUCKET = "overseas-origin"
TASK_TABLE = "image-tasks"
# The backfill function's copy leases (template.yaml CopyLeaseTable): key pk (S), TTL on ttl.
LEASE_TABLE = "copy-leases"
# The backfill function's record of what it copied and when it last revalidated it
# (template.yaml FreshnessTable): key pk (S), TTL on ttl, and the index "due" (shard, due_at)
# the revalidation schedule walks.
FRESHNESS_TABLE = "freshness"
FRESHNESS_INDEX = {
    "IndexName": "due",
    "KeySchema": [{"AttributeName": "shard", "KeyType": "HASH"}, {"AttributeName": "due_at", "KeyType": "RANGE"}],
    "Projection": {"ProjectionType": "ALL"},
}
# (table, key attribute, TTL attribute, global secondary index)
TABLES = [
    (TASK_TABLE, "id", "expires_at", None),
    (LEASE_TABLE, "pk", "ttl", None),
    (FRESHNESS_TABLE, "pk", "ttl", FRESHNESS_INDEX),
]
# The CloudFront distribution whose cache the backfill invalidates (moto's CloudFront).
DISTRIBUTION_COMMENT = "overseas-origin local stand-in"
MAX_RECEIVE_COUNT = 5
DLQ_RETENTION_SECONDS = 1209600  # 14 days, the SQS maximum

# (main queue, dead-letter queue, main-queue VisibilityTimeout, fifo)
QUEUES = [
    ("backfill", "backfill-dlq", 180, False),
    ("backfill.fifo", "backfill-dlq.fifo", 180, True),
    ("image-tasks", "image-tasks-dlq", 360, False),
    # The backfill function's part tasks (template.yaml PartQueue), consumed one at a time.
    ("backfill-parts", "backfill-parts-dlq", 180, False),
    # Paths to invalidate in CloudFront (template.yaml InvalidationQueue), read in batches.
    ("backfill-invalidations", "backfill-invalidations-dlq", 180, False),
]
IMAGE_QUEUE = "image-tasks"
# The second region's stack: what its backfill function (one copy per key, no split copies, no
# freshness) and its image processor need.
QUEUES_2 = [
    ("backfill-2", "backfill-2-dlq", 180, False),
    ("image-tasks-2", "image-tasks-2-dlq", 360, False),
]
IMAGE_QUEUE_2 = "image-tasks-2"
TASK_TABLE_2 = "image-tasks-2"
LEASE_TABLE_2 = "copy-leases-2"
TABLES_2 = [
    (TASK_TABLE_2, "id", "expires_at", None),
    (LEASE_TABLE_2, "pk", "ttl", None),
]
# One notification rule per suffix: S3 allows one prefix + one suffix filter per rule.
# S3 suffix matching is case-sensitive, so the upper-case variants are separate rules.
IMAGE_SUFFIXES = [".jpg", ".jpeg", ".png", ".webp", ".gif", ".JPG", ".JPEG", ".PNG", ".WEBP", ".GIF"]
# Removals too, as template.yaml: a deleted source loses its thumbnails.
IMAGE_EVENTS = ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]


def log(msg):
    print(f"local-stack: {msg}", file=sys.stderr, flush=True)


def clients(endpoint, region=REGION):
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name=region,
    )
    cfg = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=30)
    s3 = session.client("s3", endpoint_url=endpoint, config=cfg)
    sqs = session.client("sqs", endpoint_url=endpoint, config=cfg)
    ddb = session.client("dynamodb", endpoint_url=endpoint, config=cfg)
    return s3, sqs, ddb


def error_code(exc):
    return getattr(exc, "response", {}).get("Error", {}).get("Code", "")


# ---------------------------------------------------------------- SQS


def queue_arn(sqs, url):
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def ensure_queue(sqs, name, attributes):
    """CreateQueue is idempotent for identical attributes; on a mismatch, bring the queue in line."""
    from botocore.exceptions import ClientError

    try:
        return sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    except ClientError as exc:
        if error_code(exc) not in ("QueueAlreadyExists", "QueueNameExists", "AWS.SimpleQueueService.QueueNameExists"):
            raise
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    mutable = {k: v for k, v in attributes.items() if k not in ("FifoQueue",)}
    sqs.set_queue_attributes(QueueUrl=url, Attributes=mutable)
    log(f"queue {name} existed with other attributes: updated them")
    return url


def create_queues(sqs, queues=QUEUES):
    urls = {}
    for main, dlq, visibility, fifo in queues:
        dlq_attrs = {"MessageRetentionPeriod": str(DLQ_RETENTION_SECONDS)}
        main_attrs = {"VisibilityTimeout": str(visibility)}
        if fifo:
            for attrs in (dlq_attrs, main_attrs):
                attrs["FifoQueue"] = "true"
                attrs["ContentBasedDeduplication"] = "false"
        dlq_url = ensure_queue(sqs, dlq, dlq_attrs)
        main_attrs["RedrivePolicy"] = json.dumps(
            {"deadLetterTargetArn": queue_arn(sqs, dlq_url), "maxReceiveCount": str(MAX_RECEIVE_COUNT)},
            separators=(",", ":"),
        )
        main_url = ensure_queue(sqs, main, main_attrs)
        urls[main] = main_url
        urls[dlq] = dlq_url
    return urls


def allow_s3_to_send(sqs, url, bucket):
    """The queue policy AWS requires for S3 -> SQS notifications (moto does not enforce it)."""
    arn = queue_arn(sqs, url)
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AllowS3Notifications",
                "Effect": "Allow",
                "Principal": {"Service": "s3.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": arn,
                "Condition": {"ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{bucket}"}},
            }
        ],
    }
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(policy, separators=(",", ":"))})
    return arn


def is_test_event(body):
    try:
        return json.loads(body).get("Event") == "s3:TestEvent"
    except (ValueError, AttributeError):
        return False


def drain_test_events(sqs, url, quiet_seconds=1.0, give_up_seconds=5.0, max_seconds=15.0):
    """Receive and delete s3:TestEvent messages; anything else is made visible again at the end
    (received once only, so its receive count grows by one at most).

    Stops once a test event was deleted and the queue stayed quiet for quiet_seconds, or when no
    test event showed up within give_up_seconds."""
    deleted = 0
    others = []
    start = last_seen = time.monotonic()
    while time.monotonic() - start < max_seconds:
        msgs = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, VisibilityTimeout=30
        ).get("Messages", [])
        now = time.monotonic()
        for m in msgs:
            if is_test_event(m["Body"]):
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
                deleted += 1
                last_seen = now
            else:
                others.append(m["ReceiptHandle"])
        if deleted and now - last_seen >= quiet_seconds:
            break
        if not deleted and now - start >= give_up_seconds:
            break
    for handle in others:
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=0)
    return deleted


def purge_queue(sqs, url):
    from botocore.exceptions import ClientError

    try:
        sqs.purge_queue(QueueUrl=url)
        return
    except ClientError as exc:
        # Real SQS allows one purge per queue per 60 s: fall back to receive + delete.
        if error_code(exc) not in ("AWS.SimpleQueueService.PurgeQueueInProgress", "PurgeQueueInProgress"):
            raise
    while True:
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30).get("Messages", [])
        if not msgs:
            return
        sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)],
        )


# ---------------------------------------------------------------- S3


def create_bucket(s3, bucket=BUCKET, region=REGION):
    from botocore.exceptions import ClientError

    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if error_code(exc) not in ("404", "NoSuchBucket", "NotFound"):
            raise
        try:
            if region == "us-east-1":  # no LocationConstraint there
                s3.create_bucket(Bucket=bucket)
            else:
                s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
            log(f"created bucket {bucket} in {region}")
        except ClientError as exc2:
            if error_code(exc2) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket,
        LifecycleConfiguration={
            "Rules": [
                {
                    "ID": "abort-incomplete-multipart-upload",
                    "Filter": {"Prefix": ""},
                    "Status": "Enabled",
                    "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
                }
            ]
        },
    )


def wanted_notification(queue_arn_, prefix):
    configs = []
    for suffix in IMAGE_SUFFIXES:
        rules = []
        if prefix:
            rules.append({"Name": "prefix", "Value": prefix})
        rules.append({"Name": "suffix", "Value": suffix})
        configs.append(
            {
                "Id": "image-tasks" + suffix.replace(".", "-"),
                "QueueArn": queue_arn_,
                "Events": IMAGE_EVENTS,
                "Filter": {"Key": {"FilterRules": rules}},
            }
        )
    return {"QueueConfigurations": configs}


def normalise_notification(cfg):
    """Comparable form of a notification configuration (ids, arn, events, lower-cased rule names)."""
    out = []
    for q in cfg.get("QueueConfigurations", []):
        rules = q.get("Filter", {}).get("Key", {}).get("FilterRules", [])
        out.append(
            (
                q.get("Id", ""),
                q.get("QueueArn", ""),
                tuple(sorted(q.get("Events", []))),
                tuple(sorted((r["Name"].lower(), r["Value"]) for r in rules)),
            )
        )
    others = any(cfg.get(k) for k in ("TopicConfigurations", "LambdaFunctionConfigurations", "EventBridgeConfiguration"))
    return sorted(out), others


def configure_notification(s3, sqs, image_queue_url, prefix, bucket=BUCKET):
    arn = allow_s3_to_send(sqs, image_queue_url, bucket)
    want = wanted_notification(arn, prefix)
    have = s3.get_bucket_notification_configuration(Bucket=bucket)
    have.pop("ResponseMetadata", None)
    if normalise_notification(have) == normalise_notification(want):
        log(f"bucket {bucket}: notification already configured")
        return
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=want)
    shown = prefix if prefix else "(whole bucket)"
    log(
        f"bucket {bucket}: notification set: {' '.join(IMAGE_EVENTS)}, prefix {shown}, "
        f"suffixes {' '.join(IMAGE_SUFFIXES)} -> {arn}"
    )
    n = drain_test_events(sqs, image_queue_url)
    log(f"drained {n} s3:TestEvent message(s) from {image_queue_url.rsplit('/', 1)[-1]}")


def empty_bucket(s3, bucket=BUCKET):
    deleted = 0
    pages = s3.get_paginator("list_object_versions").paginate(Bucket=bucket)
    for page in pages:
        entries = [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in page.get("Versions", [])]
        entries += [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in page.get("DeleteMarkers", [])]
        for i in range(0, len(entries), 1000):
            batch = entries[i : i + 1000]
            s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
            deleted += len(batch)
    aborted = 0
    for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
        for u in page.get("Uploads", []):
            s3.abort_multipart_upload(Bucket=bucket, Key=u["Key"], UploadId=u["UploadId"])
            aborted += 1
    return deleted, aborted


# ---------------------------------------------------------------- DynamoDB


def create_table(ddb, table, key, ttl_attribute, index):
    from botocore.exceptions import ClientError

    definitions = [{"AttributeName": key, "AttributeType": "S"}]
    extra = {}
    if index:
        definitions += [
            {"AttributeName": "shard", "AttributeType": "S"},
            {"AttributeName": "due_at", "AttributeType": "N"},
        ]
        extra["GlobalSecondaryIndexes"] = [index]
    try:
        ddb.create_table(
            TableName=table,
            AttributeDefinitions=definitions,
            KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
            **extra,
        )
        log(f"created table {table}")
    except ClientError as exc:
        if error_code(exc) != "ResourceInUseException":
            raise
    ddb.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    ttl = ddb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    if ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING") and ttl.get("AttributeName") == ttl_attribute:
        return
    ddb.update_time_to_live(
        TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl_attribute}
    )


def empty_table(ddb, table):
    keys = [k["AttributeName"] for k in ddb.describe_table(TableName=table)["Table"]["KeySchema"]]
    names = {f"#k{i}": k for i, k in enumerate(keys)}
    deleted = 0
    for page in ddb.get_paginator("scan").paginate(
        TableName=table, ProjectionExpression=", ".join(names), ExpressionAttributeNames=names
    ):
        items = page.get("Items", [])
        for i in range(0, len(items), 25):
            requests = [{"DeleteRequest": {"Key": {k: it[k] for k in keys}}} for it in items[i : i + 25]]
            pending = {table: requests}
            while pending:
                pending = ddb.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
            deleted += len(requests)
    return deleted


# ---------------------------------------------------------------- CloudFront


def ensure_distribution(endpoint):
    """The id of the local distribution (created once; moto keeps its invalidations)."""
    import boto3

    cf = boto3.client(
        "cloudfront",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
    for item in cf.list_distributions().get("DistributionList", {}).get("Items", []) or []:
        if item.get("Comment") == DISTRIBUTION_COMMENT:
            return item["Id"]
    origin_id = "overseas-bucket"
    created = cf.create_distribution(
        DistributionConfig={
            "CallerReference": "overseas-origin-local",
            "Comment": DISTRIBUTION_COMMENT,
            "Enabled": True,
            "Origins": {
                "Quantity": 1,
                "Items": [
                    {
                        "Id": origin_id,
                        "DomainName": f"{BUCKET}.s3.amazonaws.com",
                        "S3OriginConfig": {"OriginAccessIdentity": ""},
                    }
                ],
            },
            "DefaultCacheBehavior": {
                "TargetOriginId": origin_id,
                "ViewerProtocolPolicy": "redirect-to-https",
                "CachePolicyId": "658327ea-f89d-4fab-a63d-7e88639e58f6",
            },
        }
    )
    log(f"created distribution {created['Distribution']['Id']}")
    return created["Distribution"]["Id"]


# ---------------------------------------------------------------- commands


def all_queue_names(queues=QUEUES):
    return [n for main, dlq, _, _ in queues for n in (main, dlq)]


def create_second_region(endpoint, prefix):
    """The second regional stack's resources; its environment lines (names ending in _2)."""
    s3, sqs, ddb = clients(endpoint, REGION2)
    urls = create_queues(sqs, QUEUES_2)
    create_bucket(s3, BUCKET_2, REGION2)
    configure_notification(s3, sqs, urls[IMAGE_QUEUE_2], prefix, BUCKET_2)
    for table, key, ttl_attribute, index in TABLES_2:
        create_table(ddb, table, key, ttl_attribute, index)
    return [
        ("REGION2", REGION2),
        ("BUCKET_2", BUCKET_2),
        ("BACKFILL_QUEUE_URL_2", urls["backfill-2"]),
        ("BACKFILL_DLQ_URL_2", urls["backfill-2-dlq"]),
        ("IMAGE_QUEUE_URL_2", urls["image-tasks-2"]),
        ("IMAGE_DLQ_URL_2", urls["image-tasks-2-dlq"]),
        ("TASK_TABLE_2", TASK_TABLE_2),
        ("LEASE_TABLE_2", LEASE_TABLE_2),
    ]


def cmd_create(endpoint):
    s3, sqs, ddb = clients(endpoint)
    urls = create_queues(sqs)
    create_bucket(s3)
    prefix = os.environ.get("IMAGE_INPUT_PREFIX", "")
    configure_notification(s3, sqs, urls[IMAGE_QUEUE], prefix)
    for table, key, ttl_attribute, index in TABLES:
        create_table(ddb, table, key, ttl_attribute, index)
    distribution = ensure_distribution(endpoint)
    env = [
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_REGION", REGION),
        ("AWS_DEFAULT_REGION", REGION),
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("BUCKET", BUCKET),
        ("BACKFILL_QUEUE_URL", urls["backfill"]),
        ("BACKFILL_DLQ_URL", urls["backfill-dlq"]),
        ("BACKFILL_FIFO_QUEUE_URL", urls["backfill.fifo"]),
        ("BACKFILL_FIFO_DLQ_URL", urls["backfill-dlq.fifo"]),
        ("IMAGE_QUEUE_URL", urls["image-tasks"]),
        ("IMAGE_DLQ_URL", urls["image-tasks-dlq"]),
        ("TASK_TABLE", TASK_TABLE),
        ("LEASE_TABLE", LEASE_TABLE),
        ("PART_QUEUE_URL", urls["backfill-parts"]),
        ("PART_DLQ_URL", urls["backfill-parts-dlq"]),
        ("FRESHNESS_TABLE", FRESHNESS_TABLE),
        ("INVALIDATION_QUEUE_URL", urls["backfill-invalidations"]),
        ("INVALIDATION_DLQ_URL", urls["backfill-invalidations-dlq"]),
        ("DISTRIBUTION_ID", distribution),
        ("IMAGE_INPUT_PREFIX", prefix),
    ]
    # The second region's names: its clients must sign for REGION2 (moto's partition).
    env += create_second_region(endpoint, prefix)
    print("# Local stand-in stack (moto server). Generated by scripts/local-stack up; do not edit.")
    for k, v in env:
        print(f"export {k}={shlex.quote(v)}")


def cmd_reset(endpoint):
    for region, bucket, queues, tables in (
        (REGION, BUCKET, QUEUES, TABLES),
        (REGION2, BUCKET_2, QUEUES_2, TABLES_2),
    ):
        s3, sqs, ddb = clients(endpoint, region)
        objects, uploads = empty_bucket(s3, bucket)
        # Purge after emptying the bucket so that no notification is left behind.
        names = all_queue_names(queues)
        for name in names:
            purge_queue(sqs, sqs.get_queue_url(QueueName=name)["QueueUrl"])
        items = sum(empty_table(ddb, table) for table, _, _, _ in tables)
        log(
            f"reset {region}: deleted {objects} object version(s), aborted {uploads} multipart upload(s), "
            f"purged {len(names)} queue(s), deleted {items} item(s) from {len(tables)} table(s)"
        )


def cmd_ping(endpoint):
    try:
        with urllib.request.urlopen(endpoint.rstrip("/") + "/moto-api/", timeout=2) as resp:
            return 0 if resp.status == 200 else 1
    except (urllib.error.URLError, OSError, ValueError):
        return 1


def cmd_free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        print(s.getsockname()[1])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["create", "reset", "ping", "free-port"])
    p.add_argument("--endpoint", help="moto server URL, e.g. http://127.0.0.1:5000")
    a = p.parse_args()
    if a.command == "free-port":
        cmd_free_port()
        return 0
    if not a.endpoint:
        p.error(f"{a.command} needs --endpoint")
    if a.command == "ping":
        return cmd_ping(a.endpoint)
    try:
        if a.command == "create":
            cmd_create(a.endpoint)
        else:
            cmd_reset(a.endpoint)
    except Exception as exc:  # noqa: BLE001 - one clear line instead of a traceback
        log(f"{a.command} failed against {a.endpoint}: {type(exc).__name__}: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
