#!/usr/bin/env python3
"""Tests of the local stand-in stack (scripts/local-stack, scripts/local_stack_resources.py) against
the running moto server: it has what template.yaml defines for the backfill's copy leases and part
tasks and for the image notifications (creations and removals), and a second regional stack in
its own region, exports where they are, and `reset` empties them. Run by tests/local-stack, with the stack's
environment exported: .venv/bin/python scripts/test_local_stack.py"""
import json
import os
import subprocess
import sys
import unittest
from pathlib import Path

import boto3

sys.path.insert(0, str(Path(__file__).resolve().parent))
import local_stack_resources as lsr  # noqa: E402
import policy_check  # noqa: E402  (the template loader)

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = policy_check.load_template(ROOT / "template.yaml")["Resources"]


def exported(path):
    """The variables an environment file exports."""
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("export ") and "=" in line:
            name, value = line[len("export "):].split("=", 1)
            out[name] = value.strip("'")
    return out


class LocalStackTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        endpoint = os.environ.get("AWS_ENDPOINT_URL")
        if not endpoint:
            raise SystemExit("AWS_ENDPOINT_URL is not set: start scripts/local-stack and export .local/env")
        cls.sqs = boto3.client("sqs", endpoint_url=endpoint)
        cls.ddb = boto3.client("dynamodb", endpoint_url=endpoint)
        cls.env = exported(ROOT / ".local/env")

    def attributes(self, url):
        return self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]

    def test_the_environment_names_the_lease_table_and_the_part_queues(self):
        self.assertEqual(self.env["LEASE_TABLE"], "copy-leases")
        self.assertTrue(self.env["PART_QUEUE_URL"].endswith("/backfill-parts"), self.env["PART_QUEUE_URL"])
        self.assertTrue(self.env["PART_DLQ_URL"].endswith("/backfill-parts-dlq"), self.env["PART_DLQ_URL"])
        self.assertEqual(os.environ.get("LEASE_TABLE"), self.env["LEASE_TABLE"])

    def test_the_lease_table_is_the_templates(self):
        table = self.ddb.describe_table(TableName=self.env["LEASE_TABLE"])["Table"]
        props = TEMPLATE["CopyLeaseTable"]["Properties"]
        self.assertEqual(table["KeySchema"], props["KeySchema"])
        self.assertEqual(table["AttributeDefinitions"], props["AttributeDefinitions"])
        ttl = self.ddb.describe_time_to_live(TableName=self.env["LEASE_TABLE"])["TimeToLiveDescription"]
        self.assertEqual((ttl["TimeToLiveStatus"], ttl["AttributeName"]),
                         ("ENABLED", props["TimeToLiveSpecification"]["AttributeName"]))

    def test_the_part_queue_redrives_to_its_dlq_as_the_backfill_queue(self):
        parts = self.attributes(self.env["PART_QUEUE_URL"])
        dlq = self.attributes(self.env["PART_DLQ_URL"])
        backfill = self.attributes(self.env["BACKFILL_QUEUE_URL"])
        redrive = json.loads(parts["RedrivePolicy"])
        self.assertEqual(redrive["deadLetterTargetArn"], dlq["QueueArn"])
        self.assertEqual(int(redrive["maxReceiveCount"]),
                         TEMPLATE["PartQueue"]["Properties"]["RedrivePolicy"]["maxReceiveCount"])
        # The same function consumes both: the same visibility timeout.
        self.assertEqual(parts["VisibilityTimeout"], backfill["VisibilityTimeout"])
        self.assertEqual(int(dlq["MessageRetentionPeriod"]), lsr.DLQ_RETENTION_SECONDS)
        self.assertNotIn("FifoQueue", parts)

    def test_reset_empties_the_lease_table_and_the_part_queues(self):
        table = self.env["LEASE_TABLE"]
        self.ddb.put_item(TableName=table, Item={
            "pk": {"S": "overseas-origin/video/reset-test.mp4"}, "generation": {"N": "1"}, "holder": {"S": "test"},
        })
        for url in (self.env["PART_QUEUE_URL"], self.env["PART_DLQ_URL"]):
            self.sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"version": 1, "kind": "part", "part": 2}))
        subprocess.run([str(ROOT / "scripts/local-stack"), "reset"], check=True, capture_output=True)
        self.assertEqual(self.ddb.scan(TableName=table, ConsistentRead=True)["Items"], [])
        for url in (self.env["PART_QUEUE_URL"], self.env["PART_DLQ_URL"]):
            left = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
            self.assertEqual(left, [], url)

    def test_the_image_notifications_are_the_templates(self):
        """Creations and removals of the same suffixes (the prefix is the stack's own choice)."""
        template = set()
        for rule in TEMPLATE["Bucket"]["Properties"]["NotificationConfiguration"]["QueueConfigurations"]:
            suffix = next(r["Value"] for r in rule["Filter"]["S3Key"]["Rules"] if r["Name"] == "suffix")
            template.add((rule["Event"], suffix))
        s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
        local = set()
        for rule in s3.get_bucket_notification_configuration(Bucket=self.env["BUCKET"])["QueueConfigurations"]:
            self.assertTrue(rule["QueueArn"].endswith(":" + lsr.IMAGE_QUEUE), rule["QueueArn"])
            suffix = next(r["Value"] for r in rule["Filter"]["Key"]["FilterRules"] if r["Name"].lower() == "suffix")
            local |= {(event, suffix) for event in rule["Events"]}
        self.assertEqual(local, template)


class SecondRegionTest(unittest.TestCase):
    """The second regional stack (REGION2): its own bucket, queues and tables, seen only by clients
    that sign for its region, its image notifications on its own queue."""

    @classmethod
    def setUpClass(cls):
        endpoint = os.environ.get("AWS_ENDPOINT_URL")
        if not endpoint:
            raise SystemExit("AWS_ENDPOINT_URL is not set: start scripts/local-stack and export .local/env")
        cls.env = exported(ROOT / ".local/env")
        cls.region = cls.env["REGION2"]
        cls.s3 = boto3.client("s3", endpoint_url=endpoint, region_name=cls.region)
        cls.sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=cls.region)
        cls.ddb = boto3.client("dynamodb", endpoint_url=endpoint, region_name=cls.region)
        cls.first_sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=lsr.REGION)

    def attributes(self, url):
        return self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]

    def test_the_environment_names_a_second_region_apart_from_the_first(self):
        self.assertEqual(self.region, "eu-central-1")
        self.assertNotEqual(self.env["BUCKET_2"], self.env["BUCKET"])
        for name in ("BACKFILL_QUEUE_URL", "IMAGE_QUEUE_URL", "TASK_TABLE", "LEASE_TABLE"):
            self.assertNotEqual(self.env[name + "_2"], self.env[name], name)

    def test_the_bucket_is_in_the_second_region(self):
        location = self.s3.get_bucket_location(Bucket=self.env["BUCKET_2"])["LocationConstraint"]
        self.assertEqual(location, self.region)

    def test_the_queues_are_in_the_second_region_only(self):
        backfill = self.attributes(self.env["BACKFILL_QUEUE_URL_2"])
        self.assertEqual(backfill["QueueArn"].split(":")[3], self.region)
        redrive = json.loads(backfill["RedrivePolicy"])
        self.assertEqual(redrive["deadLetterTargetArn"], self.attributes(self.env["BACKFILL_DLQ_URL_2"])["QueueArn"])
        with self.assertRaises(self.first_sqs.exceptions.QueueDoesNotExist):
            self.first_sqs.get_queue_attributes(QueueUrl=self.env["BACKFILL_QUEUE_URL_2"])

    def test_the_tables_are_in_the_second_region(self):
        for name in ("LEASE_TABLE_2", "TASK_TABLE_2"):
            table = self.ddb.describe_table(TableName=self.env[name])["Table"]
            self.assertEqual(table["TableArn"].split(":")[3], self.region, name)

    def test_images_written_to_the_bucket_notify_its_own_queue(self):
        rules = self.s3.get_bucket_notification_configuration(Bucket=self.env["BUCKET_2"])["QueueConfigurations"]
        arn = self.attributes(self.env["IMAGE_QUEUE_URL_2"])["QueueArn"]
        self.assertTrue(rules)
        self.assertTrue(all(rule["QueueArn"] == arn for rule in rules), rules)

    def test_reset_empties_the_second_regions_bucket_and_queues(self):
        self.s3.put_object(Bucket=self.env["BUCKET_2"], Key="reset-test.bin", Body=b"x")
        self.sqs.send_message(QueueUrl=self.env["BACKFILL_QUEUE_URL_2"], MessageBody="{}")
        subprocess.run([str(ROOT / "scripts/local-stack"), "reset"], check=True, capture_output=True)
        self.assertEqual(self.s3.list_objects_v2(Bucket=self.env["BUCKET_2"]).get("Contents", []), [])
        left = self.sqs.receive_message(QueueUrl=self.env["BACKFILL_QUEUE_URL_2"], WaitTimeSeconds=0).get("Messages", [])
        self.assertEqual(left, [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
