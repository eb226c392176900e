"""What ``klaviyo/refusals.py`` refuses before sending is exactly what the emulator refuses."""

from __future__ import annotations

import pytest

from klaviyo_destination.emulator import validation as emulator_validation
from klaviyo_destination.klaviyo import refusals

SAMPLE_EMAILS = [
    "a@b.co", "first.last+tag@sub.example.com", "a@b", "a@.co", "a@b..co", "@b.co", "a b@c.co",
    "a@b.c@d.co", "not-an-email", "", " a@b.co", "ü@exämple.de", "a@b.co.", "a@-b.co",
]  # fmt: skip


SAMPLE_PHONES = [
    "+12345678900", "+12 345 678 900", "+1 (415) 555-0100", "+1.415.555.0101", "+1234567",
    "+1234567890123456", "14155550100", "+1 415 555 0100 ext 7", "+", "", "+1_415_555_0100",
    "+\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669", "+1\t415\n555 0100",
]  # fmt: skip


@pytest.mark.parametrize("email", SAMPLE_EMAILS)
def test_the_email_check_is_the_emulators(email: str) -> None:
    """No stricter than Klaviyo: refused before sending exactly when the emulator refuses."""
    assert refusals.is_email(email) == emulator_validation.is_email(email)


@pytest.mark.parametrize("phone", SAMPLE_PHONES)
def test_the_phone_check_is_the_emulators(phone: str) -> None:
    assert refusals.is_phone(phone) == (emulator_validation.normalize_phone(phone) is not None)
