#!/usr/bin/env python3
"""The moto server of the local stack, with DynamoDB's writes made atomic.

moto's server is threaded and its DynamoDB backend evaluates a condition and writes the item
without a lock, so two conditional writes of one item sent at the same instant can both pass
(measured: 2 of 20 concurrent `attribute_not_exists` UpdateItems of one key succeeded). DynamoDB
checks each conditional write against the item's latest state: "a conditional write succeeds
only if the item attributes meet one or more expected conditions", atomically
(https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/WorkingWithItems.html#WorkingWithItems.ConditionalUpdate).
One lock around every DynamoDB write and transaction gives the stand-in that rule; reads, S3 and
SQS (whose long polls must not wait on each other) are untouched.

CloudWatch: the Rust SDK speaks only the Smithy RPC v2 CBOR protocol to it (`POST
/service/GraniteServiceVersion20100801/operation/<Operation>`, `smithy-protocol: rpc-v2-cbor`),
which moto does not serve ("no current (or planned) support in Moto for the RPC v2 CBOR
protocol", getmoto/moto#9195); moto serves CloudWatch's JSON protocol. Such a request is
translated: its CBOR body (gzip-decoded first: the SDK compresses large PutMetricData bodies)
decoded by botocore's CBOR parser into the operation's JSON request, and moto's JSON answer
encoded back as CBOR along the operation's output shape in botocore's service model (timestamps
as CBOR tag 1, as the protocol has them); errors keep their `__type` and message.

Arguments are moto_server's own.
"""
import datetime
import functools
import gzip
import io
import json
import sys
import threading

import botocore.parsers
import botocore.serialize
import botocore.session
from moto.dynamodb.models import DynamoDBBackend
from moto.moto_server.werkzeug_app import DomainDispatcherApplication
from moto.server import main

_WRITES = threading.RLock()


def _atomic(method):
    @functools.wraps(method)
    def locked(*args, **kwargs):
        with _WRITES:
            return method(*args, **kwargs)

    return locked


for _name in ("put_item", "update_item", "delete_item", "batch_write_item",
              "transact_write_items", "execute_transaction"):
    setattr(DynamoDBBackend, _name, _atomic(getattr(DynamoDBBackend, _name)))

_CBOR_PREFIX = "/service/GraniteServiceVersion20100801/operation/"
_CLOUDWATCH = None


def _cloudwatch_model():
    global _CLOUDWATCH
    if _CLOUDWATCH is None:
        _CLOUDWATCH = botocore.session.get_session().get_service_model("cloudwatch")
    return _CLOUDWATCH


def _jsonable(value):
    """A decoded CBOR value as CloudWatch's JSON protocol writes it (timestamps: epoch seconds)."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime.datetime):
        return value.timestamp()
    return value


def _cbor_map(fields):
    """A CBOR map of text strings (an error body)."""
    serializer = botocore.serialize.SERIALIZERS["smithy-rpc-v2-cbor"]()
    out = bytearray(serializer._get_initial_byte(serializer.MAP_MAJOR_TYPE, len(fields)))
    for key, value in fields.items():
        serializer._serialize_type_string(out, key, None, None)
        serializer._serialize_type_string(out, str(value), None, None)
    return bytes(out)


def _cloudwatch_cbor(app, environ, start_response):
    operation = environ["PATH_INFO"][len(_CBOR_PREFIX):]
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    if environ.get("HTTP_CONTENT_ENCODING", "").lower() == "gzip":
        body = gzip.decompress(body)
    parser = botocore.parsers.RpcV2CBORParser()
    params = parser.parse_data_item(parser.get_peekable_stream_from_bytes(body)) if body else {}
    request = json.dumps(_jsonable(params)).encode()
    inner = dict(environ)
    inner.pop("HTTP_CONTENT_ENCODING", None)
    inner.pop("HTTP_SMITHY_PROTOCOL", None)
    inner.update({
        "PATH_INFO": "/",
        "CONTENT_TYPE": "application/x-amz-json-1.0",
        "CONTENT_LENGTH": str(len(request)),
        "HTTP_X_AMZ_TARGET": f"GraniteServiceVersion20100801.{operation}",
        "wsgi.input": io.BytesIO(request),
    })
    answered = {}

    def keep(status, headers, exc_info=None):
        answered["status"], answered["headers"] = status, headers
        return lambda _data: None

    answer = b"".join(app(inner, keep))
    status = answered["status"]
    decoded = json.loads(answer) if answer.strip() else {}
    if int(status.split()[0]) >= 400:
        fields = {"__type": decoded.get("__type", "InternalFailure")}
        if "message" in decoded or "Message" in decoded:
            fields["message"] = decoded.get("message", decoded.get("Message"))
        out = _cbor_map(fields)
    else:
        shape = _cloudwatch_model().operation_model(operation).output_shape
        out = bytearray()
        if shape is not None:
            serializer = botocore.serialize.SERIALIZERS["smithy-rpc-v2-cbor"]()
            serializer._serialize_data_item(out, decoded, shape)
        out = bytes(out)
    headers = [(k, v) for k, v in answered["headers"] if k.lower() not in ("content-type", "content-length")]
    headers += [("Content-Type", "application/cbor"), ("smithy-protocol", "rpc-v2-cbor"), ("Content-Length", str(len(out)))]
    start_response(status, headers)
    return [out]


_dispatch = DomainDispatcherApplication.__call__


def _call(self, environ, start_response):
    if environ.get("PATH_INFO", "").startswith(_CBOR_PREFIX):
        return _cloudwatch_cbor(lambda e, s: _dispatch(self, e, s), environ, start_response)
    return _dispatch(self, environ, start_response)


DomainDispatcherApplication.__call__ = _call

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
