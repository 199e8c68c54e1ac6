"""The sale webhook the way most teams would write it: Python 3 and boto3.

Same contract and the same DynamoDB work as `sale-webhook` for the generic
format, so the bench compares runtimes rather than designs: check the HMAC
signature, parse the order, then one TransactWriteItems with the order's
receipt (attribute_not_exists), a conditional decrement per line
(available >= qty) and a ledger entry per line; if a line is not covered,
take what the old image shows was there and try again.
"""

import datetime
import hashlib
import hmac
import json
import os

import boto3
from botocore.exceptions import ClientError

TABLE = os.environ["STOCK_TABLE"]
SECRET = os.environ["WEBHOOK_SECRET"].encode()
DEFAULT_LOCATION = os.environ.get("DEFAULT_LOCATION", "warehouse")
CHANNEL_LOCATIONS = dict(
    pair.split("=", 1)
    for pair in os.environ.get("CHANNEL_LOCATIONS", "").split(",")
    if "=" in pair
)

dynamodb = boto3.client("dynamodb")


def response(status, body):
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(body),
    }


def parse(raw):
    order = json.loads(raw)
    channel = order.get("channel", "web")
    location = order.get("location") or CHANNEL_LOCATIONS.get(channel, DEFAULT_LOCATION)
    lines = {}
    for line in order["lines"]:
        quantity = line["quantity"]
        if not isinstance(quantity, int) or quantity <= 0:
            raise ValueError("quantity must be a positive integer")
        lines[line["sku"]] = lines.get(line["sku"], 0) + quantity
    return channel, str(order["order_id"]), location, lines


def transaction(channel, order_id, location, lines, seen):
    now = datetime.datetime.now(datetime.timezone.utc).isoformat()
    reference = f"order:{channel}/{order_id}"
    results = []
    items = []
    for i, (sku, quantity) in enumerate(lines.items()):
        available = seen.get(sku)
        taken = quantity if available is None else max(0, min(quantity, available))
        results.append({"sku": sku, "location": location, "requested": quantity,
                        "taken": taken, "short": quantity - taken})
        key = {"pk": {"S": f"SKU#{sku}"}, "sk": {"S": f"LEVEL#{location}"}}
        if available is None:
            update = {"ConditionExpression": "available >= :q",
                      "UpdateExpression": "SET available = available - :q, updated_at = :now ADD version :one",
                      "ExpressionAttributeValues": {":q": {"N": str(quantity)}, ":now": {"S": now},
                                                    ":one": {"N": "1"}}}
        else:
            update = {"ConditionExpression": "available = :seen",
                      "UpdateExpression": "SET available = available - :q, updated_at = :now ADD version :one",
                      "ExpressionAttributeValues": {":q": {"N": str(taken)}, ":seen": {"N": str(available)},
                                                    ":now": {"S": now}, ":one": {"N": "1"}}}
        items.append({"Update": {"TableName": TABLE, "Key": key,
                                 "ReturnValuesOnConditionCheckFailure": "ALL_OLD", **update}})
        items.append({"Put": {"TableName": TABLE, "Item": {
            "pk": {"S": f"SKU#{sku}"}, "sk": {"S": f"LEDGER#{now}#{reference}#{i}"},
            "kind": {"S": "ledger"}, "delta": {"N": str(-taken)}, "reason": {"S": "sale"},
            "reference": {"S": reference}, "actor": {"S": f"channel:{channel}"},
            "requested": {"N": str(quantity)}, "short": {"N": str(quantity - taken)}, "at": {"S": now}}}})
    receipt = {"Put": {"TableName": TABLE, "ConditionExpression": "attribute_not_exists(pk)",
                       "ReturnValuesOnConditionCheckFailure": "ALL_OLD", "Item": {
                           "pk": {"S": f"RECEIPT#order#{channel}#{order_id}"}, "sk": {"S": "PART#0000"},
                           "kind": {"S": "receipt"}, "lines": {"S": json.dumps(results)},
                           "created_at": {"S": now}}}}
    return [receipt] + items, results


def handler(event, context):
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    raw = (event.get("body") or "").encode()
    expected = "sha256=" + hmac.new(SECRET, raw, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(headers.get("x-stockroom-signature", ""), expected):
        return response(401, {"error": "unauthorized"})
    try:
        channel, order_id, location, lines = parse(raw)
    except (ValueError, KeyError, TypeError) as e:
        return response(400, {"error": "bad_request", "message": str(e)})
    seen = {}
    for _ in range(12):
        items, results = transaction(channel, order_id, location, lines, seen)
        try:
            dynamodb.transact_write_items(TransactItems=items)
        except ClientError as e:
            reasons = e.response.get("CancellationReasons") or []
            if e.response["Error"]["Code"] != "TransactionCanceledException" or not reasons:
                return response(503, {"error": "busy"})
            if reasons[0].get("Code") == "ConditionalCheckFailed":
                stored = json.loads(reasons[0]["Item"]["lines"]["S"])
                return response(200, {"order": order_id, "status": "duplicate", "lines": stored})
            for (sku, _), reason in zip(lines.items(), reasons[1::2]):
                if reason.get("Code") == "ConditionalCheckFailed":
                    old = reason.get("Item", {}).get("available", {}).get("N")
                    seen[sku] = int(old) if old is not None else 0
            continue
        status = "oversold" if any(r["short"] for r in results) else "applied"
        return response(200, {"order": order_id, "status": status, "lines": results})
    return response(503, {"error": "busy"})
