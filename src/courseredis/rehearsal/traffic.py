"""Traffic through the rehearsal's gateway while a disruption runs, and what must survive one.

`Traffic` is one logged-in student reading a course at a steady, bounded rate (a few requests
a second, under the gateway's per-IP limits: every request leaves the host from one address)
through whichever gateway pods are ready, as a ClusterIP Service would spread them. Every
request crosses Redis (the rate limiter, the revocation check, the course cache), so a
request that fails during a disruption is one the users would have seen fail: a 5xx, a
connection error or a timeout. 429s are counted apart: they are the limiter working.

`Held` is what Redis holds for users that must outlive losing every Redis pod at once: a
live session's refresh token (`refresh:<sid>`, `session:<sid>`) and a revocation
(`jwt:revoked:<jti>`) of a logged-out access token. `check_held` then asks the gateway:
the refresh must rotate, the revoked token must still be refused.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from courseredis.stack_file import Account

Gateways = Callable[[], list[str]]  # base URLs of the ready gateway pods, now
RATE_PER_SECOND = 6.0
# The host plays the ingress controller (the rehearsal trusts its address as a proxy), so the
# traffic says which client it carries: one of its own, apart from the load suites' simulated
# clients (loadtests' LOAD_CLIENT_NETWORK, 198.18.0.0/15 by default), so neither spends the
# other's per-IP budget. Without that trust the gateway ignores the header.
CLIENT = {"x-forwarded-for": "192.0.2.10"}
REQUEST_TIMEOUT_S = 3.0


class TrafficError(RuntimeError):
    """The traffic could not start (no gateway, no login): nothing was measured."""


def _pick(gateways: Gateways, turn: int) -> str:
    urls = gateways()
    if not urls:
        raise httpx.ConnectError("no ready gateway pod")
    return urls[turn % len(urls)]


def login(gateways: Gateways, account: Account, within_s: float = 60.0) -> dict[str, Any]:
    """The token pair of a fresh login; retried while the stack settles (a 5xx or no pod)."""
    deadline = time.monotonic() + within_s
    last = ""
    turn = 0
    while time.monotonic() < deadline:
        turn += 1
        try:
            reply = httpx.post(
                _pick(gateways, turn) + "/auth/login",
                json={"username": account.username, "password": account.password},
                headers=CLIENT,
                timeout=10,
            )
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}: {exc}"
        else:
            if reply.status_code == 200:
                tokens: dict[str, Any] = reply.json()
                return tokens
            last = f"{reply.status_code} {reply.text[:200]}"
            if reply.status_code < 500 and reply.status_code != 429:
                break
        time.sleep(1)
    raise TrafficError(f"login as {account.username} failed: {last}")


@dataclass
class Tally:
    requests: int = 0
    ok: int = 0
    limited: int = 0
    failed: int = 0
    failures: Counter[str] = field(default_factory=Counter)

    def figures(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "failed_requests": self.failed,
            "failed_ratio": round(self.failed / self.requests, 4) if self.requests else None,
            "rate_limited": self.limited,
            "failures": dict(self.failures.most_common(5)),
        }


class Traffic:
    """`with Traffic(...) as traffic:` reads a course until the block ends; `traffic.tally`."""

    def __init__(
        self,
        gateways: Gateways,
        account: Account,
        course_id: int,
        rate_per_second: float = RATE_PER_SECOND,
    ) -> None:
        self.gateways = gateways
        self.account = account
        self.path = f"/courses/{course_id}"
        self.interval = 1.0 / rate_per_second
        self.tally = Tally()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)
        self._token = ""

    def __enter__(self) -> Traffic:
        self._token = str(login(self.gateways, self.account)["access_token"])
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=REQUEST_TIMEOUT_S * 3)

    def _run(self) -> None:
        turn = 0
        with httpx.Client(timeout=REQUEST_TIMEOUT_S) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                turn += 1
                self._one(client, turn)
                self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def _one(self, client: httpx.Client, turn: int) -> None:
        tally = self.tally
        tally.requests += 1
        try:
            reply = client.get(
                _pick(self.gateways, turn) + self.path,
                headers={**CLIENT, "authorization": f"Bearer {self._token}"},
            )
        except httpx.HTTPError as exc:
            tally.failed += 1
            tally.failures[type(exc).__name__] += 1
            return
        if reply.status_code == 200:
            tally.ok += 1
        elif reply.status_code == 429:
            tally.limited += 1
        else:
            tally.failed += 1
            tally.failures[str(reply.status_code)] += 1


@dataclass(frozen=True)
class Held:
    """Tokens whose fate after a disruption says whether Redis kept its data."""

    refresh_token: str
    revoked_access_token: str


def hold(gateways: Gateways, live: Account, leaving: Account) -> Held:
    """Log `live` in (its session stays), log `leaving` in and out (its token is revoked)."""
    session = login(gateways, live)
    gone = login(gateways, leaving)
    token = str(gone["access_token"])
    # Retried while the stack settles, as the logins are: right after a disruption the
    # revocation check can answer 503 (seen once after "delete one Redis pod").
    status = _definite(
        lambda url: httpx.post(
            url + "/auth/logout",
            headers={**CLIENT, "authorization": f"Bearer {token}"},
            timeout=10,
        ),
        gateways,
        60.0,
    )
    if status != 204:
        raise TrafficError(f"logout failed: {status if status is not None else 'no answer'}")
    return Held(str(session["refresh_token"]), token)


def check_held(
    gateways: Gateways, held: Held, course_id: int, within_s: float = 90.0
) -> dict[str, Any]:
    """Whether the session's refresh still rotates and the revocation still holds.

    Asked until each answer is definite (not a 5xx, not a missing or refusing pod): a
    disruption's end is the controller's word, and a gateway's readiness lags it by a probe.
    """
    refreshed = _definite(
        lambda url: httpx.post(
            url + "/auth/refresh",
            json={"refresh_token": held.refresh_token},
            headers=CLIENT,
            timeout=10,
        ),
        gateways,
        within_s,
    )
    revoked = _definite(
        lambda url: httpx.get(
            url + f"/courses/{course_id}",
            headers={**CLIENT, "authorization": f"Bearer {held.revoked_access_token}"},
            timeout=10,
        ),
        gateways,
        within_s,
    )
    return {
        "session_kept": refreshed == 200,
        "revocation_kept": revoked == 401,
        "refresh_status": refreshed,
        "revoked_token_status": revoked,
    }


def _definite(
    call: Callable[[str], httpx.Response], gateways: Gateways, within_s: float
) -> int | None:
    """The first status that is an answer (below 500, not 429); None if none came in time."""
    deadline = time.monotonic() + within_s
    turn = 0
    while time.monotonic() < deadline:
        turn += 1
        try:
            status = call(_pick(gateways, turn)).status_code
        except httpx.HTTPError:
            status = None
        if status is not None and status < 500 and status != 429:
            return status
        time.sleep(1)
    return None
