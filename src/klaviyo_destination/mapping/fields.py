"""Every field table of the mapping, as data (docs/mapping.md §5-§8).

A rule is "Klaviyo key ← RudderStack paths in priority order"; code in the event modules walks
these tables. Paths start at an event field (``traits``, ``context``, ``properties``, ``userId``,
``anonymousId``, ``event``); item and ecommerce rules are relative to the object they map.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from .paths import Path, PathList


@dataclass(frozen=True, slots=True)
class Rule:
    """Write ``key`` (dotted keys nest) from the first kept value of ``paths``."""

    key: str
    paths: PathList
    as_float: bool = False  # ecommerce ``$value``: parseFloat, error when it does not parse


#: One path of a rule table: (the rule's position, the root the path starts from, the key the
#: rule writes, the path, and its only segment when it has exactly one, else ``None``).
Step = tuple[int, str, str, Path, str | None]


class RuleTable(tuple[Rule, ...]):
    """Rules in emitted order, with an index from first-level keys to the paths they start.

    Built once, so mapping an event only looks at the paths whose first key the event has:
    ``steps`` lists every (rule, path) in priority order, ``keyed`` maps each root's first-level
    keys to the positions in ``steps`` of the paths that step into them, and ``bare`` holds the
    paths that are a root's value itself (``userId``). ``context.traits.x`` paths are indexed
    below the ``context.traits`` root, which an event offers when no key of ``context`` has a
    dot (``RudderEvent.roots``); the mapping falls back to walking every path otherwise.
    """

    steps: tuple[Step, ...]
    #: for each step, whether its rule converts the value with ``parseFloat`` (``as_float``)
    floats: tuple[bool, ...]
    keyed: tuple[tuple[str, dict[str, tuple[int, ...]]], ...]
    bare: tuple[int, ...]

    def __new__(cls, rules: Iterable[Rule]) -> RuleTable:
        self = super().__new__(cls, rules)
        steps: list[Step] = []
        keyed: dict[str, dict[str, list[int]]] = {}
        bare: list[int] = []
        for rule_index, rule in enumerate(self):
            for path in rule.paths:
                target = path.below_context_traits or path
                single = target.segments[0] if len(target.segments) == 1 else None
                position = len(steps)
                steps.append((rule_index, target.root, rule.key, target, single))
                if not target.segments:
                    bare.append(position)
                    continue
                keys = keyed.setdefault(target.root, {})
                for key, _ in target.levels[0]:
                    keys.setdefault(key, []).append(position)
        self.steps = tuple(steps)
        self.floats = tuple(self[step[0]].as_float for step in steps)
        self.keyed = tuple(
            (root, {key: tuple(found) for key, found in keys.items()})
            for root, keys in keyed.items()
        )
        self.bare = tuple(bare)
        return self


def _paths(*texts: str) -> PathList:
    return PathList(Path.parse(text) for text in texts)


def _with_context(*names: str) -> PathList:
    """``traits.<name>`` for each name, then ``context.traits.<name>`` for each name."""
    return _paths(*(f"traits.{n}" for n in names), *(f"context.traits.{n}" for n in names))


# --- §5.1 generic lookups -------------------------------------------------------------------
USER_ID: Final = _paths(
    "userId",
    "traits.userId",
    "traits.id",
    "context.traits.userId",
    "context.traits.id",
    "anonymousId",
)
EMAIL_ONLY: Final = _paths("traits.email", "context.traits.email", "properties.email")
SUBSCRIPTION_EMAIL: Final = PathList((*EMAIL_ONLY, *_paths("context.externalId.0.id")))
PHONE: Final = _paths("traits.phone", "context.traits.phone", "properties.phone")
FIRST_NAME: Final = _with_context("firstName", "firstname", "first_name")
LAST_NAME: Final = _with_context("lastName", "lastname", "last_name")


def _located(name: str, *, via_address: tuple[str, ...] | None = None) -> PathList:
    """traits.x, traits.address.x, context.traits.x, context.traits.address.x, properties.x."""
    keys = via_address or (name,)
    return _paths(
        *(f"traits.{k}" for k in keys),
        *(f"traits.address.{k}" for k in keys),
        *(f"context.traits.{k}" for k in keys),
        *(f"context.traits.address.{k}" for k in keys),
        *(f"properties.{k}" for k in keys),
    )


# --- §5.2 location and contact lookups ------------------------------------------------------
CITY: Final = _located("city")
REGION: Final = _paths(
    "traits.region", "traits.address.region", "context.traits.region",
    "context.traits.address.region", "properties.region", "traits.state", "traits.address.state",
    "context.traits.address.state", "context.traits.state", "properties.state",
)  # fmt: skip
COUNTRY: Final = _located("country")
ZIP: Final = _located("zip", via_address=("zip", "postalcode", "postalCode"))
STREET: Final = _located("street")
IMAGE: Final = _paths("traits.image", "context.traits.image", "properties.image")
TITLE: Final = _paths("traits.title", "context.traits.title", "properties.title")
ORGANIZATION: Final = _paths(
    "traits.organization", "context.traits.organization", "properties.organization"
)
TIMEZONE: Final = _paths("traits.timezone", "context.traits.timezone", "properties.timezone")
CONSENT: Final = _paths("context.traits.consent", "traits.consent", "properties.consent")

# --- §6.3 identify: profile attributes, in emitted order ------------------------------------
#: Rows both profile tables (§6.3 and §17.1) hold, in the same order.
NAMES_AND_PHONE: Final = (
    Rule("first_name", FIRST_NAME),
    Rule("last_name", LAST_NAME),
    Rule("phone_number", PHONE),
)
WORK_AND_PLACE: Final = (
    Rule("title", TITLE),
    Rule("organization", ORGANIZATION),
    Rule("location.city", CITY),
    Rule("location.region", REGION),
    Rule("location.country", COUNTRY),
    Rule("location.zip", ZIP),
)
PROFILE_ATTRIBUTES: Final = RuleTable(
    (
        Rule("external_id", USER_ID),
        Rule("email", EMAIL_ONLY),
        *NAMES_AND_PHONE,
        *WORK_AND_PLACE,
        Rule("image", IMAGE),
        Rule("location.timezone", TIMEZONE),
        Rule("location.address1", STREET),
    )
)

# --- §8.6 track/screen: the event's profile (no title/organization) -------------------------
EVENT_PROFILE: Final = RuleTable(
    (
        Rule("$email", EMAIL_ONLY),
        Rule("$first_name", FIRST_NAME),
        Rule("$last_name", LAST_NAME),
        Rule("$phone_number", PHONE),
        Rule("$city", CITY),
        Rule("$region", REGION),
        Rule("$country", COUNTRY),
        Rule("$zip", ZIP),
        Rule("$consent", CONSENT),
        Rule("$image", IMAGE),
        Rule("$address1", STREET),
    )
)

# --- §5.3 custom traits: top-level trait keys that never become custom properties -----------
EXCLUDED_TRAIT_KEYS: Final = frozenset({
    "email", "firstName", "firstname", "first_name", "lastName", "lastname", "last_name",
    "phone", "title", "organization", "city", "region", "country", "zip", "image", "timezone",
    "id", "anonymousId", "userId", "properties",
})  # fmt: skip

# --- §8.3 ecommerce -------------------------------------------------------------------------


def _relative(*pairs: tuple[str, str]) -> RuleTable:
    return RuleTable(
        Rule(key, PathList([Path.relative("", tuple(source.split(".")))]), as_float=key == "$value")
        for key, source in pairs
    )


VIEWED_PRODUCT: Final = _relative(
    ("ProductName", "name"), ("ProductID", "product_id"), ("SKU", "sku"),
    ("ImageURL", "image_url"), ("URL", "url"), ("Brand", "brand"), ("Price", "price"),
    ("CompareAtPrice", "compare_at_price"), ("Categories", "categories"),
)  # fmt: skip
ADDED_TO_CART: Final = _relative(
    ("$value", "value"), ("AddedItemProductName", "name"), ("AddedItemProductID", "product_id"),
    ("AddedItemSKU", "sku"), ("AddedItemImageURL", "image_url"), ("AddedItemURL", "url"),
    ("AddedItemPrice", "price"), ("AddedItemQuantity", "quantity"),
    ("AddedItemCategories", "categories"), ("ItemNames", "item_names"),
    ("CheckoutURL", "checkout_url"),
)  # fmt: skip
STARTED_CHECKOUT: Final = _relative(
    ("$event_id", "order_id"), ("$value", "value"), ("Categories", "categories"),
    ("CheckoutURL", "checkout_url"), ("ItemNames", "item_names"),
)  # fmt: skip

#: normalised event name (trimmed, lower-cased) → (Klaviyo metric name, property table)
ECOMMERCE_EVENTS: Final[Mapping[str, tuple[str, RuleTable]]] = {
    "product viewed": ("Viewed Product", VIEWED_PRODUCT),
    "product clicked": ("Viewed Product", VIEWED_PRODUCT),
    "product added": ("Added to Cart", ADDED_TO_CART),
    "checkout started": ("Started Checkout", STARTED_CHECKOUT),
}

ITEM: Final = _relative(
    ("ProductID", "product_id"), ("SKU", "sku"), ("ProductName", "name"),
    ("Quantity", "quantity"), ("ItemPrice", "price"), ("RowTotal", "row_total"),
    ("ProductURL", "url"), ("ImageURL", "image_url"), ("ProductCategories", "categories"),
)  # fmt: skip
ITEM_SOURCES: Final = ("items", "products")

# --- §8.4 non-ecommerce events --------------------------------------------------------------
EVENT_VALUE: Final = _paths("properties.revenue", "properties.total", "properties.value")
METRIC_NAME: Final = _paths("event", "properties.event", "properties.name")
STRIPPED_EVENT_PROPERTIES: Final = frozenset({"email", "phone", "revenue", "total", "value"})

# --- §8.7 time and unique_id ----------------------------------------------------------------
#: A numeric ``timestamp`` this large (absolute value) is Unix milliseconds, a smaller one
#: seconds: 1e11 s is the year 5138, 1e11 ms is 1973 (``event_time_iso``).
MILLISECONDS_FROM: Final = 1e11
#: ``unique_id`` of an event without a usable ``messageId``: this many hex digits of SHA-256
#: (128 bits, so two different events never share one in practice).
UNIQUE_ID_HEX_DIGITS: Final = 32

# --- §7.2 subscription channels -------------------------------------------------------------
CHANNELS: Final = (("email", "email"), ("sms", "sms"))  # consent value → channel key
MARKETING: Final = ("MARKETING",)

# --- §10 messages built from the tables -----------------------------------------------------
MISSING_METRIC_MESSAGE: Final = "Missing required value from " + json.dumps(
    [path.text for path in METRIC_NAME], separators=(",", ":")
)

# === apiVersion v2/v3, the profile-import path (§16-§23) ==================================
#: §17.1: the reference's KlaviyoProfileV2, in emitted order (profile-import and event profile)
USER_ID_ONLY: Final = PathList(USER_ID[:-1])  # §5.1's userId without the anonymousId fallback
IMPORT_PROFILE: Final = RuleTable(
    (
        Rule("external_id", USER_ID_ONLY),
        Rule("anonymous_id", _paths("anonymousId")),
        Rule("email", EMAIL_ONLY),
        *NAMES_AND_PHONE,
        *WORK_AND_PLACE,
        Rule("location.ip", _paths("context.ip", "request_ip")),
        Rule("_kx", _paths("traits._kx", "context.traits._kx")),
        Rule("image", IMAGE),
        Rule("location.timezone", TIMEZONE),
        Rule("location.latitude", _paths("latitude", "context.address.latitude",
                                         "context.location.latitude")),
        Rule("location.longitude", _paths("longitude", "context.address.longitude",
                                          "context.location.longitude")),
        Rule("location.address1", STREET),
    )
)  # fmt: skip

#: §17.3: the reference's WhiteListedTraitsV2, the trait keys that never become properties
IMPORT_EXCLUDED_TRAIT_KEYS: Final = frozenset({
    "email", "firstName", "firstname", "first_name", "lastName", "lastname", "last_name",
    "phone", "title", "organization", "city", "region", "country", "zip", "image", "timezone",
    "anonymousId", "userId", "properties", "location", "_kx", "street", "address",
})  # fmt: skip

#: §17.4: ``integrations.<name>`` read for patch_properties, first truthy in this order
INTEGRATION_NAMES: Final = ("KLAVIYO", "Klaviyo", "klaviyo")
#: §17.4: integrations field → patch_properties key; ``unset`` takes the list as it is, the
#: others the traits' values of the keys listed
PATCH_FIELDS: Final = (
    ("fieldsToUnset", "unset"),
    ("fieldsToAppend", "append"),
    ("fieldsToUnappend", "unappend"),
)
#: §17.5: the ``context.externalId`` type whose id is the Klaviyo profile id
PROFILE_ID_TYPE: Final = "klaviyo-profileId"

# --- §20: track and screen, the reference's KlaviyoTrackV2 --------------------------------------
#: ``value``: the first kept (0 and false included) of these, parsed as a float
IMPORT_EVENT_VALUE: Final = EVENT_VALUE
IMPORT_VALUE_CURRENCY: Final = _paths("properties.currency")
IMPORT_EVENT_TIME: Final = _paths("timestamp", "originalTimestamp")
IMPORT_STRIPPED_EVENT_PROPERTIES: Final = frozenset(
    {"event", "email", "phone", "revenue", "total", "value", "value_currency", "currency"}
)

# --- §19: list jobs ----------------------------------------------------------------------------
#: consent value → (subscriptions key, the profile attribute that must be truthy for it)
CONSENT_CHANNELS: Final = (("email", "email"), ("sms", "phone_number"))
CONSENT_STATUS: Final = {True: "SUBSCRIBED", False: "UNSUBSCRIBED"}

# --- §22: the profile-import path's own messages -----------------------------------------------
NOT_E164: Final = "Phone number is not in E.164 format."
SUBSCRIBE_FLAG_MISSING: Final = "Subscribe flag should be included in group call"
NO_SUBSCRIPTIONS: Final = (
    "No subscriptions could be resolved for v3 API version. Ensure consent channels (email/sms) "
    "match the identifiers present in the event"
)
NO_IDENTIFIER: Final = {
    True: "Profile Id, Email or/and Phone are required to subscribe to a list",
    False: "Email or/and Phone are required to unsubscribe from a list",
}
