"""An app under uvicorn on 127.0.0.1, in the test's own event loop: for what a caller sees on
the wire (a cut answer, a header uvicorn refuses), which an in-process transport cannot show."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn


@asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """``app`` under uvicorn on 127.0.0.1 (a free port), logging through the root logger."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_config=None, log_level="debug", lifespan="auto"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # uvicorn could not start: its error
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
