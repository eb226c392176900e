"""Klaviyo's endpoints at the profile-import revisions (2024-10-15 on): parse, check, render.

``routes.py`` registers every path and hands a request here when its revision is not
2023-02-22. Bodies are checked against the revision's schema (``schema.py``) before the rules
(``profile_import``, ``consent``) see them.
"""

from __future__ import annotations

from typing import Final

from fastapi import Request
from starlette.responses import Response

from klaviyo_destination.emulator import answers, consent, profile_import
from klaviyo_destination.emulator.models import JsonObject, Profile
from klaviyo_destination.emulator.revisions import Served
from klaviyo_destination.emulator.store import EmulatorStore
from klaviyo_destination.emulator.validation import decode_body
from klaviyo_destination.emulator.web import JsonApiResponse, base_url
from klaviyo_destination.klaviyo.facts import (
    EVENTS_PATH,
    PROFILE_IMPORT_PATH,
    SUBSCRIPTIONS_PATH,
    UNSUBSCRIPTIONS_PATH,
)

_EXTRA: Final = "additional-fields[profile]"


async def _checked(request: Request, served: Served, path: str) -> JsonObject:
    """The body, decoded and valid for ``POST path`` at this revision (else Klaviyo's 400)."""
    document = decode_body(await request.body(), request.headers.get("content-type"))
    served.schemas.check(f"POST {path}", document)
    return document


async def upsert_profile(request: Request, store: EmulatorStore, served: Served) -> Response:
    """201 when the profile is new, 200 when an existing one was updated."""
    document = await _checked(request, served, PROFILE_IMPORT_PATH)
    profile, created = profile_import.upsert(store, document["data"])
    extra = answers.additional_fields(request.query_params.get(_EXTRA))
    answer = answers.document(served.schemas, profile, store, base_url(request), extra)
    return JsonApiResponse(answer, 201 if created else 200)


async def subscribe(request: Request, store: EmulatorStore, served: Served) -> Response:
    consent.subscribe(store, (await _checked(request, served, SUBSCRIPTIONS_PATH))["data"])
    return Response(status_code=202)


async def unsubscribe(request: Request, store: EmulatorStore, served: Served) -> Response:
    consent.unsubscribe(store, (await _checked(request, served, UNSUBSCRIPTIONS_PATH))["data"])
    return Response(status_code=202)


async def create_event(request: Request, store: EmulatorStore, served: Served) -> Response:
    document = await _checked(request, served, EVENTS_PATH)
    profile_import.create_event(store, document["data"]["attributes"])
    return Response(status_code=202)


def profile(request: Request, store: EmulatorStore, served: Served, profile_id: str) -> Response:
    extra = answers.additional_fields(request.query_params.get(_EXTRA))
    answer = answers.document(
        served.schemas, store.get_profile(profile_id), store, base_url(request), extra
    )
    return JsonApiResponse(answer)


def profile_resources(
    request: Request, store: EmulatorStore, served: Served, found: list[Profile]
) -> list[JsonObject]:
    extra = answers.additional_fields(request.query_params.get(_EXTRA))
    url = base_url(request)
    return [answers.resource(served.schemas, record, store, url, extra) for record in found]
