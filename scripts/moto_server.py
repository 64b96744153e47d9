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

Arguments are moto_server's own.
"""
import functools
import sys
import threading

from moto.dynamodb.models import DynamoDBBackend
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

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
