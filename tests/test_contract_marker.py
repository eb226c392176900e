"""The conftest hook: with CI=true a skipped `contract` test fails the run; otherwise it skips."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

TESTS = """
import pytest

@pytest.mark.contract
@pytest.mark.skipif(True, reason="reference folder absent")
def test_contract_skipped_by_mark():
    pass

@pytest.mark.contract
def test_contract_skipped_in_body():
    pytest.skip("schema file absent")

@pytest.mark.contract
def test_contract_that_runs():
    pass

@pytest.mark.skip(reason="not a contract")
def test_ordinary_skip():
    pass

@pytest.mark.contract
@pytest.mark.xfail(reason="known gap", strict=True)
def test_contract_expected_to_fail():
    assert False
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    # The inner run loads the real hooks, not a copy of them.
    pytester.makeconftest(
        "from tests.conftest import pytest_report_teststatus, pytest_runtest_makereport"
    )
    pytester.makeini("[pytest]\nmarkers =\n    contract: a contract claim\n")
    pytester.makepyfile(test_claims=TESTS)
    return pytester


def test_ci_turns_contract_skips_into_failures_naming_the_reason(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")

    result = project.runpytest("-rfs")

    result.assert_outcomes(passed=1, failed=2, skipped=1, xfailed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "FAILED *::test_contract_skipped_by_mark - "
            "contract test skipped with CI=true: reference folder absent",
            "FAILED *::test_contract_skipped_in_body - "
            "contract test skipped with CI=true: schema file absent",
            "SKIPPED *not a contract*",
        ],
        consecutive=False,
    )


@pytest.mark.parametrize("ci", [None, "false", "1"])
def test_without_ci_true_contract_skips_stay_skips(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str | None
) -> None:
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)

    result = project.runpytest()

    result.assert_outcomes(passed=1, skipped=3, xfailed=1)
    assert result.ret == pytest.ExitCode.OK
