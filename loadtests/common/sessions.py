"""Logins shared per account: one login per account per process, refreshed as it ages."""

from __future__ import annotations

import base64
import json
import math
import random
import time
from typing import TYPE_CHECKING, Any

import gevent  # type: ignore[import-untyped]
import gevent.lock  # type: ignore[import-untyped]

from courseredis import keys
from courseredis.waiting import Deadline
from loadtests.common.outcome import retry_after_s
from loadtests.target import Account

if TYPE_CHECKING:
    from loadtests.common.platform_user import PlatformUser

# Requests a user makes to keep its session (login, refresh) are named with this suffix and
# left out of the latency gates: they measure argon2, not the pattern under test.
SESSION = " (session)"
# Until the login says otherwise (`expires_in`).
ACCESS_TOKEN_LIFETIME_S = keys.ACCESS_TOKEN_LIFETIME.total_seconds()
# How long a login keeps waiting out the per-IP login limit before it gives up.
LOGIN_PATIENCE_S = 120.0


class LoginFailed(RuntimeError):
    pass


class SharedSession:
    """One login per account per process, shared by the users that act as that account.

    A login costs about 0.1 s of argon2 on the auth service, so users log in once and then
    refresh. Refresh tokens are single use: the semaphore makes one user refresh while the
    others wait for the new token, instead of racing each other into reuse detection.
    """

    def __init__(self, account: Account, ip: str | None, refresh_after_s: float) -> None:
        self.account = account
        self.ip = ip
        self.access_token: str | None = None
        self.refresh_token: str | None = None
        self.obtained_at = 0.0
        self.lifetime_s = ACCESS_TOKEN_LIFETIME_S
        self.refresh_after_s = refresh_after_s
        self._lock = gevent.lock.Semaphore()
        self.logins = 0
        self.refreshes = 0
        self.user_id: int | None = None

    def token(self, user: PlatformUser) -> str:
        """A valid access token: logs in or refreshes first when needed."""
        current = self.access_token
        if current is not None and not self._stale():
            return current
        with self._lock:
            if self.access_token is not None and not self._stale():
                return self.access_token
            if self.refresh_token is not None and self._refresh(user):
                assert self.access_token is not None
                return self.access_token
            self._login(user)
            assert self.access_token is not None
            return self.access_token

    def rejected(self, token: str) -> None:
        """The gateway refused this token (401): refresh before the next request."""
        if self.access_token == token:
            self.obtained_at = -math.inf

    def _refresh_age(self) -> float:
        return self.refresh_after_s or 0.8 * self.lifetime_s

    def _stale(self) -> bool:
        return time.monotonic() - self.obtained_at >= self._refresh_age()

    def _headers(self) -> dict[str, str]:
        return {"X-Forwarded-For": self.ip} if self.ip else {}

    def _accept(self, body: dict[str, Any]) -> None:
        self.access_token = str(body["access_token"])
        self.refresh_token = str(body["refresh_token"])
        self.lifetime_s = float(body.get("expires_in", ACCESS_TOKEN_LIFETIME_S))
        self.obtained_at = time.monotonic()
        self.user_id = _subject(self.access_token)

    def _login(self, user: PlatformUser) -> None:
        # Not `wait_until`: each pause is the one the 429 asks for, and any other answer
        # ends the wait at once.
        deadline = Deadline(LOGIN_PATIENCE_S)
        body = {"username": self.account.username, "password": self.account.password}
        while True:
            outcome = user.call(
                "POST",
                "/auth/login",
                name="/auth/login" + SESSION,
                json=body,
                expect=(200, 429),
                headers=self._headers(),
                authenticated=False,
            )
            if outcome.status == 200:
                self._accept(outcome.body)
                self.logins += 1
                user.ctx.collector.count("session_logins")
                return
            if outcome.status != 429 or deadline.expired:
                raise LoginFailed(f"login of {self.account.username}: HTTP {outcome.status}")
            # The per-IP login limit: the gateway does not believe our X-Forwarded-For (not
            # a trusted proxy), so every user shares one address. Wait as told.
            gevent.sleep(retry_after_s(outcome) + random.random())

    def _refresh(self, user: PlatformUser) -> bool:
        outcome = user.call(
            "POST",
            "/auth/refresh",
            name="/auth/refresh" + SESSION,
            json={"refresh_token": self.refresh_token},
            expect=(200, 401, 429),
            headers=self._headers(),
            authenticated=False,
        )
        if outcome.status == 200:
            self._accept(outcome.body)
            self.refreshes += 1
            user.ctx.collector.count("session_refreshes")
            return True
        if outcome.status == 429 and self.access_token is not None:
            # Limited: keep the current token and try again once Retry-After has passed.
            self.obtained_at = time.monotonic() - self._refresh_age() + retry_after_s(outcome)
            return True
        self.refresh_token = None  # expired, reused or revoked: log in again
        return False


def _subject(token: str) -> int | None:
    """The user id in an access token (`sub`), read without verifying: for bookkeeping."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return int(claims["sub"])
    except (IndexError, ValueError, KeyError, TypeError):
        return None
