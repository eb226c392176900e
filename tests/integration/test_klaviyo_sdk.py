"""Klaviyo's own Python SDK (klaviyo-api 25.0.0, a dev dependency) drives the emulator.

The emulator runs as compose runs it (``support/servers.py``); the SDK is pointed at it with
``test_host`` and sends what it sends to Klaviyo: revision 2026-10-15, ``application/vnd.api+json``,
its own models serialised. Every answer is parsed by the SDK into its models, so a shape it
cannot read fails here.
"""

from __future__ import annotations

import json
from typing import Any, Final

import pytest
from klaviyo_api import KlaviyoAPI
from openapi_client import models as m
from openapi_client.exceptions import ApiException
from openapi_client.models.get_accounts4_xx_response import GetAccounts4XXResponse
from pydantic import BaseModel

from klaviyo_destination.klaviyo.facts import NEWEST_REVISION
from support.compose import PRIVATE_KEY
from support.emulator_control import EmulatorControl
from support.servers import Server

EMAIL: Final = "ada@example.com"
PHONE: Final = "+15005550006"
LIST_ID: Final = "SDKLIST"


@pytest.fixture
def klaviyo(emulator_server: Server, emulator: EmulatorControl) -> Any:  # noqa: ARG001
    """The SDK's client on an emptied emulator (``emulator`` resets it), retrying nothing: a
    retry would hide the emulator's first answer."""
    return KlaviyoAPI(PRIVATE_KEY, max_delay=0, max_retries=0, test_host=emulator_server.url)


def parsed(answer: Any, model: type[BaseModel]) -> Any:
    """``answer`` once checked to be the SDK's ``model``; left untyped, as the SDK's optional
    chains are its own business."""
    assert isinstance(answer, model), type(answer)
    return answer


def read_back(profiles: Any, profile_id: str) -> Any:
    answer = profiles.get_profile(profile_id, additional_fields_profile=["subscriptions"])
    return parsed(answer, m.GetProfileResponsePluralConversationsCompoundDocument)


def _upsert(**attributes: Any) -> m.ProfileUpsertQuery:
    meta = attributes.pop("meta", None)
    resource = m.ProfileUpsertQueryResourceObject(
        type=m.ProfileEnum.PROFILE,
        attributes=m.ProfileUpsertQueryResourceObjectAttributes(**attributes),
        meta=meta,
    )
    return m.ProfileUpsertQuery(data=resource)


def _event(name: str, unique_id: str) -> m.EventCreateQueryV2:
    metric = m.MetricCreateQueryResourceObject(
        type=m.MetricEnum.METRIC, attributes=m.MetricCreateQueryResourceObjectAttributes(name=name)
    )
    profile = m.EventProfileCreateQueryResourceObject(
        type=m.ProfileEnum.PROFILE,
        attributes=m.EventProfileCreateQueryResourceObjectAttributes(email=EMAIL),
    )
    attributes = m.EventCreateQueryV2ResourceObjectAttributes(
        properties={"sku": "A-1"},
        value=12.5,
        value_currency="EUR",
        unique_id=unique_id,
        metric=m.EventCreateQueryV2ResourceObjectAttributesMetric(data=metric),
        profile=m.EventCreateQueryV2ResourceObjectAttributesProfile(data=profile),
    )
    resource = m.EventCreateQueryV2ResourceObject(type=m.EventEnum.EVENT, attributes=attributes)
    return m.EventCreateQueryV2(data=resource)


def _list() -> m.SubscriptionCreateJobCreateQueryResourceObjectRelationshipsList:
    data = m.SubscriptionCreateJobCreateQueryResourceObjectRelationshipsListData(
        type=m.ListEnum.LIST, id=LIST_ID
    )
    return m.SubscriptionCreateJobCreateQueryResourceObjectRelationshipsList(data=data)


def _subscribe() -> m.SubscriptionCreateJobCreateQuery:
    channels = m.SubscriptionChannels(
        email=m.EmailSubscriptionParameters(
            marketing=m.SubscriptionParameters(consent="SUBSCRIBED")
        ),
        sms=m.SMSSubscriptionParameters(marketing=m.SubscriptionParameters(consent="SUBSCRIBED")),
    )
    profile = m.ProfileSubscriptionCreateQueryResourceObject(
        type=m.ProfileEnum.PROFILE,
        attributes=m.ProfileSubscriptionCreateQueryResourceObjectAttributes(
            email=EMAIL, phone_number=PHONE, subscriptions=channels
        ),
    )
    profiles = m.SubscriptionCreateJobCreateQueryResourceObjectAttributesProfiles(data=[profile])
    resource = m.SubscriptionCreateJobCreateQueryResourceObject(
        type=m.ProfileSubscriptionBulkCreateJobEnum.PROFILE_MINUS_SUBSCRIPTION_MINUS_BULK_MINUS_CREATE_MINUS_JOB,
        attributes=m.SubscriptionCreateJobCreateQueryResourceObjectAttributes(
            custom_source="sdk test", profiles=profiles
        ),
        relationships=m.SubscriptionCreateJobCreateQueryResourceObjectRelationships(list=_list()),
    )
    return m.SubscriptionCreateJobCreateQuery(data=resource)


def _unsubscribe(*, on_list: bool) -> m.SubscriptionDeleteJobCreateQuery:
    channels = m.UnsubscriptionChannels(
        email=m.EmailUnsubscriptionParameters(
            marketing=m.UnsubscriptionParameters(consent="UNSUBSCRIBED")
        )
    )
    profile = m.ProfileSubscriptionDeleteQueryResourceObject(
        type=m.ProfileEnum.PROFILE,
        attributes=m.ProfileSubscriptionDeleteQueryResourceObjectAttributes(
            email=EMAIL, subscriptions=channels
        ),
    )
    target = m.SubscriptionDeleteJobCreateQueryResourceObjectRelationshipsListData(
        type=m.ListEnum.LIST, id=LIST_ID
    )
    relationships = m.SubscriptionDeleteJobCreateQueryResourceObjectRelationships(
        list=m.SubscriptionDeleteJobCreateQueryResourceObjectRelationshipsList(data=target)
    )
    resource = m.SubscriptionDeleteJobCreateQueryResourceObject(
        type=m.ProfileSubscriptionBulkDeleteJobEnum.PROFILE_MINUS_SUBSCRIPTION_MINUS_BULK_MINUS_DELETE_MINUS_JOB,
        attributes=m.SubscriptionDeleteJobCreateQueryResourceObjectAttributes(
            profiles=m.SubscriptionDeleteJobCreateQueryResourceObjectAttributesProfiles(
                data=[profile]
            )
        ),
        relationships=relationships if on_list else None,
    )
    return m.SubscriptionDeleteJobCreateQuery(data=resource)


def test_the_sdk_sends_the_newest_revision(klaviyo: Any, emulator: EmulatorControl) -> None:
    """What the SDK really sends, so the rest of this file tests revision 2026-10-15."""
    klaviyo.Profiles.create_or_update_profile(_upsert(email=EMAIL))

    [request] = emulator.requests("/api/profile-import")
    assert request["headers"]["revision"] == NEWEST_REVISION == "2026-10-15"
    assert request["headers"]["content-type"] == "application/vnd.api+json"


def test_upsert_twice_event_subscribe_unsubscribe_and_read_back(
    klaviyo: Any, emulator: EmulatorControl
) -> None:
    profiles = klaviyo.Profiles
    created = profiles.create_or_update_profile_with_http_info(
        _upsert(email=EMAIL, first_name="Ada", properties={"plan": "free", "tags": "a"})
    )
    patch = m.ProfileMetaPatchProperties
    updated = profiles.create_or_update_profile_with_http_info(
        _upsert(
            email=EMAIL,
            last_name="Lovelace",
            meta=m.ProfileMeta(patch_properties=patch(append={"tags": "b"}, unset="plan")),
        )
    )
    assert klaviyo.Events.create_event(_event("Ordered", "order-1")) is None
    assert profiles.bulk_subscribe_profiles(_subscribe()) is None
    profile_id = parsed(created.data, m.PostProfileResponse).data.id
    subscribed = read_back(profiles, profile_id)
    assert profiles.bulk_unsubscribe_profiles(_unsubscribe(on_list=True)) is None
    listed_out = read_back(profiles, profile_id)
    assert profiles.bulk_unsubscribe_profiles(_unsubscribe(on_list=False)) is None
    everywhere = read_back(profiles, profile_id)

    assert (created.status_code, updated.status_code) == (201, 200)
    assert parsed(updated.data, m.PostProfileResponse).data.id == profile_id
    attributes = subscribed.data.attributes
    assert (attributes.email, attributes.first_name, attributes.last_name) == (
        EMAIL,
        "Ada",
        "Lovelace",
    )
    assert attributes.phone_number == PHONE
    assert attributes.properties == {"tags": ["a", "b"]}
    assert attributes.last_event_date is not None
    email = subscribed.data.attributes.subscriptions.email.marketing
    sms = subscribed.data.attributes.subscriptions.sms.marketing
    assert (email.consent, email.can_receive_email_marketing) == ("SUBSCRIBED", True)
    assert (sms.consent, sms.can_receive_sms_marketing) == ("SUBSCRIBED", True)
    # On the list: unsubscribed from it, still consenting elsewhere.
    email = listed_out.data.attributes.subscriptions.email.marketing
    assert email.consent == "SUBSCRIBED"
    assert [s.list_id for s in email.list_suppressions] == [LIST_ID]
    # Off the list now: "globally unsubscribed".
    email = everywhere.data.attributes.subscriptions.email.marketing
    assert (email.consent, email.can_receive_email_marketing) == ("UNSUBSCRIBED", False)
    assert [s.reason for s in email.suppression] == ["UNSUBSCRIBE"]
    assert everywhere.data.attributes.subscriptions.sms.marketing.consent == "SUBSCRIBED"

    state = emulator.state()
    assert state["consent"][LIST_ID][profile_id]["email"]["consent"] == "UNSUBSCRIBED"
    assert state["consent"][LIST_ID][profile_id]["sms"]["consent"] == "SUBSCRIBED"
    assert state["lists"][LIST_ID] == []
    [event] = state["events"]
    stored = event["attributes"]
    assert (stored["profile_id"], stored["metric_name"], stored["value"]) == (
        profile_id,
        "Ordered",
        12.5,
    )


def test_the_same_unique_id_is_one_event(klaviyo: Any, emulator: EmulatorControl) -> None:
    for _ in range(2):
        klaviyo.Events.create_event(_event("Ordered", "order-1"))

    assert len(emulator.state()["events"]) == 1


def test_a_refusal_reaches_the_sdk_in_klaviyos_error_shape(klaviyo: Any) -> None:
    with pytest.raises(ApiException) as raised:
        klaviyo.Profiles.create_or_update_profile(_upsert(email=EMAIL, phone_number="12"))

    body = raised.value.body
    assert raised.value.status == 400
    assert isinstance(body, str)
    [error] = json.loads(body)["errors"]
    assert error["code"] == "invalid"
    assert error["source"] == {"pointer": "/data/attributes/phone_number"}
    # The model the SDK reads a 4XX into.
    assert GetAccounts4XXResponse.from_json(body) is not None
