"""Seeded RudderStack event generators: the same seed gives the same events, so runs compare.

* :func:`corpus`, for the benchmarks: 60% track (half ecommerce with product lists, half
  custom), 20% screen, 20% group, no identify (identify makes a network call while
  transforming); every event carries the context a RudderStack SDK sends, ~1.9 KB of JSON.
* :func:`signed_up`, the one plain track event the API and edge tests send.
* :func:`generate`, for the fault matrix and the soak: every event with what it should leave
  in Klaviyo (:class:`Planned`). The corpus has no identify and no invalid events and its users
  may share phone numbers, so here every user has its own email and phone, identifies change a
  trait the final profile must show, and about 5% of the events are ones the mapping rejects
  (``page``, a track without a name), so every run has permanent failures with a reason.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from support.compose import LIST_ID


def signed_up(message_id: str = "m1") -> dict[str, Any]:
    """A plain track event: a custom metric with one property, by a user with an email."""
    return {
        "type": "track",
        "event": "Signed Up",
        "userId": "u1",
        "messageId": message_id,
        "properties": {"plan": "pro"},
        "context": {"traits": {"email": "ada@example.com"}},
    }


# --- the benchmarks' corpus -------------------------------------------------------------------

#: The destination config the benchmarks transform with.
CORPUS_CONFIG: Final[dict[str, Any]] = {
    "privateApiKey": "pk_bench",
    "listId": "XUepkK",
    "consent": ["email"],
}
ECOMMERCE: Final = ("Product Viewed", "Product Added", "Checkout Started", "Product Clicked")
CUSTOM: Final = ("Signed Up", "Video Played", "Order Completed", "Article Read", "Search")


def _context(rng: random.Random, user: str) -> dict[str, Any]:
    return {
        "app": {"name": "RudderLabs JavaScript SDK", "build": "1.0.0", "version": "3.0.1"},
        "library": {"name": "RudderLabs JavaScript SDK", "version": "3.0.1"},
        "locale": "en-US",
        "os": {"name": "Mac OS X", "version": "14.2.1"},
        "screen": {"density": 2, "width": 1728, "height": 1117},
        "page": {
            "path": "/products/item",
            "url": f"https://shop.example.com/products/item?id={rng.randrange(10**6)}",
            "referrer": "https://www.google.com/",
            "title": "Example shop",
        },
        "userAgent": (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
            "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
        ),
        "traits": {
            "email": f"{user}@example.com",
            "phone": f"+1415555{rng.randrange(1000, 9999)}",
            "firstName": "Ada",
            "lastName": "Lovelace",
            "city": "London",
            "country": "GB",
            "plan": rng.choice(["free", "pro", "enterprise"]),
            "age": rng.randrange(18, 80),
        },
        "ip": "203.0.113.7",
        "timezone": "Europe/London",
        "sessionId": 1732795200000 + rng.randrange(10**6),
        "sessionStart": False,
        "instanceId": f"inst-{rng.randrange(10**9):09d}",
        "device": {
            "id": f"dev-{rng.randrange(10**9):09d}",
            "manufacturer": "Apple",
            "model": "MacBookPro18,3",
            "type": "desktop",
            "adTrackingEnabled": False,
        },
        "network": {"bluetooth": False, "cellular": False, "wifi": True, "carrier": "unknown"},
        "campaign": {
            "name": "winter-sale",
            "source": "newsletter",
            "medium": "email",
            "term": "board games",
            "content": f"variant-{rng.choice('ABC')}",
        },
        "consentManagement": {
            "deniedConsentIds": [],
            "allowedConsentIds": ["C0001", "C0002", "C0003"],
            "provider": "oneTrust",
        },
        "userAgentClientHint": {
            "brands": [
                {"brand": "Chromium", "version": "131"},
                {"brand": "Google Chrome", "version": "131"},
            ],
            "mobile": False,
            "platform": "macOS",
        },
    }


def _products(rng: random.Random) -> list[dict[str, Any]]:
    return [
        {
            "product_id": f"p-{rng.randrange(10**5)}",
            "sku": f"SKU-{rng.randrange(10**4)}",
            "name": rng.choice(["Monopoly", "UNO", "Chess", "Go"]),
            "price": round(rng.uniform(1, 100), 2),
            "quantity": rng.randrange(1, 4),
            "category": "Games",
            "url": "https://shop.example.com/p",
            "image_url": "https://shop.example.com/p.jpg",
        }
        for _ in range(rng.randrange(1, 4))
    ]


def _base(rng: random.Random, index: int, kind: str) -> dict[str, Any]:
    user = f"user{rng.randrange(500)}"
    return {
        "type": kind,
        "messageId": f"msg-{index:07d}-{rng.randrange(10**9):09d}",
        "userId": user,
        "anonymousId": f"anon-{rng.randrange(10**9)}",
        "channel": "web",
        "context": _context(rng, user),
        "originalTimestamp": "2026-11-28T12:00:00.000Z",
        "timestamp": "2026-11-28T12:00:00.120Z",
        "sentAt": "2026-11-28T12:00:00.100Z",
        "receivedAt": "2026-11-28T12:00:00.130Z",
        "integrations": {"All": True},
    }


def corpus_event(rng: random.Random, index: int) -> dict[str, Any]:
    """Event ``index`` of the corpus: the next draws of ``rng``."""
    roll = rng.random()
    if roll < 0.3:
        message = _base(rng, index, "track")
        message["event"] = rng.choice(ECOMMERCE)
        message["properties"] = {
            "order_id": f"o-{index}",
            "value": round(rng.uniform(5, 300), 2),
            "currency": "USD",
            "checkout_url": "https://shop.example.com/checkout",
            "products": _products(rng),
        }
    elif roll < 0.6:
        message = _base(rng, index, "track")
        message["event"] = rng.choice(CUSTOM)
        message["properties"] = {"revenue": rng.randrange(100), "source": "web", "step": 2}
    elif roll < 0.8:
        message = _base(rng, index, "screen")
        message["event"] = "Home Screen"
        message["properties"] = {"name": "Home", "variant": rng.choice("ABC")}
    else:
        message = _base(rng, index, "group")
        message["groupId"] = rng.choice(["XUepkK", "Ab12Cd"])
        message["traits"] = {"subscribe": True, "name": "Beta testers"}
    return message


def corpus(count: int = 1000, seed: int = 20230222) -> list[dict[str, Any]]:
    """The benchmarks' ``count`` events, the same for a ``seed``."""
    rng = random.Random(seed)  # noqa: S311 -- benchmark data, not security
    return [corpus_event(rng, index) for index in range(count)]


# --- the fault matrix's and the soak's events, with their expected effect --------------------

#: The service's default list (``KLAVIYO_LIST_ID`` in ``local_service_env``).
DEFAULT_LIST: Final = LIST_ID
GROUP_LISTS: Final = ("GroupListA", "GroupListB")
#: Custom names only: the mapping renames ecommerce events ("Product Viewed" → "Viewed Product").
METRICS: Final = ("Signed Up", "Video Played", "Article Read", "Search Performed")

Kind = Literal["identify", "track", "screen", "group", "invalid"]


@dataclass(frozen=True, slots=True)
class Planned:
    """One generated event and its expected effect when delivered."""

    message: dict[str, Any]
    kind: Kind
    user: str
    email: str
    #: identify: the ``plan`` trait the profile ends with (the user's last identify wins).
    plan: str | None = None
    #: identify with subscribe, or group: the list the user must end up in.
    list_id: str | None = None
    #: track, screen: the metric the stored event carries.
    metric: str | None = None
    #: Data Klaviyo refuses: the rejection code expected instead of delivery.
    refusal: str | None = None

    @property
    def message_id(self) -> str:
        message_id: str = self.message["messageId"]
        return message_id


def user_of(index: int) -> tuple[str, str, str]:
    """(userId, email, phone) of user ``index``; all three unique per user."""
    return f"user-{index:05d}", f"user-{index:05d}@example.com", f"+1415555{index % 10000:04d}"


def generate(count: int, *, seed: int, prefix: str = "m") -> list[Planned]:
    """``count`` events over ``max(count // 10, 1)`` users, deterministic for a ``seed``.

    Mix: 20% identify (half subscribe to the default list), 45% track, 15% screen, 15% group,
    5% invalid. ``prefix`` keeps message ids unique across runs that share an emulator.
    """
    rng = random.Random(seed)  # noqa: S311 -- test data, not security
    users = max(count // 10, 1)
    return [
        _planned_event(rng, f"{prefix}-{index:06d}", rng.randrange(users)) for index in range(count)
    ]


def _planned_event(rng: random.Random, message_id: str, user_index: int) -> Planned:
    user, email, phone = user_of(user_index)
    base: dict[str, Any] = {"userId": user, "messageId": message_id}
    traits = {"email": email}
    roll = rng.random()
    if roll < 0.20:
        plan = f"plan-{rng.randrange(1000)}"
        subscribe = rng.random() < 0.5
        # A custom trait lands in the profile's properties; ``traits.properties`` is the
        # subscription's configuration (subscribe, listId, consent), not profile data.
        identify: dict[str, Any] = traits | {"phone": phone, "firstName": f"First{user_index}"}
        identify["plan"] = plan
        if subscribe:
            identify["properties"] = {"subscribe": True}
        message = base | {"type": "identify", "traits": identify}
        list_id = DEFAULT_LIST if subscribe else None
        return Planned(message, "identify", user, email, plan=plan, list_id=list_id)
    if roll < 0.65:
        metric = rng.choice(METRICS)
        properties = {"value": rng.randrange(1, 500), "step": rng.randrange(5)}
        message = base | {
            "type": "track",
            "event": metric,
            "properties": properties,
            "context": {"traits": traits},
        }
        return Planned(message, "track", user, email, metric=metric)
    if roll < 0.80:
        name = rng.choice(("Home", "Cart", "Settings"))
        message = base | {
            "type": "screen",
            "name": name,
            "properties": {"name": name},
            "context": {"traits": traits},
        }
        return Planned(message, "screen", user, email, metric=name)
    if roll < 0.95:
        list_id = rng.choice(GROUP_LISTS)
        message = base | {
            "type": "group",
            "groupId": list_id,
            "traits": {"subscribe": True, "email": email},
        }
        return Planned(message, "group", user, email, list_id=list_id)
    if rng.random() < 0.5:
        message = base | {"type": "page", "name": "Home", "properties": {}}
    else:  # no event name: the mapping's "Missing required value" rejection
        message = base | {"type": "track", "properties": {}, "context": {"traits": traits}}
    return Planned(message, "invalid", user, email)


def with_refused_subscriptions(events: Sequence[Planned], every: int = 4) -> list[Planned]:
    """``events`` with every ``every``-th group event carrying an email Klaviyo refuses, so
    merged subscription jobs hold one: alternately a number (nothing checks it before sending;
    Klaviyo's 400 points at the entry: ``klaviyo_rejected``) and a string that is no email
    address (refused before merging: ``invalid_event``)."""
    out: list[Planned] = []
    groups = 0
    for planned in events:
        if planned.kind == "group":
            groups += 1
            if groups % every == 0:
                odd = (groups // every) % 2 == 1
                email, code = (
                    (12345, "klaviyo_rejected") if odd else ("not-an-email", "invalid_event")
                )
                message = planned.message | {"traits": planned.message["traits"] | {"email": email}}
                planned = dataclasses.replace(
                    planned, message=message, kind="invalid", refusal=code
                )
        out.append(planned)
    return out
