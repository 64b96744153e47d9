#!/usr/bin/env python3
"""Integration tests of the packaged edge handler, run by tests/edge.

The handler runs as Lambda runs it (Runtime Interface Emulator + aws-lambda-ric on Node 22) in
four sandboxes that tests/edge starts: one sending to the local stack's SQS (moto), one whose
addon does not load, one whose SQS refuses connections, one whose SQS accepts connections and
never answers. Messages go
to queues of the tests' own, so other tests' consumers cannot take them.

  edge-tests.py --sandbox URL --sandbox-log FILE --broken URL --broken-log FILE --refused URL
                --hanging URL --hanging-log FILE

Prints one line per test and, last, "edge-tests: N passed, M failed"; exits non-zero on a failure.
"""
import argparse
import copy
import json
import os
import re
import sys
import time
import traceback
import urllib.request
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"
DEFAULT_BUDGET = 0.300
# Emulator, HTTP and process scheduling on top of the handler's own time.
SLACK = 0.250


def load(name):
    return json.loads((EVENTS / f"{name}.json").read_text())


def cf(event):
    return event["Records"][0]["cf"]


def custom_headers(event):
    return cf(event)["request"]["origin"]["custom"]["customHeaders"]


def set_header(event, name, value):
    custom_headers(event)[name] = [{"key": name, "value": value}]


def stripped_request(event):
    request = copy.deepcopy(cf(event)["request"])
    headers = request["origin"]["custom"]["customHeaders"]
    for name in [n for n in headers if n.startswith("x-backfill-")]:
        del headers[name]
    return request


def invoke(url, event):
    """Invokes the handler; returns (reply, seconds)."""
    body = json.dumps(event).encode()
    request = urllib.request.Request(url, data=body, method="POST")
    started = time.monotonic()
    with urllib.request.urlopen(request, timeout=30) as response:
        raw = response.read()
    elapsed = time.monotonic() - started
    reply = json.loads(raw)
    if isinstance(reply, dict) and "errorType" in reply:
        raise AssertionError(f"the handler failed (CloudFront would answer 502): {reply}")
    return reply, elapsed


def expect(condition, message):
    if not condition:
        raise AssertionError(message)


def expect_equal(actual, expected, what):
    if actual != expected:
        raise AssertionError(f"{what}:\n  got      {json.dumps(actual)[:600]}\n  expected {json.dumps(expected)[:600]}")


class Queues:
    """A standard and a FIFO queue of the tests' own on the local stack."""

    def __init__(self):
        self.sqs = boto3.client("sqs", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
        suffix = f"{os.getpid()}-{int(time.time())}"
        self.standard = self.sqs.create_queue(QueueName=f"edge-it-{suffix}")["QueueUrl"]
        self.fifo = self.sqs.create_queue(
            QueueName=f"edge-it-{suffix}.fifo",
            Attributes={"FifoQueue": "true"},
        )["QueueUrl"]

    def drain(self, url, expect=0):
        """Every message in the queue, waiting up to a few seconds for `expect` of them: the
        handler returns once its request is on its way, before SQS has answered."""
        messages = []
        deadline = time.monotonic() + 5
        while True:
            waiting = len(messages) < expect and time.monotonic() < deadline
            batch = self.sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=1 if waiting else 0,
                MessageSystemAttributeNames=["All"],
            ).get("Messages", [])
            if not batch and not waiting:
                return messages
            for message in batch:
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            messages.extend(batch)

    def delete(self):
        for url in (self.standard, self.fifo):
            self.sqs.delete_queue(QueueUrl=url)


class Suite:
    def __init__(self, args):
        self.args = args
        self.queues = Queues()
        self.passed = 0
        self.failed = 0

    def marked(self, name, queue=None):
        event = load(name)
        set_header(event, "x-backfill-queue-url", queue or self.queues.standard)
        return event

    def run(self, tests):
        for test in tests:
            name = test.__name__.removeprefix("test_").replace("_", " ")
            try:
                test()
            except Exception:  # a failed test is reported and the next one runs
                self.failed += 1
                print(f"FAIL: {name}\n{traceback.format_exc()}", flush=True)
            else:
                self.passed += 1
                print(f"ok: {name}", flush=True)

    def only_message(self, url=None):
        messages = self.queues.drain(url or self.queues.standard, expect=1)
        expect(len(messages) == 1, f"expected one message, got {len(messages)}: {messages}")
        return messages[0]

    def no_message(self, url=None):
        messages = self.queues.drain(url or self.queues.standard)
        expect(messages == [], f"expected no message, got {messages}")

    # The sandbox with the local stack's SQS.

    def test_s3_attempt_passes_through_unchanged(self):
        event = load("origin-request-s3")
        reply, _ = invoke(self.args.sandbox, event)
        expect_equal(reply, cf(event)["request"], "reply")
        self.no_message()

    def test_unmarked_origin_passes_through_unchanged(self):
        event = load("origin-request-unmarked")
        reply, _ = invoke(self.args.sandbox, event)
        expect_equal(reply, cf(event)["request"], "reply")
        self.no_message()

    def test_domestic_attempt_sends_one_backfill_and_strips_the_headers(self):
        event = self.marked("origin-request-domestic")
        reply, _ = invoke(self.args.sandbox, event)
        expect_equal(reply, stripped_request(event), "reply")
        expect_equal(
            sorted(reply["origin"]["custom"]["customHeaders"]), ["x-origin-verify"], "origin headers left"
        )
        body = json.loads(self.only_message()["Body"])
        expected = {
            "version": 1,
            "bucket": "overseas-origin",
            "key": "images/cat.jpg",
            "origin": {"protocol": "https", "host": "www.example.com", "port": 443, "path": ""},
            "uri": "/images/cat.jpg",
            "request_id": cf(event)["config"]["requestId"],
            "trigger": "origin-request",
        }
        expect_equal({k: body[k] for k in expected}, expected, "message body")
        expect("observed" not in body, f"observed in an origin-request message: {body}")
        expect(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", body["enqueued_at"]), body["enqueued_at"])

    def test_a_repeat_in_the_same_sandbox_is_not_sent_again(self):
        event = self.marked("origin-request-domestic")
        for _ in range(3):
            reply, _ = invoke(self.args.sandbox, event)
            expect_equal(reply, stripped_request(event), "reply")
        self.no_message()

    def test_post_is_not_enqueued_but_stripped(self):
        event = self.marked("origin-request-post")
        reply, _ = invoke(self.args.sandbox, event)
        expect_equal(reply, stripped_request(event), "reply")
        self.no_message()

    def test_encoded_uri_gives_the_decoded_key(self):
        event = self.marked("origin-request-encoded-key")
        reply, _ = invoke(self.args.sandbox, event)
        expect_equal(reply, stripped_request(event), "reply")
        body = json.loads(self.only_message()["Body"])
        expect_equal(body["key"], "images/café au lait+1%/寿司 2.jpg", "key")
        expect_equal(body["uri"], cf(event)["request"]["uri"], "uri")

    def test_the_key_is_the_one_s3_looks_up_for_the_uri(self):
        # S3 reads a literal '+' in a request path as a space: CloudFront's S3 attempt for
        # /a+b.jpg looks up "a b.jpg", so that is where the backfill must write; the uri stays
        # the viewer's, which is what the domestic origin is asked for.
        for uri, key in (("/a+b.jpg", "a b.jpg"), ("/a%2Bb.jpg", "a+b.jpg"), ("/a%20b.jpg", "a b.jpg")):
            event = self.marked("origin-request-domestic")
            set_header(event, "x-backfill-repeat-window", "0s")
            cf(event)["request"]["uri"] = uri
            reply, _ = invoke(self.args.sandbox, event)
            expect_equal(reply, stripped_request(event), "reply")
            body = json.loads(self.only_message()["Body"])
            expect_equal((body["key"], body["uri"]), (key, uri), f"key and uri for {uri}")

    def test_traversal_is_not_enqueued_but_stripped(self):
        event = self.marked("origin-request-traversal")
        reply, _ = invoke(self.args.sandbox, event)
        expect_equal(reply, stripped_request(event), "reply")
        self.no_message()

    def test_origin_response_200_is_enqueued_with_what_the_origin_said(self):
        event = self.marked("origin-response-200")
        # images/cat.jpg was enqueued by this sandbox a moment ago: no repeat window here.
        set_header(event, "x-backfill-repeat-window", "0s")
        reply, _ = invoke(self.args.sandbox, event)
        expect_equal(reply, cf(event)["response"], "reply")
        body = json.loads(self.only_message()["Body"])
        expect_equal(body["trigger"], "origin-response", "trigger")
        expect_equal(
            body["observed"],
            {
                "status": 200,
                "content_length": 48213,
                "etag": '"9b2cf535f27731c974343645a3985328"',
                "content_type": "image/jpeg",
            },
            "observed",
        )

    def test_origin_response_404_is_not_enqueued(self):
        event = self.marked("origin-response-404")
        reply, _ = invoke(self.args.sandbox, event)
        expect_equal(reply, cf(event)["response"], "reply")
        self.no_message()

    def test_fifo_queue_deduplicates_a_burst_across_sandboxes(self):
        event = self.marked("origin-request-domestic", queue=self.queues.fifo)
        # No per-sandbox suppression: each invocation stands for another edge's sandbox.
        set_header(event, "x-backfill-repeat-window", "0s")
        for _ in range(3):
            invoke(self.args.sandbox, event)
        message = self.only_message(self.queues.fifo)
        attributes = message["Attributes"]
        expect(re.fullmatch(r"backfill-\d\d", attributes["MessageGroupId"]), attributes)
        expect(re.fullmatch(r"[0-9a-f]{64}", attributes["MessageDeduplicationId"]), attributes)
        expect_equal(json.loads(message["Body"])["key"], "images/cat.jpg", "key")

    def test_a_malformed_event_still_gets_its_request_back(self):
        event = self.marked("origin-request-domestic")
        del cf(event)["request"]["uri"]
        reply, _ = invoke(self.args.sandbox, event)
        expect_equal(reply, stripped_request(event), "reply")
        self.no_message()

    def test_logs_have_metrics_and_no_viewer_secrets(self):
        log = Path(self.args.sandbox_log).read_text(errors="replace")
        for secret in ("viewer-secret-do-not-log", "viewer-token-do-not-log", "shared-secret-for-the-alb", "origin-session"):
            expect(secret not in log, f"{secret!r} appears in the handler's logs")
        emf = [json.loads(line) for line in log.splitlines() if line.startswith('{"Backfill')]
        names = {m["Name"] for doc in emf for m in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
        for name in ("BackfillEnqueued", "BackfillViewerWait", "BackfillSuppressedRepeat", "BackfillSkipped"):
            expect(name in names, f"no {name} metric in {sorted(names)}")
        reasons = {doc.get("Reason") for doc in emf if "BackfillSkipped" in doc}
        expect({"method", "invalid_key", "status"} <= reasons, f"skip reasons {reasons}")
        expect("edge hook failed" in log, "the malformed event's failure was not logged")

    # The sandbox whose addon does not load.

    def test_a_broken_addon_never_fails_a_viewer(self):
        s3 = load("origin-request-s3")
        reply, _ = invoke(self.args.broken, s3)
        expect_equal(reply, cf(s3)["request"], "S3 attempt")
        event = self.marked("origin-request-domestic")
        reply, _ = invoke(self.args.broken, event)
        expect_equal(reply, stripped_request(event), "domestic attempt")
        response = self.marked("origin-response-200")
        reply, _ = invoke(self.args.broken, response)
        expect_equal(reply, cf(response)["response"], "origin response")
        self.no_message()
        log = Path(self.args.broken_log).read_text(errors="replace")
        expect('"Reason":"addon_unavailable"' in log, f"no BackfillSendFailed{{Reason=addon_unavailable}} in {log[-2000:]}")

    # The sandboxes whose SQS is down.

    def test_refused_sqs_returns_the_request_within_the_budget(self):
        event = self.marked("origin-request-domestic")
        # Start the sandbox (Node, the runtime client, the addon) before timing a request.
        invoke(self.args.refused, self.marked("origin-request-post"))
        reply, elapsed = invoke(self.args.refused, event)
        expect_equal(reply, stripped_request(event), "reply")
        # Once the retry has failed too the viewer goes on (the send carries on without it): no
        # waiting out the budget.
        expect(elapsed < DEFAULT_BUDGET - 0.050, f"took {elapsed * 1000:.0f} ms")
        print(f"  refused SQS: request back in {elapsed * 1000:.1f} ms", flush=True)

    def test_hanging_sqs_costs_the_budget_and_no_more(self):
        event = self.marked("origin-request-domestic")
        budget = 0.200
        set_header(event, "x-backfill-send-budget", "200ms")
        # A send still going counts as sent for the repeat window: each call here must send.
        set_header(event, "x-backfill-repeat-window", "0s")
        invoke(self.args.hanging, self.marked("origin-request-post"))
        for _ in range(3):
            reply, elapsed = invoke(self.args.hanging, event)
            expect_equal(reply, stripped_request(event), "reply")
            # It waited for the budget (less the hook's own margin), and no longer.
            expect(budget - 0.010 <= elapsed < budget + SLACK, f"took {elapsed * 1000:.0f} ms for a {budget * 1000:.0f} ms budget")
            print(f"  hanging SQS: request back in {elapsed * 1000:.1f} ms (budget 200 ms)", flush=True)
        # The sends go on without the viewer (docs/edge.md), each counted once as such.
        log = Path(self.args.hanging_log).read_text(errors="replace")
        expect(log.count('"BackfillSendDetached":1') >= 3, "no BackfillSendDetached metric per send")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sandbox", required=True)
    parser.add_argument("--sandbox-log", required=True)
    parser.add_argument("--broken", required=True)
    parser.add_argument("--broken-log", required=True)
    parser.add_argument("--refused", required=True)
    parser.add_argument("--hanging", required=True)
    parser.add_argument("--hanging-log", required=True)
    args = parser.parse_args()
    suite = Suite(args)
    try:
        suite.run(
            [
                suite.test_s3_attempt_passes_through_unchanged,
                suite.test_unmarked_origin_passes_through_unchanged,
                suite.test_domestic_attempt_sends_one_backfill_and_strips_the_headers,
                suite.test_a_repeat_in_the_same_sandbox_is_not_sent_again,
                suite.test_post_is_not_enqueued_but_stripped,
                suite.test_encoded_uri_gives_the_decoded_key,
                suite.test_the_key_is_the_one_s3_looks_up_for_the_uri,
                suite.test_traversal_is_not_enqueued_but_stripped,
                suite.test_origin_response_200_is_enqueued_with_what_the_origin_said,
                suite.test_origin_response_404_is_not_enqueued,
                suite.test_fifo_queue_deduplicates_a_burst_across_sandboxes,
                suite.test_a_malformed_event_still_gets_its_request_back,
                suite.test_logs_have_metrics_and_no_viewer_secrets,
                suite.test_a_broken_addon_never_fails_a_viewer,
                suite.test_refused_sqs_returns_the_request_within_the_budget,
                suite.test_hanging_sqs_costs_the_budget_and_no_more,
            ]
        )
    finally:
        suite.queues.delete()
    print(f"edge-tests: {suite.passed} passed, {suite.failed} failed", flush=True)
    return 1 if suite.failed else 0


if __name__ == "__main__":
    sys.exit(main())
