"""Users through the gateway: logins, course reads, enrollments, refreshes, logouts.

Every request is recorded (`Sample`): when it started and ended, what it was, and its
status, or None when no HTTP answer came back (connection refused or reset, timeout). A
request *failed* when it got no answer or a 5xx: what the figures count. Every loop here is
bounded by a deadline and a count.

Each virtual user is one student with its own client address (X-Forwarded-For, trusted
from loopback) which changes at every login, as a user moving between networks does: the
per-IP limit on logins (10 a minute) then never refuses the load's own logins.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx

from courseredis.ops.chaos.live import claims_of
from courseredis.waiting import Deadline

REQUEST_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Sample:
    op: str
    started: float  # time.monotonic()
    ended: float
    status: int | None  # None: no HTTP answer
    detail: str = ""  # the error, or the 5xx body's detail

    @property
    def failed(self) -> bool:
        return self.status is None or self.status >= 500


@dataclass
class Recorder:
    samples: list[Sample] = field(default_factory=list)

    def add(self, sample: Sample) -> None:
        self.samples.append(sample)

    def failed(self) -> list[Sample]:
        return [s for s in self.samples if s.failed]

    def statuses(self, samples: Iterable[Sample] | None = None) -> dict[str, int]:
        counts = Counter(
            "none" if s.status is None else str(s.status)
            for s in (self.samples if samples is None else samples)
        )
        return dict(sorted(counts.items()))

    def error_window(self) -> tuple[float, float] | None:
        """When clients were getting failures: the first and the last failed answer (its
        end: a request sent before the fault and failed by it was seen failing then)."""
        failed = self.failed()
        if not failed:
            return None
        return min(s.ended for s in failed), max(s.ended for s in failed)


class Gateway:
    """An HTTP client of one service (the gateway, usually) that records every request."""

    def __init__(self, base_url: str, recorder: Recorder, *, max_connections: int = 200) -> None:
        self.recorder = recorder
        self.http = httpx.AsyncClient(
            base_url=base_url,
            timeout=REQUEST_TIMEOUT_S,
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def request(
        self,
        op: str,
        method: str,
        path: str,
        *,
        ip: str | None = None,
        token: str | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
        record: bool = True,
    ) -> httpx.Response | None:
        sent = dict(headers or {})
        if ip is not None:
            sent["X-Forwarded-For"] = ip
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        started = time.monotonic()
        try:
            response = await self.http.request(method, path, json=json, headers=sent)
        except httpx.HTTPError as error:
            if record:
                self.recorder.add(
                    Sample(op, started, time.monotonic(), None, f"{type(error).__name__}: {error}")
                )
            return None
        if record:
            detail = _detail(response) if response.status_code >= 500 else ""
            self.recorder.add(Sample(op, started, time.monotonic(), response.status_code, detail))
        return response


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    return str(body.get("detail", body))[:200] if isinstance(body, dict) else str(body)[:200]


# --- sessions ---------------------------------------------------------------------------------


@dataclass
class Session:
    access: str
    refresh: str
    user_id: int
    acquired: float  # monotonic time the tokens were received

    @property
    def jti(self) -> str:
        return str(claims_of(self.access)["jti"])

    @property
    def sid(self) -> str:
        return str(claims_of(self.access)["sid"])


@dataclass(frozen=True)
class Logout:
    """A logout the service acknowledged (204), and when."""

    access: str
    refresh: str
    acked: float


class Addresses:
    """Distinct client addresses (documentation range 198.18.0.0/15, never routed)."""

    def __init__(self, start: int = 0) -> None:
        self._next = start

    def take(self) -> str:
        n = self._next
        self._next += 1
        return f"198.{18 + (n >> 16) % 2}.{(n >> 8) & 255}.{n & 255}"


async def login(
    gateway: Gateway, username: str, password: str, ip: str, *, op: str = "login"
) -> Session | None:
    response = await gateway.request(
        op, "POST", "/auth/login", ip=ip, json={"username": username, "password": password}
    )
    if response is None or response.status_code != 200:
        return None
    body = response.json()
    claims = claims_of(body["access_token"])
    return Session(
        body["access_token"], body["refresh_token"], int(claims["sub"]), time.monotonic()
    )


async def refresh(
    gateway: Gateway, token: str, ip: str, *, op: str = "refresh"
) -> httpx.Response | None:
    return await gateway.request(op, "POST", "/auth/refresh", ip=ip, json={"refresh_token": token})


# --- the load ---------------------------------------------------------------------------------


@dataclass
class LoadStats:
    """What the users saw beyond the samples: the facts the checks are about."""

    enrolled: Counter[tuple[int, int]] = field(default_factory=Counter)  # 201s per (user, course)
    logouts: list[Logout] = field(default_factory=list)
    refresh_rejected: list[str] = field(default_factory=list)  # 401 to a refresh we held
    sessions_lost: list[str] = field(default_factory=list)  # 401s to a live session: why
    rate_limited: int = 0


class VirtualUser:
    """One student: logs in, then reads, lists, enrolls, refreshes and logs out at random.

    A request that failed (5xx, no answer) is repeated as the next operation where a repeat
    is what a client does: an enrollment (a retry must find the first one, never add a
    second), a logout (until acknowledged), a refresh (with the same token: the grace
    window returns the same successor).
    """

    def __init__(
        self,
        gateway: Gateway,
        username: str,
        password: str,
        *,
        courses: int,
        addresses: Addresses,
        stats: LoadStats,
        seed: int,
        think_s: tuple[float, float] = (0.02, 0.1),
    ) -> None:
        self.gateway = gateway
        self.username = username
        self.password = password
        self.courses = courses
        self.addresses = addresses
        self.stats = stats
        self.rng = random.Random(seed)
        self.think_s = think_s
        self.ip = addresses.take()
        self.session: Session | None = None
        self.pending: tuple[str, Any] | None = None  # an operation to repeat

    async def start(self) -> bool:
        self.ip = self.addresses.take()
        self.session = await login(self.gateway, self.username, self.password, self.ip)
        return self.session is not None

    async def run(self, stop: asyncio.Event, until: Deadline, max_ops: int = 10_000) -> None:
        """Until `stop` is set, `until` passes, or `max_ops` operations."""
        for _ in range(max_ops):
            if stop.is_set() or until.expired:
                return
            await self.step()
            low, high = self.think_s
            await asyncio.sleep(self.rng.uniform(low, high))

    async def step(self) -> None:
        if self.session is None:
            await self.start()
            return
        if self.pending is not None:
            kind, argument = self.pending
            self.pending = None
            await getattr(self, kind)(argument)
            return
        roll = self.rng.random()
        if roll < 0.45:
            await self.read(self.rng.randint(1, self.courses))
        elif roll < 0.60:
            await self.list_courses()
        elif roll < 0.85:
            course = self.rng.randint(1, self.courses)
            if self.rng.random() < 0.15:  # a double click: two at once, one may win
                await asyncio.gather(self.enroll(course), self.enroll(course))
            else:
                await self.enroll(course)
        elif roll < 0.93:
            await self.refresh(None)
        else:
            await self.logout(None)

    def _lost(self, response: httpx.Response) -> bool:
        """A 401 on a live session: note why and log in again."""
        if response.status_code == 401:
            self.stats.sessions_lost.append(_detail(response))
            self.session = None
            return True
        if response.status_code == 429:
            self.stats.rate_limited += 1
        return False

    async def read(self, course: int) -> None:
        assert self.session is not None
        response = await self.gateway.request(
            "read", "GET", f"/courses/{course}", ip=self.ip, token=self.session.access
        )
        if response is not None:
            self._lost(response)

    async def list_courses(self) -> None:
        assert self.session is not None
        page = self.rng.randint(1, 3)
        response = await self.gateway.request(
            "list", "GET", f"/courses?page={page}&size=20", ip=self.ip, token=self.session.access
        )
        if response is not None:
            self._lost(response)

    async def enroll(self, course: int) -> None:
        session = self.session
        if session is None:
            return
        response = await self.gateway.request(
            "enroll", "POST", f"/courses/{course}/enrollments", ip=self.ip, token=session.access
        )
        if response is None or response.status_code >= 500:
            self.pending = ("enroll", course)
            return
        if response.status_code == 201:
            self.stats.enrolled[(session.user_id, course)] += 1
        else:
            self._lost(response)

    async def refresh(self, _: object) -> None:
        session = self.session
        if session is None:
            return
        response = await refresh(self.gateway, session.refresh, self.ip)
        if response is None or response.status_code >= 500:
            self.pending = ("refresh", None)  # the same token again: within the grace
            return
        if response.status_code == 200:
            body = response.json()
            self.session = Session(
                body["access_token"], body["refresh_token"], session.user_id, time.monotonic()
            )
        elif response.status_code == 401:
            self.stats.refresh_rejected.append(_detail(response))
            self.session = None
        elif response.status_code == 429:
            self.stats.rate_limited += 1

    async def logout(self, retry: object) -> None:
        session = self.session
        if session is None:
            return
        repeat = retry is not None
        response = await self.gateway.request(
            "logout", "POST", "/auth/logout", ip=self.ip, token=session.access
        )
        if response is None or response.status_code >= 500:
            self.pending = ("logout", True)
            return
        if response.status_code == 204:
            self.stats.logouts.append(Logout(session.access, session.refresh, time.monotonic()))
            self.session = None
        elif repeat and response.status_code == 401:
            # The failed attempt did revoke: not acknowledged then, so not a logout the
            # checks count, but the session is over.
            self.session = None
        else:
            self._lost(response)


async def start_users(users: list[VirtualUser], *, deadline_s: float = 60.0) -> int:
    """Log every user in (a few at a time: a login costs ~0.1 s of CPU); how many made it."""
    semaphore = asyncio.Semaphore(4)
    deadline = Deadline(deadline_s)

    async def one(user: VirtualUser) -> bool:
        async with semaphore:
            for _ in range(3):
                if deadline.expired:
                    return False
                if await user.start():
                    return True
                await asyncio.sleep(0.2)
            return False

    results = await asyncio.gather(*(one(u) for u in users))
    return sum(results)
