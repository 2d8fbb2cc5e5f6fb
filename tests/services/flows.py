"""Steps users take through the gateway, shared by the service tests."""

from __future__ import annotations

from dataclasses import dataclass

import httpx


@dataclass
class LoggedIn:
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


async def login(gateway: httpx.AsyncClient, username: str, password: str) -> LoggedIn:
    response = await gateway.post("/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    body = response.json()
    return LoggedIn(body["access_token"], body["refresh_token"])
