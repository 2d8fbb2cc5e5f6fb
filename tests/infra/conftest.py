"""Pulumi's Python SDK runs its mocks on `asyncio.get_event_loop()`; after the suite's
asyncio tests the main thread may have no current loop, so each module here gets one."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="module")
def current_event_loop() -> Iterator[None]:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield
    asyncio.set_event_loop(None)
    loop.close()
