#!/usr/bin/env python3
"""Tests of scripts/policy_check.py: the templates as they are pass every rule, and each rule
catches a broken copy of them. Run: .venv/bin/python scripts/test_policy_check.py"""
import copy
import json
import shutil
import sys
import tempfile
import textwrap
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import policy_check as pc  # noqa: E402

ROOT = pc.ROOT
BASE = {name: pc.load_template(ROOT / name) for name in pc.DEFAULT_TEMPLATES}
RECORDED = json.loads((ROOT / pc.SDK_CALLS_FILE).read_text(encoding="utf-8"))


def regional(t):
    return t["template.yaml"]["Resources"]


def edge(t):
    return t["template-edge.yaml"]["Resources"]


def statement(resources, role, sid):
    for policy in resources[role]["Properties"]["Policies"]:
        for st in policy["PolicyDocument"]["Statement"]:
            if st.get("Sid") == sid:
                return st
    raise KeyError(f"{role} has no statement {sid}")


def backfill_variables(t):
    return regional(t)["BackfillFunction"]["Properties"]["Environment"]["Variables"]


def conditional_statement(resources, role, sid):
    """The statement !If [Condition, {Sid: sid, ...}, NoValue] of a role's first policy."""
    for st in resources[role]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]:
        if "Fn::If" in st and st["Fn::If"][1].get("Sid") == sid:
            return st
    raise KeyError(f"{role} has no conditional statement {sid}")


class PolicyCheckTest(unittest.TestCase):
    def findings(self, mutate=None, recorded=None):
        templates = copy.deepcopy(BASE)
        if mutate:
            mutate(templates)
        return pc.check(templates, ROOT, copy.deepcopy(recorded or RECORDED))

    def assertCaught(self, rule, mutate=None, recorded=None, message=None):
        found = self.findings(mutate, recorded)
        rules = {f.rule for f in found}
        self.assertIn(rule, rules, f"expected a {rule} finding, got {[str(f) for f in found]}")
        if message:
            self.assertTrue(
                any(f.rule == rule and message in f.message for f in found),
                f"no {rule} finding says {message!r}: {[str(f) for f in found]}",
            )
        return found

    # ---------------------------------------------------------------- the templates as they are

    def test_the_templates_pass_every_rule(self):
        self.assertEqual([str(f) for f in self.findings()], [])

    def test_every_scenario_is_evaluated(self):
        names = [s.name for s in pc.scenarios(BASE["template.yaml"], "regional")]
        self.assertIn("regional BackfillQueueType=fifo ap-southeast-1", names)
        self.assertIn("regional BackfillTimeout=60 us-east-1", names)
        self.assertIn("regional EdgeDeployment=separate us-east-1", names)

    def test_visibility_follows_the_timeout_in_every_scenario(self):
        for scenario in pc.scenarios(BASE["template.yaml"], "regional"):
            resources = scenario.evaluated_resources()
            for _function, fprops, _event, _props, queue in pc.sqs_event_sources(resources):
                visibility = int(resources[queue]["Properties"]["VisibilityTimeout"])
                self.assertGreaterEqual(visibility, 6 * int(fprops["Timeout"]), scenario.name)

    def test_the_nested_edge_stack_exists_only_in_us_east_1(self):
        for scenario in pc.scenarios(BASE["template.yaml"], "regional"):
            resources = scenario.evaluated_resources()
            nested = scenario.values["EdgeDeployment"] == "nested" and scenario.region == "us-east-1"
            self.assertEqual("EdgeStack" in resources, nested, scenario.name)

    def test_the_hook_gets_the_queue_url_of_the_queue_arn(self):
        scenario = next(pc.scenarios(BASE["template-edge.yaml"], "edge"))
        origins = scenario.evaluated_resources()["Distribution"]["Properties"]["DistributionConfig"]["Origins"]
        headers = {h["HeaderName"]: h["HeaderValue"] for h in origins[1]["OriginCustomHeaders"]}
        self.assertEqual(headers["x-backfill-queue-url"], "https://sqs.ap-southeast-1.amazonaws.com/123456789012/backfill")
        self.assertEqual(headers["x-backfill-bucket"], pc.SAMPLE_VALUES["BucketName"])

    # ---------------------------------------------------------------- IAM

    def test_wildcard_action(self):
        def mutate(t):
            statement(regional(t), "BackfillRole", "WriteBackfilledObjects")["Action"] = "s3:*"

        self.assertCaught("wildcard-action", mutate, message="'s3:*'")

    def test_not_action(self):
        def mutate(t):
            st = statement(regional(t), "ImageRole", "RecordTasks")
            st["NotAction"] = st.pop("Action")

        self.assertCaught("wildcard-action", mutate, message="NotAction")

    def test_wildcard_resource(self):
        def mutate(t):
            statement(regional(t), "ImageRole", "RecordTasks")["Resource"] = "*"

        self.assertCaught("wildcard-resource", mutate, message="'*'")

    def test_wildcard_bucket_name(self):
        def mutate(t):
            statement(regional(t), "BackfillRole", "WriteBackfilledObjects")["Resource"] = {
                "Fn::Sub": "arn:${AWS::Partition}:s3:::*/*"
            }

        self.assertCaught("wildcard-resource", mutate, message="arn:aws:s3:::*/*")

    def test_wildcard_queue_for_the_hook(self):
        def mutate(t):
            statement(edge(t), "EdgeFunctionRole", "SendBackfill")["Resource"] = {
                "Fn::Sub": "arn:aws:sqs:*:${AWS::AccountId}:*"
            }

        self.assertCaught("wildcard-resource", mutate)

    def test_managed_policy(self):
        def mutate(t):
            regional(t)["BackfillRole"]["Properties"]["ManagedPolicyArns"] = [
                "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole"
            ]

        self.assertCaught("unverifiable-policy", mutate, message="managed policies")

    def test_generated_role(self):
        def mutate(t):
            del regional(t)["ImageFunction"]["Properties"]["Role"]
            regional(t)["ImageFunction"]["Properties"]["Policies"] = ["SQSPollerPolicy"]

        self.assertCaught("unverifiable-policy", mutate, message="no Role")

    # ---------------------------------------------------------------- SQS event sources

    def test_visibility_below_six_times_the_timeout(self):
        def mutate(t):
            t["template.yaml"]["Mappings"]["QueueVisibility"]["900"]["Seconds"] = 1800

        self.assertCaught("visibility-timeout", mutate, message="visibility 1800s < 6 x timeout 900s")

    def test_visibility_of_one_timeout_choice(self):
        def mutate(t):
            t["template.yaml"]["Mappings"]["QueueVisibility"]["60"]["Seconds"] = 300

        found = self.assertCaught("visibility-timeout", mutate)
        self.assertTrue(all("Timeout=60" in f.scenario for f in found if f.rule == "visibility-timeout"))

    def test_event_source_without_batch_item_failures(self):
        def mutate(t):
            del regional(t)["ImageFunction"]["Properties"]["Events"]["ImageQueue"]["Properties"]["FunctionResponseTypes"]

        self.assertCaught("batch-item-failures", mutate)

    def test_event_source_without_maximum_concurrency(self):
        def mutate(t):
            del regional(t)["BackfillFunction"]["Properties"]["Events"]["BackfillQueue"]["Properties"]["ScalingConfig"]

        self.assertCaught("event-source-settings", mutate, message="MaximumConcurrency")

    def test_batching_window_on_a_fifo_queue(self):
        def mutate(t):
            events = regional(t)["BackfillFunction"]["Properties"]["Events"]
            events["BackfillQueue"]["Properties"]["MaximumBatchingWindowInSeconds"] = 5

        found = self.assertCaught("event-source-settings", mutate, message="FIFO")
        self.assertTrue(all("fifo" in f.scenario for f in found if f.rule == "event-source-settings"))

    # ---------------------------------------------------------------- queues

    def test_queue_without_dead_letter_queue(self):
        def mutate(t):
            del regional(t)["ImageQueue"]["Properties"]["RedrivePolicy"]

        self.assertCaught("dead-letter-queue", mutate, message="no RedrivePolicy")

    def test_max_receive_count(self):
        def mutate(t):
            regional(t)["BackfillQueue"]["Properties"]["RedrivePolicy"]["maxReceiveCount"] = 50

        self.assertCaught("dead-letter-queue", mutate, message="maxReceiveCount")

    def test_dead_letter_queue_of_another_type(self):
        def mutate(t):
            props = regional(t)["BackfillDeadLetterQueue"]["Properties"]
            del props["FifoQueue"], props["QueueName"]

        self.assertCaught("dead-letter-queue", mutate, message="same type")

    def test_queue_without_encryption(self):
        def mutate(t):
            del regional(t)["ImageDeadLetterQueue"]["Properties"]["SqsManagedSseEnabled"]

        self.assertCaught("queue-encryption", mutate)

    # ---------------------------------------------------------------- split copies: part queue, leases

    def test_part_queue_visibility_below_six_times_the_timeout(self):
        def mutate(t):
            regional(t)["PartQueue"]["Properties"]["VisibilityTimeout"] = 900

        self.assertCaught("visibility-timeout", mutate, message="queue PartQueue visibility 900s")

    def test_part_queue_without_dead_letter_queue(self):
        def mutate(t):
            del regional(t)["PartQueue"]["Properties"]["RedrivePolicy"]

        found = self.assertCaught("dead-letter-queue", mutate, message="no RedrivePolicy")
        self.assertTrue(any(f.where == "PartQueue" for f in found if f.rule == "dead-letter-queue"))
        # Its DLQ is then nobody's: an unconsumed queue without a redrive policy of its own.
        self.assertTrue(any(f.where == "PartDeadLetterQueue" for f in found if f.rule == "dead-letter-queue"))

    def test_part_queue_without_encryption(self):
        def mutate(t):
            del regional(t)["PartQueue"]["Properties"]["SqsManagedSseEnabled"]

        self.assertCaught("queue-encryption", mutate)

    def test_part_mapping_without_maximum_concurrency(self):
        def mutate(t):
            del regional(t)["BackfillFunction"]["Properties"]["Events"]["PartQueue"]["Properties"]["ScalingConfig"]

        found = self.assertCaught("event-source-settings", mutate, message="MaximumConcurrency")
        self.assertTrue(any(f.rule == "part-queue" and "MaximumConcurrency is None" in f.message for f in found))

    def test_part_mapping_without_batch_item_failures(self):
        def mutate(t):
            del regional(t)["BackfillFunction"]["Properties"]["Events"]["PartQueue"]["Properties"]["FunctionResponseTypes"]

        self.assertCaught("batch-item-failures", mutate)

    def test_part_mapping_with_batches(self):
        def mutate(t):
            regional(t)["BackfillFunction"]["Properties"]["Events"]["PartQueue"]["Properties"]["BatchSize"] = 10

        self.assertCaught("part-queue", mutate, message="BatchSize 10 on PartQueue")

    def test_part_workers_not_the_mappings_concurrency(self):
        def mutate(t):
            regional(t)["BackfillFunction"]["Properties"]["Environment"]["Variables"]["PART_WORKERS"] = 16

        self.assertCaught("part-queue", mutate, message="MaximumConcurrency is 8, PART_WORKERS is 16")

    def test_part_queue_nobody_consumes(self):
        def mutate(t):
            del regional(t)["BackfillFunction"]["Properties"]["Events"]["PartQueue"]

        found = self.assertCaught("part-queue", mutate, message="does not consume PartQueue")
        # The role still lets the function consume it, and the queue has no consumer to alarm on.
        self.assertTrue(any(f.rule == "role-minimum" and "not the function's own queue" in f.message for f in found))

    def test_part_queue_url_naming_the_backfill_queue(self):
        def mutate(t):
            regional(t)["BackfillFunction"]["Properties"]["Environment"]["Variables"]["PART_QUEUE_URL"] = {"Ref": "BackfillQueue"}

        found = self.assertCaught("part-queue", mutate, message="MaximumConcurrency is 5, PART_WORKERS is 8")
        self.assertTrue(any(f.rule == "part-queue" and "BatchSize 10 on BackfillQueue" in f.message for f in found))
        # SendMessage is granted on the part queue (still the CHANGE_QUEUE_URL) and the invalidation
        # queue, not on the queue the variable names.
        self.assertTrue(any(f.rule == "role-minimum" and "lacks sqs:SendMessage on <<BackfillQueue>>, the PART_QUEUE_URL"
                            in f.message for f in found), [str(f) for f in found])

    def test_part_queue_url_of_no_queue(self):
        def mutate(t):
            regional(t)["BackfillFunction"]["Properties"]["Environment"]["Variables"]["PART_QUEUE_URL"] = {
                "Fn::GetAtt": ["PartQueue", "Arn"]
            }

        self.assertCaught("part-queue", mutate, message="is not the URL of a queue")

    def test_part_queue_of_fifo_type(self):
        def mutate(t):
            for name in ("PartQueue", "PartDeadLetterQueue"):
                regional(t)[name]["Properties"]["FifoQueue"] = True

        self.assertCaught("part-queue", mutate, message="FIFO")

    def test_part_dead_letter_queue_without_alarm(self):
        def mutate(t):
            del regional(t)["PartDeadLetterAlarm"]

        found = self.assertCaught("queue-alarms", mutate, message="depth")
        self.assertTrue(any(f.where == "PartDeadLetterQueue" for f in found if f.rule == "queue-alarms"))

    def test_part_queue_without_age_alarm(self):
        def mutate(t):
            del regional(t)["PartOldestMessageAlarm"]

        found = self.assertCaught("queue-alarms", mutate, message="age")
        self.assertTrue(any(f.where == "PartQueue" for f in found if f.rule == "queue-alarms"))

    def test_role_without_send_to_the_part_queue(self):
        def mutate(t):
            policy = regional(t)["BackfillRole"]["Properties"]["Policies"][0]["PolicyDocument"]
            policy["Statement"] = [st for st in policy["Statement"] if st.get("Sid") != "SendPartTasks"]

        self.assertCaught("role-minimum", mutate, message="lacks sqs:SendMessage")

    def test_role_consuming_only_the_backfill_queue(self):
        # The event source mapping's actions are checked per action, not per queue: a role that
        # consumes only the backfill queue passes role-minimum, but the deploy would fail on the
        # part queue's mapping; so the statement lists both queues and this test keeps them.
        resources = statement(BASE["template.yaml"]["Resources"], "BackfillRole", "ConsumeBackfillQueue")["Resource"]
        self.assertIn({"Fn::GetAtt": ["PartQueue", "Arn"]}, resources)

    def test_role_without_list_parts(self):
        def mutate(t):
            statement(regional(t), "BackfillRole", "WriteBackfilledObjects")["Action"].remove("s3:ListMultipartUploadParts")

        self.assertCaught("role-minimum", mutate, message="lacks s3:ListMultipartUploadParts")

    def test_list_parts_on_the_bucket(self):
        def mutate(t):
            st = statement(regional(t), "BackfillRole", "WriteBackfilledObjects")
            st["Action"].remove("s3:ListMultipartUploadParts")
            statement(regional(t), "BackfillRole", "SeeMissingObjects")["Action"] = ["s3:ListBucket", "s3:ListMultipartUploadParts"]

        self.assertCaught("role-minimum", mutate, message="s3:ListMultipartUploadParts on the wrong level")

    def test_leases_recorded_in_another_table(self):
        def mutate(t):
            statement(regional(t), "BackfillRole", "RecordCopyLeases")["Resource"] = {"Fn::GetAtt": ["TaskTable", "Arn"]}

        found = self.assertCaught("role-minimum", mutate, message="not the LEASE_TABLE or FRESHNESS_TABLE the function reads")
        self.assertTrue(any("lacks dynamodb:GetItem on <<CopyLeaseTable>>, the LEASE_TABLE" in f.message for f in found))

    def test_role_without_lease_release(self):
        def mutate(t):
            statement(regional(t), "BackfillRole", "RecordCopyLeases")["Action"] = ["dynamodb:UpdateItem", "dynamodb:GetItem"]

        self.assertCaught("role-minimum", mutate, message="lacks dynamodb:DeleteItem")

    def test_role_without_the_part_checksums_read(self):
        def mutate(t):
            statement(regional(t), "BackfillRole", "RecordCopyLeases")["Action"].remove("dynamodb:GetItem")

        self.assertCaught("role-minimum", mutate, message="lacks dynamodb:GetItem")

    def test_lease_calls_need_no_grant_without_the_table(self):
        # The item calls are still made on the freshness table: the lease table's grant is then
        # on a table no variable names.
        def mutate(t):
            del regional(t)["BackfillFunction"]["Properties"]["Environment"]["Variables"]["LEASE_TABLE"]

        found = self.assertCaught("role-minimum", mutate,
                                  message="dynamodb:UpdateItem on <<CopyLeaseTable.Arn>>, not the FRESHNESS_TABLE the function reads")
        self.assertFalse(any(f.rule == "lease-table" for f in found), [str(f) for f in found])

    def test_table_calls_need_no_grant_without_either_table(self):
        def mutate(t):
            variables = regional(t)["BackfillFunction"]["Properties"]["Environment"]["Variables"]
            del variables["LEASE_TABLE"], variables["FRESHNESS_TABLE"]

        found = self.assertCaught("role-minimum", mutate, message="grants dynamodb:UpdateItem, which the function does not need")
        self.assertTrue(any("grants dynamodb:Query, which the function does not need" in f.message for f in found))

    def test_lease_table_keyed_by_another_attribute(self):
        def mutate(t):
            props = regional(t)["CopyLeaseTable"]["Properties"]
            props["AttributeDefinitions"] = [{"AttributeName": "id", "AttributeType": "S"}]
            props["KeySchema"] = [{"AttributeName": "id", "KeyType": "HASH"}]

        self.assertCaught("lease-table", mutate, message="not by pk (S) alone")

    def test_lease_table_key_of_another_type(self):
        def mutate(t):
            regional(t)["CopyLeaseTable"]["Properties"]["AttributeDefinitions"][0]["AttributeType"] = "B"

        self.assertCaught("lease-table", mutate, message="not by pk (S) alone")

    def test_lease_table_ttl_on_another_attribute(self):
        def mutate(t):
            regional(t)["CopyLeaseTable"]["Properties"]["TimeToLiveSpecification"]["AttributeName"] = "expires_at"

        self.assertCaught("lease-table", mutate, message="TTL is not on ttl")

    def test_lease_table_naming_the_task_table(self):
        def mutate(t):
            regional(t)["BackfillFunction"]["Properties"]["Environment"]["Variables"]["LEASE_TABLE"] = {"Ref": "TaskTable"}

        found = self.assertCaught("lease-table", mutate, message="TaskTable is keyed by")
        self.assertTrue(any(f.rule == "role-minimum" and "not the LEASE_TABLE" in f.message for f in found))

    def test_lease_table_without_ttl(self):
        def mutate(t):
            del regional(t)["CopyLeaseTable"]["Properties"]["TimeToLiveSpecification"]

        found = self.assertCaught("lease-table", mutate, message="TTL is not on ttl")
        self.assertTrue(any(f.rule == "dynamodb-table" and f.where == "CopyLeaseTable" for f in found))

    # ---------------------------------------------------------------- fresh copies (issue 18): freshness table

    def test_freshness_table_without_the_due_index(self):
        def mutate(t):
            del regional(t)["FreshnessTable"]["Properties"]["GlobalSecondaryIndexes"]

        self.assertCaught("freshness", mutate, message="FreshnessTable has no global secondary index due")

    def test_due_index_keyed_the_other_way(self):
        def mutate(t):
            key = regional(t)["FreshnessTable"]["Properties"]["GlobalSecondaryIndexes"][0]["KeySchema"]
            key[0]["AttributeName"], key[1]["AttributeName"] = "due_at", "shard"

        self.assertCaught("freshness", mutate, message="not by shard (S) then due_at (N)")

    def test_due_index_due_at_as_a_string(self):
        def mutate(t):
            for attribute in regional(t)["FreshnessTable"]["Properties"]["AttributeDefinitions"]:
                if attribute["AttributeName"] == "due_at":
                    attribute["AttributeType"] = "S"

        self.assertCaught("freshness", mutate, message="('due_at', 'RANGE', 'S')")

    def test_due_index_projecting_keys_only(self):
        def mutate(t):
            index = regional(t)["FreshnessTable"]["Properties"]["GlobalSecondaryIndexes"][0]
            index["Projection"] = {"ProjectionType": "KEYS_ONLY"}

        self.assertCaught("freshness", mutate, message="projects KEYS_ONLY, not ALL")

    def test_freshness_table_keyed_by_another_attribute(self):
        def mutate(t):
            props = regional(t)["FreshnessTable"]["Properties"]
            props["AttributeDefinitions"][0] = {"AttributeName": "id", "AttributeType": "S"}
            props["KeySchema"] = [{"AttributeName": "id", "KeyType": "HASH"}]

        self.assertCaught("freshness", mutate, message="not by pk (S) alone")

    def test_freshness_table_ttl_on_another_attribute(self):
        def mutate(t):
            regional(t)["FreshnessTable"]["Properties"]["TimeToLiveSpecification"]["AttributeName"] = "expires_at"

        self.assertCaught("freshness", mutate, message="TTL is not on ttl")

    def test_freshness_table_naming_the_lease_table(self):
        def mutate(t):
            backfill_variables(t)["FRESHNESS_TABLE"] = {"Ref": "CopyLeaseTable"}

        found = self.assertCaught("freshness", mutate, message="CopyLeaseTable has no global secondary index due")
        # The freshness grants are then on a table no variable names.
        self.assertTrue(any(f.rule == "role-minimum" and "<<FreshnessTable.Arn>>, not the LEASE_TABLE or FRESHNESS_TABLE"
                            in f.message for f in found), [str(f) for f in found])

    def test_freshness_table_of_no_table(self):
        def mutate(t):
            backfill_variables(t)["FRESHNESS_TABLE"] = {"Fn::GetAtt": ["FreshnessTable", "Arn"]}

        self.assertCaught("freshness", mutate, message="is not the name of a table of this template")

    def test_query_granted_on_the_table_not_its_index(self):
        def mutate(t):
            statement(regional(t), "BackfillRole", "WalkDueCopies")["Resource"] = {"Fn::GetAtt": ["FreshnessTable", "Arn"]}

        self.assertCaught("freshness", mutate, message="may not dynamodb:Query <<FreshnessTable.Arn>>/index/due")

    def test_query_granted_on_every_index(self):
        def mutate(t):
            statement(regional(t), "BackfillRole", "WalkDueCopies")["Resource"] = {"Fn::Sub": "${FreshnessTable.Arn}/index/*"}

        self.assertCaught("wildcard-resource", mutate, message="<<FreshnessTable.Arn>>/index/*")

    def test_item_actions_granted_on_the_index(self):
        def mutate(t):
            statement(regional(t), "BackfillRole", "TrackFreshness")["Resource"] = {"Fn::Sub": "${FreshnessTable.Arn}/index/due"}

        found = self.assertCaught("role-minimum", mutate, message="dynamodb:GetItem on an index")
        self.assertTrue(any("lacks dynamodb:GetItem on <<FreshnessTable>>, the FRESHNESS_TABLE" in f.message for f in found))

    def test_role_without_the_freshness_records(self):
        def mutate(t):
            policy = regional(t)["BackfillRole"]["Properties"]["Policies"][0]["PolicyDocument"]
            policy["Statement"] = [st for st in policy["Statement"] if st.get("Sid") != "TrackFreshness"]

        self.assertCaught("role-minimum", mutate, message="lacks dynamodb:UpdateItem on <<FreshnessTable>>, the FRESHNESS_TABLE")

    def test_max_staleness_pattern_accepting_a_minute(self):
        # The function refuses a MAX_STALENESS under its MIN_REVALIDATION (5 minutes).
        def mutate(t):
            t["template.yaml"]["Parameters"]["MaxStaleness"]["AllowedPattern"] = "^[1-9][0-9]{0,4}(s|m|h)$"

        self.assertCaught("freshness", mutate, message="accepts '1m', which the backfill function refuses")

    def test_max_staleness_pattern_refusing_hours(self):
        def mutate(t):
            spec = t["template.yaml"]["Parameters"]["MaxStaleness"]
            spec["AllowedPattern"] = spec["AllowedPattern"].replace("|[1-9][0-9]{0,4}h", "")

        found = self.assertCaught("freshness", mutate, message="its default '24h' does not match its pattern")
        self.assertTrue(any("refuses '1h', which the backfill function accepts" in f.message for f in found))

    def test_max_staleness_bound_read_from_the_function(self):
        found = self.findings_with_sources({
            "functions/backfill/src/config.rs": (
                'duration_or("MIN_REVALIDATION", Duration::from_secs(300))',
                'duration_or("MIN_REVALIDATION", Duration::from_secs(600))',
            ),
        })
        self.assertTrue(any(f.rule == "freshness" and "accepts '5m'" in f.message for f in found), [str(f) for f in found])

    def test_max_staleness_set_below_the_minimum(self):
        def mutate(t):
            backfill_variables(t)["MAX_STALENESS"] = "2m"

        self.assertCaught("freshness", mutate, message="'2m' is not a duration of at least 300000 ms")

    # ---------------------------------------------------------------- fresh copies: invalidation queue

    def test_invalidation_queue_without_dead_letter_queue(self):
        def mutate(t):
            del regional(t)["InvalidationQueue"]["Properties"]["RedrivePolicy"]

        found = self.assertCaught("invalidation-queue", mutate, message="has no dead-letter queue")
        self.assertTrue(any(f.rule == "dead-letter-queue" and f.where == "InvalidationQueue" for f in found))

    def test_invalidation_mapping_without_a_window(self):
        def mutate(t):
            events = regional(t)["BackfillFunction"]["Properties"]["Events"]
            events["InvalidationQueue"]["Properties"]["MaximumBatchingWindowInSeconds"] = 0

        found = self.assertCaught("invalidation-queue", mutate, message="BatchSize 1000 over 10 with a batching window of 0s")
        self.assertTrue(any(f.rule == "event-source-settings" and "at least 1" in f.message for f in found))

    def test_invalidation_window_parameter_allowing_zero(self):
        def mutate(t):
            t["template.yaml"]["Parameters"]["InvalidationBatchWindow"]["MinValue"] = 0

        self.assertCaught("event-source-settings", mutate, message="its batching window may be 0 with batches of up to 1000")

    def test_invalidation_batch_over_lambdas_limit(self):
        def mutate(t):
            regional(t)["BackfillFunction"]["Properties"]["Events"]["InvalidationQueue"]["Properties"]["BatchSize"] = 20000

        self.assertCaught("invalidation-queue", mutate, message="BatchSize 20000 over 10000")

    def test_invalidation_mapping_without_batch_item_failures(self):
        def mutate(t):
            del regional(t)["BackfillFunction"]["Properties"]["Events"]["InvalidationQueue"]["Properties"]["FunctionResponseTypes"]

        found = self.assertCaught("invalidation-queue", mutate, message="lacks ReportBatchItemFailures")
        self.assertIn("batch-item-failures", {f.rule for f in found})

    def test_invalidation_queue_nobody_consumes(self):
        def mutate(t):
            del regional(t)["BackfillFunction"]["Properties"]["Events"]["InvalidationQueue"]

        found = self.assertCaught("invalidation-queue", mutate, message="does not consume InvalidationQueue")
        self.assertTrue(any(f.rule == "role-minimum" and "not the function's own queue" in f.message for f in found))

    def test_invalidation_queue_url_naming_the_part_queue(self):
        def mutate(t):
            backfill_variables(t)["INVALIDATION_QUEUE_URL"] = {"Ref": "PartQueue"}

        found = self.assertCaught("invalidation-queue", mutate, message="PartQueue is also the function's PART_QUEUE_URL")
        self.assertTrue(any(f.rule == "role-minimum" and "sqs:SendMessage on <<InvalidationQueue.Arn>>, not the "
                            "PART_QUEUE_URL or CHANGE_QUEUE_URL or INVALIDATION_QUEUE_URL" in f.message for f in found))

    def test_invalidation_queue_url_of_no_queue(self):
        def mutate(t):
            backfill_variables(t)["INVALIDATION_QUEUE_URL"] = {"Fn::GetAtt": ["InvalidationQueue", "QueueName"]}

        self.assertCaught("invalidation-queue", mutate, message="is not the URL of a queue")

    def test_invalidation_queue_of_fifo_type(self):
        def mutate(t):
            for name in ("InvalidationQueue", "InvalidationDeadLetterQueue"):
                regional(t)[name]["Properties"]["FifoQueue"] = True

        found = self.assertCaught("invalidation-queue", mutate, message="FIFO")
        self.assertTrue(any(f.rule == "event-source-settings" and "BatchSize over 10 on a FIFO queue" in f.message for f in found))

    def test_role_without_send_to_the_invalidation_queue(self):
        def mutate(t):
            policy = regional(t)["BackfillRole"]["Properties"]["Policies"][0]["PolicyDocument"]
            policy["Statement"] = [st for st in policy["Statement"] if st.get("Sid") != "SendInvalidations"]

        self.assertCaught("role-minimum", mutate, message="lacks sqs:SendMessage on <<InvalidationQueue>>, the INVALIDATION_QUEUE_URL")

    def test_invalidation_dead_letter_queue_without_alarm(self):
        def mutate(t):
            del regional(t)["InvalidationDeadLetterAlarm"]

        found = self.assertCaught("queue-alarms", mutate, message="depth")
        self.assertTrue(any(f.where == "InvalidationDeadLetterQueue" for f in found if f.rule == "queue-alarms"))

    def test_invalidation_queue_without_age_alarm(self):
        def mutate(t):
            del regional(t)["InvalidationOldestMessageAlarm"]

        found = self.assertCaught("queue-alarms", mutate, message="age")
        self.assertTrue(any(f.where == "InvalidationQueue" for f in found if f.rule == "queue-alarms"))

    # ---------------------------------------------------------------- fresh copies: CloudFront and S3

    def test_invalidations_granted_on_every_distribution(self):
        def mutate(t):
            grant = conditional_statement(regional(t), "BackfillRole", "InvalidateChangedPaths")
            grant["Fn::If"][1]["Resource"] = {"Fn::Sub": "arn:${AWS::Partition}:cloudfront::${AWS::AccountId}:distribution/*"}

        found = self.assertCaught("wildcard-resource", mutate, message="distribution/*")
        self.assertTrue(any(f.rule == "role-minimum" and "not the DISTRIBUTION_ID" in f.message for f in found))

    def test_invalidations_granted_on_another_distribution(self):
        def mutate(t):
            grant = conditional_statement(regional(t), "BackfillRole", "InvalidateChangedPaths")
            grant["Fn::If"][1]["Resource"] = f"arn:aws:cloudfront::{pc.ACCOUNT}:distribution/EOTHERDIST1"

        found = self.assertCaught("role-minimum", mutate, message="not the DISTRIBUTION_ID the function reads")
        # Both the nested distribution (in us-east-1) and a separate one (by its id) lack it.
        messages = " ".join(f.message for f in found)
        self.assertIn("lacks cloudfront:CreateInvalidation on <<EdgeStack.Outputs.DistributionId>>", messages)
        self.assertIn("lacks cloudfront:CreateInvalidation on E2QWRUHEXAMPLE", messages)

    def test_invalidations_granted_without_a_distribution(self):
        def mutate(t):
            statements = regional(t)["BackfillRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
            grant = conditional_statement(regional(t), "BackfillRole", "InvalidateChangedPaths")
            statements[statements.index(grant)] = grant["Fn::If"][1]

        found = self.assertCaught("role-minimum", mutate, message="grants cloudfront:CreateInvalidation, which the function does not need")
        self.assertTrue(all("ap-southeast-1" in f.scenario or "separate" in f.scenario for f in found), [str(f) for f in found])

    def test_distribution_not_given_to_the_function(self):
        def mutate(t):
            del backfill_variables(t)["DISTRIBUTION_ID"]

        self.assertCaught("role-minimum", mutate, message="grants cloudfront:CreateInvalidation, which the function does not need")

    def test_role_without_the_invalidation_grant(self):
        def mutate(t):
            statements = regional(t)["BackfillRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
            statements.remove(conditional_statement(regional(t), "BackfillRole", "InvalidateChangedPaths"))

        self.assertCaught("role-minimum", mutate, message="lacks cloudfront:CreateInvalidation")

    def test_role_without_the_conditional_delete(self):
        def mutate(t):
            statement(regional(t), "BackfillRole", "WriteBackfilledObjects")["Action"].remove("s3:DeleteObject")

        self.assertCaught("role-minimum", mutate, message="lacks s3:DeleteObject")

    def test_backfill_deleting_what_it_does_not_write(self):
        def mutate(t):
            st = statement(regional(t), "BackfillRole", "WriteBackfilledObjects")
            st["Action"].remove("s3:DeleteObject")
            regional(t)["BackfillRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"].append(
                {"Sid": "Delete", "Effect": "Allow", "Action": "s3:DeleteObject",
                 "Resource": {"Fn::Sub": "${Bucket.Arn}/${ThumbnailPrefix}*"}})

        self.assertCaught("role-minimum", mutate, message="s3:DeleteObject on <<Bucket.Arn>>/thumbnails/*, which it does not write")

    # ---------------------------------------------------------------- fresh copies: revalidation schedule

    def schedule(self, t):
        return regional(t)["RevalidationSchedule"]["Properties"]

    def test_schedule_input_without_its_period(self):
        def mutate(t):
            self.schedule(t)["Target"]["Input"] = '{"version":1,"kind":"sweep"}'

        found = self.assertCaught("revalidation-schedule", mutate, message="has the fields ['kind', 'version']")
        self.assertTrue(any("period_seconds None is not a whole number from 1 to 86400" in f.message for f in found))

    def test_schedule_input_not_json(self):
        def mutate(t):
            self.schedule(t)["Target"]["Input"] = "sweep"

        self.assertCaught("revalidation-schedule", mutate, message="is not a JSON object")

    def test_schedule_input_of_another_version_and_kind(self):
        def mutate(t):
            self.schedule(t)["Target"]["Input"] = '{"version":2,"kind":"refresh","period_seconds":60}'

        found = self.assertCaught("revalidation-schedule", mutate, message="version 2, not 1")
        self.assertTrue(any("kind 'refresh', not 'sweep'" in f.message for f in found))

    def test_schedule_period_not_its_rate(self):
        def mutate(t):
            self.schedule(t)["ScheduleExpression"] = "rate(5 minutes)"

        self.assertCaught("revalidation-schedule", mutate, message="period_seconds 60 but the schedule runs every 300s")

    def test_schedule_period_bounds_read_from_the_function(self):
        found = self.findings_with_sources({
            "functions/backfill/src/task.rs": ("(1..=86_400).contains(&sweep.period_seconds)",
                                               "(120..=86_400).contains(&sweep.period_seconds)"),
        })
        self.assertTrue(any(f.rule == "revalidation-schedule" and "from 120 to 86400" in f.message for f in found),
                        [str(f) for f in found])

    def test_schedule_of_a_cron_expression(self):
        def mutate(t):
            self.schedule(t)["ScheduleExpression"] = "cron(* * * * ? *)"

        self.assertCaught("revalidation-schedule", mutate, message="is not a rate")

    def test_schedule_disabled(self):
        def mutate(t):
            self.schedule(t)["State"] = "DISABLED"

        self.assertCaught("revalidation-schedule", mutate, message="State DISABLED")

    def test_schedule_with_a_flexible_window(self):
        def mutate(t):
            self.schedule(t)["FlexibleTimeWindow"] = {"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 5}

        self.assertCaught("revalidation-schedule", mutate, message="flexible time window")

    def test_schedule_retrying_for_a_day(self):
        def mutate(t):
            del self.schedule(t)["Target"]["RetryPolicy"]

        self.assertCaught("revalidation-schedule", mutate, message="retried for 86400s")

    def test_schedule_without_dead_letter_queue(self):
        def mutate(t):
            del self.schedule(t)["Target"]["DeadLetterConfig"]

        found = self.assertCaught("revalidation-schedule", mutate, message="no DeadLetterConfig")
        # Its role may then send to a queue the schedule does not use, which nobody drains either.
        self.assertTrue(any("may sqs:SendMessage on <<RevalidationDeadLetterQueue.Arn>>" in f.message for f in found))
        self.assertTrue(any(f.rule == "dead-letter-queue" and f.where == "RevalidationDeadLetterQueue" for f in found))

    def test_schedule_dead_letter_queue_of_fifo_type(self):
        def mutate(t):
            props = regional(t)["RevalidationDeadLetterQueue"]["Properties"]
            props["FifoQueue"] = True

        self.assertCaught("revalidation-schedule", mutate, message="Scheduler takes standard queues only")

    def test_schedule_dead_letter_queue_without_alarm(self):
        def mutate(t):
            del regional(t)["RevalidationDeadLetterAlarm"]

        found = self.assertCaught("queue-alarms", mutate, message="depth")
        self.assertTrue(any(f.where == "RevalidationDeadLetterQueue" for f in found if f.rule == "queue-alarms"))

    def test_schedule_sending_to_the_fifo_backfill_queue(self):
        def mutate(t):
            self.schedule(t)["Target"]["Arn"] = {"Fn::GetAtt": ["BackfillQueue", "Arn"]}

        found = self.assertCaught("revalidation-schedule", mutate, message="targets BackfillQueue, a FIFO queue")
        self.assertTrue(all("fifo" in f.scenario for f in found if "a FIFO queue" in f.message))
        self.assertTrue(any("may not sqs:SendMessage on <<BackfillQueue.Arn>>" in f.message for f in found))

    def test_schedule_sending_to_a_queue_no_sweeper_reads(self):
        def mutate(t):
            self.schedule(t)["Target"]["Arn"] = {"Fn::GetAtt": ["ImageQueue", "Arn"]}

        found = self.assertCaught("revalidation-schedule", mutate, message="which no function with a FRESHNESS_TABLE consumes")
        self.assertTrue(any(f.where == "BackfillFunction" and "no schedule sweeps" in f.message for f in found))

    def test_no_schedule(self):
        def mutate(t):
            del regional(t)["RevalidationSchedule"]

        self.assertCaught("revalidation-schedule", mutate, message="copies are revalidated only when a change is announced")

    def test_schedule_role_trusted_without_source_account(self):
        def mutate(t):
            del regional(t)["RevalidationScheduleRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Condition"]

        self.assertCaught("revalidation-schedule", mutate, message="aws:SourceAccount condition (confused deputy)")

    def test_schedule_role_trusted_by_lambda_too(self):
        def mutate(t):
            trust = regional(t)["RevalidationScheduleRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
            trust["Principal"]["Service"] = ["scheduler.amazonaws.com", "lambda.amazonaws.com"]

        self.assertCaught("revalidation-schedule", mutate, message="not trusted by scheduler.amazonaws.com alone")

    def test_schedule_role_sending_elsewhere(self):
        def mutate(t):
            statement(regional(t), "RevalidationScheduleRole", "SendSweeps")["Resource"] = [
                {"Fn::GetAtt": ["PartQueue", "Arn"]}, {"Fn::GetAtt": ["ImageQueue", "Arn"]}]

        self.assertCaught("revalidation-schedule", mutate, message="may sqs:SendMessage on <<ImageQueue.Arn>>")

    def test_schedule_role_receiving(self):
        def mutate(t):
            statement(regional(t), "RevalidationScheduleRole", "SendSweeps")["Action"] = ["sqs:SendMessage", "sqs:ReceiveMessage"]

        self.assertCaught("revalidation-schedule", mutate, message="may sqs:ReceiveMessage on <<PartQueue.Arn>>")

    def test_schedule_role_without_the_dead_letter_send(self):
        def mutate(t):
            policy = regional(t)["RevalidationScheduleRole"]["Properties"]["Policies"][0]["PolicyDocument"]
            policy["Statement"] = [st for st in policy["Statement"] if st.get("Sid") != "SendDeadLetterEvents"]

        self.assertCaught("revalidation-schedule", mutate, message="may not sqs:SendMessage on <<RevalidationDeadLetterQueue.Arn>>")

    def test_change_queue_url_naming_the_backfill_queue(self):
        def mutate(t):
            backfill_variables(t)["CHANGE_QUEUE_URL"] = {"Ref": "BackfillQueue"}

        found = self.assertCaught("revalidation-schedule", mutate, message="BackfillQueue is a FIFO queue")
        self.assertTrue(all("fifo" in f.scenario for f in found if "is a FIFO queue" in f.message))
        self.assertTrue(any(f.rule == "role-minimum" and "lacks sqs:SendMessage on <<BackfillQueue>>, the CHANGE_QUEUE_URL"
                            in f.message for f in found))

    def test_change_queue_nobody_consumes(self):
        def mutate(t):
            backfill_variables(t)["CHANGE_QUEUE_URL"] = {"Ref": "RevalidationDeadLetterQueue"}

        self.assertCaught("revalidation-schedule", mutate, message="does not consume RevalidationDeadLetterQueue")

    def test_change_queue_url_of_no_queue(self):
        def mutate(t):
            backfill_variables(t)["CHANGE_QUEUE_URL"] = {"Fn::GetAtt": ["PartQueue", "Arn"]}

        self.assertCaught("revalidation-schedule", mutate, message="is not the URL of a queue of this template")

    # ---------------------------------------------------------------- when_configured: a variable, or several

    def test_when_configured_as_one_variable(self):
        # The single-name form still works: SendMessageBatch recorded for PART_QUEUE_URL alone
        # makes the invalidation queue's grant one no variable of it names.
        recorded = copy.deepcopy(RECORDED)
        recorded["functions/backfill"]["when_configured"]["sqs:SendMessageBatch"] = "PART_QUEUE_URL"
        self.assertCaught("role-minimum", recorded=recorded,
                          message="sqs:SendMessage on <<InvalidationQueue.Arn>>, not the PART_QUEUE_URL the function reads")

    def test_a_call_of_several_variables_is_needed_when_any_is_set(self):
        scenario = next(pc.scenarios(BASE["template.yaml"], "regional"))
        resources = copy.deepcopy(scenario.evaluated_resources())
        variables = resources["BackfillFunction"]["Properties"]["Environment"]["Variables"]
        entry = RECORDED["functions/backfill"]
        del variables["PART_QUEUE_URL"], variables["CHANGE_QUEUE_URL"]
        self.assertIn("sqs:SendMessage", pc.required_actions(resources, "BackfillFunction", entry))
        del variables["INVALIDATION_QUEUE_URL"]
        self.assertNotIn("sqs:SendMessage", pc.required_actions(resources, "BackfillFunction", entry))

    # ---------------------------------------------------------------- edge

    def test_edge_function_with_environment_variables(self):
        def mutate(t):
            edge(t)["OriginRequestFunction"]["Properties"]["Environment"] = {"Variables": {"QUEUE_URL": "x"}}

        self.assertCaught("edge-function", mutate, message="environment variables")

    def test_edge_function_environment_from_globals(self):
        def mutate(t):
            t["template-edge.yaml"]["Globals"] = {"Function": {"Environment": {"Variables": {"A": "b"}}}}

        self.assertCaught("edge-function", mutate, message="environment variables")

    def test_edge_function_on_a_custom_runtime(self):
        def mutate(t):
            edge(t)["OriginRequestFunction"]["Properties"]["Runtime"] = "provided.al2023"

        self.assertCaught("edge-function", mutate, message="Node.js and Python only")

    def test_edge_function_on_arm(self):
        def mutate(t):
            edge(t)["OriginRequestFunction"]["Properties"]["Architectures"] = ["arm64"]

        self.assertCaught("edge-function", mutate, message="x86_64")

    def test_edge_function_without_a_version(self):
        def mutate(t):
            del edge(t)["OriginRequestFunction"]["Properties"]["AutoPublishAlias"]

        self.assertCaught("edge-function", mutate, message="numbered version")

    def test_edge_role_not_trusted_by_edgelambda(self):
        def mutate(t):
            trust = edge(t)["EdgeFunctionRole"]["Properties"]["AssumeRolePolicyDocument"]
            trust["Statement"][0]["Principal"]["Service"] = ["lambda.amazonaws.com"]

        self.assertCaught("edge-function", mutate, message="edgelambda")

    def test_failover_codes_without_403(self):
        def mutate(t):
            groups = edge(t)["Distribution"]["Properties"]["DistributionConfig"]["OriginGroups"]
            groups["Items"][0]["FailoverCriteria"]["StatusCodes"] = {"Quantity": 5, "Items": [404, 500, 502, 503, 504]}

        self.assertCaught("failover-codes", mutate, message="[403]")

    def test_plain_http_viewers(self):
        def mutate(t):
            edge(t)["Distribution"]["Properties"]["DistributionConfig"]["DefaultCacheBehavior"][
                "ViewerProtocolPolicy"
            ] = "allow-all"

        self.assertCaught("viewer-https", mutate)

    # ---------------------------------------------------------------- thumbnails at the edge

    def test_thumbnail_format_scenarios_are_evaluated(self):
        names = [s.name for s in pc.scenarios(BASE["template-edge.yaml"], "edge")]
        for formats in ("webp", "avif", "avif,webp"):
            self.assertIn(f"edge ThumbnailFormats={formats} us-east-1", names)

    def test_format_function_only_with_a_format_or_several_regions(self):
        for scenario in pc.scenarios(BASE["template-edge.yaml"], "edge"):
            resources = scenario.evaluated_resources()
            wanted = scenario.values["ThumbnailFormats"] != "none" or pc.several_regions(scenario)
            self.assertEqual("ViewerRequestFunction" in resources, wanted, scenario.name)
            behaviours = resources["Distribution"]["Properties"]["DistributionConfig"]["CacheBehaviors"]
            thumbnails, uploads = scenario.values["ThumbnailPrefix"], scenario.values["UploadPrefix"]
            self.assertEqual([b["PathPattern"] for b in behaviours],
                             [thumbnails + uploads + "*", thumbnails + "*", uploads + "*"])
            self.assertEqual(bool(behaviours[1].get("FunctionAssociations")), wanted, scenario.name)
            # An upload's thumbnails: their format negotiated, but never sent to another region.
            self.assertEqual(bool(behaviours[0].get("FunctionAssociations")),
                             scenario.values["ThumbnailFormats"] != "none" and not pc.several_regions(scenario),
                             scenario.name)

    def test_format_function_code_not_the_file(self):
        def mutate(t):
            code = edge(t)["ViewerRequestFunction"]["Properties"]["FunctionCode"]
            code["Fn::Sub"][0] = code["Fn::Sub"][0].replace("image/*", "image/png")

        self.assertCaught("viewer-request", mutate, message="verbatim")

    def test_format_function_over_the_size_quota(self):
        def mutate(t):
            code = edge(t)["ViewerRequestFunction"]["Properties"]["FunctionCode"]
            code["Fn::Sub"][0] += "// " + "x" * 6000 + "\n"

        self.assertCaught("viewer-request", mutate, message="over CloudFront Functions' 10 KB")

    def test_format_function_naming_another_parameter(self):
        def mutate(t):
            code = edge(t)["ViewerRequestFunction"]["Properties"]["FunctionCode"]
            code["Fn::Sub"][0] += "var REGION = '${AWS::Region}';\n"

        self.assertCaught("viewer-request", mutate, message="names ['AWS::Region']")

    def test_format_function_with_another_variable(self):
        def mutate(t):
            code = edge(t)["ViewerRequestFunction"]["Properties"]["FunctionCode"]
            code["Fn::Sub"][1]["Region"] = {"Ref": "AWS::Region"}

        self.assertCaught("viewer-request", mutate, message="its Fn::Sub variables are ['Region', 'RegionalOrigins']")

    def test_format_function_on_runtime_1(self):
        def mutate(t):
            edge(t)["ViewerRequestFunction"]["Properties"]["FunctionConfig"]["Runtime"] = "cloudfront-js-1.0"

        self.assertCaught("viewer-request", mutate, message="cloudfront-js-2.0")

    def test_format_function_not_published(self):
        def mutate(t):
            edge(t)["ViewerRequestFunction"]["Properties"]["AutoPublish"] = False

        self.assertCaught("viewer-request", mutate, message="AutoPublish")

    def test_no_thumbnails_behaviour(self):
        def mutate(t):
            del edge(t)["Distribution"]["Properties"]["DistributionConfig"]["CacheBehaviors"]

        self.assertCaught("thumbnail-format", mutate, message="no cache behaviour for thumbnails/*")

    def test_thumbnails_falling_back_to_the_domestic_origin(self):
        def mutate(t):
            behaviour = edge(t)["Distribution"]["Properties"]["DistributionConfig"]["CacheBehaviors"][1]
            behaviour["TargetOriginId"] = "bucket-then-domestic"

        self.assertCaught("thumbnail-format", mutate, message="falls back to the domestic origin")

    def test_thumbnails_running_the_hook(self):
        def mutate(t):
            config = edge(t)["Distribution"]["Properties"]["DistributionConfig"]
            hook = config["DefaultCacheBehavior"]["LambdaFunctionAssociations"]
            config["CacheBehaviors"][1]["LambdaFunctionAssociations"] = copy.deepcopy(hook)

        self.assertCaught("thumbnail-format", mutate, message="enqueued as a backfill")

    def test_format_function_on_the_default_behaviour_with_one_region(self):
        def mutate(t):
            config = edge(t)["Distribution"]["Properties"]["DistributionConfig"]
            config["DefaultCacheBehavior"]["FunctionAssociations"] = config["CacheBehaviors"][1].pop("FunctionAssociations")

        found = self.assertCaught("thumbnail-format", mutate, message="on the behaviour '*'")
        self.assertTrue(any("but no viewer-request function" in f.message for f in found))
        self.assertTrue(all("regional stacks" not in f.scenario for f in found if "on the behaviour" in f.message))

    def test_format_function_at_viewer_response(self):
        def mutate(t):
            behaviour = edge(t)["Distribution"]["Properties"]["DistributionConfig"]["CacheBehaviors"][1]
            behaviour["FunctionAssociations"]["Fn::If"][1][0]["EventType"] = "viewer-response"

        self.assertCaught("thumbnail-format", mutate, message="after the cache key is made")

    def test_format_function_on_no_behaviour(self):
        def mutate(t):
            config = edge(t)["Distribution"]["Properties"]["DistributionConfig"]
            del config["CacheBehaviors"][1]["FunctionAssociations"]
            del config["DefaultCacheBehavior"]["FunctionAssociations"]

        self.assertCaught("thumbnail-format", mutate, message="on no cache behaviour")

    # ---------------------------------------------------------------- the upload prefix

    def test_backfill_role_without_the_upload_deny(self):
        def mutate(t):
            statements = regional(t)["BackfillRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
            statements[:] = [st for st in statements if not (isinstance(st, dict) and st.get("Sid") == "NeverWriteUploads")]

        found = self.assertCaught("upload-prefix", mutate, message="may s3:PutObject under uploads/")
        self.assertTrue(any("s3:DeleteObject" in f.message for f in found))

    def test_backfill_upload_deny_on_another_prefix(self):
        def mutate(t):
            statement(regional(t), "BackfillRole", "NeverWriteUploads")["Resource"] = {"Fn::Sub": "${Bucket.Arn}/upload/*"}

        self.assertCaught("upload-prefix", mutate, message="may s3:PutObject under uploads/")

    def test_backfill_not_refusing_the_upload_prefix(self):
        def mutate(t):
            backfill_variables(t)["REFUSED_PREFIXES"] = {"Fn::Sub": "${ThumbnailPrefix}"}

        self.assertCaught("upload-prefix", mutate, message="REFUSED_PREFIXES does not name uploads/")

    def test_hook_not_refusing_the_upload_prefix_in_a_region(self):
        def mutate(t):
            for origin in edge(t)["Distribution"]["Properties"]["DistributionConfig"]["Origins"]:
                if isinstance(origin, dict) and "Fn::If" in origin and origin["Fn::If"][1]["Id"] == "domestic-3":
                    headers = origin["Fn::If"][1]["OriginCustomHeaders"]
                    headers[:] = [h for h in headers if h.get("HeaderName") != "x-backfill-refused-prefixes"]

        found = self.assertCaught("upload-prefix", mutate, message="the hook is not told to refuse uploads/")
        self.assertTrue(all(f.where == "domestic-3" for f in found if f.rule == "upload-prefix"))

    def test_uploads_readable_by_the_distribution_while_private(self):
        def mutate(t):
            statements = regional(t)["BucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
            statements[:] = [st for st in statements if "CloudFrontNeverReadsUploads" not in json.dumps(st)]

        found = self.assertCaught("upload-privacy", mutate, message="may read uploads/alice/photos/cat.jpg with UploadAccess=private")
        self.assertTrue(any("thumbnails/uploads/" in f.message for f in found))

    def test_upload_thumbnails_readable_while_private(self):
        def mutate(t):
            statements = regional(t)["BucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
            deny = next(st for st in statements if "CloudFrontNeverReadsUploads" in json.dumps(st))
            deny["Fn::If"][1]["Resource"] = deny["Fn::If"][1]["Resource"][:1]

        self.assertCaught("upload-privacy", mutate, message="may read thumbnails/uploads/alice/photos/cat.jpg/160.jpg")

    def test_uploads_denied_while_public(self):
        def mutate(t):
            statements = regional(t)["BucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
            deny = next(st for st in statements if "CloudFrontNeverReadsUploads" in json.dumps(st))
            deny["Fn::If"][2] = deny["Fn::If"][1]

        found = self.assertCaught("upload-privacy", mutate, message="may not read uploads/alice/photos/cat.jpg with UploadAccess=public")
        self.assertTrue(all("UploadAccess=public" in f.scenario or "UploadAccess=signed" in f.scenario
                            for f in found if f.rule == "upload-privacy"))

    def _upload_behaviours(self, t):
        behaviours = edge(t)["Distribution"]["Properties"]["DistributionConfig"]["CacheBehaviors"]
        return [b for b in behaviours if "UploadPrefix" in json.dumps(b.get("PathPattern"))]

    def test_signed_uploads_served_without_a_signature(self):
        def mutate(t):
            for behaviour in self._upload_behaviours(t):
                behaviour.pop("TrustedKeyGroups")

        found = self.assertCaught("upload-privacy", mutate, message="is served without a signed URL or cookie")
        self.assertTrue(all("UploadAccess=signed" in f.scenario for f in found if f.rule == "upload-privacy"))
        self.assertEqual({f.where for f in found if f.rule == "upload-privacy"},
                         {"thumbnails/uploads/*", "uploads/*"})

    def test_signed_upload_thumbnails_served_without_a_signature(self):
        def mutate(t):
            self._upload_behaviours(t)[0].pop("TrustedKeyGroups")

        found = self.assertCaught("upload-privacy", mutate, message="thumbnails/uploads/alice/photos/cat.jpg/160.jpg is served without")
        self.assertFalse(any(f.message.startswith("uploads/") for f in found if f.rule == "upload-privacy"))

    def test_signed_uploads_trusting_another_key(self):
        def mutate(t):
            edge(t)["UploadSigningKey"]["Properties"]["PublicKeyConfig"]["EncodedKey"] = "-----BEGIN PUBLIC KEY-----\nother"

        self.assertCaught("upload-privacy", mutate, message="is served without a signed URL or cookie of UploadSigningPublicKey")

    def test_signed_uploads_trusting_one_key_of_two_while_rotating(self):
        def mutate(t):
            items = edge(t)["UploadKeyGroup"]["Properties"]["KeyGroupConfig"]["Items"]
            items[:] = items[:1]

        found = self.assertCaught("upload-privacy", mutate, message="is served without a signed URL or cookie")
        self.assertTrue(all("rotating" in f.scenario for f in found if f.rule == "upload-privacy"))

    def test_the_nested_edge_stack_not_given_the_second_key(self):
        def mutate(t):
            regional(t)["EdgeStack"]["Properties"]["Parameters"].pop("UploadSigningPublicKey2")

        self.assertCaught("upload-privacy", mutate, message="not given UploadSigningPublicKey2")

    def test_signed_uploads_denied_by_the_bucket_policy(self):
        def mutate(t):
            statements = regional(t)["BucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
            deny = next(st for st in statements if "CloudFrontNeverReadsUploads" in json.dumps(st))
            deny["Fn::If"][0] = "UploadsPrivateOrSigned"
            t["template.yaml"]["Conditions"]["UploadsPrivateOrSigned"] = {
                "Fn::Or": [{"Condition": "UploadsPrivate"}, {"Condition": "UploadsSigned"}]}

        self.assertCaught("upload-privacy", mutate, message="may not read uploads/alice/photos/cat.jpg with UploadAccess=signed")

    def test_upload_access_not_passed_on(self):
        def api_not_told(t):
            regional(t)["UploadApiFunction"]["Properties"]["Environment"]["Variables"].pop("UPLOAD_ACCESS")

        self.assertCaught("upload-privacy", api_not_told, message="UPLOAD_ACCESS is None, not UploadAccess 'private'")

        def no_key_id(t):
            regional(t)["UploadApiFunction"]["Properties"]["Environment"]["Variables"].pop("SIGNING_KEY_ID")

        self.assertCaught("upload-privacy", no_key_id, message="SIGNING_KEY_ID is not set with UploadAccess=signed")

        def nested_not_told(t):
            regional(t)["EdgeStack"]["Properties"]["Parameters"].pop("UploadAccess")

        self.assertCaught("upload-privacy", nested_not_told, message="the nested edge stack is not told UploadAccess=signed")

        def nested_without_key(t):
            regional(t)["EdgeStack"]["Properties"]["Parameters"].pop("UploadSigningPublicKey")

        self.assertCaught("upload-privacy", nested_without_key, message="not given UploadSigningPublicKey")

        def separate_not_told(t):
            parts = t["template.yaml"]["Outputs"]["EdgeStackParameters"]["Value"]["Fn::Join"][1]
            parts[1]["Fn::Sub"] = parts[1]["Fn::Sub"].replace(" UploadAccess=${UploadAccess}", "")

        self.assertCaught("upload-privacy", separate_not_told, message="does not pass UploadAccess=private to the edge stack")

    def test_upload_thumbnails_sent_to_another_region(self):
        def mutate(t):
            thumbnails = self._upload_behaviours(t)[0]
            thumbnails["FunctionAssociations"] = {"Fn::If": ["HasViewerRequestFunction", [
                {"EventType": "viewer-request", "FunctionARN": {"Fn::GetAtt": ["ViewerRequestFunction", "FunctionARN"]}}],
                {"Ref": "AWS::NoValue"}]}

        found = self.assertCaught("regions", mutate, message="sends uploads or their thumbnails to the viewer's region")
        self.assertTrue(all("regional stacks" in f.scenario for f in found if f.rule == "regions"))

    def test_uploads_served_by_the_default_behaviour(self):
        def mutate(t):
            behaviours = edge(t)["Distribution"]["Properties"]["DistributionConfig"]["CacheBehaviors"]
            behaviours[:] = [b for b in behaviours if "UploadPrefix" not in json.dumps(b.get("PathPattern"))]

        self.assertCaught("upload-privacy", mutate, message="uploads/alice/photos/cat.jpg is served by the default behaviour")

    def test_uploads_falling_back_to_the_domestic_origin(self):
        def mutate(t):
            behaviours = edge(t)["Distribution"]["Properties"]["DistributionConfig"]["CacheBehaviors"]
            uploads = next(b for b in behaviours if "UploadPrefix" in json.dumps(b.get("PathPattern")))
            uploads["TargetOriginId"] = "bucket-then-domestic"
            uploads["LambdaFunctionAssociations"] = copy.deepcopy(
                edge(t)["Distribution"]["Properties"]["DistributionConfig"]["DefaultCacheBehavior"]["LambdaFunctionAssociations"])

        found = self.assertCaught("upload-privacy", mutate, message="is not served by the bucket alone")
        self.assertTrue(any("runs the hook" in f.message for f in found))

    # ---------------------------------------------------------------- several regions

    def test_region_scenarios_are_evaluated(self):
        names = [s.name for s in pc.scenarios(BASE["template-edge.yaml"], "edge")]
        for name in ("two regional stacks", "three regional stacks, formats", "four regional stacks, longest routes"):
            self.assertIn(f"edge {name} us-east-1", names)
        scenario = next(s for s in pc.scenarios(BASE["template-edge.yaml"], "edge") if "three regional" in s.name)
        resources = scenario.evaluated_resources()
        origins = [o["Id"] for o in resources["Distribution"]["Properties"]["DistributionConfig"]["Origins"]]
        self.assertEqual(origins, ["overseas-bucket", "bucket-2", "bucket-3", "domestic", "domestic-2", "domestic-3",
                                   "domestic-direct"])
        code = resources["ViewerRequestFunction"]["Properties"]["FunctionCode"]
        self.assertIn("1:ap-southeast-1,2:eu-central-1,3:sa-east-1,", code)

    def test_region_parameters_accept_the_longest_values(self):
        params = BASE["template-edge.yaml"]["Parameters"]
        self.assertTrue(pc.accepts(params["ViewerRoutes"], pc.LONGEST_ROUTES))
        self.assertTrue(pc.accepts(params["OfflineRegions"], pc.LONGEST_OFFLINE))
        self.assertGreater(len(pc.LONGEST_ROUTES), 580)

    def test_region_domestic_origin_enqueuing_into_another_region(self):
        def mutate(t):
            for origin in edge(t)["Distribution"]["Properties"]["DistributionConfig"]["Origins"]:
                if isinstance(origin, dict) and "Fn::If" in origin and origin["Fn::If"][1]["Id"] == "domestic-2":
                    headers = origin["Fn::If"][1]["OriginCustomHeaders"]
                    headers[0]["HeaderValue"]["Fn::Sub"][1]["Region"]["Fn::Select"][1]["Fn::Split"][1]["Ref"] = "BackfillQueueArn"

        self.assertCaught("regions", mutate, message="not its region's queue")

    def test_region_domestic_origin_backfilling_another_bucket(self):
        def mutate(t):
            for origin in edge(t)["Distribution"]["Properties"]["DistributionConfig"]["Origins"]:
                if isinstance(origin, dict) and "Fn::If" in origin and origin["Fn::If"][1]["Id"] == "domestic-3":
                    origin["Fn::If"][1]["OriginCustomHeaders"][1]["HeaderValue"] = {"Ref": "BucketName"}

        self.assertCaught("regions", mutate, message="not its region's bucket")

    def test_region_bucket_without_origin_access_control(self):
        def mutate(t):
            for origin in edge(t)["Distribution"]["Properties"]["DistributionConfig"]["Origins"]:
                if isinstance(origin, dict) and "Fn::If" in origin and origin["Fn::If"][1]["Id"] == "bucket-2":
                    del origin["Fn::If"][1]["OriginAccessControlId"]

        self.assertCaught("regions", mutate, message="not an S3 origin signed by the origin access control")

    def test_region_bucket_slow_to_fail_over(self):
        def mutate(t):
            origin = edge(t)["Distribution"]["Properties"]["DistributionConfig"]["Origins"][0]
            del origin["ConnectionAttempts"], origin["ConnectionTimeout"]

        self.assertCaught("regions", mutate, message="holds viewers 30 s")

    def test_region_queue_the_hook_may_not_send_to(self):
        def mutate(t):
            st = statement(edge(t), "EdgeFunctionRole", "SendBackfill")
            st["Resource"] = [r for r in st["Resource"] if "HasRegion3" not in json.dumps(r)]

        self.assertCaught("regions", mutate, message="not the regional stacks' queues")

    def test_region_without_the_direct_origin(self):
        def mutate(t):
            origins = edge(t)["Distribution"]["Properties"]["DistributionConfig"]["Origins"]
            origins[:] = [o for o in origins if "domestic-direct" not in json.dumps(o)]

        self.assertCaught("regions", mutate, message="no origin domestic-direct")

    def test_region_country_not_reaching_the_function(self):
        def mutate(t):
            config = edge(t)["ViewerCountryPolicy"]["Properties"]["OriginRequestPolicyConfig"]
            config["HeadersConfig"]["Headers"] = ["CloudFront-Viewer-City"]

        self.assertCaught("regions", mutate, message="CloudFront-Viewer-Country in no origin request policy")

    def test_region_forwarding_the_host(self):
        def mutate(t):
            config = edge(t)["ViewerCountryPolicy"]["Properties"]["OriginRequestPolicyConfig"]
            config["HeadersConfig"]["HeaderBehavior"] = "allViewerAndWhitelistCloudFront"

        self.assertCaught("regions", mutate, message="Host")

    def test_region_default_behaviour_without_the_function(self):
        def mutate(t):
            del edge(t)["Distribution"]["Properties"]["DistributionConfig"]["DefaultCacheBehavior"]["FunctionAssociations"]

        self.assertCaught("regions", mutate, message="every viewer is served by the first region")

    def test_region_function_told_of_other_regions(self):
        def mutate(t):
            variables = edge(t)["ViewerRequestFunction"]["Properties"]["FunctionCode"]["Fn::Sub"][1]
            variables["RegionalOrigins"]["Fn::Join"][1].pop()

        self.assertCaught("regions", mutate, message="told of the regions")

    def test_scenario_values_the_parameters_refuse(self):
        def mutate(t):
            t["template-edge.yaml"]["Parameters"]["ViewerRoutes"]["MaxLength"] = 100

        found = self.assertCaught("scenario-values", mutate, message="refused by the parameter's constraints")
        self.assertTrue(all("longest routes" in f.scenario for f in found if f.rule == "scenario-values"))

    def test_scenario_values_a_rule_refuses(self):
        def mutate(t):
            rule = t["template-edge.yaml"]["Rules"]["Region2Complete"]
            rule["Assertions"][0]["Assert"] = {"Fn::Equals": [{"Ref": "Region2BucketName"}, ""]}

        found = self.assertCaught("scenario-values", mutate, message="Region2BucketName and Region2BackfillQueueArn go together")
        self.assertTrue(all("regional stacks" in f.scenario for f in found if f.rule == "scenario-values"))

    def test_one_region_with_an_origin_request_policy(self):
        def mutate(t):
            behaviour = edge(t)["Distribution"]["Properties"]["DistributionConfig"]["DefaultCacheBehavior"]
            behaviour["OriginRequestPolicyId"] = {"Ref": "CachePolicy"}

        self.assertCaught("regions", mutate, message="an origin request policy with one regional stack")

    def test_thumbnail_prefix_pattern_of_the_regional_stack(self):
        # The key-prefix pattern of the other prefixes, which a path pattern cannot hold.
        def mutate(t):
            regional = t["template.yaml"]["Parameters"]["ThumbnailPrefix"]
            regional["AllowedPattern"] = t["template.yaml"]["Parameters"]["ImageInputPrefix"]["AllowedPattern"]

        self.assertCaught("thumbnail-format", mutate, message="accepts \"a'b/\"")

    def test_thumbnail_formats_the_function_does_not_read(self):
        def mutate(t):
            t["template-edge.yaml"]["Parameters"]["ThumbnailFormats"]["AllowedValues"].append("jxl")

        self.assertCaught("thumbnail-format", mutate, message="'jxl'")

    def test_thumbnails_compressed_with_caching_off(self):
        def mutate(t):
            edge(t)["Distribution"]["Properties"]["DistributionConfig"]["CacheBehaviors"][1]["Compress"] = True

        self.assertCaught("ttl", mutate, message="Compress is True on thumbnails/* with MaxTtl=0")

    # ---------------------------------------------------------------- bucket

    def test_bucket_without_multipart_abort_rule(self):
        def mutate(t):
            del regional(t)["Bucket"]["Properties"]["LifecycleConfiguration"]

        self.assertCaught("bucket-protection", mutate, message="multipart")

    def test_bucket_with_public_policies_allowed(self):
        def mutate(t):
            regional(t)["Bucket"]["Properties"]["PublicAccessBlockConfiguration"]["BlockPublicPolicy"] = False

        self.assertCaught("bucket-protection", mutate, message="BlockPublicPolicy")

    def test_bucket_readable_by_anyone(self):
        def mutate(t):
            allow = regional(t)["BucketPolicy"]["Properties"]["PolicyDocument"]["Statement"][1]["Fn::If"][1]
            allow["Principal"] = "*"
            del allow["Condition"]

        self.assertCaught("bucket-policy", mutate)

    def test_notification_before_its_queue_policy(self):
        def mutate(t):
            del regional(t)["Bucket"]["DependsOn"]

        self.assertCaught("bucket-notification", mutate, message="depend")

    def test_notification_queue_policy_without_source_account(self):
        def mutate(t):
            st = regional(t)["ImageQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
            del st["Condition"]["StringEquals"]

        self.assertCaught("bucket-notification", mutate, message="SourceAccount")

    def test_notification_without_prefix(self):
        def mutate(t):
            config = regional(t)["Bucket"]["Properties"]["NotificationConfiguration"]["QueueConfigurations"][0]
            config["Filter"]["S3Key"]["Rules"] = config["Filter"]["S3Key"]["Rules"][1:]

        self.assertCaught("bucket-notification", mutate, message="prefix and suffix")

    def test_image_queue_not_told_of_removals(self):
        def mutate(t):
            rules = regional(t)["Bucket"]["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
            rules[:] = [r for r in rules if not (r["Event"] == "s3:ObjectRemoved:*" and r["Filter"]["S3Key"]["Rules"][1]["Value"] == ".png")]

        self.assertCaught("notification-removals", mutate, message="objects created (prefix=images/ suffix=.png) but not removed")

    def test_image_queue_told_of_removals_it_never_saw_created(self):
        def mutate(t):
            rules = regional(t)["Bucket"]["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
            removal = next(r for r in rules if r["Event"] == "s3:ObjectRemoved:*")
            removal["Filter"]["S3Key"]["Rules"][0] = {"Name": "prefix", "Value": "other/"}

        self.assertCaught("notification-removals", mutate, message="objects removed (prefix=other/ suffix=.jpg) but not created")

    def test_upload_notification_before_its_topic_policy(self):
        def mutate(t):
            regional(t)["Bucket"]["DependsOn"] = ["ImageQueuePolicy"]

        self.assertCaught("bucket-notification", mutate, message="does not depend on UploadEventsTopicPolicy")

    def test_upload_topic_policy_without_source_arn(self):
        def mutate(t):
            st = regional(t)["UploadEventsTopicPolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
            del st["Condition"]["ArnEquals"]

        self.assertCaught("bucket-notification", mutate, message="UploadEventsTopicPolicy does not let s3.amazonaws.com")

    def test_upload_notification_without_prefix(self):
        def mutate(t):
            config = regional(t)["Bucket"]["Properties"]["NotificationConfiguration"]["TopicConfigurations"][0]
            del config["Filter"]

        self.assertCaught("bucket-notification", mutate, message="not filtered by prefix")

    def test_image_queue_not_open_to_the_upload_topic(self):
        def mutate(t):
            statements = regional(t)["ImageQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
            statements[:] = [st for st in statements if st.get("Sid") != "UploadEvents"]

        found = self.assertCaught("topic-subscription", mutate, message="UploadEventsTopic")
        self.assertEqual({f.where for f in found if f.rule == "topic-subscription"}, {"UploadEventsToImages"})

    def test_metadata_queue_open_to_another_topic(self):
        def mutate(t):
            st = regional(t)["UploadMetadataQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
            st["Condition"]["ArnEquals"]["aws:SourceArn"] = {"Ref": "ChangesTopic"}

        self.assertCaught("topic-subscription", mutate, message="UploadEventsTopic")

    # ---------------------------------------------------------------- alarms and table

    def test_dead_letter_queue_without_alarm(self):
        def mutate(t):
            del regional(t)["BackfillDeadLetterAlarm"]

        self.assertCaught("queue-alarms", mutate, message="depth")

    def test_queue_without_age_alarm(self):
        def mutate(t):
            del regional(t)["ImageOldestMessageAlarm"]

        self.assertCaught("queue-alarms", mutate, message="age")

    def test_provisioned_table(self):
        def mutate(t):
            regional(t)["TaskTable"]["Properties"]["BillingMode"] = "PROVISIONED"

        self.assertCaught("dynamodb-table", mutate, message="on demand")

    def test_table_without_ttl(self):
        def mutate(t):
            del regional(t)["UploadsTable"]["Properties"]["TimeToLiveSpecification"]

        self.assertCaught("dynamodb-table", mutate, message="no TTL")

    def test_kept_history_without_recovery(self):
        def mutate(t):
            del regional(t)["FilesTable"]["Properties"]["PointInTimeRecoverySpecification"]

        self.assertCaught("dynamodb-table", mutate, message="point-in-time recovery")

    # ---------------------------------------------------------------- role minimum

    def test_role_with_an_action_nobody_calls(self):
        def mutate(t):
            statement(regional(t), "ImageRole", "RecordTasks")["Action"].append("dynamodb:Scan")

        self.assertCaught("role-minimum", mutate, message="grants dynamodb:Scan")

    def test_role_without_an_action_the_code_calls(self):
        def mutate(t):
            statement(regional(t), "BackfillRole", "ConsumeBackfillQueue")["Action"].remove("sqs:GetQueueUrl")

        self.assertCaught("role-minimum", mutate, message="lacks sqs:GetQueueUrl")

    def test_edge_role_without_send_message(self):
        def mutate(t):
            statement(edge(t), "EdgeFunctionRole", "SendBackfill")["Action"] = "sqs:GetQueueUrl"

        found = self.assertCaught("role-minimum", mutate, message="lacks sqs:SendMessage")
        self.assertTrue(any("grants sqs:GetQueueUrl" in f.message for f in found))

    def test_image_role_deleting_outside_its_thumbnails(self):
        def mutate(t):
            statement(regional(t), "ImageRole", "ReadImages")["Action"].append("s3:DeleteObject")

        self.assertCaught("role-minimum", mutate, message="s3:DeleteObject on <<Bucket.Arn>>/images/*, which it does not write")

    def test_image_role_without_the_thumbnail_delete(self):
        def mutate(t):
            statement(regional(t), "ImageRole", "WriteThumbnails")["Action"].remove("s3:DeleteObject")

        self.assertCaught("role-minimum", mutate, message="lacks s3:DeleteObject")

    def test_list_bucket_on_objects(self):
        def mutate(t):
            statement(regional(t), "BackfillRole", "SeeMissingObjects")["Resource"] = {"Fn::Sub": "${Bucket.Arn}/*"}

        self.assertCaught("role-minimum", mutate, message="wrong level")

    def test_consuming_another_functions_queue(self):
        def mutate(t):
            statement(regional(t), "BackfillRole", "ConsumeBackfillQueue")["Resource"] = {
                "Fn::GetAtt": ["ImageQueue", "Arn"]
            }

        self.assertCaught("role-minimum", mutate, message="not the function's own queue")

    def test_upload_api_role_with_the_writers_actions(self):
        def mutate(t):
            statement(regional(t), "UploadApiRole", "ReadVersionsAndFeed")["Action"] = ["dynamodb:Query", "dynamodb:PutItem"]
            statement(regional(t), "UploadApiRole", "SignedUploads")["Action"].append("sns:Publish")

        found = self.assertCaught("role-minimum", mutate, message="grants sns:Publish")
        # PutItem is the API's own (sessions): granted twice is still granted once. (On the feed
        # index it is meaningless, which is another finding.)
        self.assertFalse(any("dynamodb:PutItem" in f.message and "on an index" not in f.message for f in found),
                         [str(f) for f in found])
        self.assertTrue(any("dynamodb:PutItem on an index, <<FilesTable.Arn>>/index/feed" in f.message for f in found))

    def test_metadata_role_without_list_bucket(self):
        def mutate(t):
            policy = regional(t)["UploadMetadataRole"]["Properties"]["Policies"][0]["PolicyDocument"]
            policy["Statement"] = [st for st in policy["Statement"] if st.get("Sid") != "SeeMissingObjects"]

        self.assertCaught("role-minimum", mutate, message="lacks s3:ListBucket")

    def test_url_only_call_needs_no_action(self):
        def mutate(t):
            statement(regional(t), "UploadApiRole", "SignedUploads")["Action"].append("s3:ListBucketVersions")

        self.assertCaught("role-minimum", mutate, message="grants s3:ListBucketVersions")

    def test_function_of_a_binary_not_recorded(self):
        def mutate(t):
            regional(t)["UploadMetadataFunction"]["Metadata"]["BuildProperties"]["Binary"] = "upload-sync"

        self.assertCaught("role-minimum", mutate, message="binary upload-sync of functions/upload-api")

    def test_binary_recording_a_call_its_main_cannot_reach(self):
        recorded = copy.deepcopy(RECORDED)
        binaries = recorded["functions/upload-api"]["binaries"]
        binaries["upload-metadata"]["calls"].remove("sns:Publish")
        binaries["upload-api"]["calls"].append("sns:Publish")
        self.assertCaught("sdk-calls", recorded=recorded, message="records sns:Publish, which the binary's main cannot reach")

    def test_binaries_together_must_be_the_crate(self):
        recorded = copy.deepcopy(RECORDED)
        recorded["functions/upload-api"]["binaries"]["upload-api"]["calls"].remove("s3:ListParts")
        self.assertCaught("sdk-calls", recorded=recorded, message="s3:ListParts")

    def test_a_sent_call_recorded_as_url_only(self):
        recorded = copy.deepcopy(RECORDED)
        entry = recorded["functions/upload-api"]["binaries"]["upload-api"]
        entry["calls"].remove("s3:CreateMultipartUpload")
        entry["url_only"].append("s3:CreateMultipartUpload")
        found = self.assertCaught("sdk-calls", recorded=recorded, message="s3:CreateMultipartUpload is recorded as url_only")
        # CreateMultipartUpload still needs s3:PutObject, which the other calls need too: no role finding.
        self.assertFalse(any(f.rule == "role-minimum" for f in found), [str(f) for f in found])

    def test_versioned_head_recorded_for_the_writer(self):
        recorded = copy.deepcopy(RECORDED)
        del recorded["functions/upload-api"]["binaries"]["upload-metadata"]["extra_actions"]
        found = self.assertCaught("sdk-calls", recorded=recorded, message="version id")
        self.assertTrue(any(f.rule == "role-minimum" and "grants s3:GetObjectVersion" in f.message for f in found))

    def test_recorded_calls_must_match_the_sources(self):
        recorded = copy.deepcopy(RECORDED)
        recorded["functions/backfill"]["calls"].remove("s3:AbortMultipartUpload")
        found = self.assertCaught("sdk-calls", recorded=recorded, message="s3:AbortMultipartUpload")
        # The role still grants it, and with the call unrecorded nothing needs it.
        self.assertTrue(any(f.rule == "role-minimum" and "grants s3:AbortMultipartUpload" in f.message for f in found))

    # ---------------------------------------------------------------- edge parameters, region, metrics

    def findings_with_sources(self, edits, mutate=None):
        """Findings with the hook's sources edited ({path: (old, new)}) in a copy of the tree."""
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            for part in ("functions", "shared", "test-support", "tools"):
                if (ROOT / part).exists():
                    shutil.copytree(ROOT / part, root / part, ignore=shutil.ignore_patterns("target", "node_modules"))
            for name in ("Cargo.toml",):
                shutil.copy(ROOT / name, root / name)
            for path, (old, new) in edits.items():
                text = (root / path).read_text(encoding="utf-8")
                self.assertIn(old, text, path)
                (root / path).write_text(text.replace(old, new), encoding="utf-8")
            templates = copy.deepcopy(BASE)
            if mutate:
                mutate(templates)
            return pc.check(templates, root, copy.deepcopy(RECORDED))

    def test_send_budget_pattern_accepting_what_the_hook_refuses(self):
        def mutate(t):
            t["template-edge.yaml"]["Parameters"]["EdgeSendBudget"]["AllowedPattern"] = "^[0-9]{1,4}(ms|s)$"

        self.assertCaught("edge-durations", mutate, message="accepts '0ms'")

    def test_send_budget_pattern_refusing_what_the_hook_accepts(self):
        def mutate(t):
            t["template.yaml"]["Parameters"]["EdgeSendBudget"]["AllowedPattern"] = "^([1-9][0-9]{1,2}ms|[1-5]s)$"

        self.assertCaught("edge-durations", mutate, message="refuses '1000ms'")

    def test_send_budget_bounds_are_read_from_the_hook(self):
        found = self.findings_with_sources({
            "functions/origin-request/src/config.rs": (
                "MAX_SEND_BUDGET: Duration = Duration::from_secs(5)",
                "MAX_SEND_BUDGET: Duration = Duration::from_secs(2)",
            ),
        })
        self.assertTrue(any(f.rule == "edge-durations" and "'2001ms'" in f.message for f in found), [str(f) for f in found])

    def test_repeat_window_pattern_accepting_a_fraction(self):
        def mutate(t):
            t["template-edge.yaml"]["Parameters"]["EdgeRepeatWindow"]["AllowedPattern"] = "^[0-9.]{1,5}(ms|s|m|h)$"

        self.assertCaught("edge-durations", mutate, message="which the hook refuses")

    def test_origin_port_by_min_and_max(self):
        def mutate(t):
            t["template-edge.yaml"]["Parameters"]["DomesticOriginPort"] = {
                "Type": "Number", "MinValue": 1, "MaxValue": 65535, "Default": 443}

        self.assertCaught("origin-port", mutate, message="accepts 1;")

    def test_origin_port_refusing_the_top_port(self):
        def mutate(t):
            spec = t["template.yaml"]["Parameters"]["DomesticOriginPort"]
            spec["AllowedPattern"] = spec["AllowedPattern"].replace("|6553[0-5]", "")

        self.assertCaught("origin-port", mutate, message="refuses 65530")

    def test_origin_path_with_a_comma(self):
        def mutate(t):
            t["template-edge.yaml"]["Parameters"]["DomesticOriginPath"]["AllowedPattern"] = (
                "^(/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)*$")

        self.assertCaught("origin-path", mutate, message="accepts '/a,b'")

    def test_passed_through_parameter_differs(self):
        def mutate(t):
            t["template.yaml"]["Parameters"]["EdgeRepeatWindow"]["AllowedPattern"] = "^[0-9]{1,3}(ms|s|m|h)$"

        self.assertCaught("pass-through", mutate, message="AllowedPattern differs")

    def test_edge_template_without_the_region_rule(self):
        def mutate(t):
            del t["template-edge.yaml"]["Rules"]

        self.assertCaught("edge-region", mutate, message="us-east-1 and in no other region")

    def test_edge_stack_nested_outside_us_east_1(self):
        def mutate(t):
            t["template.yaml"]["Conditions"]["NestEdge"] = {"Fn::Equals": [{"Ref": "EdgeDeployment"}, "nested"]}

        self.assertCaught("edge-region", mutate, message="nested in ap-southeast-1")

    def test_dashboard_with_a_misspelt_reason(self):
        def mutate(t):
            body = edge(t)["EdgeDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
            body[0] = body[0].replace('"Reason","queue_refused"', '"Reason","queue_refusal"')

        found = self.assertCaught("edge-dashboard", mutate, message="'Reason': 'queue_refused'")
        self.assertTrue(any("queue_refusal" in f.message and "emits no such metric" in f.message for f in found))

    def test_dashboard_without_a_dimension(self):
        def mutate(t):
            body = edge(t)["EdgeDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
            body[0] = body[0].replace(
                '["OverseasOrigin","BackfillEnqueued","FunctionName","us-east-1.${OriginRequestFunction}",',
                '["OverseasOrigin","BackfillEnqueued",')

        self.assertCaught("edge-dashboard", mutate, message="no BackfillEnqueued")

    def test_dashboard_missing_a_region(self):
        def mutate(t):
            variables = edge(t)["EdgeDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"][1]
            variables["PerRegion6"] = {"Fn::Select": [0, {"Ref": "EdgeRegions"}]}

        self.assertCaught("edge-dashboard", mutate, message="in sa-east-1")

    def test_metric_renamed_in_the_hook(self):
        found = self.findings_with_sources({
            "functions/origin-request/src/hook.rs": ('"BackfillEnqueued"', '"BackfillQueued"'),
        })
        self.assertTrue(any(f.rule == "edge-dashboard" and "no BackfillQueued" in f.message for f in found),
                        [str(f) for f in found])

    def test_alarm_missing_a_reason(self):
        def mutate(t):
            metrics = edge(t)["EdgeSendFailureAlarm"]["Properties"]["Metrics"]
            metrics[:] = [m for m in metrics if m["Id"] != "timeout"]
            metrics[-1]["Expression"] = "SUM([queue_unavailable, queue_refused, panic, addon_unavailable, hook_failed, hook_stuck])"

        self.assertCaught("edge-alarm", mutate)

    def test_alarm_missing_a_reason_of_the_handler(self):
        def mutate(t):
            metrics = edge(t)["EdgeSendFailureAlarm"]["Properties"]["Metrics"]
            metrics[:] = [m for m in metrics if m["Id"] != "hook_stuck"]
            metrics[-1]["Expression"] = "SUM([queue_unavailable, queue_refused, timeout, panic, addon_unavailable, hook_failed])"

        self.assertCaught("edge-alarm", mutate)

    def test_dashboard_without_a_reason_of_the_handler(self):
        def mutate(t):
            body = edge(t)["EdgeDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
            body[0] = body[0].replace('"Reason","hook_failed"', '"Reason","hook_error"')

        found = self.assertCaught("edge-dashboard", mutate, message="'Reason': 'hook_failed'")
        self.assertTrue(any("hook_error" in f.message and "emits no such metric" in f.message for f in found))

    def test_dashboard_without_the_late_enqueues(self):
        def mutate(t):
            body = edge(t)["EdgeDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
            body[0] = body[0].replace('"BackfillEnqueuedLate"', '"BackfillEnqueued"')

        self.assertCaught("edge-dashboard", mutate, message="no BackfillEnqueuedLate")

    def test_dashboard_with_a_reason_no_send_ends_with(self):
        def mutate(t):
            body = edge(t)["EdgeDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
            body[0] = body[0].replace('"Reason","addon_unavailable"', '"Reason","no_record"')

        self.assertCaught("edge-dashboard", mutate, message="'no_record'}")

    def test_reason_added_to_the_handler(self):
        found = self.findings_with_sources({
            "functions/origin-request/handler/index.js": ("reason: 'hook_stuck'", "reason: 'core_stuck'"),
        })
        self.assertTrue(any(f.rule == "edge-dashboard" and "'Reason': 'core_stuck'" in f.message for f in found),
                        [str(f) for f in found])
        self.assertIn("edge-alarm", {f.rule for f in found})

    def test_default_reason_of_the_handler(self):
        found = self.findings_with_sources({
            "functions/origin-request/handler/index.js": ("?? 'hook_failed'", "?? 'hook_error'"),
        })
        self.assertTrue(any(f.rule == "edge-dashboard" and "'Reason': 'hook_error'" in f.message for f in found),
                        [str(f) for f in found])

    def test_send_ending_with_another_error(self):
        found = self.findings_with_sources({
            "functions/origin-request/src/hook.rs": (
                'Err(EdgeError::Panic("the send ended without an answer".into()))',
                'Err(EdgeError::InvalidEvent("the send ended without an answer".into()))'),
        })
        messages = [f.message for f in found if f.rule == "edge-dashboard"]
        self.assertTrue(any("no BackfillSendFailed" in m and "'invalid_event'" in m for m in messages), messages)
        self.assertTrue(any("'panic'" in m and "emits no such metric" in m for m in messages), messages)

    def test_alarm_not_summing_every_reason(self):
        def mutate(t):
            edge(t)["EdgeSendFailureAlarm"]["Properties"]["Metrics"][-1]["Expression"] = "SUM([timeout])"

        self.assertCaught("edge-alarm", mutate)

    # ---------------------------------------------------------------- deploys that work (issue 16)

    def test_public_url_with_only_sams_permissions(self):
        # AuthType !If [TokenAuth, NONE, AWS_IAM]: SAM adds no permission, every call answers 403.
        def mutate(t):
            del regional(t)["UploadApiUrlPublicInvoke"]
            del regional(t)["UploadApiUrlPublicInvokeUrl"]

        self.assertCaught("function-url", mutate, message="lambda:InvokeFunctionUrl")

    def test_public_url_without_invoke_function(self):
        self.assertCaught("function-url", lambda t: regional(t).pop("UploadApiUrlPublicInvoke"),
                          message="lambda:InvokeFunction through the URL")

    def test_public_permissions_in_iam_mode(self):
        def mutate(t):
            del regional(t)["UploadApiUrlPublicInvokeUrl"]["Condition"]

        self.assertCaught("function-url", mutate, message="any AWS account")

    # ---------------------------------------------------------------- unauthenticated load (issue 21)

    def reservations(self, template):
        """ReservedConcurrentExecutions of the upload API per scenario name (us-east-1), None for none."""
        return {s.name: s.evaluated_resources()["UploadApiFunction"]["Properties"].get("ReservedConcurrentExecutions")
                for s in pc.scenarios(template, "regional") if s.region == "us-east-1"}

    def test_token_mode_reserves_by_default_and_iam_mode_does_not(self):
        reserved = self.reservations(BASE["template.yaml"])
        self.assertIsNone(reserved["regional defaults us-east-1"])
        self.assertEqual(reserved["regional UploadAuthMode=token us-east-1"], 50)
        self.assertIsNone(reserved["regional token auth, no reservation us-east-1"])
        self.assertEqual(str(reserved["regional token auth, reservation 20 us-east-1"]), "20")
        self.assertEqual(str(reserved["regional UploadApiConcurrency=20 us-east-1"]), "20")
        self.assertIsNone(reserved["regional UploadApiConcurrency=0 us-east-1"])

    def test_concurrency_parameter_takes_auto_zero_or_a_count(self):
        spec = BASE["template.yaml"]["Parameters"]["UploadApiConcurrency"]
        for value in ("auto", "0", "50", "3000"):
            self.assertTrue(pc.accepts(spec, value), value)
        for value in ("-1", "", "05", "automatic", "1.5"):
            self.assertFalse(pc.accepts(spec, value), value)

    def concurrency_findings(self, mutate):
        """Scenario names (us-east-1) in which the rule finds something, on a mutated copy."""
        templates = copy.deepcopy(BASE)
        mutate(templates)
        return {s.name for s in pc.scenarios(templates["template.yaml"], "regional")
                if s.region == "us-east-1" and list(pc.rule_public_url_concurrency(s))}

    def test_token_mode_without_reservation(self):
        def mutate(t):
            regional(t)["UploadApiFunction"]["Properties"].pop("ReservedConcurrentExecutions")

        self.assertCaught("public-url-concurrency", mutate, message="without reserved concurrency")
        scenarios = self.concurrency_findings(mutate)
        self.assertIn("regional UploadAuthMode=token us-east-1", scenarios)
        # No reservation made of the parameter: its 0 is no opt-out the template offers.
        self.assertIn("regional token auth, no reservation us-east-1", scenarios)
        self.assertFalse([s for s in scenarios if "token" not in s], "IAM mode needs no reservation")

    def test_token_mode_automatic_value_reserving_nothing(self):
        def mutate(t):
            reserved = regional(t)["UploadApiFunction"]["Properties"]["ReservedConcurrentExecutions"]
            reserved["Fn::If"][1] = {"Fn::If": ["UploadApiConcurrencyAuto", {"Ref": "AWS::NoValue"}, {"Ref": "UploadApiConcurrency"}]}

        self.assertCaught("public-url-concurrency", mutate, message="without reserved concurrency")
        self.assertEqual(self.concurrency_findings(mutate), {"regional UploadAuthMode=token us-east-1"})

    def test_token_mode_reserving_zero(self):
        def mutate(t):
            regional(t)["UploadApiFunction"]["Properties"]["ReservedConcurrentExecutions"] = {
                "Fn::If": ["TokenAuth", 0, {"Ref": "AWS::NoValue"}]}

        self.assertCaught("public-url-concurrency", mutate, message="throttles every call")

    def test_public_url_of_a_plain_lambda_function(self):
        def mutate(t):
            regional(t)["OpenFunctionUrl"] = {"Type": "AWS::Lambda::Url", "Properties": {
                "AuthType": "NONE", "TargetFunctionArn": {"Fn::GetAtt": ["ImageFunction", "Arn"]}}}

        found = self.assertCaught("public-url-concurrency", mutate)
        self.assertTrue(any(f.where == "ImageFunction" for f in found if f.rule == "public-url-concurrency"))

    def test_bucket_kept_when_the_first_deploy_fails(self):
        def mutate(t):
            regional(t)["Bucket"]["DeletionPolicy"] = "Retain"

        self.assertCaught("data-kept", mutate, message="RetainExceptOnCreate")

    def test_history_deleted_with_the_stack(self):
        def mutate(t):
            del regional(t)["FilesTable"]["DeletionPolicy"]

        self.assertCaught("data-kept", mutate, message="DeletionPolicy is Delete")

    def test_bucket_deleted_when_replaced(self):
        def mutate(t):
            del regional(t)["Bucket"]["UpdateReplacePolicy"]

        self.assertCaught("data-kept", mutate, message="replacement")

    def test_other_resource_retained(self):
        def mutate(t):
            regional(t)["UploadsTable"]["DeletionPolicy"] = "Retain"

        self.assertCaught("data-kept", mutate, message="a failed first deploy keeps it")

    def test_edge_function_deleted_on_rollback(self):
        def mutate(t):
            del edge(t)["OriginRequestFunction"]["DeletionPolicy"]

        found = self.assertCaught("edge-function", mutate, message="not kept")
        self.assertTrue(any("SAM's" in f.message for f in found), [str(f) for f in found])

    def test_no_echo_parameter(self):
        def mutate(t):
            t["template.yaml"]["Parameters"]["UploadAuthTokens"]["NoEcho"] = True

        self.assertCaught("no-echo", mutate, message="guided deploy")

    def test_header_name_of_letters_digits_and_dashes_only(self):
        # The pattern the templates had: CloudFront refuses Host, Cookie, X-Amz-*, and the hook
        # strips x-backfill-*.
        def mutate(t):
            for template in t.values():
                template["Parameters"]["OriginSecretHeaderName"]["AllowedPattern"] = "^[A-Za-z0-9-]{1,64}$"

        found = self.assertCaught("origin-header", mutate)
        messages = " ".join(f.message for f in found)
        for name in ("'host'", "'Cookie'", "'X-Amz-Secret'", "'x-edge-secret'", "'X-Backfill-Secret'", "'user-agent'"):
            self.assertIn(name, messages)

    def test_header_name_allowing_the_hooks_prefix(self):
        def mutate(t):
            for template in t.values():
                spec = template["Parameters"]["OriginSecretHeaderName"]
                spec["AllowedPattern"] = spec["AllowedPattern"].replace("|x-backfill-", "")

        self.assertCaught("origin-header", mutate, message="x-backfill-")

    def test_header_name_the_backfill_sets(self):
        # The backfill's rule (shared/src/origin_secret.rs) refuses User-Agent: the fetch sets it.
        def mutate(t):
            for template in t.values():
                spec = template["Parameters"]["OriginSecretHeaderName"]
                spec["AllowedPattern"] = spec["AllowedPattern"].replace("|user-agent", "")

        self.assertCaught("origin-header", mutate, message="'user-agent'")

    def test_header_name_refusing_a_good_name(self):
        def mutate(t):
            for template in t.values():
                spec = template["Parameters"]["OriginSecretHeaderName"]
                spec["AllowedPattern"] = spec["AllowedPattern"].replace("|host|", "|host|x-hosted|")

        self.assertCaught("origin-header", mutate, message="refuses 'X-Hosted'")

    def test_header_name_differs_between_the_stacks(self):
        def mutate(t):
            spec = t["template-edge.yaml"]["Parameters"]["OriginSecretHeaderName"]
            spec["AllowedPattern"] = spec["AllowedPattern"].replace("|via|", "|via|warning|")

        self.assertCaught("pass-through", mutate, message="AllowedPattern")

    def test_ttl_order_without_rules(self):
        def mutate(t):
            rules = t["template-edge.yaml"]["Rules"]
            for name in [n for n in rules if n.startswith("TtlOrder")]:
                del rules[name]

        self.assertCaught("ttl", mutate, message="accepts DefaultTtl=60 with MaxTtl=0")

    def test_ttl_rule_off_by_one_value(self):
        def mutate(t):
            t["template.yaml"]["Rules"]["TtlOrder3600"]["Assertions"][0]["Assert"]["Fn::Contains"][0].append("21600")

        self.assertCaught("ttl", mutate, message="accepts DefaultTtl=21600 with MaxTtl=3600")

    def test_ttl_as_free_numbers(self):
        def mutate(t):
            for template in t.values():
                for name in ("DefaultTtl", "MaxTtl"):
                    spec = template["Parameters"][name]
                    spec.update(Type="Number", MinValue=0, MaxValue=31536000)
                    del spec["AllowedValues"]

        self.assertCaught("ttl", mutate, message="rules cannot compare numbers")

    def test_caching_off_with_compression(self):
        def mutate(t):
            key = edge(t)["CachePolicy"]["Properties"]["CachePolicyConfig"]["ParametersInCacheKeyAndForwardedToOrigin"]
            key["EnableAcceptEncodingGzip"] = True

        self.assertCaught("ttl", mutate, message="EnableAcceptEncodingGzip is True with MaxTtl=0")

    def test_subscription_without_redrive(self):
        def mutate(t):
            del regional(t)["UploadEventsToMetadata"]["Properties"]["RedrivePolicy"]

        self.assertCaught("topic-subscription", mutate, message="SNS drops")

    def test_subscription_dead_letter_queue_closed_to_the_topic(self):
        def mutate(t):
            del regional(t)["UploadEventsDeadLetterQueuePolicy"]

        self.assertCaught("topic-subscription", mutate, message="does not let topic")

    def test_image_subscription_without_filter(self):
        def mutate(t):
            del regional(t)["UploadEventsToImages"]["Properties"]["FilterPolicy"]

        self.assertCaught("topic-subscription", mutate, message="woken for every object")

    def test_image_subscription_filter_missing_a_suffix(self):
        def mutate(t):
            key = regional(t)["UploadEventsToImages"]["Properties"]["FilterPolicy"]["Records"]["s3"]["object"]["key"]
            key.remove({"suffix": ".GIF"})

        self.assertCaught("topic-subscription", mutate, message="filters on")

    def test_upper_case_suffix_not_notified(self):
        def mutate(t):
            rules = regional(t)["Bucket"]["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
            rules[:] = [r for r in rules if {"Name": "suffix", "Value": ".WEBP"} not in r["Filter"]["S3Key"]["Rules"]]

        self.assertCaught("notification-case", mutate, message="not of .WEBP")

    def test_secret_value_in_the_environment(self):
        def mutate(t):
            variables = regional(t)["BackfillFunction"]["Properties"]["Environment"]["Variables"]
            variables["ORIGIN_HEADERS"] = {"Fn::Sub": '{"X-Origin-Verify": "{{resolve:secretsmanager:origin:SecretString}}"}'}

        self.assertCaught("secret-environment", mutate, message="plain text")

    def test_secret_read_without_a_grant(self):
        def mutate(t):
            statements = regional(t)["BackfillRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
            statements.remove(conditional_statement(regional(t), "BackfillRole", "ReadOriginSecret"))

        self.assertCaught("role-minimum", mutate, message="lacks secretsmanager:GetSecretValue")

    def test_secret_granted_on_another_secret(self):
        def mutate(t):
            grant = conditional_statement(regional(t), "BackfillRole", "ReadOriginSecret")
            grant["Fn::If"][1]["Resource"] = f"arn:aws:secretsmanager:us-east-1:{pc.ACCOUNT}:secret:other-AbCdEf"

        self.assertCaught("role-minimum", mutate, message="not the ORIGIN_SECRET_ARN")

    def test_edge_secret_as_a_template_value(self):
        def mutate(t):
            origins = edge(t)["Distribution"]["Properties"]["DistributionConfig"]["Origins"]
            headers = next(o for o in origins if o.get("Id") == "domestic")["OriginCustomHeaders"]
            secret = next(h for h in headers if "Fn::If" in h)
            secret["Fn::If"][1]["HeaderValue"] = {"Ref": "OriginSecretArn"}

        self.assertCaught("origin-secret", mutate, message="not a Secrets Manager reference")


class SdkCallDerivationTest(unittest.TestCase):
    """The derivation of SDK calls from Rust sources, on a small crate of its own."""

    def crate(self, files, shared_lib="pub mod aws;\n#[cfg(feature = \"lambda\")]\npub mod batch;\n", shared=None):
        root = Path(tempfile.mkdtemp())
        self.addCleanup(lambda: __import__("shutil").rmtree(root))
        (root / "shared/src").mkdir(parents=True)
        (root / "shared/src/lib.rs").write_text(shared_lib)
        for name, text in (shared or {}).items():
            (root / "shared/src" / name).write_text(textwrap.dedent(text))
        crate = root / "functions/f"
        (crate / "src").mkdir(parents=True)
        for name, text in files.items():
            path = crate / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text))
        return root, crate

    def test_calls_outside_tests_comments_and_strings(self):
        root, crate = self.crate({
            "Cargo.toml": '[dependencies]\nshared = { workspace = true, features = ["lambda"] }\n',
            "src/lib.rs": """
                // self.client.delete_object() in a comment is no call
                pub async fn run(c: &Client) {
                    let note = "client.list_objects_v2() in a string";
                    let brace = '{';
                    self.client
                        .put_object()
                        .send()
                        .await;
                }
                #[cfg(test)]
                mod tests {
                    fn f() { let s = "}"; client.receive_message().send(); }
                }
                #[cfg(test)]
                mod integration;
            """,
            "src/integration.rs": "fn g() { client.delete_queue().send(); }\n",
        }, shared={
            "aws.rs": "",
            "batch.rs": "fn b() { self.client.change_message_visibility().send(); }\n",
        })
        calls, unknown, versioned = pc.derive_sdk_calls(root, crate)
        self.assertEqual(calls, ["s3:PutObject", "sqs:ChangeMessageVisibility"])
        self.assertEqual(unknown, [])
        self.assertFalse(versioned)

    def test_cloudfront_invalidations_and_index_queries(self):
        root, crate = self.crate({
            "Cargo.toml": "[dependencies]\n",
            "src/lib.rs": """
                async fn f(&self) {
                    self.client.create_invalidation().distribution_id(&self.id).send().await;
                    self.client.query().table_name(t).index_name("due").send().await;
                }
            """,
        })
        calls, unknown, _ = pc.derive_sdk_calls(root, crate)
        self.assertEqual(calls, ["cloudfront:CreateInvalidation", "dynamodb:Query"])
        self.assertEqual(unknown, [])

    def test_shared_modules_behind_a_feature_not_enabled(self):
        root, crate = self.crate({
            "Cargo.toml": "[dependencies]\nshared.workspace = true\n",
            "src/lib.rs": "fn f() { client.send_message().send(); }\n",
        }, shared={
            "aws.rs": "",
            "batch.rs": "fn b() { self.client.get_queue_url().send(); }\n",
        })
        calls, _, _ = pc.derive_sdk_calls(root, crate)
        self.assertEqual(calls, ["sqs:SendMessage"])

    def test_unknown_operations_and_versioned_reads(self):
        root, crate = self.crate({
            "Cargo.toml": "[dependencies]\n",
            "src/main.rs": """
                fn f() {
                    let mut r = client.get_object().bucket(b);
                    r = r.version_id(v);
                    client.restore_object().send();
                }
            """,
        })
        calls, unknown, versioned = pc.derive_sdk_calls(root, crate)
        self.assertEqual(calls, ["s3:GetObject"])
        self.assertEqual(len(unknown), 1)
        self.assertIn("restore_object", unknown[0])
        self.assertTrue(versioned)

    def test_binaries_reach_the_calls_of_the_types_their_main_names(self):
        root, crate = self.crate({
            "Cargo.toml": textwrap.dedent("""
                [package]
                name = "f"
                [[bin]]
                name = "api"
                path = "src/main.rs"
                [[bin]]
                name = "writer"
                path = "src/bin/writer.rs"
                [dependencies]
                shared = { workspace = true, features = ["lambda"] }
            """),
            "src/main.rs": "fn main() { let s = Signer::new(); }\n",
            "src/bin/writer.rs": "fn main() { let w = Writer::new(Visibility::new()); }\n",
            "src/lib.rs": """
                pub struct Signer { client: Client }
                impl<T: Send> Store for Signer where T: Sync {
                    fn sign(&self) { self.client.put_object().presigned(c); }
                    fn url(&self) { self.client.list_object_versions().bucket(b).presigned(c); }
                }
                pub struct Writer { client: Client, files: Files }
                impl Writer {
                    fn head(&self) { self.client.head_object().set_version_id(v).send(); self.files.get(); }
                }
                impl Files { fn get(&self) { self.client.get_item().send(); } }
                fn helper(client: &Client) { client.query().send(); }
            """,
        }, shared={
            "aws.rs": "",
            "batch.rs": "impl Visibility { fn b(&self) { self.client.change_message_visibility().send(); } }\n",
        })
        self.assertEqual(sorted(pc.crate_binaries(crate)), ["api", "writer"])
        self.assertEqual(
            pc.derive_binary_calls(root, crate, "api"),
            (["dynamodb:Query", "s3:ListObjectVersions", "s3:PutObject"], False),
        )
        self.assertEqual(
            pc.derive_binary_calls(root, crate, "writer"),
            (["dynamodb:GetItem", "dynamodb:Query", "s3:HeadObject", "sqs:ChangeMessageVisibility"], True),
        )
        self.assertIsNone(pc.derive_binary_calls(root, crate, "other"))
        self.assertEqual(pc.presigned_only(root, crate), {"s3:ListObjectVersions", "s3:PutObject"})

    def test_the_recorded_calls_are_the_derived_ones(self):
        for crate, entry in RECORDED.items():
            if crate.startswith("_"):
                continue
            calls, unknown, versioned = pc.derive_sdk_calls(ROOT, ROOT / crate)
            entries = entry.get("binaries", {None: entry})
            listed = sorted({c for e in entries.values() for c in e["calls"] + e.get("url_only", [])})
            self.assertEqual(calls, listed, crate)
            self.assertEqual(unknown, [], crate)
            self.assertEqual(
                versioned, any("s3:GetObjectVersion" in e.get("extra_actions", []) for e in entries.values()), crate
            )
            for binary, e in entries.items():
                if binary is None:
                    continue
                reachable, reads_version = pc.derive_binary_calls(ROOT, ROOT / crate, binary)
                self.assertLessEqual(set(e["calls"] + e.get("url_only", [])), set(reachable), binary)
                self.assertEqual(reads_version, "s3:GetObjectVersion" in e.get("extra_actions", []), binary)


if __name__ == "__main__":
    unittest.main(verbosity=2)
