"""`up` starts the whole local stack: Redis, the seeded database and the four services."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from courseredis.local.state import read_state
from courseredis.services import registry
from courseredis.stack_file import stack_file_path
from tests.local.test_cli import read_stack_json, run_cli


def call(method: str, url: str, body: Any = None, token: str | None = None) -> tuple[int, Any, Any]:
    request = urllib.request.Request(
        url,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"}
        | ({"Authorization": f"Bearer {token}"} if token else {}),
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.headers, json.loads(response.read() or b"null")


def test_up_runs_the_services_with_demo_users_and_down_stops_everything(tmp_path: Path) -> None:
    root = tmp_path / "full"
    result = run_cli("up", "--env", "dev", root=root)
    try:
        assert result.returncode == 0, result.stderr
        document = read_stack_json(root)
        services = document["services"]
        assert set(services) == set(registry.NAMES)
        assert len(document["demo"]["students"]) >= 1
        student = document["demo"]["students"][0]
        status, _, tokens = call("POST", services["gateway"] + "/auth/login", student)
        assert status == 200
        first = call("GET", services["gateway"] + "/courses/1", token=tokens["access_token"])
        second = call("GET", services["gateway"] + "/courses/1", token=tokens["access_token"])
        assert (first[1]["X-Cache"], second[1]["X-Cache"]) == ("miss", "hit")
        # Metrics on a port of their own, as deployed; the OpenAPI documents on, locally.
        assert set(document["metrics"]) == set(registry.NAMES)
        with urllib.request.urlopen(document["metrics"]["courses"], timeout=10) as response:
            assert b'cache_requests_total{result="hit"}' in response.read()
        with pytest.raises(urllib.error.HTTPError, match="404"):
            call("GET", services["gateway"] + "/metrics")
        assert call("GET", services["courses"] + "/openapi.json")[0] == 200
        # Only auth was given the private key.
        environments = {
            p.name: Path(f"/proc/{p.pid}/environ").read_bytes()
            for p in read_state(root).service_processes or []
        }
        assert [n for n, env in environments.items() if b"JWT_PRIVATE_KEY=" in env] == ["auth"]
        assert all(b"JWT_PUBLIC_KEYS=" in env for env in environments.values())
        assert "the dev stack is up" in result.stdout
        assert "gateway: http://127.0.0.1:" in result.stdout
    finally:
        processes = (read_state(root).service_processes or []) if result.returncode == 0 else []
        down = run_cli("down", root=root)
    assert down.returncode == 0, down.stderr
    assert not stack_file_path(root).exists()
    for process in processes:
        assert (
            not Path(f"/proc/{process.pid}").exists()
            or not os.path.exists(f"/proc/{process.pid}/cmdline")
            or b"courseredis" not in Path(f"/proc/{process.pid}/cmdline").read_bytes()
        )
