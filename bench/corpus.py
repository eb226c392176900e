"""A deterministic event corpus for the benchmarks: 60% track, 20% screen, 20% group, no identify.

Track events are half ecommerce (with product lists) and half custom events; every event carries
the context a RudderStack SDK sends, about 1.9 KB of JSON each. The same seed gives the same
events, so runs compare.
"""

from __future__ import annotations

import random
from typing import Any

CONFIG: dict[str, Any] = {"privateApiKey": "pk_bench", "listId": "XUepkK", "consent": ["email"]}
ECOMMERCE = ("Product Viewed", "Product Added", "Checkout Started", "Product Clicked")
CUSTOM = ("Signed Up", "Video Played", "Order Completed", "Article Read", "Search")


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


def event(rng: random.Random, index: int) -> dict[str, Any]:
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
    rng = random.Random(seed)  # noqa: S311 -- benchmark data, not security
    return [event(rng, index) for index in range(count)]
