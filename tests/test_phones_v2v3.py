"""The webhook path's phone rule at apiVersion v2/v3 (Part A 11, ``phones.py``): the phone of
the profile-import, of the event's profile and of each list job entry, through the pure
planning stage. A phone is sent as it is only when Klaviyo's check and the reference's
libphonenumber check (docs/mapping.md §17.2) both pass; the protocol routes keep the reference's
output, its 400 included.
"""

from __future__ import annotations

from typing import Any, Final

import pytest

from klaviyo_destination.ingest import parse_config
from klaviyo_destination.js import JsonObject
from klaviyo_destination.mapping.fields import NOT_E164 as IMPORT_DETAIL
from klaviyo_destination.mapping.profile import is_e164
from klaviyo_destination.phones import NOT_E164, PhoneRule, is_import_phone, is_phone, to_e164
from klaviyo_destination.pipeline import plan_event
from klaviyo_destination.planned import PlannedEvent, job_contacts

#: (phone, DEFAULT_PHONE_REGION, what is sent at v2/v3: the phone, or None when it cannot be)
PHONES: Final = [
    ("+14155550100", None, "+14155550100"),
    ("+1 (415) 555-0100", None, "+1 (415) 555-0100"),  # both checks pass: sent as written
    ("+12 345 678 900", None, "+12 345 678 900"),
    ("1-617-555-1333", None, None),
    ("1-617-555-1333", "US", "+16175551333"),
    # Klaviyo's check passes, the reference's does not (the national 0): E.164 by the region
    ("+44 (0) 20 7946 0958", None, None),
    ("+44 (0) 20 7946 0958", "GB", "+442079460958"),
    # the reference's check passes (digits and + only), Klaviyo's does not (the slashes)
    ("+1/415/555/0100", None, None),
    ("+1/415/555/0100", "US", "+14155550100"),
    ("call me maybe", "US", None),
]


def _config(version: str = "v3") -> Any:
    return parse_config({"privateApiKey": "pk_test", "apiVersion": version, "consent": "email"})


def _group(phone: Any, consent: Any, *, email: bool = True) -> JsonObject:
    traits: JsonObject = {"subscribe": True, "consent": consent, "phone": phone}
    if email:
        traits["email"] = "a@example.com"
    return {"type": "group", "groupId": "L1", "userId": "u1", "traits": traits}


def _identify(phone: Any, consent: Any = "email") -> JsonObject:
    traits = {"email": "a@example.com", "phone": phone}
    traits["properties"] = {"subscribe": True, "listId": "L1", "consent": consent}
    return {"type": "identify", "userId": "u1", "traits": traits}


def _planned(event: Any, region: str | None = None, version: str = "v3") -> PlannedEvent:
    return plan_event(event, _config(version), phones=PhoneRule(region))


def _phones(planned: PlannedEvent) -> list[Any]:
    """The phone of every place a request can carry one, ``None`` where it is left out."""
    found = []
    for request in planned.requests:
        attributes = request.body["data"]["attributes"]
        if request.endpoint.name == "EVENTS":
            found.append(attributes["profile"]["data"]["attributes"].get("phone_number"))
        elif request.endpoint.name == "PROFILE_IMPORT":
            found.append(attributes.get("phone_number"))
        else:
            found.extend(entry.get("phone_number") for entry in job_contacts(request))
    return found


@pytest.mark.parametrize("version", ["v2", "v3"])
@pytest.mark.parametrize(("consent", "sms"), [("email", False), (["email", "sms"], True)])
@pytest.mark.parametrize(("phone", "region", "sent"), PHONES)
def test_the_phone_table_for_a_list_job(
    version: str, phone: str, region: str | None, sent: str | None, consent: Any, sms: bool
) -> None:
    planned = _planned(_group(phone, consent), region, version)
    if sent is not None:
        assert _phones(planned) == [sent]
        assert planned.warnings == ()
    elif sms:
        assert planned.error is not None
        assert (planned.error.code, planned.error.field) == ("invalid_event", "traits.phone")
        assert planned.error.message.startswith(f"{IMPORT_DETAIL} traits.phone is ")
        assert "/data/attributes/profiles/data/0/attributes/phone_number" in planned.error.message
        assert phone not in planned.error.message
    else:
        assert _phones(planned) == [None]
        [warning] = planned.warnings
        assert (warning["code"], warning["field"]) == (NOT_E164, "traits.phone")
        assert "left out of the subscription" in warning["message"]


@pytest.mark.parametrize(("phone", "region", "sent"), PHONES)
def test_identify_sends_one_phone_in_the_profile_and_the_job(
    phone: str, region: str | None, sent: str | None
) -> None:
    planned = _planned(_identify(phone), region)
    assert planned.error is None
    assert _phones(planned) == [sent, sent]
    assert bool(planned.warnings) == (sent is None)


def test_track_leaves_it_out_of_the_events_profile_when_another_identifier_is_there() -> None:
    event = {"type": "track", "event": "E", "userId": "u1", "traits": {"phone": "555-1234"}}
    event["context"] = {"traits": {"phone": "555-1234"}}
    planned = _planned(event)
    assert _phones(planned) == [None]
    assert "left out of the event's profile" in planned.warnings[0]["message"]


def test_a_phone_that_is_all_the_profile_has_rejects_the_identify() -> None:
    event = {"type": "identify", "anonymousId": "anon-1", "traits": {"phone": "555-1234"}}
    planned = _planned(event)
    assert planned.error is not None
    assert "all that identifies the profile" in planned.error.message


def test_an_unsubscribe_names_its_job() -> None:
    event = _group("555-1234", "email")
    event["traits"]["subscribe"] = False
    planned = _planned(event)
    assert "left out of the unsubscription" in planned.warnings[0]["message"]


@pytest.mark.parametrize("phone", [14155550100, True])
def test_a_phone_that_is_not_a_string_is_the_references_400(phone: Any) -> None:
    planned = _planned(_identify(phone))
    assert planned.error is not None
    assert planned.error.message == IMPORT_DETAIL


@pytest.mark.parametrize(
    "event", [_identify("555-1234"), _identify("+44 (0) 20 7946 0958")], ids=["local", "prefix"]
)
def test_the_protocol_routes_keep_the_references_400(event: Any) -> None:
    """Part A 5: without the rule (the protocol's planning) the reference's check holds."""
    planned = plan_event(event, _config())
    assert planned.error is not None
    assert (planned.error.message, planned.error.field) == (IMPORT_DETAIL, "traits.phone")


@pytest.mark.parametrize(("phone", "region", "sent"), PHONES)
def test_to_e164_with_both_checks(phone: str, region: str | None, sent: str | None) -> None:
    assert to_e164(phone, region, is_import_phone) == sent


@pytest.mark.parametrize(
    "phone",
    [*(row[0] for row in PHONES), "+390612345678", "+99912345678", "+1 415 555 0100 ext 1", ""],
)
def test_a_remembered_answer_is_libphonenumbers(phone: str) -> None:
    """``is_import_phone`` remembers its answers: asked again, it gives both checks' answer."""
    expected = is_phone(phone) and is_e164(phone)
    assert [is_import_phone(phone), is_import_phone(phone)] == [expected, expected]
