"""The rudder-server front's shared parts: the profile look-up, the limits, the upstream.

Every Klaviyo job is served here, whatever its ``apiVersion`` (v1, v2 and v3: docs/mapping.md
§16), each with its own destination's config; one request may mix them. The upstream
rudder-transformer (``RUDDER_TRANSFORMER_URL``) gets only what is not Klaviyo's: other
destinations, user transformations, sources (``api/routes.py`` ``pass_through``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..js import JsonObject
from .bodies import Limits, ProtocolBody
from .lookup import ProfileLookup
from .processor import process_jobs
from .router import route_jobs
from .upstream import Upstream


@dataclass(frozen=True, slots=True)
class Front:
    """What the protocol routes of one app share."""

    lookup: ProfileLookup
    limits: Limits
    upstream: Upstream | None = None

    async def processor(
        self, body: ProtocolBody, *, filter_code: bool, base_url: str
    ) -> list[JsonObject]:
        """The items of every job, in input order."""
        per_job = await process_jobs(
            body.jobs, self.lookup, filter_code=filter_code, base_url=base_url
        )
        return [item for items in per_job for item in items]

    async def router(
        self, body: ProtocolBody, *, filter_code: bool, base_url: str
    ) -> list[JsonObject]:
        """Every job in exactly one output (rudder-server checks that)."""
        return await route_jobs(
            body.jobs,
            self.lookup,
            filter_code=filter_code,
            base_url=base_url,
            echo_limit=self.limits.max_echoed_destination_bytes,
            compacted=body.compacted,
        )
