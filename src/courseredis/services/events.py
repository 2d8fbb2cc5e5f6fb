"""Domain events over Redis Streams, behind a small interface a Kafka transport can match.

Delivery is at least once: a consumer group hands each message to one consumer; it is
acknowledged only after the handler succeeded (or the event proved to be a duplicate), and
messages left pending by a dead consumer are reclaimed after an idle time (`XAUTOCLAIM`).
Every handler runs under the idempotency pattern, so a redelivered event is applied once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from redis.exceptions import RedisError, ResponseError

from courseredis import keys
from courseredis.connection import AsyncClient
from courseredis.patterns.idempotency import AsyncIdempotency, ClaimStatus
from courseredis.services.metrics import Metrics

log = logging.getLogger(__name__)

COURSE_UPDATED = "CourseUpdated"
COURSE_DELETED = "CourseDeleted"
ENROLLMENT_CREATED = "EnrollmentCreated"
TOPIC_COURSES = "courses"
TOPIC_ENROLLMENTS = "enrollments"


@dataclass(frozen=True)
class Event:
    type: str
    payload: dict[str, Any]
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    occurred_at: str = field(
        default_factory=lambda: datetime.now(UTC).isoformat(timespec="milliseconds")
    )

    def fields(self) -> dict[str, str]:
        return {
            "id": self.id,
            "type": self.type,
            "payload": json.dumps(self.payload, separators=(",", ":")),
            "at": self.occurred_at,
        }

    @classmethod
    def from_fields(cls, data: dict[str, str]) -> Event:
        return cls(
            type=data["type"],
            payload=json.loads(data["payload"]),
            id=data["id"],
            occurred_at=data["at"],
        )


Handler = Callable[[Event], Awaitable[None]]


class EventPublisher(Protocol):
    async def publish(self, topic: str, event: Event) -> None: ...


class EventSubscriber(Protocol):
    async def run(self, stop: asyncio.Event) -> None: ...


class RedisStreamsPublisher:
    """XADD to `events:<topic>`, trimmed approximately to the schema's length bound."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def publish(self, topic: str, event: Event) -> None:
        await self._client.xadd(
            keys.event_stream(topic),
            event.fields(),  # type: ignore[arg-type]
            maxlen=keys.EVENT_STREAM_MAX_LENGTH,
            approximate=True,
        )


def consumer_instance_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"[:64]


class RedisStreamsSubscriber:
    """One consumer-group member: reads new messages, reclaims stuck ones, handles each once.

    The group is named after the consuming service, which is also the idempotency consumer
    name: `idem:<service>:<event id>`.
    """

    def __init__(
        self,
        client: AsyncClient,
        *,
        service: str,
        topics: dict[str, Handler],
        metrics: Metrics,
        reclaim_idle_ms: int = 30_000,
        block_ms: int = 500,
        batch: int = 50,
    ) -> None:
        self._client = client
        self._service = service
        self._handlers = {keys.event_stream(t): h for t, h in topics.items()}
        self._idem = AsyncIdempotency(client)
        self._metrics = metrics
        self._reclaim_idle_ms = reclaim_idle_ms
        self._block_ms = block_ms
        self._batch = batch
        self.instance = consumer_instance_name()

    async def ensure_groups(self) -> None:
        for stream in self._handlers:
            try:
                await self._client.xgroup_create(stream, self._service, id="0", mkstream=True)
            except ResponseError as error:
                if "BUSYGROUP" not in str(error):
                    raise

    async def process_once(self) -> int:
        """Reclaim stuck messages, then read new ones; returns how many were handled."""
        handled = 0
        for stream in self._handlers:
            claimed = await self._client.xautoclaim(
                stream,
                self._service,
                self.instance,
                self._reclaim_idle_ms,
                "0-0",
                count=self._batch,
            )
            for message_id, data in claimed[1]:
                handled += await self._handle(stream, message_id, data)
        # One blocking read per stream: a cluster client cannot read streams on two nodes
        # in one XREADGROUP.
        for stream in self._handlers:
            replies: Any = await self._client.xreadgroup(
                self._service,
                self.instance,
                {stream: ">"},
                count=self._batch,
                block=self._block_ms // max(1, len(self._handlers)),
            )
            for _stream, messages in replies or []:
                for message_id, data in messages:
                    handled += await self._handle(stream, message_id, data)
        return handled

    async def _handle(self, stream: str, message_id: str, data: dict[str, str] | None) -> int:
        if not data:  # trimmed away while pending: nothing left to do
            await self._client.xack(stream, self._service, message_id)
            return 0
        event = Event.from_fields(data)
        handler = self._handlers[stream]
        try:
            outcome = await self._idem.process(self._service, event.id, lambda: handler(event))
        except RedisError:
            raise
        except Exception:
            # Not acknowledged: redelivered to some consumer after the idle time.
            log.exception("event handler failed", extra={"event_id": event.id, "type": event.type})
            return 0
        if outcome.status is ClaimStatus.BUSY:
            return 0  # another instance is on it; if it dies, XAUTOCLAIM hands it back
        if outcome.status is ClaimStatus.DONE:
            self._metrics.events_duplicates.labels(self._service).inc()
        else:
            self._metrics.events_processed.labels(self._service, event.type).inc()
        await self._client.xack(stream, self._service, message_id)
        return 1

    async def run(self, stop: asyncio.Event) -> None:
        delay = 0.1
        while not stop.is_set():
            try:
                await self.ensure_groups()
                while not stop.is_set():
                    await self.process_once()
                    delay = 0.1
            except RedisError as error:
                self._metrics.redis_errors.labels("events").inc()
                log.warning("event consumer waiting for Redis", extra={"error": str(error)})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                delay = min(delay * 2, 5.0)
