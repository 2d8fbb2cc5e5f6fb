"""What a running service holds: settings, clients and metrics, built once at start-up.

Handlers receive it through `RuntimeDep`; no client is ever built inside a handler.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from courseredis.connection import AsyncClient
from courseredis.services.metrics import Metrics
from courseredis.services.settings import ServiceSettings


@dataclass
class Runtime:
    service: str
    settings: ServiceSettings
    redis: AsyncClient
    metrics: Metrics
    engine: AsyncEngine | None = None
    sessionmaker: async_sessionmaker[AsyncSession] | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def db(self) -> AsyncSession:
        assert self.sessionmaker is not None, f"{self.service} has no database"
        return self.sessionmaker()


async def get_runtime(request: Request) -> Runtime:
    # async: FastAPI would run a plain `def` dependency in its thread pool, per request.
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
