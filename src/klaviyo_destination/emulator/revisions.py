"""Which revision a request is served at, from its ``revision`` header, as Klaviyo answers it.

Served as asked: 2023-02-22 (the legacy path), 2024-10-15 and 2026-04-15 (RudderStack's
apiVersion v2 and v3) and 2026-10-15 (the newest, what Klaviyo's Python SDK sends). The first
two are retired at Klaviyo; the emulator keeps them because the service speaks them.

Any other header gets Klaviyo's answer where one was found (no Klaviyo page gives the error
bodies; the quotes are from public code that called the live API):

* missing: 400. The OAS marks the header required; Klaviyo's answer was not found: ours.
* malformed: 400 (a Klaviyo client's notes, checked against the live API on 2026-08-09:
  "a malformed one 400s"); the wording is ours.
* after the newest revision: 404 "Unable to specify a future revision date" (the same notes,
  and a second project's, both quoting the live API in 2026-08).
* retired (released before 2025-01-15): 410. Klaviyo's lifecycle: a retired revision
  "Returns 410 errors or silently falls forward" (developers.klaviyo.com
  /.well-known/skills/klaviyo-migrate-oauth/references/revision-changes.md, and
  /en/docs/api_versioning_and_deprecation_policy); 410 shows a stale client where a silent
  fall-forward would hide it. The wording is ours.
* a live date the emulator does not model (2025-01-15 to 2026-07-15, or between releases):
  Klaviyo serves that revision, a date between releases being read as the latest release
  before it (/en/v2022-09-07.pre/docs/api-versioning-and-deprecation-policy). The emulator
  serves 2026-04-15, the modelled revision closest in these bodies: from 2025-01-15 on they
  require ``subscriptions``, later ones only add channels (shared spec §4), so it accepts a
  little more than Klaviyo would.
* a beta suffix (``2026-10-15.pre``) is read as its date: assumed, not checked.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from klaviyo_destination.emulator.errors import ApiError, ErrorObject, invalid
from klaviyo_destination.emulator.ratelimit import EndpointClass, RateLimit
from klaviyo_destination.emulator.schema import Schemas, load
from klaviyo_destination.klaviyo.facts import (
    NEWEST_REVISION,
    RETIRED_BEFORE,
    REVISION,
    REVISIONS,
    ApiVersion,
    Endpoint,
)

_FORMAT: Final = re.compile(r"^(\d{4}-\d{2}-\d{2})(\.[a-z]+)?$")
#: facts' endpoint classes -> the emulator's quota classes.
_CLASSES: Final[Mapping[Endpoint, EndpointClass]] = {
    Endpoint.PROFILES: EndpointClass.PROFILES,
    Endpoint.EVENTS: EndpointClass.EVENTS,
    Endpoint.SUBSCRIPTIONS: EndpointClass.SUBSCRIPTIONS,
    Endpoint.PROFILE_IMPORT: EndpointClass.PROFILE_IMPORT,
    Endpoint.UNSUBSCRIPTIONS: EndpointClass.UNSUBSCRIPTIONS,
}


@dataclass(frozen=True, slots=True)
class Served:
    """A revision as the emulator serves it; ``limits`` are its tiers from ``facts.py``
    (empty for 2023-02-22, whose tiers are the limiter's defaults)."""

    name: str
    limits: Mapping[EndpointClass, RateLimit]

    @property
    def legacy(self) -> bool:
        """2023-02-22: create-profile, 409 and PATCH, validated by ``validation.py``."""
        return self.name == REVISION

    @property
    def schemas(self) -> Schemas:
        return load(self.name)


def _served(name: str, version: ApiVersion) -> Served:
    limits = {_CLASSES[e]: RateLimit(*limit) for e, limit in REVISIONS[version].limits.items()}
    return Served(name, MappingProxyType(limits))


LEGACY: Final = Served(REVISION, MappingProxyType({}))
#: The revisions served as asked, by header value.
SERVED: Final[Mapping[str, Served]] = MappingProxyType(
    {
        REVISION: LEGACY,
        REVISIONS[ApiVersion.V2].name: _served(REVISIONS[ApiVersion.V2].name, ApiVersion.V2),
        REVISIONS[ApiVersion.V3].name: _served(REVISIONS[ApiVersion.V3].name, ApiVersion.V3),
        NEWEST_REVISION: _served(NEWEST_REVISION, ApiVersion.V3),
    }
)
#: What a live revision the emulator does not model is served as (see the module docstring).
CLOSEST_LIVE: Final = SERVED[REVISIONS[ApiVersion.V3].name]


def resolve(header: str | None) -> Served:
    """The revision to serve, or the ``ApiError`` Klaviyo answers instead."""
    if header is None:
        raise invalid("Missing required header 'revision'.", parameter="revision")
    match = _FORMAT.match(header)
    if match is None:
        detail = f"Invalid revision '{header}': expected a date like {REVISION}."
        raise invalid(detail, parameter="revision")
    day = match.group(1)
    if day in SERVED:
        return SERVED[day]
    if day > NEWEST_REVISION:
        detail = "Unable to specify a future revision date."
        raise ApiError(ErrorObject(404, "not_found", "Not found.", detail, parameter="revision"))
    if day < RETIRED_BEFORE:
        detail = f"Revision {header} is retired; use a revision from {RETIRED_BEFORE} on."
        raise ApiError(ErrorObject(410, "gone", "Gone.", detail, parameter="revision"))
    return CLOSEST_LIVE


def not_at_revision() -> ApiError:
    """An endpoint Klaviyo does not have at the revision asked for (profile-import or
    bulk-delete at 2023-02-22): its 404, as klaviyo-swift-sdk#730 quotes it."""
    detail = "No valid revisions found for method."
    return ApiError(ErrorObject(404, "not_found", "Not found.", detail, parameter="revision"))


def not_modelled(served: Served) -> ApiError:
    """An endpoint Klaviyo has at this revision but the emulator serves at 2023-02-22 only
    (create and update profile): a 404 that says so, rather than answers of another revision."""
    detail = f"The emulator serves this endpoint at revision {REVISION} only, not {served.name}."
    return ApiError(ErrorObject(404, "not_found", "Not found.", detail, parameter="revision"))
