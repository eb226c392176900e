"""The ``klaviyo-destination`` command: ``serve``, ``transform`` and ``emulator``."""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Sequence
from typing import Final

import httpx
import orjson
import stamina
import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr, ValidationError
from pydantic_core import ErrorDetails
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import logs, serving
from .api.auth import guarded
from .api.dry_run import dry_run
from .api.edge import loopback_name
from .app import create_app
from .errors import DestinationError
from .ingest.body import events_of, parse_json
from .ingest.config import from_settings
from .klaviyo.answers import retired_there
from .phones import PhoneRule
from .redact import without_credentials
from .serving.connection import raise_file_limit, serve_options
from .settings import Settings

#: Placeholder key in embedded mode: the emulator checks the header's shape, not the value.
EMBEDDED_KEY = "embedded-emulator-key"
EMBEDDED_BASE_URL = "http://emulator.embedded"
#: Where the embedded emulator is mounted on the service (and protocol answers point).
EMULATOR_PREFIX = "/emulator"
#: What each uvicorn worker process calls for its app.
WORKER_APP: Final = "klaviyo_destination.cli:worker_app"
#: gen-0 threshold raised from CPython's 700: a 100-event request allocates many short-lived
#: containers, and collections were the p99 tail (bench/optimisations.md, the gc.freeze row).
GC_THRESHOLDS: Final = (50_000, 20, 20)
MAX_PORT: Final = 65535


def main(argv: Sequence[str] | None = None, *, handlers: serving.Handlers | None = None) -> int:
    """The command. ``handlers`` replaces hot routes' handlers in what ``serve`` serves (a
    benchmark's instrument, ``bench/without_handler.py``); the app is then built in this process."""
    parser = _parser()
    args = parser.parse_args(argv, namespace=argparse.Namespace(handlers=handlers))
    try:
        settings = Settings()
    except ValidationError as exc:
        # Field and reason only: an input value could be a secret.
        reasons = "; ".join(
            _reason(error) for error in exc.errors(include_input=False, include_url=False)
        )
        print(f"klaviyo-destination: invalid settings: {reasons}", file=sys.stderr)  # noqa: T201
        return 2
    result: int = args.run(args, settings)
    return result


def _reason(error: ErrorDetails) -> str:
    """``NAME: reason`` for a setting, the reason alone for a rule across settings."""
    name = ".".join(map(str, error["loc"])).upper()
    return f"{name}: {error['msg']}" if name else error["msg"]


def _port(text: str) -> int:
    """A TCP port, as ``--port`` takes it: uvicorn would bind another for one out of range."""
    port = _count(text)
    if not 1 <= port <= MAX_PORT:
        raise argparse.ArgumentTypeError(f"{text} is not a port (1 to {MAX_PORT})")
    return port


def _workers(text: str) -> int:
    workers = _count(text)
    if workers < 1:
        raise argparse.ArgumentTypeError(f"{text}: at least 1 worker")
    return workers


def _count(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="klaviyo-destination", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the service (embedded emulator without a key)")
    serve.add_argument("--host", default=None, help="bind address (env HOST)")
    serve.add_argument("--port", type=_port, default=None, help="port (env PORT, default 8080)")
    serve.add_argument("--workers", type=_workers, default=1, help="worker processes (default 1)")
    serve.add_argument(
        "--log-level",
        type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        default=None,
        help="log level (env LOG_LEVEL, default INFO)",
    )
    serve.set_defaults(run=_serve)

    transform = commands.add_parser("transform", help="dry run: print the Klaviyo requests")
    transform.add_argument("file", nargs="?", default="-", help="JSON file of events, - for stdin")
    transform.set_defaults(run=_transform)

    emulator = commands.add_parser("emulator", help="run the Klaviyo emulator")
    emulator.add_argument("--host", default="127.0.0.1")
    emulator.add_argument("--port", type=_port, default=8081, help="port (default 8081)")
    emulator.set_defaults(run=_emulator)
    return parser


def _say(line: str) -> None:
    print(line, flush=True)  # noqa: T201 -- start-up banner for people


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    host = args.host or settings.host or ("0.0.0.0" if settings.webhook_token else "127.0.0.1")  # noqa: S104 -- only with a token
    port = args.port or settings.port
    if settings.webhook_token is None and not loopback_name(host):
        print(  # noqa: T201
            f"klaviyo-destination: refusing to listen on {host} without WEBHOOK_TOKEN; "
            "set WEBHOOK_TOKEN or bind to 127.0.0.1",
            file=sys.stderr,
        )
        return 2
    if args.log_level is not None:
        settings = settings.model_copy(update={"log_level": args.log_level})
        os.environ["LOG_LEVEL"] = args.log_level  # worker processes read their own settings
    _configure_logs(settings)
    _warn(raise_file_limit(settings))
    edge, unenforced = serve_options(settings)
    _warn(unenforced)
    app = (
        _served(_embedded_app(settings, host, port), settings, args.handlers)
        if settings.embedded
        else None
    )
    if settings.webhook_token is None:
        _say(f"No WEBHOOK_TOKEN set: listening on loopback only ({host}:{port}).")
    if app is None:
        _say_delivering(settings, host, port)
        if args.handlers is None:
            uvicorn.run(
                WORKER_APP,
                factory=True,
                host=host,
                port=port,
                workers=args.workers,
                log_config=None,
                access_log=False,  # /v1/events logs one line per request itself
                **edge,
            )
            return 0
        # an instrument's handlers are objects, not importable: its app is built here
        app = _served(create_app(settings), settings, args.handlers)
    elif args.workers > 1:
        _say("Embedded emulator: running one worker (each worker would hold its own state).")
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False, **edge)
    return 0


def _warn(warning: str | None) -> None:
    if warning is not None:
        print(f"klaviyo-destination: warning: {warning}", file=sys.stderr)  # noqa: T201


def _at(settings: Settings) -> str:
    """The revision /v1/events delivers at, as the banner names it."""
    revision = settings.revision
    return f"revision {revision.name} (KLAVIYO_API_VERSION={revision.api_version.value})"


def _say_delivering(settings: Settings, host: str, port: int) -> None:
    _say(
        f"Delivering to {without_credentials(settings.klaviyo_base_url)} at {_at(settings)} on http://{host}:{port}"
    )
    _warn(retired_there(settings.klaviyo_base_url, settings.revision))
    if settings.klaviyo_private_api_key is None:
        _say(
            "No KLAVIYO_PRIVATE_API_KEY: /v1/events rejects events; the rudder-server routes use "
            "each destination's own key."
        )
    _say_upstream(settings)


def _served(app: FastAPI, settings: Settings, handlers: serving.Handlers | None) -> ASGIApp:
    """``app`` as ``serve`` serves it: the lanes in front (``SERVE_LANES``), the process
    policy applied once its lifespan has started."""
    return serving.wrap(_PolicyAtStartup(app), settings, handlers=handlers)


def apply_process_policy() -> None:
    """What a serving process sets for itself, once, when its app has started (bench and
    profiling scripts call it too, to measure what ``serve`` runs)."""
    # RetryHook logs and counts every retry; stamina's own hooks would add a second log line
    # per retry and counters in prometheus-client's global registry.
    stamina.instrumentation.set_on_retry_hooks([])
    # Start-up objects never die: keep them out of every collection, and collect the young
    # generation less often (requests allocate many short-lived dicts).
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class _PolicyAtStartup:
    """``app``, with :func:`apply_process_policy` once its lifespan has started: each worker
    process runs its own lifespan, after its start-up objects exist."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def sent(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                apply_process_policy()
            await send(message)

        await self.app(scope, receive, sent)


def _configure_logs(settings: Settings) -> None:
    secrets = (settings.klaviyo_private_api_key, settings.webhook_token)
    logs.configure(
        [secret.get_secret_value() for secret in secrets if secret is not None],
        settings.log_level,
    )


def worker_app() -> ASGIApp:
    """The app of one uvicorn worker: a fresh process needs its own logging (and redaction)."""
    settings = Settings()
    _configure_logs(settings)
    return _served(create_app(settings), settings, None)


def _embedded_app(settings: Settings, host: str, port: int) -> FastAPI:
    from .emulator import create_emulator

    emulator = create_emulator()
    embedded = settings.model_copy(
        update={
            "klaviyo_private_api_key": SecretStr(EMBEDDED_KEY),
            "klaviyo_base_url": EMBEDDED_BASE_URL,
        }
    )
    url = f"http://{host}:{port}"
    _say(
        "No KLAVIYO_PRIVATE_API_KEY or KLAVIYO_BASE_URL set: delivering to the embedded Klaviyo "
        f"emulator at {_at(settings)}; nothing reaches Klaviyo."
    )
    _say(f"Service:  {url}   (API docs: {url}/docs)")
    sample = '{"type":"track","event":"Signed Up","userId":"u1","messageId":"m1","properties":{}}'
    # The token's place, never the token: the banner is a log line.
    auth = " -H 'Authorization: Bearer <WEBHOOK_TOKEN>'" if settings.webhook_token else ""
    _say(
        f"Try:      curl -s{auth} {url}/v1/events -H 'content-type: application/json' -d '{sample}'"
    )
    _say(f"See what arrived: curl -s{auth} {url}/emulator/__emulator/state")
    _say_upstream(settings)
    return create_app(
        embedded,
        transport=httpx.ASGITransport(app=emulator),
        mounts={EMULATOR_PREFIX: _mounted(emulator, settings.webhook_token)},
        emulator_prefix=EMULATOR_PREFIX,
    )


def _mounted(emulator: FastAPI, token: SecretStr | None) -> ASGIApp:
    """The emulator as mounted on the service: behind the webhook token when one is set (the
    service then listens beyond loopback, and the emulator holds what was delivered)."""
    return emulator if token is None else guarded(emulator, token)


def _say_upstream(settings: Settings) -> None:
    if settings.rudder_transformer_url is None:
        _say(
            "No RUDDER_TRANSFORMER_URL: only Klaviyo is transformed here; "
            "rudder-transformer's other routes get 501."
        )
    else:
        _say(
            "Other transformer requests pass through to "
            + without_credentials(settings.rudder_transformer_url)
        )


def _transform(args: argparse.Namespace, settings: Settings) -> int:
    raw = sys.stdin.buffer.read() if args.file == "-" else _read(args.file)
    try:
        body = parse_json(raw, max_depth=settings.max_json_depth)
        events = events_of(body, max_events=settings.max_batch_events)
    except DestinationError as error:
        print(f"klaviyo-destination: {error.message}", file=sys.stderr)  # noqa: T201
        return 2
    config, phones = from_settings(settings), PhoneRule(settings.default_phone_region)
    results = dry_run(events.items, config, settings.klaviyo_base_url, phones=phones)
    sys.stdout.write(orjson.dumps({"results": results}, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 1 if all(r["status"] == "rejected" for r in results) else 0


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def _emulator(args: argparse.Namespace, _: Settings) -> int:
    from .emulator.revisions import SERVED
    from .emulator.server import run

    revisions = ", ".join(SERVED)
    _say(
        f"Klaviyo emulator (revisions {revisions}, as each request's revision header asks) on "
        f"http://{args.host}:{args.port} (state: /__emulator/state)"
    )
    run(args.host, args.port)
    return 0
