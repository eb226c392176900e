"""Shared fixtures for the emulator tests: a fake clock and sleep, a seeded store, the app and
an authenticated in-process client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from klaviyo_destination.emulator import EmulatorStore, create_emulator
from tests.emulator.helpers import HEADERS, FakeClock, FakeSleep, connect


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sleep() -> FakeSleep:
    return FakeSleep()


@pytest.fixture
def store(clock: FakeClock, sleep: FakeSleep) -> EmulatorStore:
    return EmulatorStore(clock=clock, seed=7, sleep=sleep)


@pytest.fixture
def app(store: EmulatorStore) -> FastAPI:
    return create_emulator(store)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with connect(app, HEADERS) as client:
        yield client
