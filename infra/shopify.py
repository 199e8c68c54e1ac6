"""A local stand-in for Shopify's Admin GraphQL API, for many shops at once.

    .venv/bin/python infra/shopify.py --port 4568 [--exit-with-stdin]

`POST /{shop}/admin/api/{version}/graphql.json` is executed by graphql-core
against an SDL subset of Shopify's Admin schema (below), so a query Shopify
would refuse (unknown field, wrong argument type, missing argument) is refused
here too. `/_standin/shops/{shop}/...` is the stand-in's own surface (not
Shopify's) for the demo and the tests: shops, items, merchant edits, orders,
levels, history, the webhook outbox, the call log and injected faults.

Where each rule comes from (shopify.dev, read for API version 2026-04/2026-10):
* inventorySetQuantities, its input, payload and user error codes; compare and
  swap with `changeFromQuantity` (must be given; an explicit null skips the
  check) and `CHANGE_FROM_QUANTITY_STALE`:
  https://shopify.dev/docs/api/admin-graphql/latest/mutations/inventorySetQuantities
  https://shopify.dev/docs/api/admin-graphql/2026-07/input-objects/InventoryQuantityInput
  https://shopify.dev/docs/api/admin-graphql/latest/enums/InventorySetQuantitiesUserErrorCode
  https://shopify.dev/changelog/compare-and-swap-for-inventory-mutations-with-change-from-quantity
* `@idempotent(key:)`, mandatory on inventory mutations from 2026-04 ("doesn't
  show up as mandatory at the schema level ... an error at runtime"); same key
  with other parameters -> IDEMPOTENCY_KEY_PARAMETER_MISMATCH (a user error):
  https://shopify.dev/docs/api/usage/idempotent-requests
  https://shopify.dev/docs/api/usage/implementing-idempotency
  https://shopify.dev/changelog/posts/making-idempotency-mandatory-for-inventory-adjustments-and-refund-mutations
* Input arrays hold at most 250 items: https://shopify.dev/docs/api/usage/limits
* Cost and the leaky bucket (per app and store; scalars and enums 0, objects 1,
  connections 2 + `first` x the node's cost, mutations 10; the requested cost
  is taken up front and the difference to the actual cost refunded; a single
  query may cost at most 1000; standard plan restores 100 points/s):
  https://shopify.dev/docs/apps/build/apis/graphql-admin/rate-limits
  https://shopify.dev/docs/api/usage/limits#the-leaky-bucket-algorithm
* Webhook headers and HMAC (base64 HMAC-SHA256 of the raw body):
  https://shopify.dev/docs/apps/build/webhooks/verify-deliveries
  https://shopify.dev/docs/apps/build/webhooks/delivery-structure#headers
  The `inventory_levels/update` body has the fields Shopify's webhook reference
  lists (https://shopify.dev/docs/api/webhooks, topic inventory_levels/update);
  `orders/create` carries only what sale-webhook reads, and a few ids.

Simplified: one schema shape (2026-04 and later) serves every accepted version,
except that `@idempotent` and `changeFromQuantity` are only enforced from
2026-04; a missing `changeFromQuantity` is reported as COMPARE_QUANTITY_REQUIRED
(Shopify documents only "an error"); `available` and `on_hand` move together
(`committed` is 0); plain lists of objects cost 1; a user error's answer is
remembered under its idempotency key like a success (a replay gets it back);
orders refuse a line over the level (Shopify's default "deny" policy); search
understands `sku:` terms (joined by OR) only, anything else lists every item.
"""

import argparse
import base64
import hashlib
import heapq
import hmac
import itertools
import json
import os
import re
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from graphql import (
    GraphQLError,
    build_schema,
    execute_sync,
    get_named_type,
    is_list_type,
    is_non_null_type,
    is_object_type,
    parse,
    validate,
)
from graphql.execution.values import get_directive_values
from graphql.language import FieldNode, FragmentSpreadNode, InlineFragmentNode, OperationDefinitionNode
from graphql.utilities import value_from_ast_untyped

SDL = """
directive @idempotent(key: String!) on FIELD

scalar DateTime
scalar UnsignedInt64

type Query {
  inventoryItems(first: Int, after: String, query: String, reverse: Boolean): InventoryItemConnection!
  inventoryItem(id: ID!): InventoryItem
  location(id: ID): Location
}

type Mutation {
  inventorySetQuantities(input: InventorySetQuantitiesInput!): InventorySetQuantitiesPayload
}

type PageInfo { hasNextPage: Boolean! hasPreviousPage: Boolean! startCursor: String endCursor: String }

type InventoryItem {
  id: ID!
  legacyResourceId: UnsignedInt64!
  sku: String
  tracked: Boolean!
  duplicateSkuCount: Int!
  createdAt: DateTime!
  updatedAt: DateTime!
  inventoryLevel(locationId: ID!): InventoryLevel
  inventoryLevels(first: Int, after: String): InventoryLevelConnection!
}
type InventoryItemEdge { cursor: String! node: InventoryItem! }
type InventoryItemConnection { edges: [InventoryItemEdge!]! nodes: [InventoryItem!]! pageInfo: PageInfo! }

type InventoryLevel {
  id: ID!
  location: Location!
  item: InventoryItem!
  quantities(names: [String!]!): [InventoryQuantity!]!
  createdAt: DateTime!
  updatedAt: DateTime!
}
type InventoryLevelEdge { cursor: String! node: InventoryLevel! }
type InventoryLevelConnection { edges: [InventoryLevelEdge!]! nodes: [InventoryLevel!]! pageInfo: PageInfo! }

type InventoryQuantity { id: ID! name: String! quantity: Int! updatedAt: DateTime }

type Location {
  id: ID! legacyResourceId: UnsignedInt64! name: String! isActive: Boolean!
  inventoryLevels(first: Int, after: String): InventoryLevelConnection!
}

input InventoryQuantityInput { inventoryItemId: ID! locationId: ID! quantity: Int! changeFromQuantity: Int }
input InventorySetQuantitiesInput {
  name: String!
  reason: String!
  referenceDocumentUri: String
  quantities: [InventoryQuantityInput!]!
}

type InventoryChange {
  name: String!
  delta: Int!
  quantityAfterChange: Int
  ledgerDocumentUri: String
  item: InventoryItem
  location: Location
}
type InventoryAdjustmentGroup {
  id: ID!
  createdAt: DateTime!
  reason: String!
  referenceDocumentUri: String
  changes(inventoryItemIds: [ID!], locationIds: [ID!], quantityNames: [String!]): [InventoryChange!]!
}
type InventorySetQuantitiesPayload {
  inventoryAdjustmentGroup: InventoryAdjustmentGroup
  userErrors: [InventorySetQuantitiesUserError!]!
}
type InventorySetQuantitiesUserError { code: InventorySetQuantitiesUserErrorCode field: [String!] message: String! }
enum InventorySetQuantitiesUserErrorCode {
  CHANGE_FROM_QUANTITY_STALE COMPARE_QUANTITY_REQUIRED COMPARE_QUANTITY_STALE
  IDEMPOTENCY_CONCURRENT_REQUEST IDEMPOTENCY_KEY_PARAMETER_MISMATCH IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED
  INVALID_INVENTORY_ITEM INVALID_LOCATION INVALID_NAME INVALID_QUANTITY_NEGATIVE INVALID_QUANTITY_TOO_HIGH
  INVALID_QUANTITY_TOO_LOW INVALID_REASON INVALID_REFERENCE_DOCUMENT ITEM_NOT_STOCKED_AT_LOCATION
  NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR NON_MUTABLE_INVENTORY_ITEM
}
"""

SCHEMA = build_schema(SDL)
IDEMPOTENT = SCHEMA.get_directive("idempotent")
# https://shopify.dev/docs/apps/build/orders-fulfillment/inventory-management-apps/manage-quantities-states
REASONS = {
    "correction", "cycle_count_available", "damaged", "movement_created", "movement_updated",
    "movement_received", "movement_canceled", "other", "promotion", "quality_control", "received",
    "reservation_created", "reservation_deleted", "reservation_updated", "restock", "safety_stock",
    "shrinkage",
}
MAX_INPUT = 250
MAX_QUERY_COST = 1000
MUTATION_COST = 10
IDEMPOTENCY_TTL = 24 * 3600
WEBHOOK_API_VERSION = "2026-10"
RATE_LIMITS_DOC = "https://shopify.dev/api/usage/rate-limits"
INVALID_TOKEN = "[API] Invalid API key or access token (unrecognized login or wrong password)"

LOCK = threading.RLock()  # guards every shop's state; held for a whole Admin API call
SHOPS = {}
IDS = itertools.count(44_000_000_001)  # item, group and order ids: unique across shops, as Shopify's are


def now_iso(ms=False):
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds" if ms else "seconds")


def gid(kind, n):
    return f"gid://shopify/{kind}/{n}"


def gid_number(value, kind):
    found = re.fullmatch(rf"gid://shopify/{kind}/(\d+)", str(value or ""))
    return int(found.group(1)) if found else None


class Item:
    def __init__(self, sku, levels):
        self.id = next(IDS)
        self.sku = sku
        self.created = now_iso()
        self.levels = {loc: {"available": n, "created": self.created, "updated": self.created} for loc, n in levels.items()}


class Level:
    """One item at one location, as GraphQL sees it."""

    def __init__(self, item, location):
        self.item, self.location = item, location


class Shop:
    def __init__(self, name, spec):
        self.name = name
        self.token = spec["token"]
        self.secret = spec["webhook_secret"]
        self.locations = [int(x) for x in spec.get("locations") or [1001]]
        bucket = spec.get("bucket") or {}
        self.maximum = float(bucket.get("maximum", 2000))
        self.restore_rate = float(bucket.get("restore_rate", 100))
        self.available = self.maximum
        self.refilled = time.monotonic()
        self.webhooks = {k: v for k, v in (spec.get("webhooks") or {}).items() if v}
        self.order_delay = float(spec.get("order_delay_ms", 300)) / 1000
        self.missing_scope = bool(spec.get("missing_scope", False))
        self.items = {}
        self.history = []
        self.outbox = []
        self.calls = []
        self.idempotency = {}
        self.faults = []

    def bucket(self):
        now = time.monotonic()
        self.available = min(self.maximum, self.available + (now - self.refilled) * self.restore_rate)
        self.refilled = now
        return self.available

    def by_sku(self, sku):
        return [i for i in self.items.values() if i.sku == sku]

    def set_level(self, item, location, available, by, key=None):
        """Sets one level and records it; a change sends `inventory_levels/update`."""
        level = item.levels[location]
        delta = available - level["available"]
        if delta == 0:
            return 0
        level["available"] = available
        level["updated"] = now_iso()
        entry = {"sku": item.sku, "inventory_item_id": item.id, "location_id": location,
                 "at": now_iso(ms=True), "available": available, "by": by, "delta": delta}
        if key is not None:
            entry["idempotency_key"] = key
        self.history.append(entry)
        WEBHOOKS.send(self, "inventory_levels/update", {
            "inventory_item_id": item.id, "location_id": location, "available": available,
            "updated_at": level["updated"],
            "admin_graphql_api_id": f"gid://shopify/InventoryLevel/{location}?inventory_item_id={item.id}",
        })
        return delta


# ---- webhooks: the outbox, and delivery from a background thread -------------

class Webhooks:
    RETRIES = (0.5, 1, 2, 4, 8)  # Shopify retries failed deliveries with backoff too

    def __init__(self):
        self.due = []
        self.seq = itertools.count()
        self.wake = threading.Condition(LOCK)
        self.pool = ThreadPoolExecutor(max_workers=4)
        threading.Thread(target=self.run, daemon=True).start()

    def send(self, shop, topic, body, delay=0.0):
        """Appends to the outbox now (or after `delay`) and delivers if the shop has a URL."""
        with LOCK:
            if delay > 0:
                heapq.heappush(self.due, (time.monotonic() + delay, next(self.seq), "emit", shop, (topic, body)))
                self.wake.notify()
            else:
                self.emit(shop, topic, body)

    def emit(self, shop, topic, body):
        raw = json.dumps(body, separators=(",", ":"))
        signature = base64.b64encode(hmac.new(shop.secret.encode(), raw.encode(), hashlib.sha256).digest()).decode()
        headers = {
            "Content-Type": "application/json", "X-Shopify-Topic": topic, "X-Shopify-Hmac-Sha256": signature,
            "X-Shopify-Shop-Domain": shop.name, "X-Shopify-Webhook-Id": str(uuid.uuid4()),
            "X-Shopify-Event-Id": str(uuid.uuid4()), "X-Shopify-Triggered-At": now_iso(ms=True),
            "X-Shopify-API-Version": WEBHOOK_API_VERSION,
        }
        shop.outbox.append({"n": len(shop.outbox) + 1, "topic": topic, "headers": headers, "body": raw})
        url = shop.webhooks.get(topic)
        if url:
            heapq.heappush(self.due, (time.monotonic(), next(self.seq), "post", shop, (url, headers, raw, 0)))
            self.wake.notify()

    def run(self):
        with LOCK:
            while True:
                if not self.due:
                    self.wake.wait()
                    continue
                at = self.due[0][0]
                if at > time.monotonic():
                    self.wake.wait(at - time.monotonic())
                    continue
                _, _, what, shop, args = heapq.heappop(self.due)
                if what == "emit":
                    self.emit(shop, *args)
                else:
                    self.pool.submit(self.post, shop, *args)

    def post(self, shop, url, headers, raw, attempt):
        try:
            req = urllib.request.Request(url, data=raw.encode(), headers=headers, method="POST")
            with urllib.request.urlopen(req, timeout=10) as res:
                if 200 <= res.status < 300:
                    return
        except (urllib.error.URLError, OSError) as e:
            print(f"shopify: webhook to {url} failed (attempt {attempt + 1}): {e}", file=sys.stderr)
        if attempt < len(self.RETRIES):
            with LOCK:
                heapq.heappush(self.due, (time.monotonic() + self.RETRIES[attempt], next(self.seq), "post", shop,
                                          (url, headers, raw, attempt + 1)))
                self.wake.notify()


WEBHOOKS = Webhooks()


# ---- resolvers ---------------------------------------------------------------

def resolver(type_name, field):
    def register(fn):
        SCHEMA.get_type(type_name).fields[field].resolve = fn
        return fn
    return register


def paginate(nodes, first, after, key):
    if first is None:
        raise GraphQLError("you must provide one of first or last")
    if first < 0 or first > MAX_INPUT:
        raise GraphQLError(f"The value of first must be between 0 and {MAX_INPUT}", extensions={"code": "BAD_REQUEST"})
    start = 0
    if after:
        try:
            last = int(base64.b64decode(after).decode())
        except ValueError as e:
            raise GraphQLError(f"Invalid cursor {after!r}") from e
        start = next((i + 1 for i, n in enumerate(nodes) if key(n) == last), len(nodes))
    page = nodes[start:start + first]
    edges = [{"cursor": base64.b64encode(str(key(n)).encode()).decode(), "node": n} for n in page]
    return {"edges": edges, "nodes": page, "pageInfo": {
        "hasNextPage": start + first < len(nodes), "hasPreviousPage": start > 0,
        "startCursor": edges[0]["cursor"] if edges else None, "endCursor": edges[-1]["cursor"] if edges else None}}


SKU_TERM = re.compile(r"""sku:(?:'([^']*)'|"([^"]*)"|([^\s()]+))""")


@resolver("Query", "inventoryItems")
def inventory_items(_, info, first=None, after=None, query=None, reverse=False):
    shop = info.context["shop"]
    items = sorted(shop.items.values(), key=lambda i: i.id, reverse=bool(reverse))
    skus = {a or b or c for a, b, c in SKU_TERM.findall(query or "")}
    if skus:
        items = [i for i in items if i.sku in skus]
    return paginate(items, first, after, lambda i: i.id)


@resolver("Query", "inventoryItem")
def inventory_item(_, info, id):
    return info.context["shop"].items.get(gid_number(id, "InventoryItem"))


@resolver("Query", "location")
def location(_, info, id=None):
    shop = info.context["shop"]
    n = shop.locations[0] if id is None else gid_number(id, "Location")
    return n if n in shop.locations else None


@resolver("Location", "inventoryLevels")
def location_levels(n, info, first=None, after=None):
    shop = info.context["shop"]
    levels = [Level(i, n) for i in sorted(shop.items.values(), key=lambda i: i.id) if n in i.levels]
    return paginate(levels, first, after, lambda lv: lv.item.id)


for field, fn in {
    "id": lambda i, _: gid("InventoryItem", i.id), "legacyResourceId": lambda i, _: str(i.id),
    "sku": lambda i, _: i.sku, "tracked": lambda i, _: True, "createdAt": lambda i, _: i.created,
    "updatedAt": lambda i, _: max([i.created] + [lv["updated"] for lv in i.levels.values()]),
    "duplicateSkuCount": lambda i, info: len(info.context["shop"].by_sku(i.sku)) - 1 if i.sku else 0,
}.items():
    resolver("InventoryItem", field)(fn)


@resolver("InventoryItem", "inventoryLevel")
def inventory_level(item, _, locationId):
    n = gid_number(locationId, "Location")
    return Level(item, n) if n in item.levels else None


@resolver("InventoryItem", "inventoryLevels")
def inventory_levels(item, _, first=None, after=None):
    return paginate([Level(item, n) for n in sorted(item.levels)], first, after, lambda lv: lv.location)


for field, fn in {
    "id": lambda lv, _: f"gid://shopify/InventoryLevel/{lv.location}?inventory_item_id={lv.item.id}",
    "location": lambda lv, _: lv.location, "item": lambda lv, _: lv.item,
    "createdAt": lambda lv, _: lv.item.levels[lv.location]["created"],
    "updatedAt": lambda lv, _: lv.item.levels[lv.location]["updated"],
}.items():
    resolver("InventoryLevel", field)(fn)


@resolver("InventoryLevel", "quantities")
def quantities(level, _, names):
    state = level.item.levels[level.location]
    figures = {"available": state["available"], "on_hand": state["available"], "committed": 0,
               "incoming": 0, "reserved": 0, "damaged": 0, "quality_control": 0, "safety_stock": 0}
    unknown = [n for n in names if n not in figures]
    if unknown:
        raise GraphQLError(f"Invalid quantity name: {unknown[0]}", extensions={"code": "BAD_REQUEST"})
    return [{"id": f"gid://shopify/InventoryQuantity/{level.location}?inventory_item_id={level.item.id}&name={n}",
             "name": n, "quantity": figures[n], "updatedAt": state["updated"]} for n in names]


for field, fn in {
    "id": lambda n, _: gid("Location", n), "legacyResourceId": lambda n, _: str(n),
    "name": lambda n, _: f"Location {n}", "isActive": lambda n, _: True,
}.items():
    resolver("Location", field)(fn)


@resolver("InventoryAdjustmentGroup", "changes")
def changes(group, _, inventoryItemIds=None, locationIds=None, quantityNames=None):
    return [c for c in group["changes"]
            if (quantityNames is None or c["name"] in quantityNames)
            and (inventoryItemIds is None or gid("InventoryItem", c["item"].id) in inventoryItemIds)
            and (locationIds is None or gid("Location", c["location"]) in locationIds)]


def user_error(code, message, *field):
    return {"code": code, "message": message, "field": list(field) if field else None}


@resolver("Mutation", "inventorySetQuantities")
def inventory_set_quantities(_, info, input):
    ctx = info.context
    shop, version = ctx["shop"], ctx["version"]
    key = (get_directive_values(IDEMPOTENT, info.field_nodes[0], info.variable_values) or {}).get("key")
    if key is None and version >= "2026-04":
        raise GraphQLError("The @idempotent directive is required for this mutation.",
                           extensions={"code": "BAD_REQUEST"})
    if len(input["quantities"]) > MAX_INPUT:
        raise GraphQLError(f"The input array size of {len(input['quantities'])} is greater than the maximum "
                           f"allowed of {MAX_INPUT}.", extensions={"code": "MAX_INPUT_SIZE_EXCEEDED"})
    fingerprint = json.dumps(input, sort_keys=True)
    if key is not None:
        for k in [k for k, v in shop.idempotency.items() if v[2] < time.time() - IDEMPOTENCY_TTL]:
            del shop.idempotency[k]
        seen = shop.idempotency.get(key)
        if seen and seen[0] == fingerprint:
            return seen[1]
        if seen:
            return {"inventoryAdjustmentGroup": None, "userErrors": [user_error(
                "IDEMPOTENCY_KEY_PARAMETER_MISMATCH",
                "The same idempotency key cannot be used with different operation parameters.")]}
    answer = set_quantities(shop, version, input, key)
    if key is not None:
        shop.idempotency[key] = (fingerprint, answer, time.time())
    return answer


def set_quantities(shop, version, input, key):
    errors, plan, seen = [], [], set()
    name = input["name"]
    if name not in ("available", "on_hand"):
        errors.append(user_error("INVALID_NAME", "The quantity name must be either 'available' or 'on_hand'.",
                                 "input", "name"))
    if input["reason"] not in REASONS:
        errors.append(user_error("INVALID_REASON", "The specified reason is invalid.", "input", "reason"))
    uri = input.get("referenceDocumentUri")
    if uri is not None and not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$", uri):
        errors.append(user_error("INVALID_REFERENCE_DOCUMENT", "The specified reference document is invalid.",
                                 "input", "referenceDocumentUri"))
    for i, q in enumerate(input["quantities"]):
        at = ("input", "quantities", str(i))
        item = shop.items.get(gid_number(q["inventoryItemId"], "InventoryItem"))
        loc = gid_number(q["locationId"], "Location")
        if item is None:
            errors.append(user_error("INVALID_INVENTORY_ITEM", "The specified inventory item could not be found.",
                                     *at, "inventoryItemId"))
            continue
        if loc not in shop.locations:
            errors.append(user_error("INVALID_LOCATION", "The specified location could not be found.", *at, "locationId"))
            continue
        if loc not in item.levels:
            errors.append(user_error("ITEM_NOT_STOCKED_AT_LOCATION",
                                     "The specified inventory item is not stocked at the location.", *at, "locationId"))
            continue
        if (item.id, loc) in seen:
            errors.append(user_error("NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR",
                                     "The combination of inventoryItemId and locationId must be unique.", *at))
            continue
        seen.add((item.id, loc))
        if q["quantity"] < 0:
            errors.append(user_error("INVALID_QUANTITY_NEGATIVE", "The quantity can't be negative.", *at, "quantity"))
        elif q["quantity"] > 1_000_000_000:
            errors.append(user_error("INVALID_QUANTITY_TOO_HIGH",
                                     "The total quantity can't be higher than 1,000,000,000.", *at, "quantity"))
        current = item.levels[loc]["available"]
        if "changeFromQuantity" not in q:
            if version >= "2026-04":
                errors.append(user_error("COMPARE_QUANTITY_REQUIRED",
                                         "changeFromQuantity must be given (null skips the check).",
                                         *at, "changeFromQuantity"))
        elif q["changeFromQuantity"] is not None and q["changeFromQuantity"] != current:
            errors.append(user_error("CHANGE_FROM_QUANTITY_STALE",
                                     "The changeFromQuantity value does not match persisted value.",
                                     *at, "changeFromQuantity"))
        plan.append((item, loc, q["quantity"]))
    if errors:  # all or nothing
        return {"inventoryAdjustmentGroup": None, "userErrors": errors}
    group = {"id": gid("InventoryAdjustmentGroup", next(IDS)), "createdAt": now_iso(), "reason": input["reason"],
             "referenceDocumentUri": uri, "changes": []}
    for item, loc, quantity in plan:
        delta = shop.set_level(item, loc, quantity, "app", key)
        for n in ("available", "on_hand"):
            group["changes"].append({"name": n, "delta": delta, "quantityAfterChange": quantity,
                                     "ledgerDocumentUri": None, "item": item, "location": loc})
    return {"inventoryAdjustmentGroup": group, "userErrors": []}


# ---- cost ----------------------------------------------------------------------

def fields_of(selection_set, fragments):
    for sel in selection_set.selections if selection_set else []:
        if isinstance(sel, FieldNode):
            yield sel
        elif isinstance(sel, InlineFragmentNode):
            yield from fields_of(sel.selection_set, fragments)
        elif isinstance(sel, FragmentSpreadNode) and sel.name.value in fragments:
            yield from fields_of(fragments[sel.name.value].selection_set, fragments)


def cost(selection_set, parent, data, variables, fragments):
    """Shopify's calculated cost of a selection: `data` None gives the requested
    cost (connections at `first`), the answer's data the actual cost."""
    total = 0
    for node in fields_of(selection_set, fragments):
        if node.name.value.startswith("__"):
            continue
        field = parent.fields[node.name.value]
        named = get_named_type(field.type)
        if not is_object_type(named):
            continue
        value = None if data is None else data.get((node.alias or node.name).value)
        if data is not None and value is None:
            continue
        if named.name.endswith("Connection"):
            args = {a.name.value: value_from_ast_untyped(a.value, variables) for a in node.arguments}
            node_type = get_named_type(named.fields["nodes"].type)
            branches = []  # the node's selections, under `edges { node }` and under `nodes`
            for sub in fields_of(node.selection_set, fragments):
                if sub.name.value == "nodes":
                    branches.append((sub.selection_set, None if value is None else value.get((sub.alias or sub.name).value)))
                elif sub.name.value == "edges":
                    for e in fields_of(sub.selection_set, fragments):
                        if e.name.value == "node":
                            edges = None if value is None else value.get((sub.alias or sub.name).value)
                            nodes = None if edges is None else [x[(e.alias or e.name).value] for x in edges]
                            branches.append((e.selection_set, nodes))
            per = [0]
            for sel, nodes in branches:
                if nodes is None:
                    per.append((args.get("first") or 0) * (1 + cost(sel, node_type, None, variables, fragments)))
                else:
                    per.append(sum(1 + cost(sel, node_type, n, variables, fragments) for n in nodes))
            total += 2 + max(per)
        elif is_list_type(field.type.of_type if is_non_null_type(field.type) else field.type):
            total += 1
        else:
            total += 1 + cost(node.selection_set, named, value, variables, fragments)
    return total


def operation_cost(op, variables, fragments, data=None):
    if op.operation.value == "mutation":
        return MUTATION_COST * sum(1 for f in fields_of(op.selection_set, fragments) if not f.name.value.startswith("__"))
    return cost(op.selection_set, SCHEMA.query_type, data, variables, fragments)


# ---- the Admin API --------------------------------------------------------------

CODES = [  # graphql-core's messages -> the codes Shopify's errors carry
    (r"^Cannot query field", "undefinedField"),
    (r"^Unknown argument", "argumentNotAccepted"),
    (r"(?i)argument .* is required", "missingRequiredArguments"),
    (r"^Field '.*' of type '.*' must have a selection", "selectionMismatch"),
    (r"^Variable ", "variableMismatch"),
    (r"cannot represent|Expected value of type|Expected type", "argumentLiteralsIncompatible"),
    (r"^Unknown directive", "undefinedDirective"),
    (r"^Syntax Error", "parseError"),
]


def shaped(error):
    out = error.formatted
    extensions = dict(out.get("extensions") or {})
    if "code" not in extensions:
        extensions["code"] = next((c for p, c in CODES if re.search(p, error.message)), "GRAPHQL_VALIDATION_FAILED")
    out["extensions"] = extensions
    return out


def admin_api(shop, version, request):
    """Runs one GraphQL call for `shop`; returns (status, body). Called under LOCK."""
    started = time.monotonic()
    call = {"at": now_iso(ms=True), "cost": {"requested": 0, "actual": 0}, "throttled": False, "status": 200,
            "operation": "query"}
    shop.calls.append(call)

    def answer(body, requested=0, actual=0):
        call["cost"] = {"requested": requested, "actual": actual}
        body["extensions"] = {"cost": {
            "requestedQueryCost": requested, "actualQueryCost": None if call["throttled"] else actual,
            "throttleStatus": {"maximumAvailable": shop.maximum, "currentlyAvailable": round(shop.bucket(), 1),
                               "restoreRate": shop.restore_rate}}}
        call["ms"] = round((time.monotonic() - started) * 1000, 2)
        return 200, body

    query = request.get("query")
    variables = request.get("variables") or {}
    if not isinstance(query, str) or not isinstance(variables, dict):
        return answer({"errors": [{"message": "Parameter Missing or Invalid",
                                   "extensions": {"code": "BAD_REQUEST"}}]})
    try:
        document = parse(query)
    except GraphQLError as e:
        return answer({"errors": [shaped(e)]})
    problems = validate(SCHEMA, document)
    if problems:
        return answer({"errors": [shaped(e) for e in problems]})
    ops = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    name = request.get("operationName")
    op = next((o for o in ops if name is None or (o.name and o.name.value == name)), None)
    if op is None or (name is None and len(ops) > 1):
        return answer({"errors": [{"message": "An operation name is required", "extensions": {"code": "BAD_REQUEST"}}]})
    call["operation"] = op.operation.value
    fragments = {d.name.value: d for d in document.definitions if d.kind == "fragment_definition"}
    requested = operation_cost(op, variables, fragments)
    if requested > MAX_QUERY_COST:
        return answer({"errors": [{"message": f"Query cost is {requested}, which exceeds the single query max cost "
                                              f"limit ({MAX_QUERY_COST}).",
                                   "extensions": {"code": "MAX_COST_EXCEEDED", "cost": requested,
                                                  "maxCost": MAX_QUERY_COST, "documentation": RATE_LIMITS_DOC}}]},
                      requested)
    if requested > shop.bucket():
        call["throttled"] = True
        return answer({"errors": [{"message": "Throttled",
                                   "extensions": {"code": "THROTTLED", "documentation": RATE_LIMITS_DOC}}]},
                      requested)
    shop.available -= requested
    result = execute_sync(SCHEMA, document, context_value={"shop": shop, "version": version},
                          variable_values=variables, operation_name=name)
    body = {}
    if result.errors:
        body["errors"] = [shaped(e) for e in result.errors]
        if result.data is None:  # the variables did not fit their types: nothing ran
            for e in body["errors"]:
                e["extensions"]["code"] = "INVALID_VARIABLE"
    if result.data is not None:
        body["data"] = result.data
    actual = requested if result.data is None else operation_cost(op, variables, fragments, result.data)
    if result.data is None and result.errors:
        actual = 0
    shop.available = min(shop.maximum, shop.available + requested - actual)
    return answer(body, requested, actual)


VERSION = re.compile(r"^(\d{4})-(01|04|07|10)$")


def admin_request(handler, shop_name, version):
    with LOCK:
        shop = SHOPS.get(shop_name)
        if shop is None:
            return 401, {"errors": INVALID_TOKEN}, {}
        if shop.faults:
            fault = shop.faults[0]
            fault["times"] -= 1
            if fault["times"] <= 0:
                shop.faults.pop(0)
            shop.calls.append({"at": now_iso(ms=True), "cost": {"requested": 0, "actual": 0}, "throttled": False,
                               "status": fault["status"], "operation": None, "fault": True})
            status = fault["status"]
            headers = {"Retry-After": str(fault["retry_after"])} if fault.get("retry_after") is not None else {}
            body = {401: INVALID_TOKEN, 429: "Exceeded 2 calls per second for api client. Reduce request rates to "
                    "resume uninterrupted service."}.get(status, "Internal Server Error")
            return status, {"errors": body}, headers
        if handler.headers.get("X-Shopify-Access-Token") != shop.token:
            return 401, {"errors": INVALID_TOKEN}, {}
        if shop.missing_scope:
            return 403, {"errors": "[API] This action requires merchant approval for write_inventory scope."}, {}
        if not (VERSION.match(version) and version >= "2025-01"):
            return 404, {"errors": "Not Found"}, {}
        try:
            request = json.loads(handler.body or b"{}")
        except ValueError:
            return 400, {"errors": "Bad Request"}, {}
        if not isinstance(request, dict):
            return 400, {"errors": "Bad Request"}, {}
        status, body = admin_api(shop, version, request)
        return status, body, {}


# ---- the stand-in's own surface ----------------------------------------------------

class Refused(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def need(body, *names):
    for n in names:
        if n not in body or body[n] is None:
            raise Refused(400, f"{n} is required")


def shop_of(name):
    shop = SHOPS.get(name)
    if shop is None:
        raise Refused(404, f"no shop {name}")
    return shop


def item_of(shop, body):
    if body.get("inventory_item_id") is not None:
        item = shop.items.get(int(body["inventory_item_id"]))
    else:
        need(body, "sku")
        found = shop.by_sku(body["sku"])
        item = found[0] if found else None
    if item is None:
        raise Refused(404, "no such item")
    return item


def standin(method, shop_name, what, body, query):
    if method == "PUT" and what == "":
        need(body, "token", "webhook_secret")
        SHOPS[shop_name] = Shop(shop_name, body)
        return 200, {"shop": shop_name}
    shop = shop_of(shop_name)
    if method == "POST" and what == "items":
        need(body, "sku")
        levels = {int(k): int(v) for k, v in (body.get("levels") or {}).items()}
        if any(loc not in shop.locations for loc in levels):
            raise Refused(400, "a level at a location the shop does not have")
        item = Item(body["sku"], levels)
        shop.items[item.id] = item
        return 200, {"id": gid("InventoryItem", item.id), "inventory_item_id": item.id}
    if method == "POST" and what == "edits":
        need(body, "location_id", "available")
        item, loc = item_of(shop, body), int(body["location_id"])
        if loc not in shop.locations:
            raise Refused(400, f"the shop has no location {loc}")
        item.levels.setdefault(loc, {"available": 0, "created": now_iso(), "updated": now_iso()})
        shop.set_level(item, loc, int(body["available"]), "merchant")
        return 200, {"available": item.levels[loc]["available"]}
    if method == "POST" and what == "orders":
        need(body, "location_id", "lines")
        loc = int(body["location_id"])
        takes = []
        for line in body["lines"]:
            item = item_of(shop, line)
            have = item.levels.get(loc, {}).get("available")
            if have is None or have < int(line["quantity"]):
                raise Refused(409, f"{item.sku} has {have} at {loc}: not enough for {line['quantity']}")
            takes.append((item, int(line["quantity"])))
        order_id = body.get("id") or next(IDS)
        for item, quantity in takes:
            shop.set_level(item, loc, item.levels[loc]["available"] - quantity, "order")
        WEBHOOKS.send(shop, "orders/create", {
            "id": order_id, "admin_graphql_api_id": gid("Order", order_id), "name": f"#{order_id}",
            "created_at": now_iso(), "source_name": "web", "location_id": loc,
            "line_items": [{"id": next(IDS), "sku": item.sku, "quantity": q, "title": item.sku}
                           for item, q in takes]}, delay=shop.order_delay)
        return 200, {"id": order_id}
    if method == "POST" and what == "faults":
        need(body, "status")
        shop.faults.append({"status": int(body["status"]), "times": int(body.get("times", 1)),
                            "retry_after": body.get("retry_after")})
        return 200, {"faults": len(shop.faults)}
    if method == "GET" and what in ("levels", "history"):
        sku, loc = query.get("sku"), query.get("location_id")
        rows = shop.history if what == "history" else [
            {"sku": i.sku, "inventory_item_id": i.id, "location_id": n, "available": lv["available"]}
            for i in shop.items.values() for n, lv in sorted(i.levels.items())]
        rows = [r for r in rows if (sku is None or r["sku"] == sku) and (loc is None or r["location_id"] == int(loc))]
        if what == "history":
            return 200, [{k: v for k, v in r.items() if k not in ("sku", "inventory_item_id", "location_id")}
                         for r in rows]
        if sku is not None and loc is not None:
            return (200, {"available": rows[0]["available"]}) if rows else (404, {"error": "no such level"})
        return 200, rows
    if method == "GET" and what == "webhooks":
        after = int(query.get("after", 0))
        return 200, [w for w in shop.outbox if w["n"] > after]
    if method == "GET" and what == "calls":
        return 200, shop.calls
    raise Refused(404, f"no {method} {what or 'shop'}")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_):  # quiet: the call log is the record
        pass

    def reply(self, status, body, headers=None):
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(raw)))
        self.send_header("X-Request-Id", str(uuid.uuid4()))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(raw)

    def handle_any(self, method):
        length = int(self.headers.get("Content-Length") or 0)
        self.body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        admin = re.fullmatch(r"/([^/]+)/admin/api/([^/]+)/graphql\.json", url.path)
        if admin and method == "POST":
            return self.reply(*admin_request(self, admin.group(1), admin.group(2)))
        own = re.fullmatch(r"/_standin/shops/([^/]+)(?:/([a-z]+))?", url.path)
        if not own:
            return self.reply(404, {"errors": "Not Found"})
        try:
            body = json.loads(self.body) if self.body else {}
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            with LOCK:
                return self.reply(*standin(method, own.group(1), own.group(2) or "", body, query))
        except Refused as e:
            return self.reply(e.status, {"error": str(e)})
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            return self.reply(400, {"error": f"bad request: {e!r}"})

    def do_GET(self):
        self.handle_any("GET")

    def do_POST(self):
        self.handle_any("POST")

    def do_PUT(self):
        self.handle_any("PUT")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4568)
    parser.add_argument("--exit-with-stdin", action="store_true")
    args = parser.parse_args()
    if args.exit_with_stdin:
        def watch():
            sys.stdin.read()
            os._exit(0)
        threading.Thread(target=watch, daemon=True).start()
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    print(f"shopify stand-in on http://{args.host}:{args.port}", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
