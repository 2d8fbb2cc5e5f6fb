"""Sessions: a hash per login (user id, roles, created, last activity), 24 h sliding.

`touch` reads the session and records activity in one Lua call, and writes only when the
recorded activity is older than the throttle: a busy user costs one write a minute, not
one per request.

No native command replaces the scripts (`courseredis.server_features` finds Redis 8's
HSETEX/HGETEX and leaves them unused): their TTL is each field's, the key keeps none, so
the key schema's TTL (read by the audit and the smoke suite) would be gone; HSETEX cannot
stamp Redis TIME as created_at, and HGETEX renews on every read, where touch writes once
per throttle interval.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from courseredis import keys
from courseredis.connection import AsyncClient, SyncClient
from courseredis.patterns.flow import (
    Command,
    Flow,
    Script,
    remembered,
    run_async,
    run_sync,
    text,
)
from courseredis.patterns.lua import load

_MS = timedelta(milliseconds=1)
ROLE = re.compile(r"[a-z][a-z0-9_-]{0,31}")  # a role name, in a session or a token
TOUCH_THROTTLE = timedelta(seconds=60)
_TTL_MS = keys.SESSION_TTL // _MS
_TOUCH = load("session_touch")
_key = remembered(keys.session)  # a session is touched on each request it makes


@dataclass(frozen=True)
class Session:
    session_id: str
    user_id: int
    roles: tuple[str, ...]
    created_at_ms: int
    last_activity_ms: int
    written: bool = False  # whether this touch wrote last_activity


def _check_roles(roles: Sequence[str]) -> str:
    if isinstance(roles, str):
        raise ValueError("roles is a sequence of role names, not one string")
    for role in roles:
        if not isinstance(role, str) or not ROLE.fullmatch(role):
            raise ValueError(f"role names are lowercase words, not {role!r:.40}")
    return ",".join(roles)


def _session(session_id: str, fields: dict[str, str], written: bool = False) -> Session:
    roles = fields.get("roles", "")
    return Session(
        session_id=session_id,
        user_id=int(fields["user_id"]),
        roles=tuple(r for r in roles.split(",") if r),
        created_at_ms=int(fields["created_at"]),
        last_activity_ms=int(fields["last_activity"]),
        written=written,
    )


def _pairs(reply: Sequence[Any]) -> dict[str, str]:
    flat = [text(x) or "" for x in reply]
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _create(user_id: int, roles: Sequence[str], session_id: str | None) -> Flow[Session]:
    keys.valid_int_id("user_id", user_id)
    joined = _check_roles(roles)
    session_id = keys.valid_uuid("session_id", session_id or str(uuid.uuid4()))
    now = yield Script(
        load("session_create"),
        (_key(session_id),),
        (user_id, joined, _TTL_MS),
    )
    return Session(session_id, user_id, tuple(roles), int(now), int(now), written=True)


def _read(session_id: str) -> Flow[Session | None]:
    reply = yield Command(("HGETALL", _key(session_id)))
    if not reply:
        return None
    fields = reply if isinstance(reply, dict) else _pairs(reply)
    return _session(session_id, {text(k) or "": text(v) or "" for k, v in fields.items()})


def touch_script(session_id: str, throttle: timedelta) -> Script:
    return Script(
        _TOUCH,
        (_key(session_id),),
        (throttle // _MS, _TTL_MS),
    )


def parse_touch(session_id: str, reply: Sequence[Any]) -> Session | None:
    """The session from `session_touch.lua`'s reply; None when there is no such session."""
    if not reply:
        return None
    user_id, roles, created_at, last_activity, written = reply
    roles = roles if type(roles) is str else text(roles) or ""
    return Session(
        session_id=session_id,
        user_id=int(user_id),
        roles=tuple(r for r in roles.split(",") if r) if roles else (),
        created_at_ms=int(created_at),
        last_activity_ms=int(last_activity),
        written=int(written) == 1,
    )


def _touch(session_id: str, throttle: timedelta) -> Flow[Session | None]:
    reply = yield touch_script(session_id, throttle)
    return parse_touch(session_id, reply)


def _delete(session_id: str) -> Flow[bool]:
    deleted = yield Command(("DEL", _key(session_id)))
    return int(deleted) == 1


class Sessions:
    """Sync API."""

    def __init__(self, client: SyncClient, *, throttle: timedelta = TOUCH_THROTTLE) -> None:
        self._client = client
        self._throttle = throttle

    def create(
        self, user_id: int, roles: Sequence[str], *, session_id: str | None = None
    ) -> Session:
        """Create a session (a new id unless given: auth uses the refresh family's id)."""
        return run_sync(self._client, _create(user_id, roles, session_id))

    def read(self, session_id: str) -> Session | None:
        return run_sync(self._client, _read(session_id))

    def touch(self, session_id: str) -> Session | None:
        return run_sync(self._client, _touch(session_id, self._throttle))

    def delete(self, session_id: str) -> bool:
        return run_sync(self._client, _delete(session_id))


class AsyncSessions:
    def __init__(self, client: AsyncClient, *, throttle: timedelta = TOUCH_THROTTLE) -> None:
        self._client = client
        self._throttle = throttle

    async def create(
        self, user_id: int, roles: Sequence[str], *, session_id: str | None = None
    ) -> Session:
        return await run_async(self._client, _create(user_id, roles, session_id))

    async def read(self, session_id: str) -> Session | None:
        return await run_async(self._client, _read(session_id))

    async def touch(self, session_id: str) -> Session | None:
        return await run_async(self._client, _touch(session_id, self._throttle))

    async def delete(self, session_id: str) -> bool:
        return await run_async(self._client, _delete(session_id))
