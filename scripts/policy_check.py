#!/usr/bin/env python3
"""Policy check of the SAM templates: what cfn-lint does not catch and the real services enforce.

The templates are evaluated the way CloudFormation would, once per scenario (the defaults, then
each allowed value of each choice parameter, in us-east-1 and in another region), with conditions,
Fn::If, Fn::FindInMap, Fn::Sub and Globals applied. Resource references stay symbolic
(<<Name>> / <<Name.Attribute>>). Each rule reports findings; none may be left.

Rules (their names are what the findings and the tests use):
  wildcard-action         an Allow statement with a '*' in an action, or NotAction
  wildcard-resource       an Allow statement on data-plane actions with '*' in the resource's name
  unverifiable-policy     managed policies, SAM policy templates or SAM-generated roles
  visibility-timeout      an SQS event source whose queue's visibility is below 6x the function timeout
  batch-item-failures     an SQS event source without ReportBatchItemFailures
  event-source-settings   an SQS event source without batch size, ScalingConfig.MaximumConcurrency,
                          or with a batching window on a FIFO queue; a batch size over 10 without
                          a batching window of at least 1 s (Lambda refuses it), or over 10,000;
                          a window parameter that may be 0 for such a mapping
  dead-letter-queue       a queue without a DLQ (maxReceiveCount 5, same type, longer retention);
                          a schedule's DeadLetterConfig queue counts as a DLQ
  queue-encryption        a queue without server-side encryption
  edge-function           an edge function with environment variables, a runtime other than
                          Node.js/Python, not x86_64, with layers, over 30 s, unversioned, or a role
                          not trusted by edgelambda.amazonaws.com
  failover-codes          an origin group that does not fail over on 403, 404, 500, 502, 503, 504
  viewer-https            a cache behaviour that lets viewers use plain HTTP
  bucket-protection       a bucket without full public access block, encryption, or a lifecycle
                          rule aborting incomplete multipart uploads
  bucket-policy           a bucket policy allowing anyone but a CloudFront distribution (by OAC)
  bucket-notification     a notification to a queue or topic without a policy letting S3 send
                          (SourceArn and SourceAccount), without the bucket depending on that
                          policy, or without filters (prefix and suffix for a queue, prefix for a
                          topic)
  topic-subscription      a topic's subscription of a queue without a queue policy letting that
                          topic send (named by aws:SourceArn)
  notification-removals   a queue notified of the objects created under a filter (prefix and
                          suffix) but not of their removal, or the reverse: its consumer keeps
                          what it made of a deleted object (the image queue: thumbnails)
  queue-alarms            a DLQ without a depth alarm or a consumed queue without an age alarm
  dynamodb-table          a DynamoDB table not on demand, or with neither TTL nor point-in-time
                          recovery (items that never expire are a history to keep)
  part-queue              a function's PART_QUEUE_URL not a standard queue of this template that
                          the same function consumes one message at a time (BatchSize 1) with
                          ScalingConfig.MaximumConcurrency equal to its PART_WORKERS
  lease-table             a function's LEASE_TABLE not a table of this template keyed by pk (S)
                          alone, with TTL on ttl
  freshness               a function's FRESHNESS_TABLE not a table of this template keyed by pk
                          (S) alone, with TTL on ttl and the index due (shard S, due_at N,
                          projection ALL) its role may Query; a MAX_STALENESS (or the parameter
                          giving it) that the function refuses (parse_duration, at least its
                          MIN_REVALIDATION) or a pattern refusing a value it takes
  invalidation-queue      a function's INVALIDATION_QUEUE_URL not a standard queue of this
                          template, with a DLQ, that the same function consumes with
                          ReportBatchItemFailures and, for batches over 10, a batching window
  revalidation-schedule   a function that keeps a FRESHNESS_TABLE without a schedule sweeping it;
                          a schedule (AWS::Scheduler::Schedule) not sending to a standard queue
                          such a function consumes, or whose input is not a valid sweep message
                          for its rate, or not ENABLED, with a flexible window, without a retry
                          policy ending within the period, without a standard DLQ, or whose role
                          is not trusted by scheduler.amazonaws.com for this account alone or may
                          do more than send to the target and the DLQ; a CHANGE_QUEUE_URL not a
                          standard queue of this template the same function consumes
  role-minimum            a function role whose actions differ from what the function calls
                          (scripts/sdk-calls.json; per binary for a crate with several), its event
                          source and its logs need; a call made only when a variable is set
                          (when_configured: a variable, or a list of them) granted on another
                          resource than the ones they name, or not granted on each one that is
                          set; s3:DeleteObject on objects the role may not s3:PutObject (a
                          function deletes only what it writes: the image function its
                          thumbnails); DynamoDB item actions on an index
  sdk-calls               scripts/sdk-calls.json differs from the SDK calls in the Rust sources: a
                          crate's calls, or for a crate with several binaries the union of theirs,
                          each binary's among what its main can reach
  edge-durations          EdgeSendBudget's pattern accepts a value the hook refuses (outside
                          MIN_SEND_BUDGET..=MAX_SEND_BUDGET, or not in parse_duration's grammar) or
                          refuses one in range; EdgeRepeatWindow's accepts what the hook cannot
                          parse (bounds, units and grammar read from the Rust sources)
  origin-port             DomesticOriginPort accepts a port CloudFront refuses (it allows 80, 443
                          and 1024-65535) or refuses one it allows
  origin-path             DomesticOriginPath accepts a ',' (the allow-list is comma-separated), a
                          trailing '/' or a path without a leading '/'
  pass-through            a parameter the regional stack passes to the edge stack with another
                          pattern, type or allowed values there
  edge-region             a template with an edge function without a rule that holds in us-east-1
                          only, or a nested edge stack outside us-east-1
  edge-dashboard          the hook's metrics (names, dimension sets, Reason values, read from the
                          hook's Rust sources and its JavaScript handler; a failed send's reasons
                          only for the errors its send path can end with) missing from the edge
                          dashboard in an edge region, or a dashboard row the hook never emits
  edge-alarm              no alarm on BackfillSendFailed summing every reason the hook emits
  viewer-request          a CloudFront Function whose code is not the repository's file verbatim
                          (functions/viewer-request/viewer-request.js as its Fn::Sub), that names a
                          placeholder other than the edge stack's ThumbnailPrefix, ThumbnailFormats,
                          ViewerRoutes, OfflineRegions and the Fn::Sub's RegionalOrigins, is over
                          10 KB as deployed (every scenario, the longest values included), not on
                          cloudfront-js-2.0 or not published
  thumbnail-format        no cache behaviour for ThumbnailPrefix*, or one that falls back to the
                          domestic origin (an origin group or a custom origin) or runs the hook (a
                          missing rendition would be enqueued as a backfill); the function not on
                          that behaviour as viewer-request when ThumbnailFormats names a format or
                          there are several regions, there when it is none with one region, or on
                          another behaviour with one region; a ThumbnailPrefix pattern taking what
                          a path pattern or a JavaScript string cannot hold, or a ThumbnailFormats
                          value the function does not read
  scenario-values         a scenario (defaults, each allowed value, the several-region sets) whose
                          values a parameter's constraints refuse or a Rule refuses: each checked
                          deploy is one CloudFormation would start
  upload-prefix           the backfill's role allowed to write or delete under UploadPrefix (no
                          explicit Deny), its REFUSED_PREFIXES not naming it, or a domestic origin
                          carrying the hook's configuration without it in x-backfill-refused-prefixes
  upload-privacy          the bucket policy letting the distribution read an upload (or an upload's
                          thumbnail) with UploadAccess=private, or not with public or signed; an
                          upload or its thumbnail whose first matching cache behaviour is the
                          default one, is served otherwise than by the bucket alone, runs the hook,
                          or with signed trusts no key group of exactly UploadSigningPublicKey; the
                          upload API, the nested edge stack or EdgeStackParameters not told
                          UploadAccess (with signed: the API without its key, key id or domain)
  public-url-concurrency  a function behind a public (NONE) function URL without reserved
                          concurrency, unless a parameter the reservation is made of is 0 (the
                          operator's explicit opt-out), or with a reservation below 1
  regions                 for each configured regional stack (slot 1: BucketName, BucketRegion,
                          BackfillQueueArn; slot N: RegionNBucketName, RegionNBackfillQueueArn):
                          no bucket origin of its bucket in its queue's region behind the origin
                          access control, or one that holds viewers more than 10 s before failing
                          over; no domestic origin whose hook headers name its own queue and
                          bucket; the static origin group not slot 1's bucket then domestic origin;
                          the hook allowed to send elsewhere than the configured queues. With one
                          region: other origins, or an origin request policy. With several: no
                          domestic-direct origin without hook headers, a behaviour without the
                          viewer-request function or without CloudFront-Viewer-Country in its
                          origin request policy (or forwarding the viewer's Host to the buckets),
                          the function told of other regions than the configured ones

  policy_check.py [--root DIR] [TEMPLATE...]      (default: template.yaml template-edge.yaml)
  policy_check.py --derive-sdk-calls              print the SDK calls found in the sources (per
                                                  crate, and what each binary's main can reach)
"""
import argparse
import copy
import fnmatch
import functools
import itertools
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TEMPLATES = ["template.yaml", "template-edge.yaml"]
SDK_CALLS_FILE = "scripts/sdk-calls.json"

ACCOUNT = "123456789012"
REGIONS = ["us-east-1", "ap-southeast-1"]
# Values for parameters that have no default (what an operator would enter).
SAMPLE_VALUES = {
    "DomesticOriginDomain": "www.example.com",
    "BucketName": "overseas-origin-example",
    "BucketRegion": "ap-southeast-1",
    "BackfillQueueArn": f"arn:aws:sqs:ap-southeast-1:{ACCOUNT}:backfill",
}

# Free-form parameters whose values change the resources: each is a scenario too.
EXTRA_VALUES = {
    "OriginSecret": ["create", f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:origin-AbCdEf"],
    "OriginSecretArn": [f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:origin-AbCdEf"],
    "OriginSecretVersion": ["0f4d5e6a-1b2c-4d3e-8f90-a1b2c3d4e5f6"],
    # A separate edge stack's distribution: the bucket policy and the backfill's invalidations.
    "DistributionId": ["E2QWRUHEXAMPLE"],
    # The upload API's reservation (IAM mode here; token mode in EXTRA_SCENARIOS): none, a number.
    "UploadApiConcurrency": ["0", "20"],
}
# Choice parameters the rules walk themselves (rule_ttl: every pair), not as scenarios.
OWN_WALK = {"DefaultTtl", "MaxTtl"}
# Values a choice needs beside it (a Rule refuses the choice alone).
SIGNING_PUBLIC_KEY = "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n-----END PUBLIC KEY-----\n"
COMPANION_VALUES = {
    ("UploadAuthMode", "token"): {"UploadAuthTokens": "alice:" + "0123456789abcdef" * 4},
    # Each template takes those of its own parameters.
    ("UploadAccess", "signed"): {
        "UploadSigningKeySecretArn": f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:upload-signing-AbCdEf",
        "UploadSigningKeyId": "K2JCJMDEHXQW5F",
        "UploadDownloadDomain": "d111111abcdef8.cloudfront.net",
        "UploadSigningPublicKey": SIGNING_PUBLIC_KEY,
    },
}
# Rotating the signing key: both slots trusted, the second signing (the regional stack's and the
# edge stack's parameters of it).
ROTATING = dict(UploadAccess="signed", UploadSigningPublicKey=SIGNING_PUBLIC_KEY,
                UploadSigningPublicKey2=SIGNING_PUBLIC_KEY.replace("MIIB", "MIIC"))
EXTRA_SCENARIOS_SIGNED = [
    ("signed access, rotating", dict(COMPANION_VALUES[("UploadAccess", "signed")], **ROTATING,
                                     UploadSigningKeyId="K3NEXTKEY2ROTATE")),
    # (OfflineRegions, the edge stack's own, at its default: this scenario is the edge stack's.)
    ("signed access, rotating (edge)", dict(ROTATING, OfflineRegions="")),
]

# Scenarios that set several parameters together (each applies to a template that has them all):
# the edge stack with two, three and four regional stacks (README.md's example is the first), the
# last with the longest region overrides the parameters accept.
LONGEST_ROUTES = ",".join(f"{a}{b}=domestic" for a, b in itertools.product("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "ABCDEFGHIJ"))[:599]
LONGEST_ROUTES = LONGEST_ROUTES[: LONGEST_ROUTES.rindex(",")]
LONGEST_OFFLINE = ",".join(["ap-southeast-1", "eu-central-1", "ap-northeast-1", "us-west-2", "eu-west-1",
                            "sa-east-1", "us-east-2", "ap-south-1"])


def _regional_stack(slot, region, bucket):
    return {f"Region{slot}BucketName": bucket, f"Region{slot}BackfillQueueArn": f"arn:aws:sqs:{region}:{ACCOUNT}:backfill-{region}"}


TOKEN_AUTH = dict({"UploadAuthMode": "token"}, **COMPANION_VALUES[("UploadAuthMode", "token")])

EXTRA_SCENARIOS = EXTRA_SCENARIOS_SIGNED + [
    # Token mode's reservation: opted out, and a number of the operator's.
    ("token auth, no reservation", dict(TOKEN_AUTH, UploadApiConcurrency="0")),
    ("token auth, reservation 20", dict(TOKEN_AUTH, UploadApiConcurrency="20")),
    ("two regional stacks", _regional_stack(2, "eu-central-1", "overseas-origin-eu")),
    ("three regional stacks, formats", dict(_regional_stack(2, "eu-central-1", "overseas-origin-eu"),
                                            **_regional_stack(3, "sa-east-1", "overseas-origin-sa"),
                                            ThumbnailFormats="avif,webp", EdgeTrigger="origin-response")),
    # The longest region names the patterns take (BucketRegion 20 characters, a queue ARN's 19).
    ("four regional stacks, longest routes", dict(_regional_stack(2, "us-gov-abcdefghij-1", "overseas-origin-eu"),
                                                  **_regional_stack(3, "us-gov-abcdefghik-1", "overseas-origin-sa"),
                                                  **_regional_stack(4, "us-gov-abcdefghil-1", "b" * 63),
                                                  BucketRegion="us-isob-abcdefghij-1",
                                                  ViewerRoutes=LONGEST_ROUTES, OfflineRegions=LONGEST_OFFLINE,
                                                  ThumbnailFormats="avif,webp", ThumbnailPrefix="t" * 201 + "/")),
]

VISIBILITY_FACTOR = 6
MAX_RECEIVE_COUNT = 5
FAILOVER_CODES = {403, 404, 500, 502, 503, 504}
EDGE_MAX_TIMEOUT = 30
EDGE_RUNTIME = re.compile(r"^(nodejs|python)\d")
ESM_ACTIONS = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}
LOG_ACTIONS = {"logs:CreateLogStream", "logs:PutLogEvents"}
# Lambda@Edge replicas create their log groups in the regions they run in.
EDGE_LOG_ACTIONS = LOG_ACTIONS | {"logs:CreateLogGroup"}
DATA_PLANE_SERVICES = {"s3", "sqs", "dynamodb", "logs", "lambda", "sns", "kms", "secretsmanager", "cloudfront"}
# Lambda's CreateEventSourceMapping: for an SQS queue, a BatchSize over 10 needs a
# MaximumBatchingWindowInSeconds of at least 1; a standard queue's batch is at most 10,000.
UNBATCHED_MAX = 10
SQS_BATCH_MAX = 10_000

# SDK operation (the Rust fluent method) -> (service, API name, IAM actions it needs).
# HeadObject and GetObject answer 404 for a missing key only with s3:ListBucket (403 without), and
# the functions rely on the 404.
OPERATIONS = {
    "head_object": ("s3", "HeadObject", {"s3:GetObject", "s3:ListBucket"}),
    "get_object": ("s3", "GetObject", {"s3:GetObject", "s3:ListBucket"}),
    "put_object": ("s3", "PutObject", {"s3:PutObject"}),
    "create_multipart_upload": ("s3", "CreateMultipartUpload", {"s3:PutObject"}),
    "upload_part": ("s3", "UploadPart", {"s3:PutObject"}),
    "complete_multipart_upload": ("s3", "CompleteMultipartUpload", {"s3:PutObject"}),
    "abort_multipart_upload": ("s3", "AbortMultipartUpload", {"s3:AbortMultipartUpload"}),
    "delete_object": ("s3", "DeleteObject", {"s3:DeleteObject"}),
    "copy_object": ("s3", "CopyObject", {"s3:GetObject", "s3:PutObject"}),
    "list_objects_v2": ("s3", "ListObjectsV2", {"s3:ListBucket"}),
    "send_message": ("sqs", "SendMessage", {"sqs:SendMessage"}),
    "send_message_batch": ("sqs", "SendMessageBatch", {"sqs:SendMessage"}),
    "receive_message": ("sqs", "ReceiveMessage", {"sqs:ReceiveMessage"}),
    "delete_message": ("sqs", "DeleteMessage", {"sqs:DeleteMessage"}),
    "change_message_visibility": ("sqs", "ChangeMessageVisibility", {"sqs:ChangeMessageVisibility"}),
    "get_queue_url": ("sqs", "GetQueueUrl", {"sqs:GetQueueUrl"}),
    "get_queue_attributes": ("sqs", "GetQueueAttributes", {"sqs:GetQueueAttributes"}),
    "get_item": ("dynamodb", "GetItem", {"dynamodb:GetItem"}),
    "put_item": ("dynamodb", "PutItem", {"dynamodb:PutItem"}),
    "update_item": ("dynamodb", "UpdateItem", {"dynamodb:UpdateItem"}),
    "delete_item": ("dynamodb", "DeleteItem", {"dynamodb:DeleteItem"}),
    "query": ("dynamodb", "Query", {"dynamodb:Query"}),
    "batch_write_item": ("dynamodb", "BatchWriteItem", {"dynamodb:BatchWriteItem"}),
    # ListParts's IAM action has another name.
    "list_parts": ("s3", "ListParts", {"s3:ListMultipartUploadParts"}),
    "list_object_versions": ("s3", "ListObjectVersions", {"s3:ListBucketVersions"}),
    "publish": ("sns", "Publish", {"sns:Publish"}),
    "get_secret_value": ("secretsmanager", "GetSecretValue", {"secretsmanager:GetSecretValue"}),
    "create_invalidation": ("cloudfront", "CreateInvalidation", {"cloudfront:CreateInvalidation"}),
}
# DynamoDB actions on one item: granted on a table, never on an index (which only Query and Scan
# read, through its own ARN, <table ARN>/index/<name>).
DYNAMODB_ITEM_ACTIONS = {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
                         "dynamodb:BatchWriteItem", "dynamodb:BatchGetItem"}
INDEX_ACTIONS = {"dynamodb:Query", "dynamodb:Scan"}
API_ACTIONS = {f"{svc}:{api}": actions for svc, api, actions in OPERATIONS.values()}
# A GetObject or HeadObject with a version id (a setter given a value, not the answer's getter)
# needs s3:GetObjectVersion as well.
VERSIONED_READS = {"s3:GetObject", "s3:HeadObject"}
VERSION_ID_SET = re.compile(r"\.(?:set_)?version_id\(\s*[^)\s]")
VERSIONED_ACTION = "s3:GetObjectVersion"
# Methods called on a client that are not service operations (`http`: the upload API's own
# client handing out its HTTP client).
CLIENT_METHODS = {"clone", "config", "as_ref", "to_owned", "http"}
SDK_CALL = re.compile(r"\bclient\s*\.\s*([a-z_][a-z0-9_]*)\s*\(\s*\)")

# What each attribute of a resource type refers to, for resource checks: (service, kind).
ARN_KINDS = {
    ("AWS::SQS::Queue", "Arn"): ("sqs", "queue"),
    ("AWS::S3::Bucket", "Arn"): ("s3", "bucket"),
    ("AWS::DynamoDB::Table", "Arn"): ("dynamodb", "table"),
    ("AWS::Logs::LogGroup", "Arn"): ("logs", "log-group"),
}


@dataclass(frozen=True)
class Finding:
    rule: str
    where: str
    message: str
    scenario: str = ""

    def __str__(self):
        scenario = f" [{self.scenario}]" if self.scenario else ""
        return f"{self.rule}: {self.where}: {self.message}{scenario}"


# ---------------------------------------------------------------- loading


class _Loader(yaml.SafeLoader):
    """YAML with CloudFormation's short forms (!Ref, !GetAtt, !Sub, ...)."""


def _tag(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "Condition":
        return {"Condition": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_Loader.add_multi_constructor("!", _tag)
# Only true/false are booleans, as in CloudFormation (YAML 1.1 would also read yes/no/on/off).
_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:bool"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|false|True|False)$"), list("tTfF"))


def load_template(path):
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=_Loader)


# ---------------------------------------------------------------- evaluation

NO_VALUE = object()


class Scenario:
    """One set of parameter values and a region, with the template's conditions evaluated."""

    def __init__(self, template, name, values, region):
        self.template = template
        self.name = name
        self.values = values
        self.region = region
        self.pseudo = {
            "AWS::Region": region,
            "AWS::AccountId": ACCOUNT,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": "overseas-origin",
            "AWS::StackId": f"arn:aws:cloudformation:{region}:{ACCOUNT}:stack/overseas-origin/"
            "3f1c8a50-0000-4000-8000-000000000000",
            "AWS::NoValue": NO_VALUE,
        }
        self.resources = template.get("Resources", {})
        self._conditions = {}

    def condition(self, name):
        if name not in self._conditions:
            self._conditions[name] = bool(self.eval(self.template["Conditions"][name]))
        return self._conditions[name]

    def eval(self, node):
        if isinstance(node, list):
            out = [self.eval(v) for v in node]
            return [v for v in out if v is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, arg), = node.items()
            fn = self._FUNCTIONS.get(key)
            if fn:
                return fn(self, arg)
        out = {}
        for k, v in node.items():
            v = self.eval(v)
            if v is not NO_VALUE:
                out[k] = v
        return out

    def _ref(self, name):
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.values:
            spec = self.template.get("Parameters", {}).get(name, {})
            if spec.get("Type") == "CommaDelimitedList":
                return self.values[name].split(",")
            return self.values[name]
        if name in self.resources or name.split(".")[0] in self.resources:
            return f"<<{name}>>"
        raise KeyError(f"Ref to unknown {name}")

    def _getatt(self, arg):
        name, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
        return f"<<{name}.{self.eval(attribute)}>>"

    def _sub(self, arg):
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
        variables = {k: self.eval(v) for k, v in variables.items()}

        def replace(match):
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            if "." in name and name.split(".", 1)[0] in self.resources:
                return f"<<{name}>>"
            return str(self._ref(name))

        return re.sub(r"\$\{([^}]+)\}", replace, text)

    def _if(self, arg):
        name, yes, no = arg
        return self.eval(yes if self.condition(name) else no)

    def _find_in_map(self, arg):
        mapping, first, second = (self.eval(a) for a in arg)
        return self.template["Mappings"][mapping][str(first)][str(second)]

    def _select(self, arg):
        index, items = self.eval(arg[0]), self.eval(arg[1])
        return items[int(index)]

    def _split(self, arg):
        sep, text = arg[0], self.eval(arg[1])
        return text.split(sep)

    def _join(self, arg):
        sep, items = arg[0], self.eval(arg[1])
        return sep.join(str(i) for i in items)

    def _equals(self, arg):
        a, b = (self.eval(v) for v in arg)
        return str(a) == str(b)

    _FUNCTIONS = {
        "Ref": lambda self, a: self._ref(a),
        "Fn::GetAtt": lambda self, a: self._getatt(a),
        "Fn::Sub": lambda self, a: self._sub(a),
        "Fn::If": lambda self, a: self._if(a),
        "Fn::FindInMap": lambda self, a: self._find_in_map(a),
        "Fn::Select": lambda self, a: self._select(a),
        "Fn::Split": lambda self, a: self._split(a),
        "Fn::Join": lambda self, a: self._join(a),
        "Fn::Equals": lambda self, a: self._equals(a),
        "Fn::And": lambda self, a: all(self.eval(v) for v in a),
        "Fn::Or": lambda self, a: any(self.eval(v) for v in a),
        "Fn::Not": lambda self, a: not self.eval(a[0]),
        "Fn::Contains": lambda self, a: str(self.eval(a[1])) in [str(v) for v in self.eval(a[0])],
        "Condition": lambda self, a: self.condition(a),
    }

    def evaluated_resources(self):
        """Resources whose condition holds, evaluated, with SAM Globals applied to functions (once
        per scenario: the rules only read them)."""
        if getattr(self, "_evaluated", None) is None:
            self._evaluated = self._evaluate_resources()
        return self._evaluated

    def _evaluate_resources(self):
        out = {}
        globals_function = self.eval(self.template.get("Globals", {}).get("Function", {}))
        for name, resource in self.resources.items():
            condition = resource.get("Condition")
            if condition and not self.condition(condition):
                continue
            evaluated = self.eval({k: v for k, v in resource.items() if k != "Condition"})
            evaluated.setdefault("Properties", {})
            if evaluated["Type"] == "AWS::Serverless::Function":
                evaluated["Properties"] = apply_globals(globals_function, evaluated["Properties"])
            out[name] = evaluated
        return out


def apply_globals(globals_function, properties):
    merged = copy.deepcopy(globals_function)
    for key, value in properties.items():
        if key == "Environment" and "Environment" in merged:
            variables = dict(merged["Environment"].get("Variables", {}))
            variables.update(value.get("Variables", {}))
            merged["Environment"] = {"Variables": variables}
        else:
            merged[key] = value
    return merged


def scenarios(template, label):
    """Defaults first, then each allowed value of each choice parameter, in every region."""
    params = template.get("Parameters", {})
    defaults = {}
    for name, spec in params.items():
        if "Default" in spec:
            defaults[name] = str(spec["Default"])
        elif name in SAMPLE_VALUES:
            defaults[name] = SAMPLE_VALUES[name]
        else:
            raise ValueError(f"{label}: parameter {name} has no default and no sample value")
    variants = [("defaults", {})]
    for name, spec in params.items():
        if name in OWN_WALK:
            continue
        for value in list(spec.get("AllowedValues", [])) + EXTRA_VALUES.get(name, []):
            if str(value) != defaults[name]:
                companions = COMPANION_VALUES.get((name, str(value)), {})
                changes = dict({name: str(value)}, **{k: v for k, v in companions.items() if k in params})
                variants.append((f"{name}={value}", changes))
    for vname, changes in EXTRA_SCENARIOS:
        if set(changes) <= set(params):
            variants.append((vname, changes))
    for (vname, changes), region in itertools.product(variants, REGIONS):
        values = dict(defaults, **changes)
        yield Scenario(template, f"{label} {vname} {region}", values, region)


# ---------------------------------------------------------------- helpers


def ref_name(value):
    """The resource a symbolic reference names ("<<Queue.Arn>>" -> ("Queue", "Arn"))."""
    if isinstance(value, str):
        m = re.fullmatch(r"<<([A-Za-z0-9]+)(?:\.([A-Za-z0-9.]+))?>>", value)
        if m:
            return m.group(1), m.group(2)
    return None, None


def as_list(value):
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def statements(document):
    return as_list((document or {}).get("Statement"))


def function_timeout(props):
    return int(props.get("Timeout", 3))


def is_fifo(queue_props):
    return str(queue_props.get("FifoQueue", "false")).lower() == "true"


def sqs_event_sources(resources):
    """(function name, function properties, event name, event properties, queue name)."""
    for name, res in resources.items():
        if res["Type"] == "AWS::Serverless::Function":
            for event_name, event in (res["Properties"].get("Events") or {}).items():
                if event.get("Type") == "SQS":
                    queue, _ = ref_name(event["Properties"].get("Queue"))
                    yield name, res["Properties"], event_name, event["Properties"], queue
        elif res["Type"] == "AWS::Lambda::EventSourceMapping":
            props = res["Properties"]
            queue, _ = ref_name(props.get("EventSourceArn"))
            function, _ = ref_name(props.get("FunctionName"))
            if queue and resources.get(queue, {}).get("Type") == "AWS::SQS::Queue":
                fprops = resources.get(function, {}).get("Properties", {})
                yield function, fprops, name, props, queue


def policy_documents(resources):
    """(where, document, is_identity_policy, role names it applies to)."""
    for name, res in resources.items():
        props = res["Properties"]
        kind = res["Type"]
        if kind == "AWS::IAM::Role":
            for policy in props.get("Policies", []):
                yield f"{name}/{policy.get('PolicyName')}", policy["PolicyDocument"], True, [name]
        elif kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            roles = [ref_name(r)[0] or r for r in props.get("Roles", [])]
            yield name, props["PolicyDocument"], True, roles
        elif kind == "AWS::S3::BucketPolicy":
            yield name, props["PolicyDocument"], False, []
        elif kind == "AWS::SQS::QueuePolicy":
            yield name, props["PolicyDocument"], False, []
        elif kind == "AWS::Serverless::Function":
            for policy in as_list(props.get("Policies")):
                if isinstance(policy, dict) and "Statement" in policy:
                    yield f"{name}/Policies", policy, True, [name]


def resource_kind(resources, resource):
    """(service, kind) of a resource ARN, literal or symbolic."""
    name, attribute = ref_name(resource)
    if name:
        res_type = resources.get(name, {}).get("Type")
        return ARN_KINDS.get((res_type, attribute), (None, None))
    if isinstance(resource, str) and resource.startswith("<<"):
        name = resource[2:].split(".", 1)[0].split(">", 1)[0]
        res_type = resources.get(name, {}).get("Type")
        if res_type == "AWS::S3::Bucket" and "/" in resource:
            return "s3", "object"
        if res_type == "AWS::DynamoDB::Table" and TABLE_INDEX.fullmatch(resource):
            return "dynamodb", "index"
        return None, None
    if isinstance(resource, str) and resource.startswith("arn:"):
        parts = resource.split(":", 5)
        if len(parts) == 6:
            service, rest = parts[2], parts[5]
            if service == "s3":
                return "s3", "object" if "/" in rest else "bucket"
            if service == "logs":
                return "logs", "log-group"
            if service == "sqs":
                return "sqs", "queue"
            if service == "dynamodb":
                return "dynamodb", "index" if "/index/" in rest else "table"
            if service == "cloudfront" and rest.startswith("distribution/"):
                return "cloudfront", "distribution"
            return service, None
    return None, None


# A table's index, by the table's symbolic ARN: <<Table.Arn>>/index/NAME.
TABLE_INDEX = re.compile(r"(<<[A-Za-z0-9]+\.Arn>>)/index/([^/]+)")
# A CloudFront distribution's ARN (the service is global: no region), its id last.
DISTRIBUTION_ARN = re.compile(r"arn:[a-z-]+:cloudfront::[0-9]{12}:distribution/(.+)")


def named_part(resource):
    """The part of an ARN that names the resource (an S3 object's key excluded)."""
    if not isinstance(resource, str):
        return str(resource)
    if resource == "*":
        return "*"
    if resource.startswith("<<"):
        # An object's key is not the resource's name; an index's name is (<<T.Arn>>/index/*
        # would be every index of the table).
        head, _, tail = resource.partition("/")
        return re.sub(r"<<[^>]*>>", "", resource if tail.startswith("index/") else head)
    parts = resource.split(":", 5)
    if len(parts) < 6:
        return resource
    service, rest = parts[2], parts[5]
    if service == "s3":
        return rest.split("/", 1)[0]
    if service == "logs":
        # log-group:NAME[:*]: the trailing ":*" means its streams.
        name = rest[len("log-group:"):] if rest.startswith("log-group:") else rest
        return re.sub(r":\*$", "", name)
    return rest


# ---------------------------------------------------------------- rules


def rule_policies(resources):
    for where, document, identity, _roles in policy_documents(resources):
        for i, st in enumerate(statements(document)):
            if st.get("Effect") != "Allow":
                continue
            at = f"{where} statement {st.get('Sid', i)}"
            if "NotAction" in st or "NotResource" in st:
                yield Finding("wildcard-action", at, "NotAction/NotResource allow more than they name")
            actions = as_list(st.get("Action"))
            for action in actions:
                if "*" in str(action):
                    yield Finding("wildcard-action", at, f"action {action!r}")
            if not identity and st.get("Principal") in ("*", {"AWS": "*"}):
                yield Finding("wildcard-resource", at, "allows any principal")
            data_plane = any(str(a).split(":", 1)[0] in DATA_PLANE_SERVICES for a in actions)
            if data_plane:
                for resource in as_list(st.get("Resource")):
                    if "*" in named_part(resource):
                        yield Finding("wildcard-resource", at, f"resource {resource!r} for {actions}")
    for name, res in resources.items():
        props = res["Properties"]
        if res["Type"] == "AWS::IAM::Role" and props.get("ManagedPolicyArns"):
            yield Finding("unverifiable-policy", name, "managed policies are not checked: write the statements")
        if res["Type"] == "AWS::Serverless::Function":
            if "Role" not in props:
                yield Finding("unverifiable-policy", name, "no Role: SAM would generate one with managed policies")
            for policy in as_list(props.get("Policies")):
                if not (isinstance(policy, dict) and "Statement" in policy):
                    yield Finding("unverifiable-policy", name, f"policy {policy!r} is not a statement list")


def rule_event_sources(resources):
    for function, fprops, event, props, queue in sqs_event_sources(resources):
        at = f"{function}/{event}"
        qprops = resources.get(queue, {}).get("Properties")
        if qprops is None:
            yield Finding("event-source-settings", at, f"queue {queue!r} is not a queue of this template")
            continue
        visibility = int(qprops.get("VisibilityTimeout", 30))
        timeout = function_timeout(fprops)
        if visibility < VISIBILITY_FACTOR * timeout:
            yield Finding(
                "visibility-timeout", at,
                f"queue {queue} visibility {visibility}s < {VISIBILITY_FACTOR} x timeout {timeout}s",
            )
        if "ReportBatchItemFailures" not in as_list(props.get("FunctionResponseTypes")):
            yield Finding("batch-item-failures", at, "FunctionResponseTypes lacks ReportBatchItemFailures")
        if "BatchSize" not in props:
            yield Finding("event-source-settings", at, "no BatchSize")
        elif is_fifo(qprops) and int(props["BatchSize"]) > 10:
            yield Finding("event-source-settings", at, "BatchSize over 10 on a FIFO queue")
        if not (props.get("ScalingConfig") or {}).get("MaximumConcurrency"):
            yield Finding("event-source-settings", at, "no ScalingConfig.MaximumConcurrency")
        window = props.get("MaximumBatchingWindowInSeconds")
        if is_fifo(qprops) and window is not None:
            yield Finding("event-source-settings", at, "a batching window on a FIFO queue")
        if not is_fifo(qprops) and window is None:
            yield Finding("event-source-settings", at, "no MaximumBatchingWindowInSeconds")
        if "BatchSize" in props and not is_fifo(qprops):
            yield from batch_window_findings("event-source-settings", at, props)


def batch_window_findings(rule, at, props):
    """Lambda refuses an SQS mapping whose BatchSize is over 10 without a batching window of at
    least a second (CreateEventSourceMapping), and one over 10,000."""
    size = int(props["BatchSize"])
    window = int(props.get("MaximumBatchingWindowInSeconds") or 0)
    if size > UNBATCHED_MAX and window < 1:
        yield Finding(rule, at, f"BatchSize {size} over {UNBATCHED_MAX} with a batching window of {window}s: "
                      "Lambda needs MaximumBatchingWindowInSeconds of at least 1")
    if size > SQS_BATCH_MAX:
        yield Finding(rule, at, f"BatchSize {size} over {SQS_BATCH_MAX}, the most Lambda takes from a standard queue")


def dead_letter_targets(resources):
    """DLQ -> what sends to it: a queue's or a subscription's redrive policy, or a schedule's
    DeadLetterConfig."""
    targets = {}
    for name, res in resources.items():
        if res["Type"] in ("AWS::SQS::Queue", "AWS::SNS::Subscription"):
            redrive = res["Properties"].get("RedrivePolicy") or {}
            target, _ = ref_name(redrive.get("deadLetterTargetArn"))
            if target:
                targets[target] = name
        elif res["Type"] == "AWS::Scheduler::Schedule":
            dead_letter = (res["Properties"].get("Target") or {}).get("DeadLetterConfig") or {}
            target, _ = ref_name(dead_letter.get("Arn"))
            if target:
                targets[target] = name
    return targets


def rule_queues(resources):
    targets = dead_letter_targets(resources)
    for name, res in resources.items():
        if res["Type"] != "AWS::SQS::Queue":
            continue
        props = res["Properties"]
        if not (str(props.get("SqsManagedSseEnabled", "")).lower() == "true" or props.get("KmsMasterKeyId")):
            yield Finding("queue-encryption", name, "no server-side encryption")
        if name in targets:
            continue
        redrive = props.get("RedrivePolicy")
        if not redrive:
            yield Finding("dead-letter-queue", name, "no RedrivePolicy")
            continue
        dlq, _ = ref_name(redrive.get("deadLetterTargetArn"))
        dlq_props = resources.get(dlq, {}).get("Properties")
        if dlq_props is None:
            yield Finding("dead-letter-queue", name, "the DLQ is not a queue of this template")
            continue
        if int(redrive.get("maxReceiveCount", 0)) != MAX_RECEIVE_COUNT:
            yield Finding("dead-letter-queue", name, f"maxReceiveCount is not {MAX_RECEIVE_COUNT}")
        if is_fifo(props) != is_fifo(dlq_props):
            yield Finding("dead-letter-queue", name, f"DLQ {dlq} is not of the same type")
        if int(dlq_props.get("MessageRetentionPeriod", 345600)) <= int(props.get("MessageRetentionPeriod", 345600)):
            yield Finding("dead-letter-queue", name, f"DLQ {dlq} keeps messages no longer than the queue")


def edge_functions(resources):
    """Functions attached to a distribution, and functions whose role edgelambda may assume."""
    found = {}
    for name, res in resources.items():
        if res["Type"] == "AWS::CloudFront::Distribution":
            config = res["Properties"]["DistributionConfig"]
            behaviours = [config.get("DefaultCacheBehavior", {})] + config.get("CacheBehaviors", [])
            for behaviour in behaviours:
                for assoc in behaviour.get("LambdaFunctionAssociations", []):
                    function, attribute = ref_name(assoc.get("LambdaFunctionARN"))
                    found[function] = attribute
    for name, res in resources.items():
        if res["Type"] == "AWS::Serverless::Function" or res["Type"] == "AWS::Lambda::Function":
            role, _ = ref_name(res["Properties"].get("Role"))
            trust = resources.get(role, {}).get("Properties", {}).get("AssumeRolePolicyDocument")
            services = [
                s for st in statements(trust) for s in as_list((st.get("Principal") or {}).get("Service"))
            ]
            if "edgelambda.amazonaws.com" in services:
                found.setdefault(name, None)
    return found


def rule_edge(resources):
    for name, attribute in edge_functions(resources).items():
        res = resources.get(name)
        if res is None:
            yield Finding("edge-function", name, "the associated function is not in this template")
            continue
        props = res["Properties"]
        if props.get("Environment"):
            yield Finding("edge-function", name, "environment variables (Lambda@Edge has none)")
        runtime = str(props.get("Runtime", ""))
        if not EDGE_RUNTIME.match(runtime):
            yield Finding("edge-function", name, f"runtime {runtime!r}: Lambda@Edge runs Node.js and Python only")
        if as_list(props.get("Architectures", ["x86_64"])) != ["x86_64"]:
            yield Finding("edge-function", name, "not x86_64")
        if props.get("Layers"):
            yield Finding("edge-function", name, "layers")
        if function_timeout(props) > EDGE_MAX_TIMEOUT:
            yield Finding("edge-function", name, f"timeout over {EDGE_MAX_TIMEOUT}s")
        if res["Type"] == "AWS::Serverless::Function" and not props.get("AutoPublishAlias"):
            yield Finding("edge-function", name, "no AutoPublishAlias: CloudFront needs a numbered version")
        # Lambda refuses to delete a function CloudFront still has replicas of (for hours after the
        # distribution lets go), so a rollback or a stack deletion that deletes it fails.
        if res.get("DeletionPolicy") != "Retain" or res.get("UpdateReplacePolicy") != "Retain":
            yield Finding("edge-function", name, "not kept (DeletionPolicy and UpdateReplacePolicy Retain): "
                          "deleting a replicated function fails, and the stack with it")
        if attribute is not None and attribute != "Version":
            yield Finding("edge-function", name, "the distribution is not given a numbered version")
        role, _ = ref_name(props.get("Role"))
        trust = resources.get(role, {}).get("Properties", {}).get("AssumeRolePolicyDocument")
        services = {s for st in statements(trust) for s in as_list((st.get("Principal") or {}).get("Service"))}
        if not {"lambda.amazonaws.com", "edgelambda.amazonaws.com"} <= services:
            yield Finding("edge-function", name, "its role is not trusted by lambda and edgelambda")


def rule_distribution(resources):
    for name, res in resources.items():
        if res["Type"] != "AWS::CloudFront::Distribution":
            continue
        config = res["Properties"]["DistributionConfig"]
        for group in (config.get("OriginGroups") or {}).get("Items", []):
            codes = (group.get("FailoverCriteria") or {}).get("StatusCodes") or {}
            items = {int(c) for c in codes.get("Items", [])}
            missing = FAILOVER_CODES - items
            if missing:
                yield Finding("failover-codes", f"{name}/{group.get('Id')}", f"no failover on {sorted(missing)}")
            if int(codes.get("Quantity", -1)) != len(codes.get("Items", [])):
                yield Finding("failover-codes", f"{name}/{group.get('Id')}", "Quantity differs from the items")
        behaviours = [config.get("DefaultCacheBehavior", {})] + config.get("CacheBehaviors", [])
        for behaviour in behaviours:
            if behaviour.get("ViewerProtocolPolicy") not in ("redirect-to-https", "https-only"):
                yield Finding("viewer-https", name, f"ViewerProtocolPolicy {behaviour.get('ViewerProtocolPolicy')!r}")


def rule_buckets(resources):
    bucket_policies = {}
    queue_policies = {}
    topic_policies = {}
    for name, res in resources.items():
        if res["Type"] == "AWS::S3::BucketPolicy":
            bucket, _ = ref_name(res["Properties"].get("Bucket"))
            bucket_policies[bucket] = (name, res["Properties"]["PolicyDocument"])
        if res["Type"] == "AWS::SQS::QueuePolicy":
            for queue in res["Properties"].get("Queues", []):
                queue_policies[ref_name(queue)[0]] = (name, res["Properties"]["PolicyDocument"])
        if res["Type"] == "AWS::SNS::TopicPolicy":
            for topic in res["Properties"].get("Topics", []):
                topic_policies[ref_name(topic)[0]] = (name, res["Properties"]["PolicyDocument"])
    for name, res in resources.items():
        if res["Type"] != "AWS::S3::Bucket":
            continue
        props = res["Properties"]
        block = props.get("PublicAccessBlockConfiguration") or {}
        for key in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"):
            if str(block.get(key, "")).lower() != "true":
                yield Finding("bucket-protection", name, f"{key} is not true")
        if not props.get("BucketEncryption"):
            yield Finding("bucket-protection", name, "no default encryption")
        rules = (props.get("LifecycleConfiguration") or {}).get("Rules", [])
        if not any(r.get("Status") == "Enabled" and r.get("AbortIncompleteMultipartUpload") for r in rules):
            yield Finding("bucket-protection", name, "no lifecycle rule aborting incomplete multipart uploads")
        policy_name, document = bucket_policies.get(name, (None, None))
        for st in statements(document):
            if st.get("Effect") != "Allow":
                continue
            principal = st.get("Principal") or {}
            condition = (st.get("Condition") or {}).get("StringEquals") or {}
            source = condition.get("AWS:SourceArn") or condition.get("aws:SourceArn") or ""
            if principal != {"Service": "cloudfront.amazonaws.com"} or ":distribution/" not in str(source):
                yield Finding("bucket-policy", f"{policy_name}/{st.get('Sid')}", "allows other than one distribution")
            if as_list(st.get("Action")) != ["s3:GetObject"]:
                yield Finding("bucket-policy", f"{policy_name}/{st.get('Sid')}", "allows more than s3:GetObject")
        notification_config = props.get("NotificationConfiguration") or {}
        depends = set(as_list(res.get("DependsOn")))
        targets = [
            ("QueueConfigurations", "Queue", queue_policies, "sqs:SendMessage", {"prefix", "suffix"}),
            ("TopicConfigurations", "Topic", topic_policies, "sns:Publish", {"prefix"}),
        ]
        for key, target_key, policies, action, filters in targets:
            for i, notification in enumerate(notification_config.get(key, [])):
                at = f"{name}/{key}[{i}]"
                target, _ = ref_name(notification.get(target_key))
                rules_ = ((notification.get("Filter") or {}).get("S3Key") or {}).get("Rules", [])
                if not filters <= {r.get("Name", "").lower() for r in rules_}:
                    yield Finding("bucket-notification", at, f"not filtered by {' and '.join(sorted(filters))}")
                policy_name, document = policies.get(target, (None, None))
                if policy_name is None:
                    yield Finding("bucket-notification", at, f"{target_key.lower()} {target} has no policy")
                    continue
                if policy_name not in depends:
                    yield Finding("bucket-notification", at, f"the bucket does not depend on {policy_name}")
                if not any(
                    allows_service(st, "s3.amazonaws.com", action)
                    and condition_keys(st) >= {"aws:SourceArn", "aws:SourceAccount"}
                    for st in statements(document)
                ):
                    yield Finding(
                        "bucket-notification", at,
                        f"{policy_name} does not let s3.amazonaws.com send with SourceArn and SourceAccount",
                    )


def allows_service(st, service, action):
    return (
        st.get("Effect") == "Allow"
        and st.get("Principal") == {"Service": service}
        and action in as_list(st.get("Action"))
    )


def condition_keys(st):
    return {key for condition in (st.get("Condition") or {}).values() for key in condition}


def rule_subscriptions(resources):
    """A queue subscribed to a topic receives nothing unless its policy lets that topic send."""
    queue_policies = {}
    for name, res in resources.items():
        if res["Type"] == "AWS::SQS::QueuePolicy":
            for queue in res["Properties"].get("Queues", []):
                queue_policies[ref_name(queue)[0]] = (name, res["Properties"]["PolicyDocument"])
    for name, res in resources.items():
        props = res["Properties"]
        if res["Type"] != "AWS::SNS::Subscription" or props.get("Protocol") != "sqs":
            continue
        queue, _ = ref_name(props.get("Endpoint"))
        topic, _ = ref_name(props.get("TopicArn"))
        policy_name, document = queue_policies.get(queue, (None, None))
        if policy_name is None:
            yield Finding("topic-subscription", name, f"queue {queue} has no queue policy")
            continue
        if not lets_topic_send(document, topic):
            yield Finding("topic-subscription", name, f"{policy_name} does not let topic {topic} (by SourceArn) send")
        # SNS retries a failed delivery, then drops it unless the subscription has a redrive policy.
        dlq, _ = ref_name((props.get("RedrivePolicy") or {}).get("deadLetterTargetArn"))
        if dlq is None or resources.get(dlq, {}).get("Type") != "AWS::SQS::Queue":
            yield Finding("topic-subscription", name, "no redrive policy to a queue of this template: SNS drops what it cannot deliver")
        else:
            dlq_policy, dlq_document = queue_policies.get(dlq, (None, None))
            if dlq_policy is None or not lets_topic_send(dlq_document, topic):
                yield Finding("topic-subscription", name, f"its dead-letter queue {dlq} does not let topic {topic} send")
        # A queue that also takes the bucket's suffix-filtered notifications takes from the topic
        # only what those let through.
        suffixes = notified_suffixes(resources, queue)
        if suffixes:
            filtered = subscription_suffixes(props)
            if filtered is None:
                yield Finding("topic-subscription", name, f"no filter: {queue} is woken for every object, not only {sorted(suffixes)}")
            elif filtered != suffixes:
                yield Finding("topic-subscription", name, f"filters on {sorted(filtered)}, the bucket notifies {queue} of {sorted(suffixes)}")


def lets_topic_send(document, topic):
    """Whether a queue policy lets this topic (by SourceArn) send to the queue."""
    return any(
        allows_service(st, "sns.amazonaws.com", "sqs:SendMessage")
        and any(ref_name(condition.get("aws:SourceArn"))[0] == topic for condition in (st.get("Condition") or {}).values())
        for st in statements(document)
    )


def notified_suffixes(resources, queue):
    """The key suffixes of the bucket notifications sent to queue."""
    suffixes = set()
    for res in resources.values():
        if res["Type"] != "AWS::S3::Bucket":
            continue
        config = res["Properties"].get("NotificationConfiguration") or {}
        for rule in config.get("QueueConfigurations", []):
            if ref_name(rule.get("Queue"))[0] == queue:
                for f in ((rule.get("Filter") or {}).get("S3Key") or {}).get("Rules", []):
                    if f.get("Name") == "suffix":
                        suffixes.add(f["Value"])
    return suffixes


def subscription_suffixes(props):
    """The key suffixes a subscription's body filter lets through; None without one."""
    policy = props.get("FilterPolicy")
    if isinstance(policy, str):
        policy = json.loads(policy)
    if props.get("FilterPolicyScope") != "MessageBody" or not policy:
        return None
    key = (((policy.get("Records") or {}).get("s3") or {}).get("object") or {}).get("key") or []
    return {m["suffix"] for m in key if isinstance(m, dict) and "suffix" in m} or None


def rule_notification_case(resources):
    """S3's suffix filters are case-sensitive: each suffix notified in lower case is notified in
    upper case too (photo.JPG, IMG.WEBP)."""
    for name, res in resources.items():
        if res["Type"] != "AWS::S3::Bucket":
            continue
        config = res["Properties"].get("NotificationConfiguration") or {}
        by_queue = {}
        for rule in config.get("QueueConfigurations", []):
            for f in ((rule.get("Filter") or {}).get("S3Key") or {}).get("Rules", []):
                if f.get("Name") == "suffix":
                    by_queue.setdefault(ref_name(rule.get("Queue"))[0], set()).add(f["Value"])
        for queue, suffixes in by_queue.items():
            for suffix in sorted(suffixes):
                for other in (suffix.lower(), suffix.upper()):
                    if other not in suffixes:
                        yield Finding("notification-case", name, f"notifies {queue} of {suffix} but not of {other}")


def rule_notification_removals(resources):
    """A queue told of the objects created under a filter is told of their removal too, under the
    same filter, and the reverse: what its consumer made of an object follows the object."""
    for name, res in resources.items():
        if res["Type"] != "AWS::S3::Bucket":
            continue
        config = res["Properties"].get("NotificationConfiguration") or {}
        by_event = {"created": {}, "removed": {}}
        for rule in config.get("QueueConfigurations", []):
            event = rule.get("Event", "")
            kind = "created" if event.startswith("s3:ObjectCreated:") else "removed" if event.startswith("s3:ObjectRemoved:") else None
            if kind is None:
                continue
            rules_ = ((rule.get("Filter") or {}).get("S3Key") or {}).get("Rules", [])
            key_filter = tuple(sorted((f.get("Name", "").lower(), json.dumps(f.get("Value"), sort_keys=True)) for f in rules_))
            by_event[kind].setdefault(ref_name(rule.get("Queue"))[0], set()).add(key_filter)
        for kind, other in (("created", "removed"), ("removed", "created")):
            for queue, filters in by_event[kind].items():
                for key_filter in sorted(filters - by_event[other].get(queue, set())):
                    shown = " ".join(f"{n}={json.loads(v)}" for n, v in key_filter)
                    yield Finding("notification-removals", name, f"notifies {queue} of objects {kind} ({shown}) but not {other}")


def rule_data_kept(resources):
    """What holds data survives a stack deletion and a replacement, but not a failed first deploy:
    RetainExceptOnCreate, so the retry does not fail on a kept bucket's name. A plain Retain is
    only for the edge function (rule_edge)."""
    edge = set(edge_functions(resources))
    for name, res in resources.items():
        holds_data = res["Type"] == "AWS::S3::Bucket" or (
            res["Type"] == "AWS::DynamoDB::Table"
            and str(((res["Properties"].get("PointInTimeRecoverySpecification") or {})
                     .get("PointInTimeRecoveryEnabled", ""))).lower() == "true"
            and not (res["Properties"].get("TimeToLiveSpecification") or {}).get("Enabled"))
        if holds_data:
            if res.get("DeletionPolicy") != "RetainExceptOnCreate":
                yield Finding("data-kept", name, f"DeletionPolicy is {res.get('DeletionPolicy', 'Delete')}, not "
                              "RetainExceptOnCreate (kept on deletion, removed when the first deploy fails)")
            if res.get("UpdateReplacePolicy") != "Retain":
                yield Finding("data-kept", name, "UpdateReplacePolicy is not Retain: a replacement deletes the data")
        elif res.get("DeletionPolicy") == "Retain" and name not in edge:
            yield Finding("data-kept", name, "DeletionPolicy Retain: a failed first deploy keeps it, and the retry "
                          "fails on its name (RetainExceptOnCreate)")


def rule_secrets_in_environment(resources):
    """No secret value in a function's environment (anyone who may read the function's
    configuration reads it): a function gets a secret's ARN and reads the value itself."""
    for name, res in resources.items():
        if res["Type"] not in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
            continue
        variables = ((res["Properties"].get("Environment") or {}).get("Variables")) or {}
        for var, value in variables.items():
            if "{{resolve:" in json.dumps(value):
                yield Finding("secret-environment", f"{name}/{var}", "a dynamic reference puts the secret's value in plain text")
        arn = variables.get("ORIGIN_SECRET_ARN")
        if arn is not None and not variables.get("ORIGIN_SECRET_HEADER"):
            yield Finding("secret-environment", name, "ORIGIN_SECRET_ARN without ORIGIN_SECRET_HEADER")


def rule_origin_secret_header(resources):
    """CloudFront sends the origin secret from Secrets Manager (a dynamic reference resolved at
    deploy), never from a template value."""
    for name, res in resources.items():
        if res["Type"] != "AWS::CloudFront::Distribution":
            continue
        for origin in res["Properties"]["DistributionConfig"].get("Origins", []):
            for header in origin.get("OriginCustomHeaders", []):
                if str(header.get("HeaderName", "")).lower().startswith("x-backfill-"):
                    continue
                value = str(header.get("HeaderValue", ""))
                if not value.startswith("{{resolve:secretsmanager:"):
                    yield Finding("origin-secret", f"{name}/{origin.get('Id')}",
                                  f"header {header.get('HeaderName')} is a template value, not a Secrets Manager reference")


def rule_function_urls(resources):
    """On the template SAM produces: a NONE function URL has both public permissions (else every
    call answers 403), an AWS_IAM one none for every principal (else any AWS account may call)."""
    for name, res in resources.items():
        if res["Type"] != "AWS::Lambda::Url":
            continue
        target, _ = ref_name(res["Properties"].get("TargetFunctionArn"))
        permissions = [p["Properties"] for p in resources.values()
                       if p["Type"] == "AWS::Lambda::Permission" and ref_name(p["Properties"].get("FunctionName"))[0] == target]
        public = [p for p in permissions if p.get("Principal") == "*"]
        auth = res["Properties"].get("AuthType")
        if auth == "NONE":
            if not any(p.get("Action") == "lambda:InvokeFunctionUrl" and p.get("FunctionUrlAuthType") == "NONE" for p in public):
                yield Finding("function-url", name, "public (NONE) without lambda:InvokeFunctionUrl for every principal: every call answers 403")
            if not any(p.get("Action") == "lambda:InvokeFunction" and str(p.get("InvokedViaFunctionUrl")).lower() == "true"
                       for p in public):
                yield Finding("function-url", name, "public (NONE) without lambda:InvokeFunction through the URL for every principal: every call answers 403")
        elif public:
            yield Finding("function-url", name, f"{auth} with a permission for every principal: any AWS account could call it")


def rule_alarms(resources):
    alarms = {}
    for name, res in resources.items():
        if res["Type"] == "AWS::CloudWatch::Alarm":
            props = res["Properties"]
            for dimension in props.get("Dimensions", []):
                if dimension.get("Name") == "QueueName":
                    queue, _ = ref_name(dimension.get("Value"))
                    alarms.setdefault(queue, set()).add(props.get("MetricName"))
    targets = dead_letter_targets(resources)
    consumed = {queue for *_, queue in sqs_event_sources(resources)}
    for name, res in resources.items():
        if res["Type"] != "AWS::SQS::Queue":
            continue
        if name in targets and "ApproximateNumberOfMessagesVisible" not in alarms.get(name, set()):
            yield Finding("queue-alarms", name, "DLQ without a depth alarm")
        if name in consumed and "ApproximateAgeOfOldestMessage" not in alarms.get(name, set()):
            yield Finding("queue-alarms", name, "queue without an oldest-message age alarm")


# The backfill function's split copies (issue 17): the variables that name the part queue, the
# workers it may use at once, and the lease table, and the lease table's key and TTL attribute.
PART_QUEUE_VARIABLE = "PART_QUEUE_URL"
PART_WORKERS_VARIABLE = "PART_WORKERS"
LEASE_TABLE_VARIABLE = "LEASE_TABLE"
LEASE_KEY = ("pk", "S")
LEASE_TTL = "ttl"


def function_variables(props):
    return ((props.get("Environment") or {}).get("Variables")) or {}


def rule_part_queue(resources):
    """The part queue a function sends its part tasks to is one it consumes itself, a task per
    invocation, with as many invocations at once as it is told (PART_WORKERS): the plan sizes parts
    and refuses copies from that number, so the mapping must not allow another."""
    for function, res in resources.items():
        if res["Type"] != "AWS::Serverless::Function":
            continue
        variables = function_variables(res["Properties"])
        if PART_QUEUE_VARIABLE not in variables:
            continue
        at = f"{function} {PART_QUEUE_VARIABLE}"
        queue, attribute = ref_name(variables[PART_QUEUE_VARIABLE])
        if queue is None or attribute is not None or resources.get(queue, {}).get("Type") != "AWS::SQS::Queue":
            yield Finding("part-queue", at, f"{variables[PART_QUEUE_VARIABLE]!r} is not the URL of a queue of this template")
            continue
        if is_fifo(resources[queue]["Properties"]):
            yield Finding("part-queue", at, f"{queue} is a FIFO queue: part tasks would wait for each other")
        events = [props for f, _fp, _e, props, q in sqs_event_sources(resources) if f == function and q == queue]
        if not events:
            yield Finding("part-queue", at, f"{function} does not consume {queue}: nobody uploads the parts")
            continue
        workers = variables.get(PART_WORKERS_VARIABLE)
        for props in events:
            if str(props.get("BatchSize")) != "1":
                yield Finding("part-queue", at, f"BatchSize {props.get('BatchSize')} on {queue}: one part task per invocation")
            concurrency = (props.get("ScalingConfig") or {}).get("MaximumConcurrency")
            if workers is None or str(concurrency) != str(workers):
                yield Finding(
                    "part-queue", at,
                    f"{queue}'s MaximumConcurrency is {concurrency}, {PART_WORKERS_VARIABLE} is {workers}: they must be one value",
                )


def keyed_tables(resources, rule, variable, key_attribute, ttl_attribute, without_ttl):
    """For each function whose `variable` names a table: (function, where, table, findings), the
    findings if the table is not keyed by `key_attribute` (name, type) alone with its TTL on
    `ttl_attribute`; table None when the variable names no table of this template."""
    for function, res in resources.items():
        if res["Type"] != "AWS::Serverless::Function":
            continue
        variables = function_variables(res["Properties"])
        if variable not in variables:
            continue
        at = f"{function} {variable}"
        table, attribute = ref_name(variables[variable])
        if table is None or attribute is not None or resources.get(table, {}).get("Type") != "AWS::DynamoDB::Table":
            yield function, at, None, [Finding(rule, at, f"{variables[variable]!r} is not the name of a table of this template")]
            continue
        props = resources[table]["Properties"]
        types = {a.get("AttributeName"): a.get("AttributeType") for a in props.get("AttributeDefinitions", [])}
        key = [(k.get("AttributeName"), k.get("KeyType")) for k in props.get("KeySchema", [])]
        findings = []
        if key != [(key_attribute[0], "HASH")] or types.get(key_attribute[0]) != key_attribute[1]:
            findings.append(Finding(rule, at, f"{table} is keyed by {key}, not by {key_attribute[0]} ({key_attribute[1]}) alone"))
        ttl = props.get("TimeToLiveSpecification") or {}
        if ttl.get("AttributeName") != ttl_attribute or str(ttl.get("Enabled", "")).lower() != "true":
            findings.append(Finding(rule, at, f"{table}'s TTL is not on {ttl_attribute}: {without_ttl}"))
        yield function, at, table, findings


def rule_lease_table(resources):
    """The lease table a function takes its copy leases in is keyed by pk (S) alone, and its TTL
    attribute is ttl: the function writes those names."""
    for _function, _at, _table, findings in keyed_tables(
        resources, "lease-table", LEASE_TABLE_VARIABLE, LEASE_KEY, LEASE_TTL, "expired leases would stay forever"
    ):
        yield from findings


# The backfill function's fresh copies (issue 18): the variables that name the freshness table,
# the queue its changes go to and the invalidation queue; the table's key, TTL and due index.
FRESHNESS_TABLE_VARIABLE = "FRESHNESS_TABLE"
CHANGE_QUEUE_VARIABLE = "CHANGE_QUEUE_URL"
INVALIDATION_QUEUE_VARIABLE = "INVALIDATION_QUEUE_URL"
FRESHNESS_KEY = ("pk", "S")
FRESHNESS_TTL = "ttl"
DUE_INDEX = "due"
# (attribute, key type, attribute type) of the due index: the shard, then when an object is due.
DUE_INDEX_KEY = [("shard", "HASH", "S"), ("due_at", "RANGE", "N")]
# Where the sweep message's rule lives (its fields, kind and period bounds) and its version.
SWEEP_SOURCE = "functions/backfill/src/task.rs"
MESSAGE_SOURCE = "shared/src/message.rs"
FRESHNESS_CONFIG = "functions/backfill/src/config.rs"
SCHEDULER_PRINCIPAL = "scheduler.amazonaws.com"
# A schedule's rate expression (EventBridge Scheduler: rate(value unit), minutes, hours or days).
RATE = re.compile(r"rate\(\s*([1-9][0-9]*)\s+(minute|minutes|hour|hours|day|days)\s*\)")
RATE_UNITS = {"minute": 60, "hour": 3600, "day": 86400}
# Scheduler's RetryPolicy defaults (API reference, RetryPolicy): a day, 185 attempts.
SCHEDULER_DEFAULT_EVENT_AGE = 86400
SCHEDULER_MIN_EVENT_AGE = 60


def queue_variable(resources, value, rule, at):
    """The queue of this template a URL variable names (a Ref to it), or a finding."""
    queue, attribute = ref_name(value)
    if queue is None or attribute is not None or resources.get(queue, {}).get("Type") != "AWS::SQS::Queue":
        return None, Finding(rule, at, f"{value!r} is not the URL of a queue of this template")
    return queue, None


def rule_freshness(resources):
    """The freshness table a function records its copies in is keyed by pk (S) alone, its TTL
    attribute is ttl (the day's counters expire), and it has the index due (shard S, then due_at
    N, projecting everything: the sweep reads each object's copy message from it), which the
    function's role may Query (by the index's own ARN: a grant on the table does not reach it)."""
    for function, at, table, findings in keyed_tables(
        resources, "freshness", FRESHNESS_TABLE_VARIABLE, FRESHNESS_KEY, FRESHNESS_TTL,
        "the day's counters would stay forever",
    ):
        yield from findings
        if table is None:
            continue
        props = resources[table]["Properties"]
        types = {a.get("AttributeName"): a.get("AttributeType") for a in props.get("AttributeDefinitions", [])}
        indexes = {i.get("IndexName"): i for i in props.get("GlobalSecondaryIndexes", [])}
        index = indexes.get(DUE_INDEX)
        if index is None:
            yield Finding("freshness", at, f"{table} has no global secondary index {DUE_INDEX}: the schedule's sweep queries it")
        else:
            index_key = [(k.get("AttributeName"), k.get("KeyType"), types.get(k.get("AttributeName")))
                         for k in index.get("KeySchema", [])]
            if index_key != DUE_INDEX_KEY:
                wanted = " then ".join(f"{a} ({t})" for a, _, t in DUE_INDEX_KEY)
                yield Finding("freshness", at, f"{table}'s index {DUE_INDEX} is keyed by {index_key}, not by {wanted}")
            projection = (index.get("Projection") or {}).get("ProjectionType")
            if projection != "ALL":
                yield Finding("freshness", at, f"{table}'s index {DUE_INDEX} projects {projection}, not ALL: "
                              "the sweep reads each object's copy message from it")
        role, _ = ref_name(resources[function]["Properties"].get("Role"))
        index_arn = f"<<{table}.Arn>>/index/{DUE_INDEX}"
        if role is not None and ("dynamodb:Query", index_arn) not in role_grants(resources, role):
            yield Finding("freshness", at, f"{role} may not dynamodb:Query {index_arn}: the sweep queries the index by its own ARN")


def rule_invalidation_queue(resources):
    """The queue a function sends changed paths to is a standard queue of this template with a
    DLQ, which the same function consumes in batches (one CreateInvalidation each) with
    ReportBatchItemFailures, and with a batching window when a batch is over 10 (Lambda refuses
    the mapping otherwise)."""
    for function, res in resources.items():
        if res["Type"] != "AWS::Serverless::Function":
            continue
        variables = function_variables(res["Properties"])
        if INVALIDATION_QUEUE_VARIABLE not in variables:
            continue
        at = f"{function} {INVALIDATION_QUEUE_VARIABLE}"
        queue, finding = queue_variable(resources, variables[INVALIDATION_QUEUE_VARIABLE], "invalidation-queue", at)
        if finding:
            yield finding
            continue
        qprops = resources[queue]["Properties"]
        if is_fifo(qprops):
            yield Finding("invalidation-queue", at, f"{queue} is a FIFO queue: its batches are 10 messages at most")
        for other in (PART_QUEUE_VARIABLE, CHANGE_QUEUE_VARIABLE):
            if ref_name(variables.get(other))[0] == queue:
                yield Finding("invalidation-queue", at, f"{queue} is also the function's {other}: paths would be "
                              "read in that queue's batches, not gathered for one invalidation")
        dlq, _ = ref_name((qprops.get("RedrivePolicy") or {}).get("deadLetterTargetArn"))
        if dlq is None or resources.get(dlq, {}).get("Type") != "AWS::SQS::Queue":
            yield Finding("invalidation-queue", at, f"{queue} has no dead-letter queue of this template: "
                          "a batch CloudFront keeps refusing would come back until it expires")
        events = [props for f, _fp, _e, props, q in sqs_event_sources(resources) if f == function and q == queue]
        if not events:
            yield Finding("invalidation-queue", at, f"{function} does not consume {queue}: nothing is invalidated")
            continue
        for props in events:
            if "ReportBatchItemFailures" not in as_list(props.get("FunctionResponseTypes")):
                yield Finding("invalidation-queue", at, f"{queue}'s mapping lacks ReportBatchItemFailures")
            if "BatchSize" in props:
                yield from batch_window_findings("invalidation-queue", at, props)


@functools.lru_cache(maxsize=None)
def sweep_message_rule(root):
    """What the backfill function takes as a sweep: (version, kind, fields, period bounds), read
    from its sources."""
    task = (root / SWEEP_SOURCE).read_text(encoding="utf-8")
    message = (root / MESSAGE_SOURCE).read_text(encoding="utf-8")
    version = re.search(r"pub const MESSAGE_VERSION: u64 = (\d+);", message)
    kind = re.search(r'pub const SWEEP: &str = "(\w+)";', task)
    struct = re.search(r"pub struct Sweep \{(.*?)\n\}", task, re.S)
    bounds = re.search(r"\(([0-9_]+)\.\.=([0-9_]+)\)\.contains\(&sweep\.period_seconds\)", task)
    if not (version and kind and struct and bounds):
        raise ValueError(f"could not read the sweep message's rule from {SWEEP_SOURCE} and {MESSAGE_SOURCE}")
    fields = tuple(re.findall(r"pub (\w+):", struct.group(1)))
    low, high = (int(b.replace("_", "")) for b in bounds.groups())
    return int(version.group(1)), kind.group(1), fields, (low, high)


def rate_seconds(expression):
    """The period of a rate(value unit) schedule expression in seconds; None for another kind."""
    m = RATE.fullmatch(str(expression or "").strip())
    return int(m.group(1)) * RATE_UNITS[m.group(2).rstrip("s")] if m else None


def sweep_input_problems(text, rule, period):
    """What is wrong with a schedule's Input as a sweep message for its period."""
    version, kind, fields, (low, high) = rule
    try:
        message = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        message = None
    if not isinstance(message, dict):
        return [f"{text!r} is not a JSON object, so not a sweep message"]
    problems = []
    if sorted(message) != sorted(fields):
        problems.append(f"has the fields {sorted(message)}, a sweep {sorted(fields)}")
    if message.get("version") != version:
        problems.append(f"version {message.get('version')!r}, not {version}")
    if message.get("kind") != kind:
        problems.append(f"kind {message.get('kind')!r}, not {kind!r}")
    seconds = message.get("period_seconds")
    if not (isinstance(seconds, int) and not isinstance(seconds, bool) and low <= seconds <= high):
        problems.append(f"period_seconds {seconds!r} is not a whole number from {low} to {high}")
    elif period is not None and seconds != period:
        problems.append(f"period_seconds {seconds} but the schedule runs every {period}s: each sweep would spend "
                        f"{seconds}s of the budget every {period}s")
    return problems


def rule_revalidation_schedule(resources, root):
    """A function that keeps a freshness table gets a sweep message each period, from a schedule
    sending to a standard queue it consumes: the message's period is the schedule's (the sweep
    spends that share of the budget), a late sweep is dropped rather than sent with the next one,
    an undelivered one lands in a standard DLQ, and the schedule's role is Scheduler's for this
    account only and may send to those two queues and do nothing else. Its changes go to a
    standard queue it consumes too (CHANGE_QUEUE_URL: per-message delays, no deduplication id)."""
    sweepers = {f for f, res in resources.items()
                if res["Type"] == "AWS::Serverless::Function" and FRESHNESS_TABLE_VARIABLE in function_variables(res["Properties"])}
    consumers = {}
    for function, _fp, _e, _p, queue in sqs_event_sources(resources):
        consumers.setdefault(queue, set()).add(function)
    swept = set()
    for name, res in resources.items():
        if res["Type"] != "AWS::Scheduler::Schedule":
            continue
        props = res["Properties"]
        target = props.get("Target") or {}
        queue, attribute = ref_name(target.get("Arn"))
        if queue is None or attribute != "Arn" or resources.get(queue, {}).get("Type") != "AWS::SQS::Queue":
            yield Finding("revalidation-schedule", name, f"targets {target.get('Arn')!r}, not a queue of this template")
            continue
        takers = consumers.get(queue, set()) & sweepers
        swept |= takers
        if not takers:
            yield Finding("revalidation-schedule", name,
                          f"targets {queue}, which no function with a {FRESHNESS_TABLE_VARIABLE} consumes: nobody sweeps")
        if is_fifo(resources[queue]["Properties"]):
            yield Finding("revalidation-schedule", name, f"targets {queue}, a FIFO queue: a sweep has no message group")
        period = rate_seconds(props.get("ScheduleExpression"))
        if period is None:
            yield Finding("revalidation-schedule", name, f"ScheduleExpression {props.get('ScheduleExpression')!r} is not a "
                          "rate: its period, which the sweep spends the budget of, is not one length")
        for problem in sweep_input_problems(target.get("Input"), sweep_message_rule(root), period):
            yield Finding("revalidation-schedule", name, f"Input {problem}")
        if props.get("State", "ENABLED") != "ENABLED":
            yield Finding("revalidation-schedule", name, f"State {props.get('State')}: nothing is revalidated unannounced")
        if (props.get("FlexibleTimeWindow") or {}).get("Mode") != "OFF":
            yield Finding("revalidation-schedule", name, "a flexible time window: two sweeps may come closer than their "
                          "period and spend the budget twice")
        retry = target.get("RetryPolicy")
        age = int((retry or {}).get("MaximumEventAgeInSeconds", SCHEDULER_DEFAULT_EVENT_AGE))
        if not retry or (period is not None and age > max(SCHEDULER_MIN_EVENT_AGE, period)):
            yield Finding("revalidation-schedule", name, f"a sweep is retried for {age}s, longer than its period: a late "
                          "sweep and the next one would spend the budget twice (RetryPolicy.MaximumEventAgeInSeconds)")
        dlq, dlq_attribute = ref_name((target.get("DeadLetterConfig") or {}).get("Arn"))
        if dlq is None or dlq_attribute != "Arn" or resources.get(dlq, {}).get("Type") != "AWS::SQS::Queue":
            yield Finding("revalidation-schedule", name, "no DeadLetterConfig on a queue of this template: an undelivered "
                          "sweep leaves no trace")
            dlq = None
        elif is_fifo(resources[dlq]["Properties"]):
            yield Finding("revalidation-schedule", name, f"its dead-letter queue {dlq} is FIFO: Scheduler takes standard queues only")
        role, _ = ref_name(target.get("RoleArn"))
        if role is None or resources.get(role, {}).get("Type") != "AWS::IAM::Role":
            yield Finding("revalidation-schedule", name, f"RoleArn {target.get('RoleArn')!r} is not a role of this template")
            continue
        trust = [st for st in statements(resources[role]["Properties"].get("AssumeRolePolicyDocument"))
                 if st.get("Effect") == "Allow"]
        if not trust or not all(
            as_list((st.get("Principal") or {}).get("Service")) == [SCHEDULER_PRINCIPAL]
            and set(st.get("Principal") or {}) == {"Service"}
            and "aws:SourceAccount" in condition_keys(st)
            for st in trust
        ):
            yield Finding("revalidation-schedule", name, f"{role} is not trusted by {SCHEDULER_PRINCIPAL} alone with an "
                          "aws:SourceAccount condition (confused deputy)")
        wanted = {("sqs:SendMessage", f"<<{queue}.Arn>>")}
        if dlq is not None:
            wanted.add(("sqs:SendMessage", f"<<{dlq}.Arn>>"))
        grants = role_grants(resources, role)
        for action, resource in sorted(grants - wanted):
            yield Finding("revalidation-schedule", name, f"{role} may {action} on {resource}: it only sends the sweep "
                          "and its dead-letter events")
        for action, resource in sorted(wanted - grants):
            yield Finding("revalidation-schedule", name, f"{role} may not {action} on {resource}")
    for function in sorted(sweepers - swept):
        yield Finding("revalidation-schedule", function, f"has a {FRESHNESS_TABLE_VARIABLE} but no schedule sweeps a queue it "
                      "consumes: copies are revalidated only when a change is announced")
    for function, res in resources.items():
        if res["Type"] != "AWS::Serverless::Function":
            continue
        variables = function_variables(res["Properties"])
        if CHANGE_QUEUE_VARIABLE not in variables:
            continue
        at = f"{function} {CHANGE_QUEUE_VARIABLE}"
        queue, finding = queue_variable(resources, variables[CHANGE_QUEUE_VARIABLE], "revalidation-schedule", at)
        if finding:
            yield finding
            continue
        if is_fifo(resources[queue]["Properties"]):
            yield Finding("revalidation-schedule", at, f"{queue} is a FIFO queue: changes are put back with per-message "
                          "delays and sent without a deduplication id")
        if function not in consumers.get(queue, set()):
            yield Finding("revalidation-schedule", at, f"{function} does not consume {queue}: the changes it sends are read by nobody")


def rule_tables(resources):
    for name, res in resources.items():
        if res["Type"] != "AWS::DynamoDB::Table":
            continue
        props = res["Properties"]
        if props.get("BillingMode") != "PAY_PER_REQUEST":
            yield Finding("dynamodb-table", name, "not on demand (PAY_PER_REQUEST)")
        ttl = props.get("TimeToLiveSpecification") or {}
        has_ttl = str(ttl.get("Enabled", "")).lower() == "true" and ttl.get("AttributeName")
        recovery = props.get("PointInTimeRecoverySpecification") or {}
        has_recovery = str(recovery.get("PointInTimeRecoveryEnabled", "")).lower() == "true"
        if not (has_ttl or has_recovery):
            yield Finding("dynamodb-table", name, "no TTL, and no point-in-time recovery for items kept forever")


# ---------------------------------------------------------------- SDK calls and role minimum


def _skip_string(src, i):
    """Index after the string literal starting at src[i] (", r", r#")."""
    if src[i] == "r":
        j = i + 1
        hashes = 0
        while src[j] == "#":
            hashes += 1
            j += 1
        end = '"' + "#" * hashes
        return src.index(end, j + 1) + len(end)
    j = i + 1
    while src[j] != '"':
        j += 2 if src[j] == "\\" else 1
    return j + 1


@functools.lru_cache(maxsize=None)
def strip_code(src):
    """Rust source with comments and string literals blanked, so braces and calls can be found.
    Cached by text: every scenario of every test reads the same sources."""
    out = []
    i = 0
    n = len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
        elif src.startswith("/*", i):
            depth, j = 1, i + 2
            while depth and j < n:
                if src.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif src.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(" ")
            i = j
        elif c == '"' or (c == "r" and re.match(r'r#*"', src[i:i + 10]) and not src[i - 1:i].isalnum()):
            j = _skip_string(src, i)
            out.append('""')
            i = j
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", src[i:i + 4]):
            j = src.index("'", i + 2) + 1 if src[i + 1] != "\\" else src.index("'", i + 3) + 1
            out.append("' '")
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


@functools.lru_cache(maxsize=None)
def without_test_code(code):
    """Drops items under #[cfg(test)]; returns (code, names of `mod x;` test modules)."""
    test_modules = []
    while True:
        m = re.search(r"#\[cfg\(test\)\]", code)
        if not m:
            return code, tuple(test_modules)
        start, i = m.start(), m.end()
        semi, brace = code.find(";", i), code.find("{", i)
        if brace < 0 or (0 <= semi < brace):
            item = code[i:semi]
            mod = re.search(r"\bmod\s+([a-z_0-9]+)\s*$", item)
            if mod:
                test_modules.append(mod.group(1))
            code = code[:start] + code[semi + 1:]
            continue
        depth, j = 0, brace
        while True:
            if code[j] == "{":
                depth += 1
            elif code[j] == "}":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        code = code[:start] + code[j + 1:]


def rust_sources(crate_dir):
    """Non-test code of a crate's src/ (test-only module files left out)."""
    files = sorted(crate_dir.glob("src/**/*.rs"))
    code = {}
    excluded = set()
    for path in files:
        stripped, test_modules = without_test_code(strip_code(path.read_text(encoding="utf-8")))
        code[path] = stripped
        base = path.parent if path.name in ("lib.rs", "main.rs", "mod.rs") else path.with_suffix("")
        for mod in test_modules:
            excluded.update({base / f"{mod}.rs", base / mod / "mod.rs"})
    return {p: c for p, c in code.items() if p not in excluded}


def shared_modules(root, features):
    """The shared crate's module files compiled with these features."""
    lib = (root / "shared/src/lib.rs").read_text(encoding="utf-8")
    modules = re.finditer(r'(?:#\[cfg\(feature\s*=\s*"([a-z0-9_-]+)"\)\]\s*)?pub\s+mod\s+([a-z_0-9]+)\s*;', lib)
    enabled = [m.group(2) for m in modules if m.group(1) is None or m.group(1) in features]
    sources = rust_sources(root / "shared")
    src = root / "shared/src"
    return {
        p: c
        for p, c in sources.items()
        if any(p == src / f"{mod}.rs" or src / mod in p.parents for mod in enabled)
    }


def shared_features(root, crate_dir):
    """Features of the shared crate a function enables (the workspace turns the defaults off);
    None when it does not depend on it."""
    manifest = (crate_dir / "Cargo.toml").read_text(encoding="utf-8")
    m = re.search(r"^shared(?:\.workspace)?\s*=\s*(.*)$", manifest, re.M)
    if not m:
        return None
    features = re.search(r"features\s*=\s*\[([^\]]*)\]", m.group(1))
    return set(re.findall(r'"([^"]+)"', features.group(1))) if features else set()


def crate_sources(root, crate_dir):
    """Non-test code of a crate and of the shared modules it compiles."""
    sources = rust_sources(crate_dir)
    features = shared_features(root, crate_dir)
    if features is not None:
        sources.update(shared_modules(root, features))
    return sources


def sdk_calls_in(code):
    """(operation, API call or None when unknown, whether only presigned) of each call in code."""
    for m in SDK_CALL.finditer(code):
        op = m.group(1)
        if op in CLIENT_METHODS:
            continue
        end = code.find(";", m.end())
        statement = code[m.end():] if end < 0 else code[m.end():end]
        presigned = ".presigned(" in statement and ".send(" not in statement
        if op not in OPERATIONS:
            yield op, None, presigned
            continue
        service, api, _ = OPERATIONS[op]
        yield op, f"{service}:{api}", presigned


def reads_versions(code):
    """Whether code calls GetObject or HeadObject and sets a version id."""
    return bool(VERSION_ID_SET.search(code)) and any(call in VERSIONED_READS for _, call, _ in sdk_calls_in(code))


def derive_sdk_calls(root, crate_dir):
    """The AWS SDK operations a function's crate (and the shared code it compiles) calls."""
    calls = set()
    unknown = set()
    versioned = False
    for path, code in crate_sources(root, crate_dir).items():
        for op, call, _ in sdk_calls_in(code):
            if call is None:
                unknown.add(f"{op} ({path.relative_to(root)})")
            else:
                calls.add(call)
        versioned = versioned or any(reads_versions(text) for _, text in code_blocks(code))
    return sorted(calls), sorted(unknown), versioned


def presigned_only(root, crate_dir):
    """Calls every call site of which only presigns (builds a signed URL, sends nothing)."""
    sites = {}
    for code in crate_sources(root, crate_dir).values():
        for _, call, presigned in sdk_calls_in(code):
            if call:
                sites.setdefault(call, []).append(presigned)
    return {call for call, presigns in sites.items() if all(presigns)}


ITEM = re.compile(r"\b(impl|struct|enum)\b")


def _skip_generics(text, i):
    depth = 0
    while i < len(text):
        if text[i] == "<":
            depth += 1
        elif text[i] == ">" and text[i - 1] != "-":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return i


def _block_end(code, brace):
    depth = 0
    for j in range(brace, len(code)):
        if code[j] == "{":
            depth += 1
        elif code[j] == "}":
            depth -= 1
            if depth == 0:
                return j + 1
    return len(code)


def _impl_type(header):
    """The type an impl block is for, from the text between `impl` and its brace."""
    start = len(header) - len(header.lstrip())
    if header[start:].startswith("<"):
        header = header[_skip_generics(header, start):]
    header = re.split(r"\bwhere\b", header)[0]
    fors = list(re.finditer(r"\bfor\b", header))
    if fors:
        header = header[fors[-1].end():]
    name = re.match(r"\s*&?\s*(?:'\w+\s+)?(?:mut\s+)?([A-Za-z_][A-Za-z0-9_:]*)", header)
    return name.group(1).split("::")[-1] if name else None


def code_blocks(code):
    """(type, text) of a source file: each impl block, struct and enum attributed to its type, and
    the code outside them (type None)."""
    blocks = []
    outside = []
    pos = 0
    for m in ITEM.finditer(code):
        if m.start() < pos:
            continue
        brace = code.find("{", m.end())
        semi = code.find(";", m.end())
        if m.group(1) == "impl":
            if brace < 0 or 0 <= semi < brace:
                continue
            name = _impl_type(code[m.end():brace])
        else:
            found = re.match(r"\s+([A-Za-z_][A-Za-z0-9_]*)", code[m.end():])
            if not found:
                continue
            name = found.group(1)
        end = _block_end(code, brace) if brace >= 0 and not (0 <= semi < brace) else semi + 1
        outside.append(code[pos:m.start()])
        blocks.append((name, code[m.start():end]))
        pos = end
    outside.append(code[pos:])
    return blocks + [(None, "".join(outside))]


def crate_binaries(crate_dir):
    """Binary name -> its main file, from the manifest's [[bin]] tables or Cargo's defaults."""
    manifest = (crate_dir / "Cargo.toml").read_text(encoding="utf-8")
    found = {}
    for table in re.split(r"^\[", manifest, flags=re.M):
        if table.startswith("[bin]]"):
            name = re.search(r'^name\s*=\s*"([^"]+)"', table, re.M)
            path = re.search(r'^path\s*=\s*"([^"]+)"', table, re.M)
            if name:
                found[name.group(1)] = crate_dir / (path.group(1) if path else f"src/bin/{name.group(1)}.rs")
    if not found:
        package = re.search(r'^name\s*=\s*"([^"]+)"', manifest, re.M)
        if package and (crate_dir / "src/main.rs").is_file():
            found[package.group(1)] = crate_dir / "src/main.rs"
        for path in sorted(crate_dir.glob("src/bin/*.rs")):
            found[path.stem] = path
    return found


def derive_binary_calls(root, crate_dir, binary):
    """The SDK calls one binary of a crate can reach: those in the impl blocks of the types its
    main names (and of the types those blocks and their definitions name, transitively), and those
    outside any impl block, other binaries' mains left out. An upper bound: a type's impl blocks count whole.
    Returns (calls, versioned), or None when the crate has no such binary."""
    mains = crate_binaries(crate_dir)
    if binary not in mains:
        return None
    sources = crate_sources(root, crate_dir)
    by_type = {}
    free = []
    for path, code in sources.items():
        if path in mains.values() and path != mains[binary]:
            continue
        for name, text in code_blocks(code):
            if name is None:
                free.append(text)
            else:
                by_type.setdefault(name, []).append(text)
    main_code = sources.get(mains[binary]) or without_test_code(strip_code(mains[binary].read_text(encoding="utf-8")))[0]
    reached = set()
    frontier = set(re.findall(r"\b[A-Z][A-Za-z0-9_]*\b", main_code))
    while frontier:
        name = frontier.pop()
        if name in reached or name not in by_type:
            continue
        reached.add(name)
        for text in by_type[name]:
            frontier |= set(re.findall(r"\b[A-Z][A-Za-z0-9_]*\b", text))
    texts = free + [text for name in reached for text in by_type[name]]
    calls = {call for text in texts for _, call, _ in sdk_calls_in(text) if call}
    return sorted(calls), any(reads_versions(text) for text in texts)


def function_crates(resources, root):
    """Function name -> crate directory, for functions built from this repository."""
    out = {}
    for name, res in resources.items():
        if res["Type"] == "AWS::Serverless::Function":
            code = res["Properties"].get("CodeUri")
            if isinstance(code, str) and (root / code / "Cargo.toml").is_file():
                out[name] = code
    return out


def function_binary(resources, function):
    """The binary a function is built from (BuildProperties.Binary), if named."""
    metadata = resources[function].get("Metadata") or {}
    return (metadata.get("BuildProperties") or {}).get("Binary")


def recorded_entry(recorded, crate, binary):
    """The recorded calls of a function: its crate's, or its binary's in a crate with several."""
    entry = recorded.get(crate)
    if entry is not None and "binaries" in entry:
        return entry["binaries"].get(binary)
    return entry


def required_actions(resources, function, entry):
    """IAM actions a function needs: its SDK calls, its SQS event sources, its logs. Calls only
    presigned to learn a URL (url_only) need none."""
    needed = set()
    variables = ((resources[function]["Properties"].get("Environment") or {}).get("Variables")) or {}
    for call in entry.get("calls", []):
        # A call made only when a variable configures it (when_configured: call -> a variable,
        # or a list of them: needed when any is set).
        if call in entry.get("when_configured", {}) and not any(
                v in variables for v in configuring_variables(entry, call)):
            continue
        # without: what the operation usually needs that this function's use does not (a
        # presigned GetObject's client may see a missing key as 403: no s3:ListBucket).
        needed |= API_ACTIONS[call] - set(entry.get("without", {}).get(call, []))
    needed |= set(entry.get("extra_actions", []))
    if any(f == function for f, *_ in sqs_event_sources(resources)):
        needed |= ESM_ACTIONS
    is_edge = function in edge_functions(resources)
    props = resources[function]["Properties"]
    if is_edge:
        needed |= EDGE_LOG_ACTIONS
    elif (props.get("LoggingConfig") or {}).get("LogGroup"):
        needed |= LOG_ACTIONS
    else:
        needed |= LOG_ACTIONS | {"logs:CreateLogGroup"}
    return needed


def configuring_variables(entry, call):
    """The variables a call is made with (when_configured: one name or a list), in order."""
    return as_list((entry.get("when_configured") or {}).get(call))


def role_grants(resources, role):
    """(action, resource) pairs the role's Allow statements grant."""
    grants = set()
    for _where, document, identity, roles in policy_documents(resources):
        if not identity or role not in roles:
            continue
        for st in statements(document):
            if st.get("Effect") != "Allow":
                continue
            for action in as_list(st.get("Action")):
                for resource in as_list(st.get("Resource")):
                    grants.add((action, json.dumps(resource) if not isinstance(resource, str) else resource))
    return grants


def rule_role_minimum(resources, root, recorded):
    event_queues = {}
    for function, _f, _e, _p, queue in sqs_event_sources(resources):
        event_queues.setdefault(function, set()).add(queue)
    for function, crate in function_crates(resources, root).items():
        props = resources[function]["Properties"]
        role, _ = ref_name(props.get("Role"))
        if role is None:
            continue
        if crate not in recorded:
            yield Finding("role-minimum", function, f"{crate} is not in {SDK_CALLS_FILE}")
            continue
        binary = function_binary(resources, function)
        entry = recorded_entry(recorded, crate, binary)
        if entry is None:
            yield Finding("role-minimum", function, f"binary {binary} of {crate} is not in {SDK_CALLS_FILE}")
            continue
        grants = role_grants(resources, role)
        granted = {a for a, _ in grants}
        needed = required_actions(resources, function, entry)
        for action in sorted(granted - needed):
            yield Finding("role-minimum", f"{function}/{role}", f"grants {action}, which the function does not need")
        for action in sorted(needed - granted):
            yield Finding("role-minimum", f"{function}/{role}", f"lacks {action}, which the function needs")
        for action, resource in sorted(grants):
            service = action.split(":", 1)[0]
            res_service, kind = resource_kind(resources, resource)
            at = f"{function}/{role}"
            if res_service and res_service != service:
                yield Finding("role-minimum", at, f"{action} on a {res_service} resource {resource}")
            if action == "s3:DeleteObject" and ("s3:PutObject", resource) not in grants:
                yield Finding("role-minimum", at, f"s3:DeleteObject on {resource}, which it does not write (s3:PutObject)")
            if service == "s3" and kind:
                bucket_level = action == "s3:ListBucket"
                if bucket_level != (kind == "bucket"):
                    yield Finding("role-minimum", at, f"{action} on the wrong level of S3 resource {resource}")
            if action in DYNAMODB_ITEM_ACTIONS and kind == "index":
                yield Finding("role-minimum", at, f"{action} on an index, {resource}: item actions apply to the table")
            if action in ESM_ACTIONS | {"sqs:ChangeMessageVisibility", "sqs:GetQueueUrl"}:
                queue, _ = ref_name(resource)
                if queue not in event_queues.get(function, set()):
                    yield Finding("role-minimum", at, f"{action} on {resource}, not the function's own queue")
            for call in entry.get("when_configured", {}):
                if action not in API_ACTIONS[call]:
                    continue
                # Granted only on what the variables that are set name (a call with several
                # variables, such as a send to any of three queues, on any of them).
                names = [v for v in configuring_variables(entry, call) if v in function_variables(props)]
                if names and not any(same_resource(resource, function_variables(props)[v], action) for v in names):
                    yield Finding("role-minimum", at, f"{action} on {resource}, not the {' or '.join(names)} the function reads")
            if service == "logs":
                log_group = (props.get("LoggingConfig") or {}).get("LogGroup")
                if log_group and ref_name(log_group)[0] != ref_name(resource)[0]:
                    yield Finding("role-minimum", at, f"{action} on {resource}, not the function's log group")
        # And each variable that is set names a resource the call's actions are granted on.
        for call in entry.get("when_configured", {}):
            for variable in configuring_variables(entry, call):
                configured = function_variables(props).get(variable)
                if configured is None:
                    continue
                for action in sorted(API_ACTIONS[call]):
                    if not any(a == action and same_resource(r, configured, action) for a, r in grants):
                        yield Finding("role-minimum", f"{function}/{role}",
                                      f"lacks {action} on {configured}, the {variable} the function reads")


def same_resource(resource, configured, action=None):
    """Whether a policy's resource is the one a variable names: the same value, or the same
    resource of this template by another attribute (a table's name and its ARN, a queue's URL and
    its ARN, a distribution's id and its ARN; for a Query or a Scan, the table's indexes)."""
    if resource == configured:
        return True
    if not isinstance(resource, str):
        return False
    # A distribution's ARN names the id the variable holds (CloudFront's resources are ARNs).
    distribution = DISTRIBUTION_ARN.fullmatch(resource)
    if distribution:
        return distribution.group(1) == configured
    # An index of the table the variable names (Query reaches an index only by its own ARN).
    index = TABLE_INDEX.fullmatch(resource)
    if index:
        if action not in INDEX_ACTIONS:
            return False
        resource = index.group(1)
    name = ref_name(resource)[0]
    return name is not None and name == ref_name(configured)[0]


def rule_sdk_calls(root, recorded, crates):
    for crate in sorted(crates):
        calls, unknown, versioned = derive_sdk_calls(root, root / crate)
        for op in unknown:
            yield Finding("sdk-calls", crate, f"unknown SDK operation {op}: add it to OPERATIONS")
        entry = recorded.get(crate)
        if entry is None:
            yield Finding("sdk-calls", crate, f"missing from {SDK_CALLS_FILE} (found {calls})")
            continue
        entries = entry["binaries"] if "binaries" in entry else {None: entry}
        listed = sorted({c for e in entries.values() for c in e.get("calls", []) + e.get("url_only", [])})
        if listed != calls:
            yield Finding("sdk-calls", crate, f"{SDK_CALLS_FILE} lists {listed}, the sources call {calls}")
        wants_version = any(VERSIONED_ACTION in e.get("extra_actions", []) for e in entries.values())
        if versioned != wants_version:
            yield Finding("sdk-calls", crate, f"GetObject or HeadObject with a version id: {versioned}, {VERSIONED_ACTION} recorded: {wants_version}")
        only_presigned = presigned_only(root, root / crate)
        for binary, e in entries.items():
            where = crate if binary is None else f"{crate} {binary}"
            for call in e.get("url_only", []):
                if call not in only_presigned:
                    yield Finding("sdk-calls", where, f"{call} is recorded as url_only but sent (not only presigned)")
            if binary is None:
                continue
            reach = derive_binary_calls(root, root / crate, binary)
            if reach is None:
                yield Finding("sdk-calls", where, f"{crate} has no binary {binary}")
                continue
            reachable, reads_version = reach
            for call in sorted(set(e.get("calls", []) + e.get("url_only", [])) - set(reachable)):
                yield Finding("sdk-calls", where, f"records {call}, which the binary's main cannot reach")
            wants_version = VERSIONED_ACTION in e.get("extra_actions", [])
            if reads_version != wants_version:
                yield Finding("sdk-calls", where, f"reads with a version id: {reads_version}, {VERSIONED_ACTION} recorded: {wants_version}")


# ---------------------------------------------------------------- edge parameters, region, metrics

EDGE_TEMPLATE = "template-edge.yaml"
EDGE_CONFIG = "functions/origin-request/src/config.rs"
EDGE_HOOK = "functions/origin-request/src/hook.rs"
EDGE_ERRORS = "functions/origin-request/src/error.rs"
EDGE_PLAN = "functions/origin-request/src/plan.rs"
EDGE_HANDLER = "functions/origin-request/handler/index.js"
# Where a send's error comes from: the functions that end a send (hook.rs) or retry it (queue.rs),
# and the queue adapter (sqs.rs, all of its non-test code).
EDGE_SEND_PATH = {
    "functions/origin-request/src/hook.rs": ["enqueue", "finish_unwaited"],
    "functions/origin-request/src/queue.rs": ["send_until"],
    "functions/origin-request/src/sqs.rs": [],
}
SHARED_CONFIG = "shared/src/config.rs"
SHARED_METRICS = "shared/src/metrics.rs"
# CloudFront API reference, CustomOriginConfig HTTPPort/HTTPSPort: 80, 443, or 1024 to 65535.
CLOUDFRONT_PORTS = {80, 443} | set(range(1024, 65536))
# Lambda@Edge names a replica us-east-1.<function> (its log group is /aws/lambda/us-east-1.<function>),
# and that is the AWS_LAMBDA_FUNCTION_NAME the hook's FunctionName dimension takes.
EDGE_REPLICA_PREFIX = "us-east-1."
EDGE_REGION = "us-east-1"
# Parameters the regional stack hands to the nested edge stack whose constraints must agree.
PASSED_THROUGH = ["DomesticOriginPort", "DomesticOriginPath", "EdgeSendBudget", "EdgeRepeatWindow", "OriginSecretHeaderName",
                  "OriginSecretVersion", "DefaultTtl", "MaxTtl", "UploadPrefix"]
# The origin secret header's rule, as the backfill function applies it (the templates' pattern
# must refuse the same names).
ORIGIN_SECRET_RULE = "shared/src/origin_secret.rs"
HOOK_PREFIX_SOURCE = "shared/src/cloudfront.rs"
GOOD_HEADER_NAMES = ["X-Origin-Verify", "X-Cdn-Secret", "Origin-Auth", "X-Hosted", "Ranges-Ok", "X-Te", "Authorization-Proof", "A"]
U64_MAX = 2**64 - 1
MILLIS = {"millis": 1, "secs": 1000}


def _rust_fn_body(src, name):
    """The text of `fn name` up to its closing brace at the same indentation."""
    m = re.search(rf"^([ \t]*)(?:pub(?:\([a-z]+\))? )?(?:async )?fn {name}\b[^{{;]*\{{\n", src, re.M)
    if not m:
        raise ValueError(f"no fn {name}")
    end = re.compile(rf"^{m.group(1)}\}}", re.M).search(src, m.end())
    return src[m.end():end.start()]


def duration_units(root):
    """parse_duration's units, read from its match arms: unit -> milliseconds per number."""
    body = _rust_fn_body((root / SHARED_CONFIG).read_text(encoding="utf-8"), "parse_duration")
    units = {}
    for unit, kind, factor in re.findall(
        r'"(\w+)"\s*=>\s*Some\(Duration::from_(millis|secs)\(number(?:\.checked_mul\((\d+)\)\?)?\)\)', body
    ):
        units[unit] = MILLIS[kind] * int(factor or 1)
    if not units:
        raise ValueError(f"no units found in parse_duration ({SHARED_CONFIG})")
    return units


def parse_duration(raw, units):
    """shared::config::parse_duration's grammar, in milliseconds: trimmed, ASCII digits (a u64,
    leading zeros allowed), then a unit (trimmed) among `units`; None where it refuses."""
    raw = raw.strip()
    digits = len(raw) - len(raw.lstrip("0123456789"))
    number, unit = raw[:digits], raw[digits:].strip()
    if not number or int(number) > U64_MAX or unit not in units:
        return None
    factor = units[unit]
    # checked_mul on seconds: m and h overflow a u64 of seconds past U64_MAX / 60 or / 3600.
    if factor > 1000 and int(number) * (factor // 1000) > U64_MAX:
        return None
    return int(number) * factor


def hook_duration_bounds(root, name):
    """MIN_<name>/MAX_<name> of the hook's config.rs in milliseconds (None where it has none)."""
    src = (root / EDGE_CONFIG).read_text(encoding="utf-8")
    bounds = []
    for side in ("MIN", "MAX"):
        m = re.search(rf"const {side}_{name}: Duration = Duration::from_(millis|secs)\((\d+)\)", src)
        bounds.append(MILLIS[m.group(1)] * int(m.group(2)) if m else None)
    return tuple(bounds)


def duration_samples(units):
    """Values an operator could type: every whole number up to 10000 in each unit (and in units the
    parser refuses), with leading zeros, spaces, signs, fractions and u64's edge."""
    numbers = list(range(0, 10001)) + [99999, 100000, U64_MAX, U64_MAX + 1]
    for unit in list(units) + ["", "us", "sec", "S", "MS"]:
        for n in numbers:
            yield f"{n}{unit}"
        yield f"0{unit}"
        yield f"010{unit}"
        yield f"5 {unit}"
        yield f" 5{unit}"
        yield f"+5{unit}"
        yield f"-5{unit}"
        yield f"0.5{unit}"


def canonical_duration(raw, units):
    m = re.fullmatch(r"(0|[1-9][0-9]*)([a-z]+)", raw)
    return bool(m) and m.group(2) in units


def accepts(spec, value):
    """Whether a parameter's AllowedPattern (a whole-value match, as CloudFormation's),
    MinValue/MaxValue and AllowedValues accept value."""
    pattern = spec.get("AllowedPattern")
    if pattern is not None and not re.fullmatch(pattern, value):
        return False
    if "MinValue" in spec or "MaxValue" in spec or spec.get("Type") == "Number":
        try:
            number = float(value)
        except ValueError:
            return False
        if number < float(spec.get("MinValue", "-inf")) or number > float(spec.get("MaxValue", "inf")):
            return False
    if "MinLength" in spec and len(value) < int(spec["MinLength"]):
        return False
    if "MaxLength" in spec and len(value) > int(spec["MaxLength"]):
        return False
    allowed = spec.get("AllowedValues")
    return allowed is None or value in {str(v) for v in allowed}


@functools.lru_cache(maxsize=None)
def _duration_findings(spec_json, units_json, low, high, reader="the hook"):
    """What rule_edge_parameters says of one duration parameter (its spec as JSON; reader: who
    parses it): cached, since every test's check walks the same hundred thousand samples through
    the same patterns."""
    spec, units = json.loads(spec_json), json.loads(units_json)
    found = []
    if str(spec.get("Default", "")) and not accepts(spec, str(spec["Default"])):
        found.append(f"its default {spec['Default']!r} does not match its pattern")
    for value in duration_samples(units):
        millis = parse_duration(value, units)
        hook_ok = millis is not None and (low is None or millis >= low) and (high is None or millis <= high)
        if accepts(spec, value) and not hook_ok:
            found.append(f"accepts {value!r}, which {reader} refuses")
            break
        # Within five digits (the templates' length limit), every value the hook takes has its
        # plain form accepted.
        if hook_ok and canonical_duration(value, units) and len(value.rstrip("abcdefghijklmnopqrstuvwxyz")) <= 5 \
                and not accepts(spec, value):
            found.append(f"refuses {value!r}, which {reader} accepts")
            break
    return tuple(found)


@functools.lru_cache(maxsize=None)
def _port_findings(spec_json):
    spec = json.loads(spec_json)
    found = []
    for port in range(0, 70001):
        if accepts(spec, str(port)) != (port in CLOUDFRONT_PORTS):
            verb = "accepts" if port not in CLOUDFRONT_PORTS else "refuses"
            found.append(f"{verb} {port}; CloudFront allows 80, 443 and 1024-65535")
            break
    for value in ("080", "+443", " 443", "443 ", "443.0", ""):
        if accepts(spec, value):
            found.append(f"accepts {value!r}")
    return tuple(found)


def rule_edge_parameters(templates, root):
    units = json.dumps(duration_units(root), sort_keys=True)
    budget = hook_duration_bounds(root, "SEND_BUDGET")
    window = hook_duration_bounds(root, "REPEAT_WINDOW")
    for label, template in templates.items():
        params = template.get("Parameters", {})
        for name, (low, high) in (("EdgeSendBudget", budget), ("EdgeRepeatWindow", window)):
            spec = params.get(name)
            if spec is not None:
                for message in _duration_findings(json.dumps(spec, sort_keys=True), units, low, high):
                    yield Finding("edge-durations", f"{label}/{name}", message)
        spec = params.get("DomesticOriginPort")
        if spec is not None:
            for message in _port_findings(json.dumps(spec, sort_keys=True)):
                yield Finding("origin-port", f"{label}/DomesticOriginPort", message)
        spec = params.get("DomesticOriginPath")
        if spec is not None:
            where = f"{label}/DomesticOriginPath"
            for value, ok in (("", True), ("/media", True), ("/a/b-c_d.e~", True), ("/a,b", False),
                              ("/media/", False), ("media", False), ("/", False), ("//a", False)):
                if accepts(spec, value) != ok:
                    yield Finding("origin-path", where, f"{'accepts' if not ok else 'refuses'} {value!r}")
    regional = [t for t in templates.values() if any(
        r.get("Type") in ("AWS::Serverless::Application", "AWS::CloudFormation::Stack")
        and str((r.get("Properties") or {}).get("Location", "")).endswith(EDGE_TEMPLATE)
        for r in t.get("Resources", {}).values())]
    edge = templates.get(EDGE_TEMPLATE)
    for template in regional if edge else []:
        for name in PASSED_THROUGH:
            mine, theirs = template["Parameters"].get(name), edge["Parameters"].get(name)
            if mine is None or theirs is None:
                continue
            for key in ("Type", "AllowedPattern", "AllowedValues", "MinValue", "MaxValue"):
                if mine.get(key) != theirs.get(key):
                    yield Finding("pass-through", name, f"{key} differs between the regional and the edge stack")


def min_revalidation_millis(root, variables):
    """The backfill function's shortest revalidation interval in milliseconds: its
    MIN_REVALIDATION where the template sets it, else the default its config.rs reads."""
    units = duration_units(root)
    configured = variables.get("MIN_REVALIDATION")
    if isinstance(configured, str):
        return parse_duration(configured, units)
    m = re.search(r'duration_or\("MIN_REVALIDATION",\s*Duration::from_(millis|secs)\(([0-9_]+)\)\)',
                  (root / FRESHNESS_CONFIG).read_text(encoding="utf-8"))
    if not m:
        raise ValueError(f"could not read MIN_REVALIDATION's default from {FRESHNESS_CONFIG}")
    return MILLIS[m.group(1)] * int(m.group(2).replace("_", ""))


def rule_freshness_parameters(templates, root):
    """The maximum staleness a function is given (MAX_STALENESS, or the parameter it comes from)
    is what it takes: a duration of its parser's grammar, at least its MIN_REVALIDATION, or it
    refuses to start; and the parameter's pattern takes every such value it can."""
    units = duration_units(root)
    for label, template in templates.items():
        params = template.get("Parameters", {})
        for name, res in (template.get("Resources") or {}).items():
            if res.get("Type") != "AWS::Serverless::Function":
                continue
            variables = (((res.get("Properties") or {}).get("Environment") or {}).get("Variables")) or {}
            if "MAX_STALENESS" not in variables:
                continue
            low = min_revalidation_millis(root, variables)
            value = variables["MAX_STALENESS"]
            if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in params:
                spec = params[value["Ref"]]
                for message in _duration_findings(json.dumps(spec, sort_keys=True), json.dumps(units, sort_keys=True),
                                                  low, None, "the backfill function"):
                    yield Finding("freshness", f"{label}/{value['Ref']}", message)
            elif isinstance(value, str):
                millis = parse_duration(value, units)
                if millis is None or millis < low:
                    yield Finding("freshness", f"{label}/{name} MAX_STALENESS",
                                  f"{value!r} is not a duration of at least {low} ms (MIN_REVALIDATION): the function refuses it")


def _parameter_bound(value, params, pick):
    """The largest (pick=max) or smallest (pick=min) value an event source setting may take: a
    literal, or a parameter's MaxValue/MinValue or AllowedValues, through Fn::If; None when a
    parameter leaves it unbounded."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) or (isinstance(value, str) and value.isdigit()):
        return int(value)
    if isinstance(value, dict) and set(value) == {"Ref"}:
        spec = params.get(value["Ref"])
        if spec is None:
            return None
        allowed = [int(v) for v in spec.get("AllowedValues", []) if str(v).isdigit()]
        bound = spec.get("MaxValue" if pick is max else "MinValue")
        candidates = allowed + ([int(bound)] if bound is not None else [])
        return pick(candidates) if candidates else None
    if isinstance(value, dict) and set(value) == {"Fn::If"}:
        branches = [_parameter_bound(v, params, pick) for v in value["Fn::If"][1:]
                    if v != {"Ref": "AWS::NoValue"}]
        return None if not branches or None in branches else pick(branches)
    return None


def rule_batch_window_parameters(templates):
    """A mapping whose batch may be over 10 messages needs a batching window of at least a
    second in every deploy, not only with the defaults: a window parameter must not allow 0."""
    for label, template in templates.items():
        params = template.get("Parameters", {})
        for name, res in (template.get("Resources") or {}).items():
            mappings = []
            if res.get("Type") == "AWS::Serverless::Function":
                for event, spec in ((res.get("Properties") or {}).get("Events") or {}).items():
                    if spec.get("Type") == "SQS":
                        mappings.append((f"{name}/{event}", spec.get("Properties") or {}))
            elif res.get("Type") == "AWS::Lambda::EventSourceMapping":
                mappings.append((name, res.get("Properties") or {}))
            for at, props in mappings:
                largest = _parameter_bound(props.get("BatchSize"), params, max)
                if largest is not None and largest <= UNBATCHED_MAX:
                    continue
                window = props.get("MaximumBatchingWindowInSeconds")
                if window is None:
                    continue
                smallest = _parameter_bound(window, params, min)
                if smallest is None or smallest < 1:
                    yield Finding("event-source-settings", f"{label}/{at}",
                                  f"its batching window may be {smallest if smallest is not None else 'unbounded'} with batches of up to "
                                  f"{largest if largest is not None else 'any size'}: Lambda needs at least 1 s over {UNBATCHED_MAX}")


def refused_header_names(root):
    """(names, prefixes) the backfill refuses as the secret header's name: CloudFront's denylist,
    the headers the fetch sets, and CloudFront's and the hook's prefixes."""
    src = (root / ORIGIN_SECRET_RULE).read_text(encoding="utf-8")

    def strings(const):
        m = re.search(rf"pub const {const}: \[&str; \d+\] = \[(.*?)\];", src, re.S)
        if not m:
            raise ValueError(f"no {const} in {ORIGIN_SECRET_RULE}")
        return re.findall(r'"([^"]+)"', m.group(1))

    hook = re.search(r'pub const HOOK_HEADER_PREFIX: &str = "([^"]+)";', (root / HOOK_PREFIX_SOURCE).read_text(encoding="utf-8"))
    names = strings("CLOUDFRONT_REFUSED") + strings("SET_BY_BACKFILL")
    prefixes = strings("CLOUDFRONT_REFUSED_PREFIXES") + [hook.group(1)]
    if len(names) < 20 or len(prefixes) < 3:
        raise ValueError(f"could not read the header rule from {ORIGIN_SECRET_RULE}")
    return names, prefixes


def rule_parameters(templates, root=ROOT):
    """Parameters a deploy can trip on before anything is created."""
    for label, template in templates.items():
        params = template.get("Parameters", {})
        for name, spec in params.items():
            # sam deploy --guided asks for a NoEcho parameter with hidden input, offers no default,
            # never saves it and insists on a value: "empty" cannot be chosen.
            if spec.get("NoEcho"):
                yield Finding("no-echo", f"{label}/{name}", "NoEcho: a guided deploy cannot leave it empty nor save it")
        spec = params.get("OriginSecretHeaderName")
        if spec is not None:
            where = f"{label}/OriginSecretHeaderName"
            names, prefixes = refused_header_names(root)
            refused = [n for h in names for n in (h, h.title(), h.upper())]
            refused += [n for p in prefixes for n in (p + "secret", (p + "Secret").title(), (p + "s").upper())]
            for value in refused:
                if accepts(spec, value):
                    yield Finding("origin-header", where, f"accepts {value!r}, which CloudFront refuses or the hook strips")
            for value in GOOD_HEADER_NAMES + ["x" * 64]:
                if not accepts(spec, value):
                    yield Finding("origin-header", where, f"refuses {value!r}")
            for value in ("", "x" * 65, "X Origin", "X_Origin", "X-Origin:"):
                if accepts(spec, value):
                    yield Finding("origin-header", where, f"accepts {value!r}")
        yield from rule_ttl(template, label)


def rule_ttl(template, label):
    """CloudFront refuses a DefaultTTL above the MaxTTL, and Accept-Encoding in the key of a policy
    with caching off: the template's rules refuse the first, and MaxTtl 0 turns compression off."""
    params = template.get("Parameters", {})
    if "DefaultTtl" not in params or "MaxTtl" not in params:
        return
    values = [str(v) for v in params["MaxTtl"].get("AllowedValues", [])]
    if not values or [str(v) for v in params["DefaultTtl"].get("AllowedValues", [])] != values:
        yield Finding("ttl", label, "DefaultTtl and MaxTtl are not the same list of values (rules cannot compare numbers)")
        return
    base = next(scenarios(template, label)).values
    rules = (template.get("Rules") or {}).values()
    for default, maximum in itertools.product(values, values):
        scenario = Scenario(template, f"{label} DefaultTtl={default} MaxTtl={maximum}",
                            dict(base, DefaultTtl=default, MaxTtl=maximum), EDGE_REGION)
        accepted = all(_assertion_holds(scenario, r) for r in rules)
        if accepted != (int(default) <= int(maximum)):
            verb = "accepts" if accepted else "refuses"
            yield Finding("ttl", label, f"{verb} DefaultTtl={default} with MaxTtl={maximum}")
            return
    for maximum in ("0", values[-1]):
        scenario = Scenario(template, f"{label} MaxTtl={maximum}", dict(base, DefaultTtl="0", MaxTtl=maximum), EDGE_REGION)
        caching = maximum != "0"
        for name, res in scenario.evaluated_resources().items():
            if res["Type"] == "AWS::CloudFront::CachePolicy":
                key = res["Properties"]["CachePolicyConfig"]["ParametersInCacheKeyAndForwardedToOrigin"]
                for setting in ("EnableAcceptEncodingGzip", "EnableAcceptEncodingBrotli"):
                    if str(key.get(setting)).lower() != str(caching).lower():
                        yield Finding("ttl", f"{label}/{name}", f"{setting} is {key.get(setting)} with MaxTtl={maximum}")
            if res["Type"] == "AWS::CloudFront::Distribution":
                config = res["Properties"]["DistributionConfig"]
                for behaviour in [config["DefaultCacheBehavior"]] + (config.get("CacheBehaviors") or []):
                    compress = behaviour.get("Compress")
                    if str(compress).lower() != str(caching).lower():
                        where = behaviour.get("PathPattern", "*")
                        yield Finding("ttl", f"{label}/{name}", f"Compress is {compress} on {where} with MaxTtl={maximum}")


def _assertion_holds(scenario, rule):
    condition = rule.get("RuleCondition")
    if condition is not None and not scenario.eval(condition):
        return True
    return all(scenario.eval(a["Assert"]) for a in rule.get("Assertions", []))


def rule_edge_region(template, label, scenario_list):
    """A template with an edge function must refuse every region but us-east-1 by a rule."""
    has_edge = any(edge_functions(s.evaluated_resources()) for s in scenario_list)
    if has_edge:
        rules = template.get("Rules") or {}
        checks = {}
        for region in REGIONS + ["eu-west-1"]:
            scenario = Scenario(template, f"{label} {region}", scenario_list[0].values, region)
            checks[region] = all(_assertion_holds(scenario, r) for r in rules.values())
        if not checks[EDGE_REGION] or any(ok for region, ok in checks.items() if region != EDGE_REGION):
            yield Finding("edge-region", label, "no rule that holds in us-east-1 and in no other region")
    for scenario in scenario_list:
        for name, res in scenario.evaluated_resources().items():
            location = str(res["Properties"].get("Location", ""))
            if location.endswith(EDGE_TEMPLATE) and scenario.region != EDGE_REGION:
                yield Finding("edge-region", name, f"the edge stack is nested in {scenario.region}", scenario.name)


def send_failure_reasons(root):
    """The Reason values a failed send can carry: the arms of EdgeError::reason for the variants
    the send path (EDGE_SEND_PATH) can end with. The others (no_record, invalid_event, a panic
    caught by the addon) make the core reject, which the JavaScript handler reports as its own
    reason."""
    errors = (root / EDGE_ERRORS).read_text(encoding="utf-8")
    arms = {}
    for variant, label in re.findall(r'EdgeError::(\w+)\b[^=\n]*=> "(\w+)"', _rust_fn_body(errors, "reason")):
        arms.setdefault(variant, []).append(label)
    converted = dict(re.findall(r"(\w+)\(#\[from\] ([\w:]+)\)", errors))
    path = ""
    for name, functions in EDGE_SEND_PATH.items():
        code, _ = without_test_code(strip_code((root / name).read_text(encoding="utf-8")))
        path += "".join(_rust_fn_body(code, f) for f in functions) if functions else code
    variants = set(re.findall(r"EdgeError::(\w+)", path))
    # A `?` on the source type of a #[from] variant ends the send with that variant.
    variants |= {v for v, source in converted.items() if re.search(rf"\b{re.escape(source)}\b.*\?", path)}
    reasons = [label for variant, labels in arms.items() if variant in variants for label in labels]
    if not reasons:
        raise ValueError(f"could not read the send's errors from {', '.join(EDGE_SEND_PATH)}")
    return reasons


# Stands for each configured bucket region in a metric's dimension values (known per scenario).
BUCKET_REGIONS = "<bucket regions>"


def handler_metrics(root):
    """What the JavaScript handler emits: (namespace, [(metric, its dimension names, values)]).
    When the core cannot answer (`failed`): its metric with the Reason values, each
    `reason: '...'` it attaches and its `?? '...'` default. Per origin attempt (`regional`): each
    metric a `regional('...', ...)` call names, BucketRegion standing for the bucket regions."""
    src = (root / EDGE_HANDLER).read_text(encoding="utf-8")
    namespace = re.search(r"Namespace: '(\w+)'", src)
    failed = _js_fn_body(src, "failed")
    regional = _js_fn_body(src, "regional")
    emitted = []
    for body, values in ((failed, None), (regional, BUCKET_REGIONS)):
        dimensions = re.search(r"const dimensions = functionName \? \{([^}]*)\}", body)
        if not dimensions:
            raise ValueError(f"could not read the handler's dimensions from {EDGE_HANDLER}")
        names = tuple(re.findall(r"(\w+):", dimensions.group(1)))
        if values is None:
            values = tuple(dict.fromkeys(re.findall(r"\breason: '(\w+)'", src) + re.findall(r"\?\? '(\w+)'", failed)))
            metrics = re.findall(r"Name: '(\w+)', Unit:", failed)
        else:
            metrics = re.findall(r"\bregional\('(\w+)'", src)
        if not (metrics and values):
            raise ValueError(f"could not read the handler's metrics from {EDGE_HANDLER}")
        emitted += [(metric, names, values) for metric in metrics]
    if not namespace:
        raise ValueError(f"could not read the handler's namespace from {EDGE_HANDLER}")
    return namespace.group(1), emitted


def _js_fn_body(src, name):
    m = re.search(rf"^function {name}\b[^\n]*\{{\n", src, re.M)
    if not m:
        raise ValueError(f"no function {name}")
    return src[m.end():re.compile(r"^\}", re.M).search(src, m.end()).start()]


def hook_metrics(root):
    """What the hook emits: its namespace, and (metric, dimension names, Reason values or None)
    for each metric of each emit call, read from the hook's sources, and from the JavaScript
    handler's when the core cannot answer."""
    raw_hook = (root / EDGE_HOOK).read_text(encoding="utf-8")
    namespace = re.search(r'METRICS_NAMESPACE: &str = "([^"]+)"', raw_hook).group(1)
    metrics_src = (root / SHARED_METRICS).read_text(encoding="utf-8")
    fixed = re.findall(r'with_dimension\("(\w+)", name\)', _rust_fn_body(metrics_src, "for_function"))
    sources = {
        "label": re.findall(r'=> "(\w+)"', _rust_fn_body((root / EDGE_PLAN).read_text(encoding="utf-8"), "label")),
        "reason": send_failure_reasons(root),
    }
    emitted = []
    # Every emit call (a report's, and a detached send's own end), each with the variables of its
    # match arm or function.
    for part in re.split(r"\n\s*(?:Outcome::|(?:pub )?fn )", raw_hook):
        for call in re.finditer(r"self\.emit\(\s*&\[(.*?)\],\s*&\[(.*?)\],?\s*\)", part, re.S):
            dims = re.findall(r'\("(\w+)",\s*(\w+)\)', call.group(1))
            names = tuple(fixed + [d for d, _ in dims])
            values = None
            for dim, variable in dims:
                if dim == "Reason":
                    m = re.search(rf"let {variable} = \w+\.(label|reason)\(\)", part)
                    values = tuple(sources[m.group(1)]) if m else None
            for metric in re.findall(r'Metric::\w+\("(\w+)"', call.group(2)):
                emitted.append((metric, names, values))
    if not emitted or not all(values for _, names, values in emitted if "Reason" in names):
        raise ValueError(f"could not read the hook's metrics from {EDGE_HOOK}")
    handler_namespace, handler = handler_metrics(root)
    if handler_namespace != namespace:
        raise ValueError(f"{EDGE_HANDLER} emits in {handler_namespace}, {EDGE_HOOK} in {namespace}")
    return namespace, emitted + handler


def dashboard_rows(body):
    """Each metric row of a dashboard body, its '.' shorthand resolved: (namespace, metric,
    {dimension: value}, region)."""
    rows = []
    for widget in json.loads(body).get("widgets", []):
        props = widget.get("properties", {})
        previous = []
        for entry in props.get("metrics", []):
            options = entry[-1] if entry and isinstance(entry[-1], dict) else {}
            values = [v for v in entry if not isinstance(v, dict)]
            resolved = [previous[i] if v == "." and i < len(previous) else v for i, v in enumerate(values)]
            previous = resolved
            if len(resolved) < 2 or len(resolved) % 2:
                continue
            dims = dict(zip(resolved[2::2], resolved[3::2]))
            rows.append((resolved[0], resolved[1], dims, options.get("region", props.get("region"))))
    return rows


def rule_edge_metrics(resources, regions, root, bucket_regions=()):
    functions = [f for f in edge_functions(resources) if f in resources]
    if not functions:
        return
    namespace, emitted = hook_metrics(root)
    function_name = EDGE_REPLICA_PREFIX + f"<<{functions[0]}>>"
    rows = []
    for name, res in resources.items():
        if res["Type"] == "AWS::CloudWatch::Dashboard":
            try:
                rows.extend(dashboard_rows(res["Properties"]["DashboardBody"]))
            except (ValueError, TypeError) as e:
                yield Finding("edge-dashboard", name, f"its body is not JSON: {e}")
    shown = {(ns, metric, tuple(sorted(dims.items())), region) for ns, metric, dims, region in rows}
    wanted = set()
    for metric, names, values in emitted:
        for value in (bucket_regions if values == BUCKET_REGIONS else values) or [None]:
            dims = {n: function_name if n == "FunctionName" else value for n in names}
            for region in regions:
                wanted.add((namespace, metric, tuple(sorted(dims.items())), region))
    for ns, metric, dims, region in sorted(wanted - shown):
        yield Finding("edge-dashboard", "dashboard", f"no {metric} {dict(dims)} in {region}")
    for ns, metric, dims, region in sorted(shown - wanted):
        if ns == namespace:
            yield Finding("edge-dashboard", "dashboard", f"{metric} {dict(dims)} in {region}: the hook emits no such metric there")
    failure_reasons = {v for m, names, values in emitted if m == "BackfillSendFailed" for v in values or []}
    alarmed = False
    for name, res in resources.items():
        if res["Type"] != "AWS::CloudWatch::Alarm":
            continue
        queries = res["Properties"].get("Metrics", [])
        stats = [q["MetricStat"]["Metric"] for q in queries if "MetricStat" in q]
        reasons = set()
        for metric in stats:
            dims = {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}
            if metric.get("Namespace") == namespace and metric.get("MetricName") == "BackfillSendFailed" \
                    and set(dims) == {"FunctionName", "Reason"} and dims["FunctionName"] == function_name:
                reasons.add(dims["Reason"])
        ids = {q["Id"] for q in queries if "MetricStat" in q}
        summed = any(q.get("ReturnData", True) and "Expression" in q
                     and ids <= set(re.findall(r"\w+", q["Expression"])) for q in queries)
        if reasons == failure_reasons and summed:
            alarmed = True
    if not alarmed:
        yield Finding("edge-alarm", "template", "no alarm on BackfillSendFailed summing every reason the hook emits")


# ---------------------------------------------------------------- the viewer-request function

VIEWER_REQUEST_FUNCTION = "functions/viewer-request/viewer-request.js"
# The placeholders the template's Fn::Sub fills in: the edge stack's parameters of those names,
# and RegionalOrigins, a variable of the Fn::Sub (the configured regional stacks by slot).
VIEWER_REQUEST_PARAMETERS = {"ThumbnailPrefix", "ThumbnailFormats", "ViewerRoutes", "OfflineRegions"}
VIEWER_REQUEST_VARIABLES = {"RegionalOrigins"}
# The formats the function reads from ThumbnailFormats (a comma-separated list), or none.
THUMBNAIL_FORMATS = {"avif", "webp"}
CLOUDFRONT_FUNCTION_RUNTIME = "cloudfront-js-2.0"
# CloudFront Developer Guide, quotas on CloudFront Functions: maximum function size 10 KB.
CLOUDFRONT_FUNCTION_MAX_BYTES = 10 * 1024
# A cache behaviour's path pattern takes A-Z a-z 0-9 _ - . * $ / ~ " ' @ : + & (CloudFront Developer
# Guide, "Path pattern"), * and ? as wildcards; the prefix also goes into a JavaScript string in
# single quotes. What a ThumbnailPrefix pattern must accept, and refuse.
THUMBNAIL_PREFIXES_OK = ["thumbnails/", "media/thumbs-2/v1.0/", "a/", "T_1.x/" + "b" * 190 + "/"]
THUMBNAIL_PREFIXES_REFUSED = ["", "thumbnails", "/thumbnails/", "a'b/", "a\\b/", "a*/", "a?/", "a!/", "a(b)/",
                              "a b/", "a%20b/", "a/" + "b" * 250 + "/"]


def _function_code_sub(raw_resource):
    """A CloudFront Function's FunctionCode as the template holds it: (text, variables) of its
    Fn::Sub (either form), (text, {}) for a plain string, or (None, {})."""
    code = (raw_resource.get("Properties") or {}).get("FunctionCode")
    if isinstance(code, dict):
        sub = code.get("Fn::Sub")
        if isinstance(sub, str):
            return sub, {}
        if isinstance(sub, list) and len(sub) == 2 and isinstance(sub[0], str) and isinstance(sub[1], dict):
            return sub[0], sub[1]
        return None, {}
    return (code, {}) if isinstance(code, str) else (None, {})


def _behaviour_associations(behaviour):
    value = behaviour.get("FunctionAssociations") or []
    return value.get("Items", []) if isinstance(value, dict) else value


def several_regions(scenario):
    """Whether the scenario configures more regional stacks than the first."""
    return any(scenario.values.get(f"Region{n}BucketName") for n in REGION_SLOTS[1:])


def rule_viewer_request_function(scenario, root):
    """The viewer-request function's code, runtime and size, in one scenario."""
    resources = scenario.evaluated_resources()
    source = (root / VIEWER_REQUEST_FUNCTION).read_text(encoding="utf-8")
    for name, res in resources.items():
        if res["Type"] != "AWS::CloudFront::Function":
            continue
        props = res["Properties"]
        if (props.get("FunctionConfig") or {}).get("Runtime") != CLOUDFRONT_FUNCTION_RUNTIME:
            yield Finding("viewer-request", name, f"runtime is not {CLOUDFRONT_FUNCTION_RUNTIME}")
        if str(props.get("AutoPublish")).lower() != "true":
            yield Finding("viewer-request", name, "not published (AutoPublish): a distribution takes a LIVE function only")
        text, variables = _function_code_sub(scenario.resources[name])
        if text != source:
            yield Finding("viewer-request", name, f"its code is not {VIEWER_REQUEST_FUNCTION} verbatim (as its Fn::Sub)")
        placeholders = set(re.findall(r"\$\{([^}!][^}]*)\}", text or ""))
        known = VIEWER_REQUEST_PARAMETERS | (VIEWER_REQUEST_VARIABLES & set(variables))
        if placeholders - known:
            yield Finding("viewer-request", name, f"its code names {sorted(placeholders - known)}")
        if set(variables) - VIEWER_REQUEST_VARIABLES or VIEWER_REQUEST_VARIABLES - set(variables):
            yield Finding("viewer-request", name, f"its Fn::Sub variables are {sorted(variables)}, not "
                          f"{sorted(VIEWER_REQUEST_VARIABLES)}")
        size = len(str(props.get("FunctionCode", "")).encode("utf-8"))
        if size > CLOUDFRONT_FUNCTION_MAX_BYTES:
            yield Finding("viewer-request", name, f"{size} bytes as deployed, over CloudFront Functions' 10 KB")


def rule_thumbnail_format(scenario, root):
    """The thumbnails behaviour and where the viewer-request function runs, in one scenario."""
    resources = scenario.evaluated_resources()
    functions = {n: r for n, r in resources.items() if r["Type"] == "AWS::CloudFront::Function"}
    prefix = scenario.values.get("ThumbnailPrefix")
    formats = scenario.values.get("ThumbnailFormats", "none") != "none"
    regions = several_regions(scenario)
    wanted = formats or regions
    associated = set()
    for name, res in resources.items():
        if res["Type"] != "AWS::CloudFront::Distribution":
            continue
        config = res["Properties"]["DistributionConfig"]
        groups = {g.get("Id") for g in (config.get("OriginGroups") or {}).get("Items", [])}
        s3_origins = {o.get("Id") for o in config.get("Origins", []) if "S3OriginConfig" in o}
        behaviours = config.get("CacheBehaviors") or []
        for behaviour in [config.get("DefaultCacheBehavior", {})] + behaviours:
            for association in _behaviour_associations(behaviour):
                function, _ = ref_name(association.get("FunctionARN"))
                associated.add(function)
                uploads = scenario.values.get("UploadPrefix", "")
                is_thumbnails = prefix is not None and behaviour.get("PathPattern", "").lstrip("/") in (
                    prefix + "*", prefix + uploads + "*")
                if function in functions and not is_thumbnails and not regions:
                    yield Finding("thumbnail-format", name, f"{function} on the behaviour {behaviour.get('PathPattern', '*')!r}")
        if prefix is None:
            continue
        thumbnails = [b for b in behaviours if b.get("PathPattern", "").lstrip("/") == prefix + "*"]
        if not thumbnails:
            yield Finding("thumbnail-format", name, f"no cache behaviour for {prefix}*: thumbnails fall back to the "
                          "domestic origin and their misses are enqueued as backfills")
        for behaviour in thumbnails:
            target = behaviour.get("TargetOriginId")
            if target in groups or target not in s3_origins:
                yield Finding("thumbnail-format", name, f"{prefix}* is served by {target!r}, not the bucket alone: a "
                              "missing rendition falls back to the domestic origin")
            if behaviour.get("LambdaFunctionAssociations"):
                yield Finding("thumbnail-format", name, f"{prefix}* runs the hook: a missing rendition would be enqueued as a backfill")
            associations = [a for a in _behaviour_associations(behaviour) if ref_name(a.get("FunctionARN"))[0] in functions]
            if wanted and not any(a.get("EventType") == "viewer-request" for a in associations):
                yield Finding("thumbnail-format", name, f"ThumbnailFormats={scenario.values['ThumbnailFormats']}"
                              f"{' with several regions' if regions else ''} but no viewer-request function on {prefix}*")
            if not wanted and associations:
                yield Finding("thumbnail-format", name, f"a format function on {prefix}* with ThumbnailFormats=none")
            for association in associations:
                if association.get("EventType") != "viewer-request":
                    yield Finding("thumbnail-format", name, f"the format function runs at {association.get('EventType')}, "
                                  "after the cache key is made")
    for function in set(functions) - associated:
        yield Finding("thumbnail-format", function, "on no cache behaviour")


def rule_scenario_values(scenario):
    """The scenario is a deploy CloudFormation would start: each value accepted by its
    parameter's constraints, each of the template's Rules holding (a rule about the region is
    left to rule_edge_region, since every template is walked in several regions)."""
    params = scenario.template.get("Parameters", {})
    for name, value in scenario.values.items():
        spec = params.get(name, {})
        if spec.get("Type", "String") == "String" and not accepts(spec, str(value)):
            yield Finding("scenario-values", name, f"{str(value)[:60]!r} is refused by the parameter's constraints")
    for name, rule in (scenario.template.get("Rules") or {}).items():
        if "AWS::Region" in json.dumps(rule):
            continue
        if "RuleCondition" in rule and not scenario.eval(rule["RuleCondition"]):
            continue
        for assertion in rule.get("Assertions", []):
            if not scenario.eval(assertion["Assert"]):
                yield Finding("scenario-values", name, f"fails: {assertion.get('AssertDescription', '')}")


# ---------------------------------------------------------------- the upload prefix

# What writes (or removes) an object: none of it may reach a caller's upload prefix from the
# backfill, whatever its code does.
OBJECT_WRITE_ACTIONS = ["s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion", "s3:RestoreObject",
                        "s3:PutObjectAcl", "s3:PutObjectTagging", "s3:PutObjectRetention", "s3:PutObjectLegalHold"]
BACKFILL_FUNCTION = "BackfillFunction"
REFUSED_PREFIXES_VARIABLE = "REFUSED_PREFIXES"
REFUSED_PREFIXES_HEADER = "x-backfill-refused-prefixes"


def _pattern_matches(pattern, value):
    """An IAM action or resource pattern (`*` and `?` wildcards) against a value; actions are
    case-insensitive, resources are not."""
    return fnmatch.fnmatchcase(value, pattern.replace("[", "[[]"))


def allowed_not_denied(sts, action, resource):
    """Whether some statement allows the action on the resource and none denies it (IAM's
    evaluation, conditions aside)."""
    effects = set()
    for st in sts:
        actions = [a.lower() for a in as_list(st.get("Action"))]
        targets = [r for r in as_list(st.get("Resource")) if isinstance(r, str)]
        if any(_pattern_matches(a, action.lower()) for a in actions) and any(_pattern_matches(r, resource) for r in targets):
            effects.add(st.get("Effect"))
    return "Allow" in effects and "Deny" not in effects


def role_may(resources, role, action, resource):
    """Whether the role's identity policies allow the action on the resource, no Deny matching."""
    sts = [st for _where, document, identity, roles in policy_documents(resources)
           if identity and role in roles for st in statements(document)]
    return allowed_not_denied(sts, action, resource)


def rule_upload_prefix(scenario):
    """The backfill never writes into a caller's upload prefix: its role may not write there (an
    explicit Deny beside the bucket-wide grant), the function is told to refuse such keys, and
    every domestic origin that carries the hook's configuration tells the hook to refuse them."""
    prefix = scenario.values.get("UploadPrefix")
    if not prefix:
        return
    resources = scenario.evaluated_resources()
    backfill = resources.get(BACKFILL_FUNCTION)
    if backfill is not None:
        role, _ = ref_name(backfill["Properties"].get("Role"))
        probe = f"<<Bucket.Arn>>/{prefix}alice/photos/cat.jpg"
        for action in OBJECT_WRITE_ACTIONS:
            if role and role_may(resources, role, action, probe):
                yield Finding("upload-prefix", f"{BACKFILL_FUNCTION}/{role}", f"may {action} under {prefix} (no Deny on "
                              f"<<Bucket.Arn>>/{prefix}*): a backfill bug could overwrite a caller's file")
        refused = str(function_variables(backfill["Properties"]).get(REFUSED_PREFIXES_VARIABLE, "")).split(",")
        if prefix not in refused:
            yield Finding("upload-prefix", BACKFILL_FUNCTION, f"{REFUSED_PREFIXES_VARIABLE} does not name {prefix}: a "
                          "message for a key under it would be copied")
    distribution = resources.get("Distribution")
    if distribution is None:
        return
    for origin in distribution["Properties"]["DistributionConfig"].get("Origins", []):
        headers = _custom_headers(origin)
        if "x-backfill-queue-url" not in headers:
            continue
        refused = str(headers.get(REFUSED_PREFIXES_HEADER, "")).split(",")
        if prefix not in refused:
            yield Finding("upload-prefix", origin.get("Id", "?"), f"the hook is not told to refuse {prefix} "
                          f"({REFUSED_PREFIXES_HEADER}): a viewer's miss there would be enqueued")


UPLOAD_ACCESS_VALUES = {"private", "public"}
CLOUDFRONT_SERVICE = "cloudfront.amazonaws.com"


def _principal_services(st):
    principal = st.get("Principal")
    if principal == "*":
        return {"*"}
    return set(as_list((principal or {}).get("Service"))) if isinstance(principal, dict) else set()


def bucket_policy_lets(resources, service, action, resource):
    """Whether a bucket policy lets a service principal (CloudFront through its origin access
    control) do the action on the object: an Allow names it, and no Deny naming it (or everyone)
    matches. Conditions are not evaluated: a statement applies as if they held (the TLS Deny's
    condition never holds for CloudFront, which uses HTTPS; that statement denies s3:* to "*" with a
    condition, so Denies with a condition on aws:SecureTransport are skipped)."""
    sts = [st for res in resources.values() if res["Type"] == "AWS::S3::BucketPolicy"
           for st in statements(res["Properties"].get("PolicyDocument"))
           if _principal_services(st) & {service, "*"} and "aws:SecureTransport" not in json.dumps(st.get("Condition", {}))]
    return allowed_not_denied(sts, action, resource)


def rule_upload_privacy(scenario):
    """Uploads, and their thumbnails, are readable through the distribution exactly when
    UploadAccess says so: private, the bucket policy denies CloudFront; public, it lets it;
    signed, it lets it and the edge serves them only to signed URLs and cookies (the upload
    behaviours trust the key group of UploadSigningPublicKey), the upload API is told how to sign,
    and the edge stack is told signed. The edge serves them from the bucket alone, with no hook and
    no fallback to the domestic origin."""
    values = scenario.values
    prefix, thumbnails, access = values.get("UploadPrefix"), values.get("ThumbnailPrefix"), values.get("UploadAccess")
    if not prefix or not thumbnails:
        return
    resources = scenario.evaluated_resources()
    probes = (f"{prefix}alice/photos/cat.jpg", f"{thumbnails}{prefix}alice/photos/cat.jpg/160.jpg")
    has_policy = any(r["Type"] == "AWS::S3::BucketPolicy" for r in resources.values())
    if access and has_policy and "Bucket" in resources:
        for probe in probes:
            readable = bucket_policy_lets(resources, CLOUDFRONT_SERVICE, "s3:GetObject", f"<<Bucket.Arn>>/{probe}")
            reads_anything = bucket_policy_lets(resources, CLOUDFRONT_SERVICE, "s3:GetObject", "<<Bucket.Arn>>/media/a.jpg")
            if access == "private" and readable:
                yield Finding("upload-privacy", "BucketPolicy", f"the distribution may read {probe} with UploadAccess=private")
            if access in ("public", "signed") and reads_anything and not readable:
                yield Finding("upload-privacy", "BucketPolicy", f"the distribution may not read {probe} with UploadAccess={access}")
    yield from _upload_access_passed_on(scenario, resources, access)
    distribution = resources.get("Distribution")
    if distribution is None:
        return
    config = distribution["Properties"]["DistributionConfig"]
    groups = {g.get("Id") for g in (config.get("OriginGroups") or {}).get("Items", [])}
    s3_origins = {o.get("Id") for o in config.get("Origins", []) if "S3OriginConfig" in o}
    behaviours = config.get("CacheBehaviors") or []
    # CloudFront takes the first behaviour whose path pattern matches, in the listed order.
    for probe in (f"{prefix}alice/photos/cat.jpg", f"{thumbnails}{prefix}alice/photos/cat.jpg/160.jpg"):
        behaviour = next((b for b in behaviours if fnmatch.fnmatchcase(probe, b.get("PathPattern", "").lstrip("/"))), None)
        if behaviour is None:
            yield Finding("upload-privacy", "Distribution", f"{probe} is served by the default behaviour: it falls back to "
                          "the domestic origin and runs the hook")
            continue
        where = behaviour.get("PathPattern")
        if behaviour.get("TargetOriginId") in groups or behaviour.get("TargetOriginId") not in s3_origins:
            yield Finding("upload-privacy", where, f"{probe} is not served by the bucket alone")
        if behaviour.get("LambdaFunctionAssociations"):
            yield Finding("upload-privacy", where, f"{probe} runs the hook")
        keys = {values.get("UploadSigningPublicKey"), values.get("UploadSigningPublicKey2")} - {None, ""}
        if access == "signed" and not _trusts_signing_key(resources, behaviour, keys):
            yield Finding("upload-privacy", where, f"{probe} is served without a signed URL or cookie of "
                          "UploadSigningPublicKey with UploadAccess=signed")


def _trusts_signing_key(resources, behaviour, public_keys):
    """Whether the behaviour trusts key groups holding exactly the public keys the
    UploadSigningPublicKey parameters give (no other signer's URLs open uploads)."""
    groups = [ref_name(g)[0] for g in as_list(behaviour.get("TrustedKeyGroups"))]
    if not groups or behaviour.get("TrustedSigners"):
        return False
    for group in groups:
        items = ((resources.get(group) or {}).get("Properties", {}).get("KeyGroupConfig") or {}).get("Items") or []
        encoded = {((resources.get(ref_name(i)[0]) or {}).get("Properties", {}).get("PublicKeyConfig") or {})
                   .get("EncodedKey") for i in items}
        if encoded != public_keys:
            return False
    return bool(public_keys)


def _upload_access_passed_on(scenario, resources, access):
    """A regional stack tells UploadAccess to its upload API, to its nested edge stack (with the
    public key) or in EdgeStackParameters, and with signed gives the API its key and domain."""
    api = resources.get("UploadApiFunction")
    if api is None or not access:
        return
    variables = (api["Properties"].get("Environment") or {}).get("Variables") or {}
    if variables.get("UPLOAD_ACCESS") != access:
        yield Finding("upload-privacy", "UploadApiFunction", f"UPLOAD_ACCESS is {variables.get('UPLOAD_ACCESS')!r}, "
                      f"not UploadAccess {access!r}")
    if access == "signed":
        for name in ("SIGNING_KEY_SECRET", "SIGNING_KEY_ID", "DOWNLOAD_DOMAIN"):
            if not variables.get(name):
                yield Finding("upload-privacy", "UploadApiFunction", f"{name} is not set with UploadAccess=signed")
    nested = resources.get("EdgeStack")
    if nested is not None:
        parameters = nested["Properties"].get("Parameters") or {}
        if parameters.get("UploadAccess") != access:
            yield Finding("upload-privacy", "EdgeStack", f"the nested edge stack is not told UploadAccess={access}")
        for name in ("UploadSigningPublicKey", "UploadSigningPublicKey2"):
            if access == "signed" and parameters.get(name, "") != scenario.values.get(name, ""):
                yield Finding("upload-privacy", "EdgeStack", f"the nested edge stack is not given {name}")
    output = (scenario.template.get("Outputs") or {}).get("EdgeStackParameters")
    if output is not None and (not output.get("Condition") or scenario.condition(output["Condition"])):
        # The plain Sub parts of the list (the others name the origin secret's ARN parts, which
        # have no value here).
        parts = (output.get("Value") or {}).get("Fn::Join", [None, []])[1]
        text = " ".join(str(scenario.eval(p)) for p in parts if isinstance(p, dict) and isinstance(p.get("Fn::Sub"), str))
        if f"UploadAccess={access}" not in text.split():
            yield Finding("upload-privacy", "EdgeStackParameters", f"does not pass UploadAccess={access} to the edge stack")



# ---------------------------------------------------------------- public function URLs

def _parameter_refs(node, parameters):
    """The template parameters an expression refers to (Ref, and ${Name} in Fn::Sub)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and value in parameters:
                yield value
            elif key == "Fn::Sub":
                text = value if isinstance(value, str) else value[0]
                yield from (n for n in re.findall(r"\$\{([A-Za-z0-9]+)\}", text) if n in parameters)
                if not isinstance(value, str):
                    yield from _parameter_refs(value[1], parameters)
            else:
                yield from _parameter_refs(value, parameters)
    elif isinstance(node, list):
        for value in node:
            yield from _parameter_refs(value, parameters)


def public_url_functions(resources):
    """Functions behind a public function URL (auth type NONE): a SAM function's FunctionUrlConfig
    or an AWS::Lambda::Url's target."""
    for name, res in resources.items():
        props = res.get("Properties", {})
        if res["Type"] == "AWS::Serverless::Function" and (props.get("FunctionUrlConfig") or {}).get("AuthType") == "NONE":
            yield name
        if res["Type"] == "AWS::Lambda::Url" and props.get("AuthType") == "NONE":
            target, _ = ref_name(props.get("TargetFunctionArn"))
            if target:
                yield target


def rule_public_url_concurrency(scenario):
    """Anyone may invoke a function behind a public URL, bad credentials or none: a reservation
    bounds what that costs the account's concurrency (Lambda answers 429 past it without running the
    function). Only an explicit 0 in a parameter the reservation is made of opts out."""
    parameters = scenario.template.get("Parameters", {})
    resources = scenario.evaluated_resources()
    for name in sorted(set(public_url_functions(resources))):
        if name not in resources:
            continue
        reserved = resources[name]["Properties"].get("ReservedConcurrentExecutions")
        if reserved is None:
            raw = scenario.resources.get(name, {}).get("Properties", {}).get("ReservedConcurrentExecutions")
            opted_out = [p for p in _parameter_refs(raw, parameters) if str(scenario.values.get(p)) == "0"]
            if not opted_out:
                yield Finding("public-url-concurrency", name, "a public function URL without reserved concurrency: "
                              "unauthenticated calls can take the account's whole concurrency")
        elif not str(reserved).isdigit() or int(reserved) < 1:
            yield Finding("public-url-concurrency", name, f"reserved concurrency {reserved!r}: Lambda throttles every call")


# ---------------------------------------------------------------- several regions

REGION_SLOTS = [1, 2, 3, 4]
# The origin ids the viewer-request function selects (functions/viewer-request/viewer-request.js):
# slot 1's are the static origin group's members.
DEFAULT_GROUP = "bucket-then-domestic"
DIRECT_ORIGIN = "domestic-direct"
# CloudFront's default connection settings hold a viewer 3 x 10 s before failing over (Developer
# Guide, "Connection attempts", "Connection timeout"): a bucket origin may take at most this long.
MAX_BUCKET_CONNECT_SECONDS = 10
FAILOVER_STATUSES = {403, 404, 500, 502, 503, 504}
VIEWER_COUNTRY = "cloudfront-viewer-country"


def bucket_origin_id(slot):
    return "overseas-bucket" if slot == 1 else f"bucket-{slot}"


def domestic_origin_id(slot):
    return "domestic" if slot == 1 else f"domestic-{slot}"


def regional_slots(scenario):
    """The configured regional stacks: (slot, bucket, region, queue ARN)."""
    values = scenario.values
    slots = [(1, values.get("BucketName"), values.get("BucketRegion"), values.get("BackfillQueueArn"))]
    for n in REGION_SLOTS[1:]:
        bucket, queue = values.get(f"Region{n}BucketName"), values.get(f"Region{n}BackfillQueueArn")
        if bucket or queue:
            slots.append((n, bucket, (queue or "::::").split(":")[3], queue))
    return slots


def queue_url(arn):
    _, partition, _, region, account, name = arn.split(":", 5)
    return f"https://sqs.{region}.amazonaws.com/{account}/{name}"


def _custom_headers(origin):
    value = origin.get("OriginCustomHeaders") or []
    items = value.get("Items", []) if isinstance(value, dict) else value
    return {str(h.get("HeaderName", "")).lower(): h.get("HeaderValue") for h in items}


def _policy_headers(resources, policy_ref):
    name, _ = ref_name(policy_ref) if isinstance(policy_ref, str) else (None, None)
    policy = resources.get(name) or {}
    config = (policy.get("Properties") or {}).get("OriginRequestPolicyConfig") or {}
    headers = config.get("HeadersConfig") or {}
    listed = headers.get("Headers") or []
    listed = listed.get("Items", []) if isinstance(listed, dict) else listed
    return headers.get("HeaderBehavior"), {str(h).lower() for h in listed}


def rule_regions(scenario):
    """One distribution over the configured regional stacks: each slot's bucket (behind OAC) and
    its domestic origin carrying its own queue and bucket, the hook allowed to send to each queue,
    the function told of each slot and on every behaviour, the viewer's country reaching it."""
    if "BucketName" not in scenario.values or "Region2BucketName" not in scenario.template.get("Parameters", {}):
        return
    resources = scenario.evaluated_resources()
    slots = regional_slots(scenario)
    several = len(slots) > 1
    distribution = resources.get("Distribution")
    if distribution is None:
        yield Finding("regions", "template", "no Distribution")
        return
    config = distribution["Properties"]["DistributionConfig"]
    origins = {o.get("Id"): o for o in config.get("Origins", [])}
    expected = set()
    for slot, bucket, region, queue in slots:
        bucket_id, domestic_id = bucket_origin_id(slot), domestic_origin_id(slot)
        expected |= {bucket_id, domestic_id}
        origin = origins.get(bucket_id)
        if origin is None:
            yield Finding("regions", "Distribution", f"no origin {bucket_id} for regional stack {slot}")
        else:
            domain = f"{bucket}.s3.{region}.amazonaws.com"
            if origin.get("DomainName") != domain:
                yield Finding("regions", bucket_id, f"domain {origin.get('DomainName')!r}, not {domain!r}")
            if "S3OriginConfig" not in origin or not origin.get("OriginAccessControlId"):
                yield Finding("regions", bucket_id, "not an S3 origin signed by the origin access control")
            waits = int(origin.get("ConnectionAttempts", 3)) * int(origin.get("ConnectionTimeout", 10))
            if waits > MAX_BUCKET_CONNECT_SECONDS:
                yield Finding("regions", bucket_id, f"an unreachable bucket holds viewers {waits} s before the "
                              "domestic origin (ConnectionAttempts x ConnectionTimeout)")
        origin = origins.get(domestic_id)
        if origin is None:
            yield Finding("regions", "Distribution", f"no origin {domestic_id} for regional stack {slot}")
        else:
            headers = _custom_headers(origin)
            if "CustomOriginConfig" not in origin:
                yield Finding("regions", domestic_id, "not a custom origin")
            if queue and headers.get("x-backfill-queue-url") != queue_url(queue):
                yield Finding("regions", domestic_id, f"enqueues into {headers.get('x-backfill-queue-url')!r}, not its "
                              f"region's queue {queue_url(queue)!r}")
            if headers.get("x-backfill-bucket") != bucket:
                yield Finding("regions", domestic_id, f"backfills {headers.get('x-backfill-bucket')!r}, not its region's "
                              f"bucket {bucket!r}")
    groups = {g.get("Id"): g for g in (config.get("OriginGroups") or {}).get("Items", [])}
    members = [m.get("OriginId") for m in ((groups.get(DEFAULT_GROUP) or {}).get("Members") or {}).get("Items", [])]
    if members != [bucket_origin_id(1), domestic_origin_id(1)]:
        yield Finding("regions", DEFAULT_GROUP, f"members {members}, not the first regional stack's bucket, then "
                      "its domestic origin")
    # The hook may send to each configured queue, and to nothing else.
    role = (resources.get("EdgeFunctionRole") or {}).get("Properties") or {}
    sendable = set()
    for policy in role.get("Policies") or []:
        for st in statements(policy.get("PolicyDocument")):
            if "sqs:SendMessage" in as_list(st.get("Action")):
                sendable |= set(as_list(st.get("Resource")))
    queues = {queue for _, _, _, queue in slots if queue}
    if sendable != queues:
        yield Finding("regions", "EdgeFunctionRole", f"may send to {sorted(sendable)}, not the regional stacks' "
                      f"queues {sorted(queues)}")
    behaviours = [config.get("DefaultCacheBehavior", {})] + list(config.get("CacheBehaviors") or [])
    functions = {n for n, r in resources.items() if r["Type"] == "AWS::CloudFront::Function"}
    if not several:
        extra = set(origins) - expected
        if extra:
            yield Finding("regions", "Distribution", f"origins {sorted(extra)} with one regional stack")
        for behaviour in behaviours:
            if behaviour.get("OriginRequestPolicyId"):
                yield Finding("regions", behaviour.get("PathPattern", "*"), "an origin request policy with one "
                              "regional stack (what reaches the origins changes)")
        return
    direct = origins.get(DIRECT_ORIGIN)
    if direct is None:
        yield Finding("regions", "Distribution", f"no origin {DIRECT_ORIGIN}: viewers of an offline region get an error")
    elif any(h.startswith("x-backfill-") for h in _custom_headers(direct)) or "CustomOriginConfig" not in direct:
        yield Finding("regions", DIRECT_ORIGIN, "not a custom origin without the hook's headers")
    uploads = scenario.values.get("UploadPrefix")
    thumbnails = scenario.values.get("ThumbnailPrefix")
    for behaviour in behaviours:
        where = behaviour.get("PathPattern", "*")
        # Uploads and their thumbnails are in the first regional stack's bucket (its upload API's
        # and its image processor's): no function may send them to another region.
        if uploads and where.lstrip("/") in (uploads + "*", f"{thumbnails}{uploads}*"):
            if any(ref_name(a.get("FunctionARN"))[0] in functions for a in _behaviour_associations(behaviour)):
                yield Finding("regions", where, "the viewer-request function sends uploads or their thumbnails to "
                              "the viewer's region, whose bucket has none")
            continue
        associations = [a for a in _behaviour_associations(behaviour)
                        if ref_name(a.get("FunctionARN"))[0] in functions and a.get("EventType") == "viewer-request"]
        if not associations:
            yield Finding("regions", where, "no viewer-request function: every viewer is served by the first region")
        behaviour_kind, headers = _policy_headers(resources, behaviour.get("OriginRequestPolicyId"))
        if behaviour_kind not in ("whitelist", "allViewerAndWhitelistCloudFront", "allExcept") or VIEWER_COUNTRY not in headers:
            yield Finding("regions", where, "the viewer's country does not reach the function (CloudFront-Viewer-Country "
                          "in no origin request policy)")
        if behaviour_kind in ("allViewer", "allViewerAndWhitelistCloudFront"):
            yield Finding("regions", where, "forwards the viewer's Host to the buckets, which answer 403 to it")
    for name in functions:
        _, variables = _function_code_sub(scenario.resources[name])
        told = scenario.eval(variables.get("RegionalOrigins", ""))
        wanted = ",".join(next((f"{n}:{r}" for n, _, r, _ in slots if n == slot), "") for slot in REGION_SLOTS)
        if told != wanted:
            yield Finding("regions", name, f"told of the regions {told!r}, not {wanted!r}")


def rule_thumbnail_parameters(templates):
    """ThumbnailPrefix as a path pattern and a JavaScript string can hold it; ThumbnailFormats as
    the function reads it."""
    for label, template in templates.items():
        params = template.get("Parameters", {})
        if "ThumbnailFormats" not in params:
            continue
        if params.get("ThumbnailPrefix") is None:
            yield Finding("thumbnail-format", f"{label}/ThumbnailPrefix", "no ThumbnailPrefix beside ThumbnailFormats")
            continue
        # Both go into a cache behaviour's path pattern (and the thumbnail prefix into the code).
        for name in ("ThumbnailPrefix", "UploadPrefix"):
            spec, where = params.get(name), f"{label}/{name}"
            for value in THUMBNAIL_PREFIXES_OK if spec else []:
                if not accepts(spec, value):
                    yield Finding("thumbnail-format", where, f"refuses {value!r}")
            for value in THUMBNAIL_PREFIXES_REFUSED if spec else []:
                if accepts(spec, value):
                    yield Finding("thumbnail-format", where, f"accepts {value!r}, which a path pattern or the function's code cannot hold")
        formats = params["ThumbnailFormats"]
        values = [str(v) for v in formats.get("AllowedValues", [])]
        if "none" not in values or str(formats.get("Default")) != "none":
            yield Finding("thumbnail-format", f"{label}/ThumbnailFormats", "none is not allowed, or not the default")
        for value in values:
            tokens = value.split(",")
            if value != "none" and (not set(tokens) <= THUMBNAIL_FORMATS or len(set(tokens)) != len(tokens)):
                yield Finding("thumbnail-format", f"{label}/ThumbnailFormats", f"{value!r}: the function reads none, or avif and webp")


# ---------------------------------------------------------------- driver

TEMPLATE_RULES = [rule_policies, rule_event_sources, rule_queues, rule_edge, rule_distribution, rule_buckets, rule_subscriptions,
                  rule_alarms, rule_tables, rule_part_queue, rule_lease_table, rule_freshness, rule_invalidation_queue,
                  rule_notification_case, rule_notification_removals, rule_data_kept, rule_secrets_in_environment,
                  rule_origin_secret_header]


# ---------------------------------------------------------------- the template SAM produces


@functools.lru_cache(maxsize=8)
def _sam_transform(template_json):
    """What SAM's translator (the one sam deploy runs) makes of a template: local CodeUri and
    Location replaced by placeholders, as `sam validate` does."""
    import logging
    import os

    os.environ.setdefault("AWS_DEFAULT_REGION", EDGE_REGION)
    logging.getLogger("samtranslator").setLevel(logging.ERROR)
    from samtranslator.translator.transform import transform

    template = json.loads(template_json)
    for res in template.get("Resources", {}).values():
        props = res.get("Properties") or {}
        if res.get("Type") == "AWS::Serverless::Function" and isinstance(props.get("CodeUri"), str):
            props["CodeUri"] = "s3://placeholder/code.zip"
        if res.get("Type") == "AWS::Serverless::Application" and isinstance(props.get("Location"), str):
            props["Location"] = "https://placeholder.s3.amazonaws.com/" + Path(props["Location"]).name

    class NoManagedPolicies:
        def load(self):
            return {}

    return transform(template, {}, NoManagedPolicies())


def rule_transformed(templates):
    """Rules on what SAM expands: function URLs and their permissions, the edge function kept."""
    for label, template in templates.items():
        if "Transform" not in template:
            continue
        transformed = _sam_transform(json.dumps(template, sort_keys=True))
        # In us-east-1 only: what these rules look at does not depend on the region.
        for scenario in scenarios(transformed, f"{label} (SAM's output)"):
            if scenario.region != EDGE_REGION:
                continue
            resources = scenario.evaluated_resources()
            for f in rule_function_urls(resources):
                yield Finding(f.rule, f.where, f.message, scenario.name)
            for name in edge_functions(resources):
                if name in resources and resources[name].get("DeletionPolicy") != "Retain":
                    yield Finding("edge-function", name, "SAM's function or version is not kept (DeletionPolicy Retain)",
                                  scenario.name)


def check_template(template, label, root, recorded):
    findings = []
    crates = set()
    scenario_list = list(scenarios(template, label))
    findings.extend(rule_edge_region(template, label, scenario_list))
    for scenario in scenario_list:
        resources = scenario.evaluated_resources()
        for rule in TEMPLATE_RULES:
            findings.extend(Finding(f.rule, f.where, f.message, scenario.name) for f in rule(resources))
        regions = scenario._ref("EdgeRegions") if "EdgeRegions" in template.get("Parameters", {}) else []
        bucket_regions = [r for _, _, r, _ in regional_slots(scenario)] if "BucketRegion" in scenario.values else []
        findings.extend(
            Finding(f.rule, f.where, f.message, scenario.name)
            for f in rule_edge_metrics(resources, regions, root, bucket_regions)
        )
        findings.extend(
            Finding(f.rule, f.where, f.message, scenario.name) for f in rule_role_minimum(resources, root, recorded)
        )
        findings.extend(
            Finding(f.rule, f.where, f.message, scenario.name) for f in rule_revalidation_schedule(resources, root)
        )
        findings.extend(
            Finding(f.rule, f.where, f.message, scenario.name) for f in rule_thumbnail_format(scenario, root)
        )
        findings.extend(
            Finding(f.rule, f.where, f.message, scenario.name) for f in rule_viewer_request_function(scenario, root)
        )
        findings.extend(Finding(f.rule, f.where, f.message, scenario.name) for f in rule_regions(scenario))
        findings.extend(Finding(f.rule, f.where, f.message, scenario.name) for f in rule_scenario_values(scenario))
        findings.extend(Finding(f.rule, f.where, f.message, scenario.name) for f in rule_upload_prefix(scenario))
        findings.extend(Finding(f.rule, f.where, f.message, scenario.name) for f in rule_upload_privacy(scenario))
        findings.extend(Finding(f.rule, f.where, f.message, scenario.name) for f in rule_public_url_concurrency(scenario))
        crates |= set(function_crates(resources, root).values())
    return findings, crates


def check(templates, root=ROOT, recorded=None):
    """Findings of every rule over these templates (dicts keyed by label); unique, in order."""
    if recorded is None:
        recorded = json.loads((root / SDK_CALLS_FILE).read_text(encoding="utf-8"))
    findings = []
    crates = set()
    for label, template in templates.items():
        found, used = check_template(template, label, root, recorded)
        findings.extend(found)
        crates |= used
    findings.extend(rule_sdk_calls(root, recorded, crates))
    findings.extend(rule_edge_parameters(templates, root))
    findings.extend(rule_freshness_parameters(templates, root))
    findings.extend(rule_batch_window_parameters(templates))
    findings.extend(rule_parameters(templates, root))
    findings.extend(rule_thumbnail_parameters(templates))
    findings.extend(rule_transformed(templates))
    unique = {}
    for f in findings:
        unique.setdefault((f.rule, f.where, f.message), f)
    return list(unique.values())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("templates", nargs="*", default=DEFAULT_TEMPLATES)
    parser.add_argument("--root", type=Path, default=ROOT)
    parser.add_argument("--derive-sdk-calls", action="store_true")
    args = parser.parse_args()
    root = args.root.resolve()
    if args.derive_sdk_calls:
        derived = {}
        for crate in sorted(p.parent.relative_to(root).as_posix() for p in root.glob("functions/*/Cargo.toml")):
            calls, unknown, versioned = derive_sdk_calls(root, root / crate)
            derived[crate] = {"calls": calls}
            if versioned:
                derived[crate]["extra_actions"] = [VERSIONED_ACTION]
            if unknown:
                derived[crate]["unknown"] = unknown
            presigned = sorted(presigned_only(root, root / crate))
            if presigned:
                derived[crate]["only_presigned"] = presigned
            binaries = sorted(crate_binaries(root / crate))
            if len(binaries) > 1:
                derived[crate]["binaries_can_reach"] = {}
                for binary in binaries:
                    reachable, reads_version = derive_binary_calls(root, root / crate, binary)
                    derived[crate]["binaries_can_reach"][binary] = {"calls": reachable}
                    if reads_version:
                        derived[crate]["binaries_can_reach"][binary]["extra_actions"] = [VERSIONED_ACTION]
        print(json.dumps(derived, indent=2))
        return 0
    templates = {name: load_template(root / name) for name in args.templates}
    findings = check(templates, root)
    for f in findings:
        print(f"FINDING {f}")
    print(f"policy-check: {len(templates)} template(s), {len(findings)} finding(s)")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
