"""A plain client of the gateway for the end-of-run checks, outside any simulated user."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

from loadtests.common.sessions import LoginFailed
from loadtests.target import Account


class ApiClient:
    """A plain client of the gateway for the end-of-run checks (outside any user)."""

    def __init__(self, base_url: str, ip: str | None) -> None:
        self.base_url = base_url.rstrip("/")
        self.ip = ip
        self.token: str | None = None

    def send(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if self.ip:
            headers["X-Forwarded-For"] = self.ip
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(
            self.base_url + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers=headers,
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, None

    def login(self, account: Account) -> None:
        """Log in, riding out a limit or an overloaded gateway (429, 502-504) for a while."""
        for attempt in range(6):
            status, body = self.send(
                "POST",
                "/auth/login",
                {"username": account.username, "password": account.password},
            )
            if status == 200:
                self.token = str(body["access_token"])
                return
            if status not in (429, 502, 503, 504):
                break
            time.sleep(2.0 * (attempt + 1))
        raise LoginFailed(f"login of {account.username} for the end-of-run check: HTTP {status}")
