"""A seeded stream of mixed RudderStack events, and what each one should leave in Klaviyo.

``bench/corpus.py`` has no identify and no invalid events, and its users may share phone
numbers, so the reliability runs use this generator instead: every user has its own email and
phone, identifies change a trait the final profile must show, and about 5% of the events are
ones the mapping rejects (``page``, a track without a name), so every run has permanent
failures with a reason.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Final, Literal

#: The service's default list (``KLAVIYO_LIST_ID`` in ``local_service_env``).
DEFAULT_LIST: Final = "LoopList1"
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
    return [_event(rng, f"{prefix}-{index:06d}", rng.randrange(users)) for index in range(count)]


def _event(rng: random.Random, message_id: str, user_index: int) -> Planned:
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
