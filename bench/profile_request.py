"""One route's cost per request and per event, in this process, through the whole ASGI app.

    .venv/bin/python bench/profile_request.py [--route processor] [--batch 100] [--requests 300]
        [--runs 3] [--log] [--connection] [--profile tottime]

The app is the one ``serve`` builds (``create_app`` behind ``serving.wrap``, its lifespan, every
middleware, the process policy), called directly with ASGI messages, so the figures leave out
only uvicorn and the socket. With ``--connection`` the requests are HTTP bytes fed to the
connection ``serve`` uses (uvicorn's httptools protocol as ``serving/edge_protocol.py`` extends
it), under uvloop, on a transport that
keeps what is written: uvicorn's parsing and request cycle are in, only the socket is out.
Bodies are the benchmark's own (``bench_service.bodies``: the corpus, with rudder-server's
metadata and whole destination per job). Logging is off unless ``--log`` (then the request
lines go through the service's own JSON formatter to /dev/null). ``--profile`` adds a cProfile
table of one more run, sorted by the given key. Used to profile before changing anything, and
for the before/after figures in bench/optimisations.md.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import logging
import os
import pstats
import statistics
import sys
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import uvicorn
import uvloop
from asgi_lifespan import LifespanManager
from pydantic import SecretStr
from uvicorn.server import ServerState

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_service import PROCESSOR, ROUTER, WEBHOOK, bodies, corpus_without_identify
from bench.loadgen import request_bytes
from klaviyo_destination import cli, logs, serving
from klaviyo_destination.app import create_app
from klaviyo_destination.serving.edge_protocol import EdgeProtocol
from klaviyo_destination.settings import Settings
from support.asgi import post_scope
from support.transport import RecordingTransport

ROUTES = {"processor": PROCESSOR, "router": ROUTER, "webhook-dry-run": "/v1/transform"}
Message = MutableMapping[str, Any]


class _Connection:
    """One keep-alive connection of ``serve``'s protocol to the app, without a socket."""

    def __init__(self, app: Any, state: dict[str, Any], path: str) -> None:
        config = uvicorn.Config(app, log_config=None, access_log=False, http=EdgeProtocol)
        config.load()
        self.protocol = EdgeProtocol(config, ServerState(), state)
        self.transport = RecordingTransport(self._wrote)
        self.protocol.connection_made(self.transport)  # type: ignore[arg-type]
        self.path = path
        self.answered: asyncio.Future[bytes] | None = None

    def _wrote(self, written: bytes) -> None:
        """Sets ``answered`` once a whole answer (head, ``Content-Length`` body) is written."""
        head, found, body = written.partition(b"\r\n\r\n")
        length = head.lower().partition(b"content-length: ")[2].split(b"\r\n", 1)[0]
        if found and length and len(body) >= int(length) and self.answered is not None:
            self.answered.set_result(written)

    async def request(self, body: bytes) -> None:
        self.transport.written = b""
        self.answered = asyncio.get_running_loop().create_future()
        self.protocol.data_received(request_bytes(self.path, body, host="localhost"))
        answer = await self.answered
        if not answer.startswith(b"HTTP/1.1 200 ") or self.transport.closed:
            raise SystemExit(f"{self.path} answered {answer[:300]!r} (or closed)")


async def _measure(
    path: str,
    payloads: list[bytes],
    requests: int,
    runs: int,
    sort: str | None,
    *,
    connection: bool = False,
) -> tuple[list[float], str | None]:
    settings = Settings(
        klaviyo_private_api_key=SecretStr("pk_bench"), klaviyo_base_url="http://127.0.0.1:9"
    )
    app = serving.wrap(create_app(settings), settings)
    async with LifespanManager(app) as manager:
        cli.apply_process_policy()  # as serve does once the app has started
        asgi, state = manager.app, dict(manager._state)

        async def one(body: bytes) -> None:
            sent: list[Message] = []
            messages: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

            async def receive() -> Message:
                return messages.pop() if messages else {"type": "http.disconnect"}

            async def send(message: Message) -> None:
                sent.append(message)

            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"host", b"localhost"),
            ]
            await asgi(post_scope(path, headers, state), receive, send)
            if sent[0]["status"] != 200:
                raise SystemExit(f"{path} answered {sent[0]['status']}: {sent[1:]}")

        request = _Connection(app, manager._state, path).request if connection else one

        async def run() -> float:
            started = time.perf_counter()
            for index in range(requests):
                await request(payloads[index % len(payloads)])
            return (time.perf_counter() - started) / requests

        for body in payloads[:20]:
            await request(body)  # warm-up
        times = [await run() for _ in range(runs)]
        table = None
        if sort is not None:
            profile = cProfile.Profile()
            profile.enable()
            await run()
            profile.disable()
            out = io.StringIO()
            pstats.Stats(profile, stream=out).sort_stats(sort).print_stats(40)
            table = out.getvalue()
        return times, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--route", choices=sorted(ROUTES), default="processor")
    parser.add_argument("--batch", type=int, default=100, help="events a request")
    parser.add_argument("--requests", type=int, default=300, help="requests a run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--log", action="store_true", help="keep the request log lines on")
    parser.add_argument("--profile", metavar="SORT", default=None, help="e.g. tottime")
    parser.add_argument(
        "--connection", action="store_true", help="through uvicorn's protocol, under uvloop"
    )
    args = parser.parse_args()
    if args.log:
        stdout, sys.stdout = sys.stdout, open(os.devnull, "w")  # noqa: SIM115
        logs.configure(["pk_bench"], "INFO", json=True)  # the handler keeps /dev/null
        sys.stdout = stdout
    else:
        logging.disable(logging.CRITICAL)
    path = ROUTES[args.route]
    events = corpus_without_identify(1000)
    payloads = bodies(WEBHOOK if path == "/v1/transform" else path, events, args.batch)
    measuring = _measure(
        path, payloads, args.requests, args.runs, args.profile, connection=args.connection
    )
    times, table = uvloop.run(measuring) if args.connection else asyncio.run(measuring)
    best, median = min(times), statistics.median(times)
    print(
        f"{args.route}{' over a connection' if args.connection else ''}, {args.batch} event(s) "
        f"a request, {args.runs} runs of {args.requests}: "
        f"median {median * 1e6:,.1f} us a request ({median / args.batch * 1e6:,.1f} us an event),"
        f" best {best * 1e6:,.1f} us ({best / args.batch * 1e6:,.1f} us an event)"
    )
    if table is not None:
        print(table)


if __name__ == "__main__":
    main()
