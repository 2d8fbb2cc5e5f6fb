"""The abstract user of the HTTP suites: a client of the gateway with a shared session."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import gevent  # type: ignore[import-untyped]
from locust import FastHttpUser
from locust.contrib.fasthttp import FastHttpSession

from loadtests.common.outcome import Outcome
from loadtests.common.run_state import state
from loadtests.common.sessions import LoginFailed, SharedSession

log = logging.getLogger("loadtests")


class PlatformUser(FastHttpUser):
    """A client of the gateway: one simulated IP, one session (shared per account).

    `call` sends a request with the bearer token and X-Forwarded-For, names it for Locust's
    statistics (`name=`, so `/courses/17` and `/courses/18` are one line), marks it failed
    unless its status is expected, and on a 401 refreshes the session and retries once.
    """

    abstract = True
    # Which account the user acts as: a student (in turn), the admin, or none.
    account_kind: ClassVar[Literal["student", "admin", "none"]] = "student"
    network_timeout = 30.0
    connection_timeout = 10.0
    concurrency = 4  # several requests of one user at once (a user racing itself)

    client: FastHttpSession
    ip: str | None
    shared: SharedSession | None

    def on_start(self) -> None:
        run = state()
        self.ctx = run
        self.ip = run.addresses.next()
        self.shared = None
        if self.account_kind == "student":
            self.shared = run.session(run.next_student(self.excluded_students()), self.ip)
        elif self.account_kind == "admin":
            self.shared = run.session(run.admin(), self.ip)

    def excluded_students(self) -> Sequence[str]:
        """Students this user may not act as (kept for a user that needs one alone)."""
        return ()

    @property
    def user_id(self) -> int | None:
        return self.shared.user_id if self.shared else None

    def token(self) -> str | None:
        """The session's token; None (after a pause) when the login failed."""
        if self.shared is None:
            return None
        try:
            return self.shared.token(self)
        except LoginFailed as error:
            self.ctx.collector.count("login_failures")
            log.warning("%s", error)
            gevent.sleep(1.0)
            return None

    def call(
        self,
        method: str,
        path: str,
        *,
        name: str,
        expect: Sequence[int] = (200,),
        json: Any = None,
        headers: dict[str, str] | None = None,
        authenticated: bool = True,
    ) -> Outcome:
        for attempt in (1, 2):
            sent_headers = {"X-Forwarded-For": self.ip} if self.ip else {}
            sent_headers.update(headers or {})
            token = None
            if authenticated:
                token = self.token()
                if token is None:
                    return Outcome(0, {}, None, time.time(), time.time())
                sent_headers["Authorization"] = f"Bearer {token}"
            sent = time.time()
            with self.client.request(
                method, path, name=name, json=json, headers=sent_headers, catch_response=True
            ) as response:
                answered = time.time()
                status = int(response.status_code or 0)
                response_headers = {k.lower(): v for k, v in (response.headers or {}).items()}
                try:
                    body = response.json() if response.text else None
                except ValueError:
                    body = None
                retry = authenticated and status == 401 and attempt == 1 and self.shared
                if retry:
                    response.success()  # an expired or revoked token: refreshed below
                elif status in expect:
                    response.success()
                else:
                    text = (response.text or "")[:200]
                    response.failure(f"HTTP {status}, expected {tuple(expect)}: {text}")
            if retry and token is not None and self.shared is not None:
                self.ctx.collector.count("reauthentications")
                self.shared.rejected(token)
                continue
            return Outcome(status, response_headers, body, sent, answered)
        raise AssertionError("unreachable")
