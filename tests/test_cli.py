"""The ``klaviyo-destination`` command: transform (offline dry run) and serve's safety checks."""

from __future__ import annotations

import gc
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from klaviyo_destination.cli import GC_THRESHOLDS, _say_delivering, _say_upstream, main, worker_app
from klaviyo_destination.settings import Settings
from tests.helpers.apps import served

TRACK = {
    "type": "track",
    "event": "Signed Up",
    "userId": "u1",
    "messageId": "m1",
    "properties": {"plan": "pro"},
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "KLAVIYO_PRIVATE_API_KEY",
        "WEBHOOK_TOKEN",
        "HOST",
        "PORT",
        "KLAVIYO_LIST_ID",
        "KLAVIYO_API_VERSION",
    ):
        monkeypatch.delenv(name, raising=False)


def test_transform_a_file_prints_the_planned_requests(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = tmp_path / "events.json"
    events.write_text(json.dumps([TRACK, {"type": "page"}]))

    assert main(["transform", str(events)]) == 0

    results = json.loads(capsys.readouterr().out)["results"]
    assert [r["status"] for r in results] == ["planned", "rejected"]
    [request] = results[0]["requests"]
    assert request["url"] == "https://a.klaviyo.com/api/events"
    assert request["headers"]["Authorization"] == "Klaviyo-API-Key ***"
    assert request["body"]["data"]["attributes"]["unique_id"] == "m1"
    assert results[1]["error"]["message"] == "Event type page is not supported"


def test_transform_reads_stdin_and_masks_a_configured_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KLAVIYO_PRIVATE_API_KEY", "pk_cli_secret")
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(json.dumps(TRACK).encode())))

    assert main(["transform", "-"]) == 0

    out = capsys.readouterr().out
    assert json.loads(out)["results"][0]["status"] == "planned"
    assert "pk_cli_secret" not in out


@pytest.mark.parametrize(
    ("version", "revision"), [(" v3", "2026-04-15"), ("V2", "2024-10-15"), ("v1", "2023-02-22")]
)
def test_transform_plans_at_klaviyo_api_version(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    version: str,
    revision: str,
) -> None:
    monkeypatch.setenv("KLAVIYO_API_VERSION", version)
    identify = {"type": "identify", "userId": "u1", "traits": {"email": "a@example.com"}}
    events = tmp_path / "identify.json"
    events.write_text(json.dumps(identify))
    assert main(["transform", str(events)]) == 0
    [request] = json.loads(capsys.readouterr().out)["results"][0]["requests"]
    assert request["headers"]["revision"] == revision
    expected = "/api/profiles" if revision == "2023-02-22" else "/api/profile-import"
    assert request["url"] == "https://a.klaviyo.com" + expected
    assert ("on_conflict" in request) == (revision == "2023-02-22")


def test_transform_exits_1_when_every_event_is_rejected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = tmp_path / "page.json"
    events.write_text(json.dumps({"type": "page"}))
    assert main(["transform", str(events)]) == 1
    assert json.loads(capsys.readouterr().out)["results"][0]["status"] == "rejected"


def test_transform_refuses_invalid_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = tmp_path / "broken.json"
    events.write_text("{nope")
    assert main(["transform", str(events)]) == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_serve_refuses_a_public_address_without_a_token(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["serve", "--host", "0.0.0.0"]) == 2  # noqa: S104 -- the refusal under test
    assert "WEBHOOK_TOKEN" in capsys.readouterr().err


def test_invalid_settings_are_reported_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KLAVIYO_CONSENT", "email,fax")
    monkeypatch.setenv("PORT", "not-a-port")
    assert main(["transform", "-"]) == 2
    err = capsys.readouterr().err
    assert "invalid settings" in err
    assert "KLAVIYO_CONSENT" in err
    assert "PORT" in err
    assert "not-a-port" not in err  # reasons, never the values


@pytest.fixture
def root_logging() -> Iterator[None]:
    """Put the root logger back as it was: the worker installs its handler process-wide."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def process_gc() -> Iterator[None]:
    """Put the collector back as it was: serving's process policy is the process's."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.anyio
@pytest.mark.usefixtures("root_logging", "process_gc")
async def test_a_worker_process_configures_its_own_redacting_logs_and_process_policy(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KLAVIYO_PRIVATE_API_KEY", "pk_worker_secret")
    app = worker_app()
    logging.getLogger("klaviyo_destination.test").warning("echo pk_worker_secret")
    out = capsys.readouterr().out
    assert "echo ***" in out
    assert "pk_worker_secret" not in out
    assert gc.get_threshold() != GC_THRESHOLDS  # building the app sets nothing process-wide
    async with served(app) as client:
        assert gc.get_threshold() == GC_THRESHOLDS  # set once the app has started
        assert gc.get_freeze_count() > 0
        spec = (await client.get("/openapi.json")).json()
    assert spec["info"]["title"] == "klaviyo-destination"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SERVE_LANES", "sometimes"),
        ("DEFAULT_PHONE_REGION", "usa"),
        ("KLAVIYO_API_VERSION", "v4"),
        ("KLAVIYO_API_VERSION", "2026-04-15"),
    ],
)
def test_a_bad_setting_fails_start_up_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    assert main(["serve"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"klaviyo-destination: invalid settings: {name}: ")
    assert value not in line


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://a.klaviyo.com", "https://a.klaviyo.com"),
        ("http://127.0.0.1:8081/base", "http://127.0.0.1:8081/base"),
        ("https://user:s3cret@proxy.internal:8443/k", "https://**********@proxy.internal:8443/k"),
        ("https://token@proxy.internal", "https://**********@proxy.internal"),
        ("http://a:b@c@proxy.internal/", "http://**********@proxy.internal/"),
    ],
)
def test_the_banner_never_shows_credentials_in_a_url(
    url: str, shown: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A proxy in front of Klaviyo or rudder-transformer may take credentials in its URL;
    the start-up banner names both URLs, and is printed where logs are collected."""
    settings = Settings(klaviyo_base_url=url, rudder_transformer_url=url)
    _say_delivering(settings, "127.0.0.1", 8080)
    _say_upstream(settings)
    printed = capsys.readouterr().out
    assert f"Delivering to {shown} at" in printed
    assert f"pass through to {shown}\n" in printed
    for secret in ("s3cret", "token@", "a:b"):
        assert secret not in printed
