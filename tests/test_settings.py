"""Settings refused at start-up, and where they are read from (issue 27, first contact 3 and 6).

A value that cannot work fails ``Settings()``, so ``serve`` exits with one line instead of
starting "ready" and failing every event; ``.env`` in the working directory is read after the
environment.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Final

import pytest
from pydantic import SecretStr, ValidationError

from klaviyo_destination.cli import main
from klaviyo_destination.settings import EMULATOR_PLACEHOLDER_KEY, Settings

#: Every variable these tests set, cleared first: the caller's environment must not count.
NAMES: Final = (
    "KLAVIYO_BASE_URL",
    "KLAVIYO_PRIVATE_API_KEY",
    "KLAVIYO_LIST_ID",
    "WEBHOOK_TOKEN",
    "HOST",
    "PORT",
)


#: A command that reads the settings and, were they accepted, would return without serving.
CHECK: Final = ["transform", "events.json"]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no .env of the checkout's
    (tmp_path / "events.json").write_text("[]", encoding="utf-8")


# --- KLAVIYO_BASE_URL ------------------------------------------------------------------------

#: (value, accepted): what KLAVIYO_BASE_URL may be.
BASE_URLS: Final = [
    ("https://a.klaviyo.com", True),
    ("http://127.0.0.1:8081", True),
    ("http://emulator:8081/", True),
    ("https://proxy.internal/klaviyo", True),
    ("embedded", True),
    ("notaurl", False),
    ("a.klaviyo.com", False),
    ("ftp://a.klaviyo.com", False),
    ("file:///etc/passwd", False),
    ("http://", False),
    ("https://:443", False),
    ("https://a.klaviyo.com:99999", False),
    ("", False),
]


@pytest.mark.parametrize(("value", "accepted"), BASE_URLS)
def test_klaviyo_base_url_is_an_http_url(value: str, accepted: bool) -> None:
    if accepted:
        assert Settings(klaviyo_base_url=value).klaviyo_base_url == value
        return
    with pytest.raises(ValidationError) as raised:
        Settings(klaviyo_base_url=value)
    [error] = raised.value.errors(include_input=False)
    assert error["loc"] == ("klaviyo_base_url",)


@pytest.mark.parametrize("value", [v for v, accepted in BASE_URLS if not accepted and v])
def test_a_bad_klaviyo_url_fails_start_up_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    monkeypatch.setenv("KLAVIYO_BASE_URL", value)
    assert main(CHECK) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line == (
        "klaviyo-destination: invalid settings: KLAVIYO_BASE_URL: must be an http:// or "
        "https:// URL with a host (or 'embedded')"
    )


# --- RUDDER_TRANSFORMER_URL and REDIS_URL: the same trap (every pass-through a 502; limits
# quietly local for ever) ---------------------------------------------------------------------

#: (setting, value, accepted)
OTHER_URLS: Final = [
    ("rudder_transformer_url", "http://rudder-transformer:9090", True),
    ("rudder_transformer_url", "https://transformer.internal/base", True),
    ("rudder_transformer_url", "", True),  # blank: unset
    ("rudder_transformer_url", "notaurl", False),
    ("rudder_transformer_url", "localhost:9090", False),
    ("rudder_transformer_url", "ftp://transformer", False),
    ("rudder_transformer_url", "http://:9090", False),
    ("redis_url", "redis://127.0.0.1:6379/0", True),
    ("redis_url", "rediss://user:pw@redis.internal:6380", True),
    ("redis_url", "unix:///run/redis.sock", True),
    ("redis_url", "", True),  # blank: unset
    ("redis_url", "127.0.0.1:6379", False),
    ("redis_url", "http://redis:6379", False),
    ("redis_url", "redis://:6379", False),
    ("redis_url", "redis://redis:99999", False),
]


@pytest.mark.parametrize(("name", "value", "accepted"), OTHER_URLS)
def test_the_other_urls_are_checked_at_start_up(name: str, value: str, accepted: bool) -> None:
    if accepted:
        Settings.model_validate({name: value})
        return
    with pytest.raises(ValidationError) as raised:
        Settings.model_validate({name: value})
    [error] = raised.value.errors(include_input=False)
    assert error["loc"] == (name,)
    assert "pw" not in str(raised.value)
    assert value not in error["msg"]


def test_the_command_exits_non_zero_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    """The installed command as a user runs it, in a process of its own."""
    run = subprocess.run(
        [sys.executable, "-m", "klaviyo_destination", "serve"],
        env={"KLAVIYO_BASE_URL": "ftp://a.klaviyo.com", "PATH": ""},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert run.returncode == 2
    assert run.stdout == ""
    [line] = run.stderr.splitlines()
    assert line.startswith("klaviyo-destination: invalid settings: KLAVIYO_BASE_URL: ")


# --- the compose file's placeholder key --------------------------------------------------------

#: (key, base URL, accepted): the placeholder goes to a plain-http emulator only.
PLACEHOLDER: Final = [
    (EMULATOR_PLACEHOLDER_KEY, "http://emulator:8081", True),
    (EMULATOR_PLACEHOLDER_KEY, "http://127.0.0.1:8081", True),
    (EMULATOR_PLACEHOLDER_KEY, "embedded", True),
    (EMULATOR_PLACEHOLDER_KEY, None, False),  # the default: https://a.klaviyo.com
    (EMULATOR_PLACEHOLDER_KEY, "https://a.klaviyo.com", False),
    (EMULATOR_PLACEHOLDER_KEY, "https://egress.internal/klaviyo", False),
    ("pk_real", "https://a.klaviyo.com", True),
    ("pk_real", "http://emulator:8081", True),
    ("emulator-key-2", "https://a.klaviyo.com", True),  # a key like any other
]


@pytest.mark.parametrize(("key", "url", "accepted"), PLACEHOLDER)
def test_the_placeholder_key_never_leaves_for_a_real_klaviyo(
    key: str, url: str | None, accepted: bool
) -> None:
    values: dict[str, Any] = {"klaviyo_private_api_key": SecretStr(key)}
    if url is not None:
        values["klaviyo_base_url"] = url
    if accepted:
        Settings(**values)
        return
    with pytest.raises(ValidationError, match="placeholder"):
        Settings(**values)


def test_compose_with_only_the_base_url_overridden_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """What docker-compose.yml hands the service when only KLAVIYO_BASE_URL is set (``serve``
    reads the same settings first: ``test_the_command_exits_...`` runs it)."""
    monkeypatch.setenv("KLAVIYO_PRIVATE_API_KEY", EMULATOR_PLACEHOLDER_KEY)
    monkeypatch.setenv("KLAVIYO_BASE_URL", "https://a.klaviyo.com")
    monkeypatch.setenv("WEBHOOK_TOKEN", "change-me")
    assert main(CHECK) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(
        "klaviyo-destination: invalid settings: KLAVIYO_PRIVATE_API_KEY is the emulator's "
        "placeholder (emulator-key) but KLAVIYO_BASE_URL is not a plain-http emulator"
    )


# --- serve's arguments -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["serve", "--port", "99999"], "argument --port: 99999 is not a port (1 to 65535)"),
        (["serve", "--port", "0"], "argument --port: 0 is not a port (1 to 65535)"),
        (["serve", "--port", "-1"], "argument --port: -1 is not a port (1 to 65535)"),
        (["serve", "--port", "http"], "argument --port: 'http' is not a whole number"),
        (["serve", "--workers", "0"], "argument --workers: 0: at least 1 worker"),
        (["serve", "--workers", "-2"], "argument --workers: -2: at least 1 worker"),
    ],
)
def test_serve_refuses_a_port_or_worker_count_that_cannot_be(
    capsys: pytest.CaptureFixture[str], argv: list[str], said: str
) -> None:
    # --host 0.0.0.0 without a token: refused before serving, were the arguments accepted
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--host", "0.0.0.0"])  # noqa: S104 -- never bound
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(f"error: {said}")


# --- .env ----------------------------------------------------------------------------------------


def test_dotenv_is_read_after_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text(
        "KLAVIYO_LIST_ID=from-dotenv\nPORT=9090\nKLAVIYO_PRIVATE_API_KEY=pk_dotenv\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("PORT", "7070")

    settings = Settings()

    assert settings.klaviyo_list_id == "from-dotenv"
    assert settings.port == 7070  # the environment wins over .env
    assert settings.klaviyo_private_api_key == SecretStr("pk_dotenv")
    assert Settings(port=6060).port == 6060  # and arguments over both


def test_a_bad_value_in_dotenv_fails_start_up_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / ".env").write_text("KLAVIYO_BASE_URL=notaurl\n", encoding="utf-8")
    assert main(CHECK) == 2
    assert "KLAVIYO_BASE_URL" in capsys.readouterr().err


def test_every_setting_is_in_the_readmes_table() -> None:
    """The README's settings table is where users look a knob up: one missing there is one
    nobody finds (the table's first column names one or more variables, in backticks)."""
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    listed = {
        name
        for line in readme.splitlines()
        if line.startswith("| `")
        for name in re.findall(r"`([A-Z][A-Z0-9_]*)`", line.split("|")[1])
    }
    missing = sorted(name.upper() for name in Settings.model_fields if name.upper() not in listed)
    assert missing == [], f"not in the README's settings table: {missing}"
