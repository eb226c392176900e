"""Three ``serve`` processes on one Klaviyo account, sharing its limits through a real
redis-server (REDIS_URL), against the emulator: the issue-28 acceptance runs.

Without Redis each process admits its own 40 a second (120 reached the emulator in one second,
measured with REDIS_URL blank); with it, the account's 40 hold across all three. Stopping Redis
mid-run loses and duplicates nothing: each process goes on with its REPLICAS share, and says so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from support.compose import PRIVATE_KEY
from support.emulator_control import EmulatorControl
from support.redis_server import RedisServer
from support.servers import TOKEN_AUTH, Server, start_service
from support.windows import busiest
from tests.helpers.redis import NEEDS_REDIS

pytestmark = NEEDS_REDIS

PROCESSES = 3
BURST = 40
#: Events per request: 30 requests for 600 events, all sent at once, spread over the processes.
PER_REQUEST = 20


@contextmanager
def serve(
    emulator_url: str, redis: RedisServer, logs: Path, **extra: str
) -> Iterator[list[Server]]:
    env = {
        "REDIS_URL": redis.url,
        "EVENTS_RATE_BURST": str(BURST),
        "DELIVERY_DEADLINE": "120",  # 600 events at 40 a second take 15 s
        **extra,
    }
    folders = [logs / f"process-{n}" for n in range(PROCESSES)]
    for folder in folders:
        folder.mkdir()
    with ExitStack() as stack:
        servers = [stack.enter_context(start_service(emulator_url, f, env)) for f in folders]
        yield servers
        for server in servers:
            assert PRIVATE_KEY not in server.output(), "the private key reached the output"


def events(count: int) -> list[dict[str, Any]]:
    """``count`` track events of ``count`` users (delivered concurrently, as in production)."""
    return [
        {
            "type": "track",
            "event": "Signed Up",
            "userId": f"u{n}",
            "messageId": f"shared-{n}",
            "properties": {"plan": "pro"},
            "context": {"traits": {"email": f"u{n}@example.com"}},
        }
        for n in range(count)
    ]


async def send_all(servers: list[Server], count: int) -> list[str]:
    """``count`` events at once, round robin over the processes; every event's status."""
    batch = events(count)
    chunks = [batch[i : i + PER_REQUEST] for i in range(0, count, PER_REQUEST)]
    async with httpx.AsyncClient(headers=TOKEN_AUTH, timeout=180) as client:
        answers = await asyncio.gather(
            *(
                client.post(f"{servers[i % len(servers)].url}/v1/events", json=chunk)
                for i, chunk in enumerate(chunks)
            )
        )
    statuses = []
    for answer in answers:
        assert answer.status_code == 200, answer.text
        statuses += [result["status"] for result in answer.json()["results"]]
    return statuses


def arrived(emulator: EmulatorControl) -> list[dict[str, Any]]:
    return [r for r in emulator.requests("/api/events") if r["status"] == 202]


def message_ids(recorded: list[dict[str, Any]]) -> list[str]:
    return [r["body"]["data"]["attributes"]["unique_id"] for r in recorded]


def test_three_processes_stay_within_one_burst(
    emulator_server: Server, emulator: EmulatorControl, tmp_path: Path
) -> None:
    with RedisServer(tmp_path) as redis, serve(emulator_server.url, redis, tmp_path) as servers:
        for server in servers:
            assert httpx.get(server.url + "/ready").json()["rate_limits"] == "shared"
        statuses = asyncio.run(send_all(servers, 600))
    assert statuses == ["delivered"] * 600
    recorded = arrived(emulator)
    assert sorted(message_ids(recorded)) == sorted(f"shared-{n}" for n in range(600))
    times = [datetime.fromisoformat(r["time"]).timestamp() for r in recorded]
    assert busiest(times, 1.0) <= BURST


def test_redis_stopped_mid_run_everything_is_still_delivered(
    emulator_server: Server, emulator: EmulatorControl, tmp_path: Path
) -> None:
    replicas = {"REPLICAS": str(PROCESSES)}  # each takes a third while Redis is away
    with (
        RedisServer(tmp_path) as redis,
        serve(emulator_server.url, redis, tmp_path, **replicas) as servers,
    ):

        async def run() -> list[str]:
            sending = asyncio.create_task(send_all(servers, 300))
            # The emulator's count, polled: there is no event to wait on.
            while len(arrived(emulator)) < 60:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            redis.stop()
            return await sending

        statuses = asyncio.run(run())
        ready = [httpx.get(server.url + "/ready").json()["rate_limits"] for server in servers]
        metrics = [httpx.get(server.url + "/metrics").text for server in servers]
    assert statuses == ["delivered"] * 300
    assert sorted(message_ids(arrived(emulator))) == sorted(f"shared-{n}" for n in range(300))
    assert ready == ["local"] * PROCESSES
    assert all("klaviyo_rate_limits_shared 0.0" in text for text in metrics)
