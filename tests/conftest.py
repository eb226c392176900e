"""Shared fixtures. Test doubles are injected (transports, settings), never patched in."""

from __future__ import annotations

import functools
import os
from collections.abc import Generator

import pytest
import stamina

from tests.helpers.apps import WAYS, Build, built

#: The real redis-server fixture (``redis_server``) for the shared rate-limit tests.
pytest_plugins = ["tests.helpers.redis"]

#: user_properties key marking a report that _contract_skips_fail_in_ci turned into a failure.
CONTRACT_SKIP: str = "contract-skip"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session", autouse=True)
def _no_stamina_hooks() -> None:
    """What ``serve`` sets for its process (``cli.apply_process_policy``): RetryHook logs and
    counts every retry, and stamina's own hooks would add log lines and global counters."""
    stamina.instrumentation.set_on_retry_hooks([])


@pytest.fixture(params=WAYS)
def way(request: pytest.FixtureRequest) -> str:
    """Each way ``serve`` can serve the app (``tests/helpers/apps.py``)."""
    way: str = request.param
    return way


@pytest.fixture
def build(way: str) -> Build:
    """``create_app``, served each way."""
    return functools.partial(built, way)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item,
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    _contract_skips_fail_in_ci(item, report)
    return report


def _contract_skips_fail_in_ci(item: pytest.Item, report: pytest.TestReport) -> None:
    """In CI a contract claim must be proven: a skipped contract test is a failure there.

    Locally a skip stays a skip, so a partial checkout can still run the rest.
    """
    if os.environ.get("CI") != "true" or item.get_closest_marker("contract") is None:
        return
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    reason = reason.removeprefix("Skipped: ")
    report.outcome = "failed"
    report.longrepr = f"contract test skipped with CI=true: {reason}"
    report.user_properties.append((CONTRACT_SKIP, reason))


def pytest_report_teststatus(
    report: pytest.CollectReport | pytest.TestReport,
) -> tuple[str, str, str] | None:
    # A skip raised in setup would otherwise be counted as an error, not as the failed test it is.
    if any(key == CONTRACT_SKIP for key, _ in getattr(report, "user_properties", ())):
        return "failed", "F", "FAILED"
    return None
