"""What a running service holds: settings, clients and metrics, built once at start-up.

Handlers receive it through `RuntimeDep`; no client is ever built inside a handler. What a
single service builds at start-up (its cache, publisher, lock, token verifier) is one typed
state object of that service's module, attached here and found again by its type:
`runtime.part(CoursesState)`, or in a handler the module's `Annotated` dependency alias.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from courseredis.connection import AsyncClient
from courseredis.services.metrics import Metrics
from courseredis.services.settings import ServiceSettings

Part = TypeVar("Part")


class PartMissing(LookupError):
    """A handler asked for a service's state that its start-up hook did not attach."""


@dataclass
class Runtime:
    service: str
    settings: ServiceSettings
    redis: AsyncClient
    metrics: Metrics
    engine: AsyncEngine | None = None
    sessionmaker: async_sessionmaker[AsyncSession] | None = None
    _parts: dict[type[Any], Any] = field(default_factory=dict, init=False, repr=False)

    def db(self) -> AsyncSession:
        assert self.sessionmaker is not None, f"{self.service} has no database"
        return self.sessionmaker()

    def attach(self, part: object) -> None:
        """Hold a service's start-up state, one per type (attaching again replaces it)."""
        self._parts[type(part)] = part

    def part(self, kind: type[Part]) -> Part:
        """The state of type `kind` that a start-up hook attached."""
        try:
            found: Part = self._parts[kind]
        except KeyError:
            raise PartMissing(
                f"{self.service} holds no {kind.__name__}: its start-up hook did not run"
            ) from None
        return found


async def get_runtime(request: Request) -> Runtime:
    # async: FastAPI would run a plain `def` dependency in its thread pool, per request.
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def part_of(kind: type[Part]) -> Callable[[Runtime], Awaitable[Part]]:
    """The dependency giving a handler `runtime.part(kind)`: a service module declares
    `XStateDep = Annotated[XState, Depends(part_of(XState))]` once."""

    async def dependency(runtime: RuntimeDep) -> Part:
        return runtime.part(kind)

    return dependency
