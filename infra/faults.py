"""Faults that real AWS produces and moto never does, and the capacity every
request consumes.

Off until asked for. A test (or `make chaos`) switches faults on for the
resources whose names start with a prefix (its stack's name), so tests that
share one emulator keep their own weather:

    POST /_stockroom/faults  {"scope": "<name prefix>", "seed": 7,
        "transaction_conflict": 0.05, "conflict_window_ms": 100,
        "capacity": true, "write_units_per_second": 1000, "read_units_per_second": 3000,
        "server_error": 0.02, "lost_response": 0.02,
        "sqs_send_failure": 0.05, "sqs_redelivery": 0.05}
    GET  /_stockroom/faults?scope=<prefix>   the config and the faults injected, by kind
    DELETE /_stockroom/faults?scope=<prefix> faults off for that prefix
    GET  /_stockroom/units?table=<name>      read and write units consumed, by operation
    DELETE /_stockroom/units?table=<name>    start counting again

What each fault does, after DynamoDB's and SQS's documented behaviour:

* transaction_conflict: a TransactWriteItems, or a conditional PutItem,
  UpdateItem or DeleteItem, that touches an item a transaction wrote less
  than conflict_window_ms ago is refused at this rate: the transaction is
  cancelled with a `TransactionConflict` reason on that item, a single write
  fails with TransactionConflictException. Nothing is written.
* capacity: each partition key serves at most write_units_per_second write
  units and read_units_per_second read units in any second (a standard write
  is 1 unit per KB, a transactional one 2, a strongly consistent read 1 per
  4 KB, an eventually consistent one half that). Beyond it a request gets
  ProvisionedThroughputExceededException (a transaction is cancelled with a
  `ThrottlingError` reason) and nothing is written.
* server_error: DynamoDB and SQS requests fail at this rate with a 500
  (InternalServerError) before anything happens.
* lost_response: the request is carried out, then the connection is dropped
  before the response is sent, so the client retries what already happened.
* sqs_send_failure: SendMessage and SendMessageBatch fail with a 500 at this
  rate, nothing sent.
* sqs_redelivery: DeleteMessage answers success without deleting at this
  rate, so the message comes back when its visibility timeout ends, as SQS's
  at-least-once delivery allows.

Units are counted for every DynamoDB request, faults or not. Sizes are the
items' DynamoDB JSON, an upper bound of DynamoDB's own item size; a read of
a missing item costs the minimum, as DynamoDB charges it; a query is charged
for the items it returns (DynamoDB also charges for items a filter drops); a
cancelled transaction is not charged.
"""

import io
import json
import math
import random
import socket
import threading
import time
from collections import defaultdict, deque
from urllib.parse import parse_qs

ADMIN = "/_stockroom/"
RATES = (
    "transaction_conflict",
    "server_error",
    "lost_response",
    "sqs_send_failure",
    "sqs_redelivery",
)
DEFAULTS = {
    "scope": "",
    "seed": None,
    "conflict_window_ms": 100,
    "capacity": False,
    "write_units_per_second": 1000,
    "read_units_per_second": 3000,
    **{rate: 0.0 for rate in RATES},
}
WRITES = {"PutItem", "UpdateItem", "DeleteItem"}
DDB_ERROR = "com.amazonaws.dynamodb.v20120810#"


class ConfigError(ValueError):
    pass


def parse_config(raw):
    if not isinstance(raw, dict):
        raise ConfigError("the body must be a JSON object")
    unknown = set(raw) - set(DEFAULTS)
    if unknown:
        raise ConfigError(f"unknown settings: {', '.join(sorted(unknown))}")
    config = {**DEFAULTS, **raw}
    if not isinstance(config["scope"], str):
        raise ConfigError("scope must be a string (a prefix of resource names)")
    for rate in RATES:
        value = config[rate]
        if not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ConfigError(f"{rate} must be a rate from 0 to 1")
    for name in ("conflict_window_ms", "write_units_per_second", "read_units_per_second"):
        if not isinstance(config[name], (int, float)) or config[name] <= 0:
            raise ConfigError(f"{name} must be a positive number")
    return config


def item_size(item):
    return len(json.dumps(item, separators=(",", ":"))) if item else 0


def units(size, per):
    return max(1, math.ceil(size / per))


def table_of_queue(url):
    return url.rstrip("/").rsplit("/", 1)[-1]


class Scope:
    """One prefix's faults: its config, its random numbers, what it injected."""

    def __init__(self, config):
        self.config = config
        self.random = random.Random(config["seed"])
        self.injected = defaultdict(int)

    def roll(self, rate):
        chance = self.config[rate]
        if chance > 0 and self.random.random() < chance:
            self.injected[rate] += 1
            return True
        return False


class Faults:
    def __init__(self):
        self.lock = threading.Lock()
        self.scopes = {}
        # (table, pk) -> deque of (time, write units) / (time, read units), the last second.
        self.written = defaultdict(deque)
        self.read = defaultdict(deque)
        # (table, pk, sk) -> when a transaction last wrote it.
        self.transacted = {}
        # table -> {"read": units, "write": units, "operations": {op: {"count", "read", "write"}}}
        self.consumed = defaultdict(lambda: {"read": 0.0, "write": 0.0, "operations": {}})

    # -- admin -------------------------------------------------------------

    def admin(self, environ, start_response):
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO", "")[len(ADMIN):]
        query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        try:
            if path == "faults" and method == "POST":
                config = parse_config(json.loads(read_body(environ) or b"{}"))
                with self.lock:
                    self.scopes[config["scope"]] = Scope(config)
                return reply(start_response, 200, {"scope": config["scope"], "config": config})
            if path == "faults" and method == "GET":
                scope = self.scopes.get(query.get("scope", ""))
                if scope is None:
                    return reply(start_response, 404, {"message": "no faults for that scope"})
                return reply(start_response, 200, {"config": scope.config, "injected": dict(scope.injected)})
            if path == "faults" and method == "DELETE":
                with self.lock:
                    self.scopes.pop(query.get("scope", ""), None)
                return reply(start_response, 200, {})
            if path == "units" and method == "GET":
                return reply(start_response, 200, self.consumed.get(query.get("table", ""), DEFAULT_UNITS))
            if path == "units" and method == "DELETE":
                self.consumed.pop(query.get("table", ""), None)
                return reply(start_response, 200, {})
        except (ConfigError, json.JSONDecodeError) as e:
            return reply(start_response, 400, {"message": str(e)})
        return reply(start_response, 404, {"message": f"no such admin route: {method} {path}"})

    # -- requests ----------------------------------------------------------

    def scope_for(self, names):
        """The longest configured prefix matching any resource the request touches."""
        best = None
        for prefix, scope in self.scopes.items():
            if any(n.startswith(prefix) for n in names) and (best is None or len(prefix) > len(best[0])):
                best = (prefix, scope)
        return best[1] if best else None

    def wrap(self, app):
        def handle(environ, start_response):
            if environ.get("PATH_INFO", "").startswith(ADMIN):
                return self.admin(environ, start_response)
            target = environ.get("HTTP_X_AMZ_TARGET", "")
            if "." not in target:
                return app(environ, start_response)
            service, op = target.split(".", 1)
            body = read_body(environ)
            environ["wsgi.input"] = io.BytesIO(body)
            try:
                request = json.loads(body or b"{}")
            except json.JSONDecodeError:
                return app(environ, start_response)
            dynamodb = service.startswith("DynamoDB_")
            sqs = service == "AmazonSQS"
            names = resource_names(op, request) if (dynamodb or sqs) else []
            scope = self.scope_for(names)
            if scope is not None:
                refused = self.refuse(scope, op, request, dynamodb, sqs)
                if refused is not None:
                    return reply(start_response, *refused)
                if sqs and op == "DeleteMessage" and scope.roll("sqs_redelivery"):
                    return reply(start_response, 200, {})
            status, headers, out = call(app, environ)
            if dynamodb:
                self.account(op, request, status, out)
            if scope is not None and status < 300 and scope.roll("lost_response"):
                drop_connection(environ)
            start_response(status_line(status), headers)
            return [out]

        return handle

    def refuse(self, scope, op, request, dynamodb, sqs):
        """A fault that stops the request before it runs: (status, body) or None."""
        if (dynamodb or sqs) and scope.roll("server_error"):
            kind = DDB_ERROR + "InternalServerError" if dynamodb else "InternalError"
            return 500, {"__type": kind, "message": "injected: internal server error"}
        if sqs and op in ("SendMessage", "SendMessageBatch") and scope.roll("sqs_send_failure"):
            return 500, {"__type": "InternalError", "message": "injected: the send failed"}
        if not dynamodb:
            return None
        items = touched(op, request)
        if scope.config["capacity"]:
            throttled = self.over_capacity(scope, op, request, items)
            if throttled is not None:
                scope.injected["throttled"] += 1
                return throttled
        conditional = op in WRITES and "ConditionExpression" in request
        if op == "TransactWriteItems" or conditional:
            window = scope.config["conflict_window_ms"] / 1000
            now = time.monotonic()
            for index, (table, key, _) in enumerate(items):
                at = self.transacted.get((table, *key))
                if at is not None and now - at < window and scope.roll("transaction_conflict"):
                    if op == "TransactWriteItems":
                        return cancelled(len(items), index, "TransactionConflict", "Transaction is ongoing for the item")
                    return 400, {"__type": DDB_ERROR + "TransactionConflictException",
                                 "message": "injected: transaction is ongoing for the item"}
        return None

    def over_capacity(self, scope, op, request, items):
        now = time.monotonic()
        if op in WRITES or op == "TransactWriteItems":
            per_item = 2 if op == "TransactWriteItems" else 1
            limit = scope.config["write_units_per_second"]
            for index, (table, key, size) in enumerate(items):
                window = trimmed(self.written[(table, key[0])], now)
                if sum(u for _, u in window) + per_item * units(size, 1024) > limit:
                    if op == "TransactWriteItems":
                        return cancelled(len(items), index, "ThrottlingError", "Throughput exceeds the current capacity")
                    return throttled()
            return None
        if op in ("GetItem", "BatchGetItem", "Query"):
            limit = scope.config["read_units_per_second"]
            for table, key, _ in items:
                if sum(u for _, u in trimmed(self.read[(table, key[0])], now)) >= limit:
                    return throttled()
        return None

    def account(self, op, request, status, out):
        """Counts the units a request consumed, and remembers what transactions wrote."""
        if status >= 300:
            return
        now = time.monotonic()
        try:
            response = json.loads(out or b"{}")
        except json.JSONDecodeError:
            return
        charges = []  # (table, pk, kind, units)
        if op in WRITES or op == "TransactWriteItems":
            per_item = 2 if op == "TransactWriteItems" else 1
            for table, key, size in touched(op, request):
                charges.append((table, key[0], "write", per_item * units(size, 1024)))
                if op == "TransactWriteItems":
                    self.transacted[(table, *key)] = now
        elif op == "GetItem":
            half = 1 if request.get("ConsistentRead") else 0.5
            key = request.get("Key", {})
            charges.append((request.get("TableName", ""), value(key.get("pk")), "read",
                            half * units(item_size(response.get("Item")), 4096)))
        elif op == "BatchGetItem":
            # Every key read is charged, found or not (a missing item costs the minimum).
            for table, spec in request.get("RequestItems", {}).items():
                half = 1 if spec.get("ConsistentRead") else 0.5
                found = {key_of(i): i for i in response.get("Responses", {}).get(table, [])}
                for key in spec.get("Keys", []):
                    item = found.get(key_of(key))
                    charges.append((table, value(key.get("pk")), "read", half * units(item_size(item), 4096)))
        elif op == "Query":
            half = 1 if request.get("ConsistentRead") else 0.5
            found = response.get("Items", [])
            pk = value(found[0].get("pk")) if found else ""
            charges.append((request.get("TableName", ""), pk, "read",
                            half * units(sum(item_size(i) for i in found), 4096)))
        for table, pk, kind, amount in charges:
            totals = self.consumed[table]
            totals[kind] += amount
            per_op = totals["operations"].setdefault(op, {"count": 0, "read": 0.0, "write": 0.0})
            per_op[kind] += amount
            (self.written if kind == "write" else self.read)[(table, pk)].append((now, amount))
        for table in {c[0] for c in charges}:
            self.consumed[table]["operations"][op]["count"] += 1
        if len(self.transacted) > 100_000:
            horizon = now - 10
            self.transacted = {k: t for k, t in self.transacted.items() if t > horizon}


DEFAULT_UNITS = {"read": 0.0, "write": 0.0, "operations": {}}


def trimmed(window, now):
    while window and now - window[0][0] >= 1.0:
        window.popleft()
    return window


def value(attribute):
    """A key attribute's value, as text."""
    if not attribute:
        return ""
    return str(next(iter(attribute.values())))


def key_of(item_or_key):
    return (value(item_or_key.get("pk")), value(item_or_key.get("sk")))


def touched(op, request):
    """The items a DynamoDB request writes or reads by key: (table, (pk, sk), size)."""
    if op == "TransactWriteItems":
        out = []
        for action in request.get("TransactItems", []):
            for kind, body in action.items():
                item = body.get("Item") or body.get("Key") or {}
                size = item_size(item) + item_size(body.get("ExpressionAttributeValues"))
                out.append((body.get("TableName", ""), key_of(item), size))
        return out
    if op in WRITES:
        item = request.get("Item") or request.get("Key") or {}
        size = item_size(item) + item_size(request.get("ExpressionAttributeValues"))
        return [(request.get("TableName", ""), key_of(item), size)]
    if op == "GetItem":
        return [(request.get("TableName", ""), key_of(request.get("Key", {})), 0)]
    if op == "BatchGetItem":
        return [(t, key_of(k), 0) for t, spec in request.get("RequestItems", {}).items() for k in spec.get("Keys", [])]
    if op == "Query":
        values = request.get("ExpressionAttributeValues", {})
        return [(request.get("TableName", ""), (value(values.get(":pk")), ""), 0)]
    return []


def resource_names(op, request):
    names = []
    if "TableName" in request:
        names.append(request["TableName"])
    for action in request.get("TransactItems", []):
        names.extend(body.get("TableName", "") for body in action.values())
    names.extend(request.get("RequestItems", {}).keys())
    if "QueueUrl" in request:
        names.append(table_of_queue(request["QueueUrl"]))
    if "StreamArn" in request:
        names.append(request["StreamArn"].split("table/", 1)[-1])
    return names


def cancelled(count, index, code, message):
    reasons = [{"Code": "None"} for _ in range(count)]
    reasons[index] = {"Code": code, "Message": message}
    codes = ", ".join(r["Code"] for r in reasons)
    return 400, {
        "__type": DDB_ERROR + "TransactionCanceledException",
        "Message": f"Transaction cancelled, please refer cancellation reasons for specific reasons [{codes}]",
        "CancellationReasons": reasons,
    }


def throttled():
    return 400, {
        "__type": DDB_ERROR + "ProvisionedThroughputExceededException",
        "message": "injected: the request rate for this partition key is too high",
    }


def read_body(environ):
    length = int(environ.get("CONTENT_LENGTH") or 0)
    return environ["wsgi.input"].read(length) if length else b""


def status_line(status):
    return f"{status} {'OK' if status < 300 else 'Error'}"


def reply(start_response, status, body):
    data = json.dumps(body).encode()
    start_response(status_line(status), [
        ("Content-Type", "application/x-amz-json-1.0"),
        ("Content-Length", str(len(data))),
    ])
    return [data]


def call(app, environ):
    """Runs the wrapped app, returning its status, headers and whole body."""
    captured = {}

    def start(status, headers, exc_info=None):
        captured["status"] = int(status.split(" ", 1)[0])
        captured["headers"] = headers
        return lambda chunk: None

    out = b"".join(app(environ, start))
    return captured["status"], captured["headers"], out


def drop_connection(environ):
    """Closes the client's connection before any of the response is sent."""
    conn = environ.get("werkzeug.socket")
    if conn is not None:
        try:
            conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
