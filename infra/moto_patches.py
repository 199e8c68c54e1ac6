"""The emulator's replacements for moto internals that are slow where
Stockroom needs them fast. `install()` applies them; `missing_targets()`
names any that this moto no longer has (infra/emulator.py checks it, and the
pinned version, before it starts, so an upgrade cannot leave a patch inert).

* A cancelled DynamoDB transaction undoes only the items it touched. moto
  deep-copies every table in a transaction before running it, which costs
  time in proportion to the table's size: a table with a few thousand
  ledger entries makes each sale take hundreds of milliseconds. The
  replacement below checks every condition first (DynamoDB forbids two
  actions on one item, so the checks are independent), then applies the
  writes with an item-level undo log. Error codes, cancellation reasons and
  ALL_OLD images are moto's own.
* Update expressions are checked in linear time, parsed once per text, and
  copied with pickle rather than deepcopy.
  moto counts an expression's SET/ADD/REMOVE clauses, and looks for two
  actions on one path, at every level of its nested syntax tree, re-walking
  the subtree each time (quadratic in the number of actions: most of the
  emulator's time on a feed import), and tokenizes the same few expression
  texts on every request. Checking at the root alone is the same check
  (every level is a part of the root), and a parsed expression is only read
  until a validator deep-copies it.
* SQS counts a queue's messages with one clock reading, not one per
  message. moto reads the clock (through datetime) for every message each
  time it counts, and it counts all of a queue's messages on every
  SendMessage (the queue's attributes are computed in full to read one
  flag): a send to a queue holding 1,800 messages took 39 ms.
"""

import copy
import functools
import pickle

from moto.core.utils import unix_time_millis
from moto.dynamodb.comparisons import get_filter_expression
from moto.dynamodb.exceptions import (
    ConditionalCheckFailed,
    MockValidationException,
    MultipleTransactionsException,
    TooManyTransactionsException,
    TransactionCanceledException,
    TransactWriteSingleOpException,
)
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table
from moto.dynamodb.parsing import expressions as update_expressions
from moto.dynamodb.parsing import validators
from moto.dynamodb.parsing.ast_nodes import DepthFirstTraverser, Node, UpdateExpression
from moto.dynamodb.parsing.validators import ActionCountValidator, OverlappingPathsValidator
from moto.sqs.models import Queue

# Every moto attribute that install() replaces, or that a replacement wraps
# or calls. Were moto to rename one, assigning the replacement would still
# succeed, quietly doing nothing (or failing only on the request that needs
# it), so each is checked before the emulator starts.
TARGETS = (
    (DynamoDBBackend, "transact_write_items"),
    (DynamoDBBackend, "get_table"),
    (DynamoDBBackend, "get_item"),
    (DynamoDBBackend, "get_keys_value"),
    (DynamoDBBackend, "put_item"),
    (DynamoDBBackend, "delete_item"),
    (DynamoDBBackend, "update_item"),
    (Table, "get_item"),
    (Table, "has_range_key"),
    (ActionCountValidator, "traverse"),
    (ActionCountValidator, "verify_action_counts"),
    (OverlappingPathsValidator, "traverse"),
    (OverlappingPathsValidator, "check_for_overlapping_paths"),
    (update_expressions.UpdateExpressionParser, "make"),
    (DepthFirstTraverser, "_processing_map"),
    (DepthFirstTraverser, "nodes_to_be_processed"),
    (validators, "deepcopy"),
    (Queue, "messages"),
    (Queue, "approximate_number_of_messages_delayed"),
    (Queue, "approximate_number_of_messages_not_visible"),
    (Queue, "approximate_number_of_messages"),
)


def qualified(owner, attribute):
    if isinstance(owner, type):
        return f"{owner.__module__}.{owner.__qualname__}.{attribute}"
    return f"{owner.__name__}.{attribute}"


def missing_targets():
    """The dotted names of the targets this moto lacks; empty when all are there."""
    missing = [qualified(owner, name) for owner, name in TARGETS if not hasattr(owner, name)]
    # The parse cache calls the original through `__func__`: it must still be a classmethod.
    parser = update_expressions.UpdateExpressionParser
    if "make" in vars(parser) and not isinstance(vars(parser)["make"], classmethod):
        missing.append(qualified(parser, "make") + " (as a classmethod)")
    return missing


def transact_write_items(self, transact_items):
    if len(transact_items) > 100:
        raise TooManyTransactionsException()
    targets = set()
    errors = []
    ops = []
    # Phase 1: every condition, against the state before the transaction.
    for item in transact_items:
        if len(item) > 1:
            raise TransactWriteSingleOpException
        op_type, op = next(iter(item.items()))
        original_item = None
        try:
            if op_type not in {"ConditionCheck", "Put", "Delete", "Update"}:
                raise ValueError("Unsupported transaction operation")
            table = self.get_table(op["TableName"])
            if op_type == "Put":
                attrs = op["Item"]
                key = {table.hash_key_attr: attrs[table.hash_key_attr]}
                if table.range_key_attr is not None:
                    key[table.range_key_attr] = attrs[table.range_key_attr]
            else:
                key = op["Key"]
            target = (op["TableName"], str(dict(sorted(key.items()))))
            if target in targets:
                raise MultipleTransactionsException()
            targets.add(target)
            current = self.get_item(op["TableName"], key)
            condition = op.get("ConditionExpression")
            if condition is not None:
                check = get_filter_expression(
                    condition,
                    op.get("ExpressionAttributeNames"),
                    op.get("ExpressionAttributeValues"),
                )
                if not check.expr(current):
                    if op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current:
                        original_item = current.to_json()["Attributes"]
                    raise ConditionalCheckFailed(item=original_item)
            ops.append((op_type, op, table, key))
            errors.append((None, None, None))
        except (MultipleTransactionsException, MockValidationException):
            raise
        except ConditionalCheckFailed as e:
            errors.append(("ConditionalCheckFailed", str(e.message), original_item))
        except Exception as e:  # noqa: BLE001 - reported as moto reports it
            errors.append((type(e).__name__, str(e), original_item))
    if any(code is not None for code, _, _ in errors):
        raise TransactionCanceledException(errors)
    # Phase 2: the writes, with an undo log of the touched items only.
    undo = []
    try:
        for op_type, op, table, key in ops:
            hash_key, range_key = self.get_keys_value(table, key)
            before = table.get_item(hash_key, range_key)
            shard = table.stream_shard
            undo.append((table, hash_key, range_key, copy.deepcopy(before),
                         len(shard.items) if shard is not None else None))
            names = op.get("ExpressionAttributeNames")
            values = op.get("ExpressionAttributeValues")
            if op_type == "Put":
                self.put_item(op["TableName"], op["Item"], expression_attribute_names=names,
                              expression_attribute_values=values)
            elif op_type == "Delete":
                self.delete_item(op["TableName"], key, expression_attribute_names=names,
                                 expression_attribute_values=values)
            elif op_type == "Update":
                self.update_item(op["TableName"], key, update_expression=op["UpdateExpression"],
                                 expression_attribute_names=names,
                                 expression_attribute_values=values)
    except Exception:
        for table, hash_key, range_key, before, stream_len in reversed(undo):
            if table.has_range_key:
                bucket = table.items[hash_key]
                if before is None:
                    bucket.pop(range_key, None)
                else:
                    bucket[range_key] = before
            elif before is None:
                table.items.pop(hash_key, None)
            else:
                table.items[hash_key] = before
            if stream_len is not None:
                del table.stream_shard.items[stream_len:]
        raise


def check_at_the_root(validator, check):
    every_level = validator.traverse

    def traverse(self, node):
        if isinstance(node, UpdateExpression):
            return check(self, node)
        return every_level(self, node)

    validator.traverse = traverse


def parse_once(parser):
    parse = parser.make.__func__

    @functools.lru_cache(maxsize=4096)
    def make(expression_str):
        return parse(parser, expression_str)

    parser.make = staticmethod(make)


# Every processor rebuilds its (constant) node-type map at each node it
# visits; build it once per processor.
def map_once(cls):
    build = cls._processing_map
    key = "_stockroom_map_" + cls.__qualname__

    def processing_map(self):
        cached = self.__dict__.get(key)
        if cached is None:
            cached = self.__dict__[key] = build(self)
        return cached

    cls._processing_map = processing_map


def subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from subclasses(sub)


def node_types_once(self):
    cached = self.__dict__.get("_stockroom_types")
    if cached is None:
        cached = self.__dict__["_stockroom_types"] = tuple(self._processing_map().keys())
    return cached


# A validator deep-copies the parsed expression before working on it; a
# pickle round trip copies that plain object graph several times faster.
def copy_expression(value):
    if isinstance(value, Node):
        return pickle.loads(pickle.dumps(value, pickle.HIGHEST_PROTOCOL))
    return copy.deepcopy(value)


def visible_now(queue):
    now = unix_time_millis()
    return [m for m in queue._messages if now > m.visible_at and not now < m.delayed_until]


def delayed_now(queue):
    now = unix_time_millis()
    return sum(1 for m in queue._messages if now < m.delayed_until)


def not_visible_now(queue):
    now = unix_time_millis()
    return sum(1 for m in queue._messages if not now > m.visible_at)


def install():
    """Applies every replacement. Call it once, after moto's modules are imported:
    the node-map cache reaches only the processors defined by then."""
    DynamoDBBackend.transact_write_items = transact_write_items
    check_at_the_root(ActionCountValidator, ActionCountValidator.verify_action_counts)
    check_at_the_root(OverlappingPathsValidator, OverlappingPathsValidator.check_for_overlapping_paths)
    parse_once(update_expressions.UpdateExpressionParser)
    for processor in [DepthFirstTraverser, *subclasses(DepthFirstTraverser)]:
        if "_processing_map" in vars(processor):
            map_once(processor)
    DepthFirstTraverser.nodes_to_be_processed = node_types_once
    validators.deepcopy = copy_expression
    Queue.messages = property(visible_now)
    Queue.approximate_number_of_messages_delayed = property(delayed_now)
    Queue.approximate_number_of_messages_not_visible = property(not_visible_now)
    Queue.approximate_number_of_messages = property(lambda queue: len(visible_now(queue)))
