"""The webhook path's phone rule (Part A 11, ``phones.py``), through the pure planning stage.

A table of phones x consent: what is sent, warned about or rejected, and the input field named.
The rudder-server protocol plans without the rule, so it keeps the reference's output.
"""

from __future__ import annotations

from typing import Any, Final

import pytest
from pydantic import ValidationError

from klaviyo_destination.ingest import parse_config
from klaviyo_destination.ingest.parse import parse
from klaviyo_destination.js import JsonObject
from klaviyo_destination.phones import NOT_E164, PHONE_DETAIL, PhoneRule, is_phone, to_e164
from klaviyo_destination.pipeline import plan_event
from klaviyo_destination.planned import PlannedEvent, PlannedRequest, subscriptions_of
from klaviyo_destination.settings import Settings

SEED_PHONE: Final = "1-617-555-1333"

#: (phone, DEFAULT_PHONE_REGION, what is sent: the phone as E.164, or None when it cannot be)
PHONES: Final = [
    ("+14155550100", None, "+14155550100"),  # E.164: sent as it is
    ("+14155550100", "GB", "+14155550100"),  # ... whatever the region
    ("+1 (415) 555-0100", None, "+1 (415) 555-0100"),  # Klaviyo takes the spaces and parens
    ("+1.415.555.0101", "US", "+1.415.555.0101"),  # ... and dots: sent as the reference does
    ("+12 345 678 900", None, "+12 345 678 900"),  # the seed page's identify phone
    (SEED_PHONE, None, None),  # national, no region: no guessing
    (SEED_PHONE, "US", "+16175551333"),
    ("(617) 555-1333", "US", "+16175551333"),
    ("(617) 555-1333", "GB", None),  # not a valid GB number
    ("020 7946 0018", "GB", "+442079460018"),
    ("020 7946 0018", "US", None),
    ("14155550100", None, None),  # no plus, no region
    ("call me maybe", None, None),  # garbage
    ("call me maybe", "US", None),
    ("12", "US", None),  # too short
    ("+1234567", "US", None),  # too short for E.164, even with a plus
    ("555-CALL", "US", None),  # letters
    ("1-800-FLOWERS", None, None),  # letters: libphonenumber reads a vanity number only ...
    ("1-800-FLOWERS", "US", "+18003569377"),  # ... with a region to read it in
]
#: consent (``traits.properties.consent``) and whether it asks for SMS
CONSENTS: Final = [("email", False), ("sms", True), (["email", "sms"], True)]


def _config(**config: Any) -> Any:
    return parse_config({"privateApiKey": "pk_test", **config})


def _group(phone: Any, consent: Any, *, at: str = "context.traits.phone", **traits: Any) -> Any:
    event: JsonObject = {
        "type": "group",
        "groupId": "L1",
        "userId": "u1",
        "traits": {"subscribe": True, "properties": {"consent": consent}, **traits},
        "context": {"traits": {"email": "a@example.com"}},
    }
    root, *keys = at.split(".")
    target = event.setdefault(root, {})
    for key in keys[:-1]:
        target = target.setdefault(key, {})
    target[keys[-1]] = phone
    return event


def _planned(event: Any, region: str | None = None, **config: Any) -> PlannedEvent:
    return plan_event(event, _config(**config), phones=PhoneRule(region))


def _entry(planned: PlannedEvent) -> JsonObject:
    assert planned.error is None, planned.error
    [request] = [r for r in planned.requests if "subscriptions" in r.body["data"]["attributes"]]
    [entry] = subscriptions_of(request)
    return entry


def _profile(planned: PlannedEvent) -> JsonObject:
    assert planned.error is None, planned.error
    attributes: JsonObject = planned.requests[0].body["data"]["attributes"]
    return attributes


def _assert_no_number(text: str, phone: str) -> None:
    """PII: the number itself is never repeated (Klaviyo's example number aside)."""
    text = text.removeprefix(PHONE_DETAIL)
    digits = "".join(c for c in phone if c.isdigit())
    assert phone not in text
    assert not digits or digits not in "".join(c for c in text if c.isdigit())


@pytest.mark.parametrize(("consent", "sms"), CONSENTS, ids=["email", "sms", "both"])
@pytest.mark.parametrize(("phone", "region", "sent"), PHONES)
def test_the_phone_table(
    phone: str, region: str | None, sent: str | None, consent: Any, sms: bool
) -> None:
    planned = _planned(_group(phone, consent), region)
    if sent is not None:
        assert _entry(planned)["phone_number"] == sent
        assert planned.warnings == ()
    elif sms:
        assert planned.error is not None
        assert (planned.error.code, planned.error.field) == (
            "invalid_event",
            "context.traits.phone",
        )
        assert planned.error.message.startswith(f"{PHONE_DETAIL}: context.traits.phone is ")
        assert "/data/attributes/subscriptions/0/phone_number" in planned.error.message
        assert "SMS subscription needs it" in planned.error.message
        _assert_no_number(planned.error.message, phone)
    else:
        assert _entry(planned) == {"email": "a@example.com", "channels": {"email": ["MARKETING"]}}
        [warning] = planned.warnings
        assert (warning["code"], warning["field"]) == (NOT_E164, "context.traits.phone")
        assert "left out of the subscription" in warning["message"]
        assert ("DEFAULT_PHONE_REGION is unset" in warning["message"]) == (region is None)
        _assert_no_number(warning["message"], phone)


@pytest.mark.parametrize("field", ["traits.phone", "context.traits.phone", "properties.phone"])
@pytest.mark.parametrize(("consent", "outcome"), [("email", "warned"), ("sms", "rejected")])
def test_the_input_field_the_phone_came_from_is_named(
    field: str, consent: str, outcome: str
) -> None:
    planned = _planned(_group(SEED_PHONE, consent, at=field))
    if outcome == "warned":
        assert [w["field"] for w in planned.warnings] == [field]
    else:
        assert planned.error is not None
        assert planned.error.field == field


def test_the_first_field_of_the_lookup_is_the_one_named() -> None:
    event = _group(SEED_PHONE, "email", at="traits.phone")
    event["context"]["traits"]["phone"] = "+14155550100"  # read only when traits.phone is not
    [warning] = _planned(event).warnings
    assert warning["field"] == "traits.phone"


def _identify(phone: Any, *, subscribe: bool = True, **traits: Any) -> Any:
    properties = {"subscribe": subscribe, "listId": "L1", "consent": ["email"]}
    return {
        "type": "identify",
        "userId": "u1",
        "traits": {"email": "a@example.com", "phone": phone, "properties": properties, **traits},
    }


def test_identify_leaves_the_phone_out_of_the_profile_and_the_subscription() -> None:
    planned = _planned(_identify(SEED_PHONE))
    assert "phone_number" not in _profile(planned)
    assert _entry(planned) == {"email": "a@example.com", "channels": {"email": ["MARKETING"]}}
    [warning] = planned.warnings  # one warning for the one input field
    assert warning["field"] == "traits.phone"
    assert "left out of the profile and subscription" in warning["message"]


def test_identify_without_a_subscription_leaves_it_out_of_the_profile() -> None:
    planned = _planned(_identify(SEED_PHONE, subscribe=False))
    assert len(planned.requests) == 1
    assert _profile(planned) == {"external_id": "u1", "email": "a@example.com"}
    assert "left out of the profile:" in planned.warnings[0]["message"]


def test_identify_with_a_region_sends_the_same_e164_number_in_both() -> None:
    planned = _planned(_identify(SEED_PHONE), "US")
    assert _profile(planned)["phone_number"] == _entry(planned)["phone_number"] == "+16175551333"
    assert planned.warnings == ()


def test_identify_with_sms_consent_is_rejected_before_anything_is_sent() -> None:
    properties = {"subscribe": True, "listId": "L1", "consent": "email", "smsConsent": True}
    planned = _planned(_identify(SEED_PHONE, properties=properties))  # D2: SMS by the event
    assert planned.requests == []
    assert planned.error is not None
    assert planned.error.field == "traits.phone"


def test_a_phone_that_is_all_a_profile_has_rejects_the_event() -> None:
    event = {"type": "identify", "userId": "u1", "traits": {"phone": SEED_PHONE}}
    planned = _planned(event, enforceEmailAsPrimary=True)  # no external_id then
    assert planned.error is not None
    assert planned.error.field == "traits.phone"
    assert "it is all that identifies the profile" in planned.error.message
    assert "/data/attributes/phone_number of /api/profiles" in planned.error.message


def test_a_phone_that_is_all_a_subscriber_has_rejects_the_event() -> None:
    event = _group(SEED_PHONE, "email")
    del event["context"]["traits"]["email"]
    planned = _planned(event)
    assert planned.error is not None
    assert planned.error.field == "context.traits.phone"
    assert "it is all that identifies the subscription" in planned.error.message


def test_a_retl_identifier_is_named_where_it_came_from() -> None:
    event = {
        "type": "identify",
        "userId": "u1",
        "traits": {"email": "a@example.com"},
        "context": {
            "mappedToDestination": True,
            "externalId": [{"identifierType": "phone", "id": "12"}],
        },
    }
    planned = _planned(event, listId="L1")
    assert "phone_number" not in _profile(planned)
    assert planned.warnings[0]["field"] == "context.externalId.0.id"


@pytest.mark.parametrize("phone", [16175551333, True, {"n": 1}])
def test_a_phone_that_is_not_a_string_is_klaviyos_to_judge(phone: Any) -> None:
    planned = _planned(_group(phone, "sms"))
    assert _entry(planned)["phone_number"] == phone
    assert planned.warnings == ()


def test_track_is_sent_as_the_reference_sends_it() -> None:
    """Klaviyo ignores an event profile's phone it cannot read; it refuses no event for it."""
    event = {"type": "track", "event": "E", "userId": "u1", "traits": {"phone": SEED_PHONE}}
    planned = _planned(event, "US")
    assert planned.requests[0].body["data"]["attributes"]["profile"]["$phone_number"] == SEED_PHONE
    assert planned.warnings == ()


@pytest.mark.parametrize("event", [_group(SEED_PHONE, "sms"), _identify(SEED_PHONE)])
def test_the_protocol_routes_plan_without_the_rule(event: Any) -> None:
    """Part A 5: rudder-server gets what the reference returns, phone and all."""
    planned = plan_event(event, _config())
    assert planned.error is None
    assert all(_phones_in(r) == [SEED_PHONE] for r in planned.requests)


def _phones_in(request: PlannedRequest) -> list[Any]:
    attributes = request.body["data"]["attributes"]
    holders = attributes.get("subscriptions", [attributes])
    return [holder.get("phone_number") for holder in holders]


def test_the_rule_leaves_the_mappings_requests_as_they_were() -> None:
    config = _config()
    planned = plan_event(_identify(SEED_PHONE), config)
    before = [r.body for r in planned.requests]
    _, parsed = parse(_identify(SEED_PHONE), config, require_key=True)
    assert not isinstance(parsed, Exception)
    sent, warnings = PhoneRule().apply(parsed, planned.requests)
    assert [r.body for r in planned.requests] == before
    assert [_phones_in(r) for r in sent] == [[None], [None]]
    assert len(warnings) == 1


@pytest.mark.parametrize(
    ("value", "region", "expected"),
    [(phone, region, sent) for phone, region, sent in PHONES]
    + [("+44 20 7946 0018 ext 7", "US", None), ("0044 20 7946 0018", "GB", "+442079460018")],
)
def test_to_e164(value: str, region: str | None, expected: str | None) -> None:
    assert to_e164(value, region) == expected
    if expected is not None:
        assert is_phone(expected)


@pytest.mark.parametrize(
    ("given", "kept"), [("US", "US"), ("gb", "GB"), (" de ", "DE"), ("", None)]
)
def test_default_phone_region_is_a_region_code(given: str, kept: str | None) -> None:
    assert Settings(default_phone_region=given).default_phone_region == kept
    assert Settings().default_phone_region is None  # unset: no guessing


@pytest.mark.parametrize("given", ["USA", "XX", "U1", "united states", "001"])
def test_an_unknown_region_is_refused(given: str) -> None:
    with pytest.raises(ValidationError, match="ISO 3166-1 alpha-2"):
        Settings(default_phone_region=given)
