"""The error tree: every exception in one module, drawn in its docstring, each class honest."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Final

import pytest

import klaviyo_destination
from klaviyo_destination import errors
from klaviyo_destination.errors import DestinationError

#: Where exception classes may be defined: the service's tree, and the emulator's own (the
#: emulator stands in for Klaviyo and must not import the service's errors).
ERROR_MODULES: Final = {"klaviyo_destination.errors", "klaviyo_destination.emulator.errors"}
#: Never raised themselves: they group the classes below them.
BASES: Final = {
    errors.DestinationError,
    errors.KlaviyoError,
    errors.RequestError,
    errors.ProfileLookupError,
}


def _modules() -> list[str]:
    found = pkgutil.walk_packages(klaviyo_destination.__path__, "klaviyo_destination.")
    return sorted(info.name for info in found if not info.name.endswith("__main__"))


def _defined_in(module_name: str) -> list[type[BaseException]]:
    module = importlib.import_module(module_name)
    return [
        cls
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, BaseException) and cls.__module__ == module_name
    ]


def _tree() -> list[type[DestinationError]]:
    return [cls for cls in _defined_in(errors.__name__) if issubclass(cls, DestinationError)]


def test_no_exception_class_outside_the_error_modules() -> None:
    strays = [
        f"{cls.__module__}.{cls.__qualname__}"
        for name in _modules()
        if name not in ERROR_MODULES
        for cls in _defined_in(name)
    ]
    assert strays == []


@pytest.mark.parametrize("module_name", sorted(ERROR_MODULES))
def test_every_class_is_drawn_in_the_docstring(module_name: str) -> None:
    module = importlib.import_module(module_name)
    drawing = module.__doc__ or ""
    missing = [cls.__name__ for cls in _defined_in(module_name) if cls.__name__ not in drawing]
    assert missing == []


@pytest.mark.parametrize("cls", [c for c in _tree() if c not in BASES], ids=lambda c: c.__name__)
def test_retryable_is_what_rudder_server_retries(cls: type[DestinationError]) -> None:
    """rudder-server retries 5xx, 408 and 429: a class's ``retryable`` says the same."""
    assert isinstance(cls.status, int)
    assert isinstance(cls.code, str)
    assert cls.retryable is (cls.status >= 500 or cls.status in (408, 429))


def test_a_profile_look_up_error_is_of_its_status_family() -> None:
    families = {
        503: errors.ProfileLookupRetryable,
        500: errors.ProfileLookupRetryable,
        429: errors.ProfileLookupThrottled,
        404: errors.ProfileLookupAborted,
        400: errors.ProfileLookupAborted,
    }
    for status, family in families.items():
        error = errors.ProfileLookupError.of(status, "m")
        assert (type(error), error.status, error.message) == (family, status, "m")


def test_an_upstream_failure_is_relayed_as_a_5xx() -> None:
    assert errors.UpstreamFailed("m", status=500).status == 500
    assert errors.UpstreamFailed("m", status=429).status == 503
    assert (errors.UpstreamError("m").status, errors.UpstreamTimeout("m").status) == (502, 504)
    assert errors.UpstreamError("m").to_dict() == {
        "code": "upstream_unavailable",
        "message": "m",
        "field": None,
    }
