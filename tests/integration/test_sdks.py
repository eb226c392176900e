"""The real SDKs, from their registries, pointed at the service as their data plane.

rudder-sdk-python and segment-analytics-python are dev dependencies; the Node SDK
(@rudderstack/rudder-sdk-node) is installed with npm where node and npm exist. Each sends
identify, track, screen and group with its defaults (gzip, Basic auth with the write key as
username), then flushes; the test reads what the emulator holds and how many POSTs were made.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
from rudderstack.analytics.client import Client as RudderClient
from segment.analytics.client import Client as SegmentClient

from support.compose import WEBHOOK_TOKEN
from support.emulator_control import EmulatorControl
from support.servers import Server, start_service

NODE_SDK: Final = "@rudderstack/rudder-sdk-node@3.0.13"
LIST_ID: Final = "SDKLIST"
Json = Any


@pytest.fixture(scope="module")
def sdk_service(
    emulator_server: Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    logs = tmp_path_factory.mktemp("sdk-service")
    with start_service(emulator_server.url, logs) as server:
        yield server


def batch_posts(server: Server) -> list[tuple[int, int]]:
    """``(status, events)`` of each POST to /v1/batch so far, from the service's request log."""
    posts = []
    for line in server.stdout.read_text("utf-8", "replace").splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("path") == "/v1/batch" and record.get("method") == "POST":
                posts.append((record["status"], record.get("events", 0)))
    return posts


def sent_once(posts: list[tuple[int, int]]) -> None:
    """Every POST answered 200 and the four events went exactly once (an SDK may split them
    into batches its own way: the Node SDK sends its first event alone)."""
    assert {status for status, _ in posts} == {200}
    assert sum(events for _, events in posts) == 4


def send_four(client: Any, user: str) -> None:
    email = f"{user}@example.com"
    client.identify(user, {"email": email, "plan": "pro"})
    client.track(user, "Signed Up", {"plan": "pro"}, context={"traits": {"email": email}})
    client.screen(
        user, name="Home", properties={"variant": "B"}, context={"traits": {"email": email}}
    )
    client.group(user, LIST_ID, {"subscribe": True, "email": email})


def assert_arrived(emulator: EmulatorControl, user: str) -> None:
    state = emulator.state()
    email = f"{user}@example.com"
    [profile] = [p for p in state["profiles"] if p["attributes"]["email"] == email]
    assert profile["attributes"]["external_id"] == user
    names = sorted(e["attributes"]["metric_name"] for e in state["events"])
    assert names == ["Home", "Signed Up"]
    members = state["lists"][LIST_ID]
    assert [m["email"] for m in members] == [email]


Factory = Callable[[str, Callable[[Exception, Any], None]], Any]


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(
            lambda url, on_error: RudderClient(WEBHOOK_TOKEN, host=url, on_error=on_error),
            id="rudder-sdk-python",
        ),
        pytest.param(
            lambda url, on_error: SegmentClient(
                WEBHOOK_TOKEN, host=url, on_error=on_error, gzip=True
            ),
            id="segment-analytics-python",
        ),
    ],
)
def test_python_sdks_deliver(sdk_service: Server, emulator: EmulatorControl, make: Factory) -> None:
    errors: list[Any] = []
    client = make(sdk_service.url, lambda error, _: errors.append(error))
    before = len(batch_posts(sdk_service))
    send_four(client, "sdk-user")
    client.flush()
    client.join()
    assert errors == []
    assert_arrived(emulator, "sdk-user")
    sent_once(batch_posts(sdk_service)[before:])


def test_rudder_sdk_retries_a_failure_and_does_not_crash(
    sdk_service: Server, emulator: EmulatorControl
) -> None:
    """Klaviyo down for the first attempt: the answer is a 503 the SDK retries (it reads
    ``code`` and ``message`` from it), and the second attempt delivers."""
    emulator.fault(status=503, count=1, path="/api/events")
    errors: list[Any] = []
    client = RudderClient(
        WEBHOOK_TOKEN, host=sdk_service.url, on_error=lambda e, _: errors.append(e), max_retries=3
    )
    client.track("retry-user", "Signed Up", {}, context={"traits": {"email": "r@example.com"}})
    client.flush()
    client.join()
    assert errors == []
    assert [e["attributes"]["metric_name"] for e in emulator.state()["events"]] == ["Signed Up"]


# --- the Node SDK ------------------------------------------------------------------------------

NODE_SCRIPT = textwrap.dedent(
    """
    const Analytics = require("@rudderstack/rudder-sdk-node");
    const [url, writeKey, list] = process.argv.slice(2);
    const client = new Analytics(writeKey, { dataPlaneUrl: url, flushAt: 20, logLevel: "error" });
    const email = "node-user@example.com";
    const traits = { traits: { email } };
    client.identify({ userId: "node-user", traits: { email, plan: "pro" } });
    client.track({ userId: "node-user", event: "Signed Up", properties: {}, context: traits });
    client.screen({ userId: "node-user", name: "Home", properties: {}, context: traits });
    client.group({ userId: "node-user", groupId: list, traits: { subscribe: true, email } });
    client.flush().then(() => process.exit(0), (error) => {
      console.error("flush failed:", error && error.message);
      process.exit(1);
    });
    """
)


def node_sdk() -> Path | str:
    """A folder with the Node SDK installed, or why it cannot be had here."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return "node and npm are not installed on this machine"
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    folder = cache / "klaviyo-destination" / NODE_SDK.replace("/", "+")
    if not (folder / "node_modules" / "@rudderstack" / "rudder-sdk-node").is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(  # noqa: S603 -- npm with a pinned package name
            ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(folder), NODE_SDK],  # noqa: S607
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if result.returncode != 0:
            return f"npm could not install {NODE_SDK}: {result.stderr[-300:]}"
    return folder


def test_node_sdk_delivers(sdk_service: Server, emulator: EmulatorControl) -> None:
    folder = node_sdk()
    if isinstance(folder, str):
        pytest.skip(folder)
    script = folder / "send.js"
    script.write_text(NODE_SCRIPT, encoding="utf-8")
    before = len(batch_posts(sdk_service))
    result = subprocess.run(  # noqa: S603 -- node running our script
        ["node", str(script), sdk_service.url, WEBHOOK_TOKEN, LIST_ID],  # noqa: S607
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=folder,
    )
    assert result.returncode == 0, result.stderr
    assert_arrived(emulator, "node-user")
    sent_once(batch_posts(sdk_service)[before:])
    assert httpx.get(sdk_service.url + "/health").status_code == 200
