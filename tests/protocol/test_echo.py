"""What the protocol routes echo of a job, pinned byte for byte: its ``metadata`` (processor and
router items, success and error alike) and, in router outputs, its ``destination``.

rudder-server matches answers to jobs by the echoed metadata, so odd values must come back as
they always have: integers beyond 64 bits and ``1.5e-400`` as the doubles orjson reads, ``1e5``
and ``-0.0`` as orjson writes them, escaped and raw unicode (``\\u2028`` included) written raw,
``\\/`` unescaped, a duplicate key as its last value. The answers in ``echo/`` are what main
answered (``dbde6c4``, both ways in) before the protocol's envelopes and echoes were made
cheaper; any change to how a job is read or an answer written must keep them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import pytest

from klaviyo_destination.settings import Settings
from tests.helpers.apps import Build, served

ANSWERS: Final = Path(__file__).with_name("echo")
METADATA: Final = (
    rb'{"jobId":18446744073709551616,'
    rb'"n":[9223372036854775807,-9223372036854775808,18446744073709551615,-0],'
    rb'"f":[1.0,1e5,0.1,-0.0,1.5e-400,1E+2,2.5e-7,123456789012345678901234567890],'
    rb'"s":"\u00e9\u2028\ud83d\ude00 \u00e9 \/ \" \u0000",'
    rb'"dup":1,"dup":2,"destinationId":"d1","workspaceId":"w1"}'
)
DESTINATION: Final = (
    rb'{"ID":"d1","Config":{"privateApiKey":"pk_echo"},'
    rb'"odd":{"big":18446744073709551616,"f":1e5,"s":"\u00e9","dup":"a","dup":"b"}}'
)
#: one job mapped, one refused (no type): both echo the metadata
MESSAGES: Final = (
    rb'{"type":"track","event":"E","userId":"u1","messageId":"m1","properties":{}}',
    rb'{"event":"E","userId":"u1","messageId":"m2"}',
)


def _jobs() -> bytes:
    return b",".join(
        b'{"message":'
        + message
        + b',"metadata":'
        + METADATA
        + b',"destination":'
        + DESTINATION
        + b"}"
        for message in MESSAGES
    )


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("path", "body", "answer"),
    [
        ("/v0/destinations/klaviyo", b"[" + _jobs() + b"]", "processor.answer.json"),
        (
            "/routerTransform",
            b'{"destType":"KLAVIYO","input":[' + _jobs() + b"]}",
            "router.answer.json",
        ),
    ],
    ids=["processor", "router"],
)
async def test_odd_metadata_and_destination_are_echoed_as_main_echoed_them(
    build: Build, path: str, body: bytes, answer: str
) -> None:
    settings = Settings(klaviyo_base_url="http://klaviyo.test")
    async with served(build(settings)) as client:
        response = await client.post(
            path, content=body, headers={"content-type": "application/json"}
        )
    assert response.status_code == 200
    assert response.content == (ANSWERS / answer).read_bytes()
