"""``bench/without_handler.py``, the service whose processor route answers a body it has seen from
a cache: ``make bench`` measures it beside the service to tell what the handler costs, so it must
answer and log exactly as the service does, or its figure is not the service's without its
handler. Run as the benchmark runs it (tests never import ``bench``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Final

import httpx
import orjson

from support.compose import local_service_env
from support.servers import Server, start_service_with

from .raw_http import LANE, processor_body

#: what differs between two requests of the same body
VOLATILE = frozenset({"time", "request_id", "duration_ms"})
#: A request's line is written after its answer: how long the test waits for it.
LOG_DEADLINE: Final = 10.0


def _request_lines(server: Server) -> list[dict[str, Any]]:
    lines = []
    for line in server.output().splitlines():
        if line.startswith("{"):
            record = orjson.loads(line)
            if record.get("path") == LANE:
                lines.append(record)
    return lines


def _logged(server: Server, count: int) -> list[dict[str, Any]]:
    """The server's first ``count`` request lines of the lane, waited for until
    :data:`LOG_DEADLINE` (fewer if they never come)."""
    give_up = time.monotonic() + LOG_DEADLINE
    lines = _request_lines(server)
    while len(lines) < count and time.monotonic() < give_up:
        time.sleep(0.02)
        lines = _request_lines(server)
    return lines


def test_a_repeated_body_is_answered_and_logged_as_the_service_does(
    emulator_server: Server, service: httpx.Client, tmp_path: Path
) -> None:
    env = local_service_env(emulator_server.url)
    body = processor_body(2)
    expected = service.post(LANE, content=body, headers={"content-type": "application/json"})
    with start_service_with(env, tmp_path, module="bench.without_handler") as bare:
        answers = [
            httpx.post(
                f"{bare.url}{LANE}", content=body, headers={"content-type": "application/json"}
            )
            for _ in range(3)
        ]
        logged = _logged(bare, len(answers))
        output = bare.output()

    assert "answers a body it has seen from a cache" in output
    assert expected.status_code == 200
    for answer in answers:
        assert answer.status_code == 200
        assert answer.content == expected.content
        assert answer.headers["apiversion"] == expected.headers["apiversion"]
    assert len(logged) == 3, output
    first, *repeated = logged
    assert first["jobs"] == 2
    for line in repeated:
        assert {k: v for k, v in line.items() if k not in VOLATILE} == {
            k: v for k, v in first.items() if k not in VOLATILE
        }
