"""The seed page's sample events, shown as request examples in the OpenAPI docs (``/docs``).

The same events live in ``examples/*.json`` for the README's curl lines.
"""

from __future__ import annotations

from typing import Any, Final

SAMPLES: Final[dict[str, dict[str, Any]]] = {
    "identify": {
        "type": "identify",
        "userId": "user-1",
        "messageId": "msg-identify-1",
        "traits": {
            "email": "ada@example.com",
            "firstName": "Ada",
            "lastName": "Lovelace",
            "phone": "+14155550100",
            "city": "London",
            "country": "GB",
            "plan": "pro",
            "properties": {
                "subscribe": True,
                "listId": "XUepkK",
                "consent": ["email"],
                "smsConsent": True,
            },
        },
        "timestamp": "2026-11-28T12:00:00Z",
    },
    "track": {
        "type": "track",
        "event": "Product Added",
        "userId": "user-1",
        "messageId": "msg-track-1",
        "properties": {
            "product_id": "p-1",
            "sku": "G-32",
            "name": "Monopoly",
            "price": 14,
            "quantity": 1,
            "value": "14.00",
            "products": [
                {"product_id": "p-1", "sku": "G-32", "name": "Monopoly", "price": 14, "quantity": 1}
            ],
        },
        "context": {"traits": {"email": "ada@example.com"}},
        "timestamp": "2026-11-28T12:01:00Z",
    },
    "screen": {
        "type": "screen",
        "event": "Home Screen",
        "userId": "user-1",
        "messageId": "msg-screen-1",
        "properties": {"name": "Home", "variant": "B"},
        "context": {"traits": {"email": "ada@example.com"}},
        "timestamp": "2026-11-28T12:02:00Z",
    },
    "group": {
        "type": "group",
        "groupId": "XUepkK",
        "userId": "user-1",
        "messageId": "msg-group-1",
        "traits": {
            "subscribe": True,
            "email": "ada@example.com",
            "properties": {"consent": ["email"]},
        },
    },
}
