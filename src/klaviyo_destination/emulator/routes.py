"""Klaviyo's endpoints: parse the body, call the store, render.

Each path is registered once; a request at a revision after 2023-02-22 is handed to
``routes_import`` (profile-import and bulk-delete exist only there, create and update profile
are served at 2023-02-22 only).

Every path is served with and without the trailing slash (the OAS writes ``/api/profiles/``,
peers call ``/api/profiles``); a redirect would break POSTs from clients that do not follow.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from typing import Any, Final, TypeVar

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from klaviyo_destination.emulator import resources, routes_import
from klaviyo_destination.emulator.errors import invalid
from klaviyo_destination.emulator.models import JsonObject, Profile
from klaviyo_destination.emulator.revisions import not_at_revision, not_modelled
from klaviyo_destination.emulator.store import EmulatorStore
from klaviyo_destination.emulator.validation import (
    EventCreateQuery,
    ProfileCreateQuery,
    ProfilePartialUpdateQuery,
    SubscriptionCreateJobCreateQuery,
    parse_body,
)
from klaviyo_destination.emulator.web import JsonApiResponse, RevisionDep, StoreDep, base_url

router = APIRouter(prefix="/api")

Handler = TypeVar("Handler", bound=Callable[..., Any])

_FILTER: Final = re.compile(r"^(equals|any)\(\s*(\w+)\s*,\s*(.+)\)$", re.DOTALL)
_PROFILE_FILTERS: Final = ("id", "email", "phone_number", "external_id")


def _route(method: str, path: str) -> Callable[[Handler], Handler]:
    def register(endpoint: Handler) -> Handler:
        router.add_api_route(path, endpoint, methods=[method])
        router.add_api_route(f"{path}/", endpoint, methods=[method], include_in_schema=False)
        return endpoint

    return register


@_route("POST", "/profiles")
async def create_profile(request: Request, store: StoreDep, served: RevisionDep) -> Response:
    if not served.legacy:
        raise not_modelled(served)
    query = parse_body(
        ProfileCreateQuery, await request.body(), request.headers.get("content-type")
    )
    profile = store.create_profile(query.data.attributes)
    return JsonApiResponse({"data": _profile(request, store, profile)}, 201)


@_route("PATCH", "/profiles/{profile_id}")
async def update_profile(
    profile_id: str, request: Request, store: StoreDep, served: RevisionDep
) -> Response:
    if not served.legacy:
        raise not_modelled(served)
    raw = await request.body()
    query = parse_body(ProfilePartialUpdateQuery, raw, request.headers.get("content-type"))
    if query.data.id != profile_id:
        detail = f"The id '{query.data.id}' in the body does not match '{profile_id}' in the URL."
        raise invalid(detail, pointer="/data/id")
    profile = store.update_profile(profile_id, query.data.attributes)
    return JsonApiResponse({"data": _profile(request, store, profile)})


@_route("GET", "/profiles/{profile_id}")
async def get_profile(
    profile_id: str, request: Request, store: StoreDep, served: RevisionDep
) -> Response:
    if not served.legacy:
        return routes_import.profile(request, store, served, profile_id)
    profile = store.get_profile(profile_id)
    return JsonApiResponse({"data": _profile(request, store, profile)})


@_route("GET", "/profiles")
async def get_profiles(request: Request, store: StoreDep, served: RevisionDep) -> Response:
    raw_filter = request.query_params.get("filter")
    if raw_filter is None:
        profiles = list(store.profiles.values())
    else:
        field, values = parse_filter(raw_filter, _PROFILE_FILTERS)
        profiles = store.find_profiles(field, values)
    if not served.legacy:
        return _collection(
            request, routes_import.profile_resources(request, store, served, profiles)
        )
    return _collection(
        request,
        [_profile(request, store, p) for p in profiles],
    )


@_route("POST", "/events")
async def create_event(request: Request, store: StoreDep, served: RevisionDep) -> Response:
    if not served.legacy:
        return await routes_import.create_event(request, store, served)
    query = parse_body(EventCreateQuery, await request.body(), request.headers.get("content-type"))
    store.create_event(query.data.attributes)
    return Response(status_code=202)


@_route("GET", "/events")
async def get_events(request: Request, store: StoreDep) -> Response:
    events = store.events
    raw_filter = request.query_params.get("filter")
    if raw_filter is not None:
        _, profile_ids = parse_filter(raw_filter, ("profile_id",))
        events = [e for e in events if e.profile_id in profile_ids]
    return _collection(request, [resources.event(e, base_url(request)) for e in events])


@_route("POST", "/profile-subscription-bulk-create-jobs")
async def subscribe_profiles(request: Request, store: StoreDep, served: RevisionDep) -> Response:
    if not served.legacy:
        return await routes_import.subscribe(request, store, served)
    content_type = request.headers.get("content-type")
    query = parse_body(SubscriptionCreateJobCreateQuery, await request.body(), content_type)
    store.subscribe(query.data.attributes)
    return Response(status_code=202)


@_route("POST", "/profile-subscription-bulk-delete-jobs")
async def unsubscribe_profiles(request: Request, store: StoreDep, served: RevisionDep) -> Response:
    if served.legacy:
        raise not_at_revision()
    return await routes_import.unsubscribe(request, store, served)


@_route("POST", "/profile-import")
async def import_profile(request: Request, store: StoreDep, served: RevisionDep) -> Response:
    if served.legacy:
        raise not_at_revision()
    return await routes_import.upsert_profile(request, store, served)


@_route("GET", "/lists/{list_id}/profiles")
async def get_list_profiles(list_id: str, request: Request, store: StoreDep) -> Response:
    members = store.list_members(list_id)
    return _collection(request, [_profile(request, store, p) for p in members])


def _profile(request: Request, store: EmulatorStore, profile: Profile) -> JsonObject:
    return resources.profile(profile, base_url(request), store.list_ids_of(profile.id))


def parse_filter(raw: str, fields: Collection[str]) -> tuple[str, list[str]]:
    """``equals(field,"v")`` or ``any(field,["a","b"])``: the subset of Klaviyo's filter
    syntax the inspection endpoints need."""
    match = _FILTER.match(raw.strip())
    if match is None:
        raise invalid(f"Invalid filter provided: {raw}", parameter="filter")
    operator, field, literal = match.groups()
    if field not in fields:
        raise invalid(f"'{field}' is not a valid field for filtering.", parameter="filter")
    try:
        value = orjson.loads(literal)
    except orjson.JSONDecodeError:
        raise invalid(f"Invalid filter value: {literal}", parameter="filter") from None
    values = [value] if operator == "equals" else value
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise invalid(f"Invalid filter value: {literal}", parameter="filter")
    return field, values


def _collection(request: Request, data: list[dict[str, Any]]) -> Response:
    links = {"self": str(request.url), "next": None, "prev": None}
    return JsonApiResponse({"data": data, "links": links})
