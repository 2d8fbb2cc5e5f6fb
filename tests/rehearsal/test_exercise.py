"""After the objects are up, without podman: whom the demo data is seeded through, how the
traffic during a disruption counts, and what the load suites are pointed at."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from courseredis.rehearsal import demo, exercise, load, traffic
from courseredis.rehearsal.objects import declared_objects, deploy, random_password
from courseredis.rehearsal.translate import Plan, translate
from courseredis.stack_file import Account, DemoAccounts, StackFile
from loadtests.target import accounts, gateway_url

SHARED = "postgresql+asyncpg://courses:pw@postgres:5432/courses"


@pytest.fixture(scope="module")
def plans() -> dict[str, Plan]:
    found = {}
    for env in ("dev", "prod"):
        secrets = {"databaseUrl": SHARED} if env == "prod" else None
        objects = declared_objects(deploy(env, secrets, passwords=random_password)).objects
        found[env] = translate(objects)
    return found


def status(plan: Plan, ready: bool = True) -> dict[str, Any]:
    """Two ready pods per workload, as the controller's status names them."""
    return {
        f"{w.name}-{i}": {"workload": w.label, "ready": ready, "ip": f"10.0.0.{n * 2 + i}"}
        for n, w in enumerate(plan.workloads)
        for i in range(2)
    }


def test_each_pod_with_a_database_of_its_own_is_seeded(plans):
    """dev: a throwaway SQLite file per pod, so every pod of every database user."""
    targets = demo.database_pods(plans["dev"], status(plans["dev"]))
    assert {t.pod.rsplit("-", 1)[0] for t in targets} == {"auth", "courses", "enrollments"}
    assert len(targets) == 6 and all(t.own_database for t in targets)
    assert {t.container for t in targets} == {"auth", "courses", "enrollments"}


def test_a_shared_database_is_seeded_once(plans):
    targets = demo.database_pods(plans["prod"], status(plans["prod"]))
    assert len(targets) == 1 and not targets[0].own_database


def test_pods_not_ready_are_not_seeded_through(plans):
    assert demo.database_pods(plans["dev"], status(plans["dev"], ready=False)) == []


def test_the_gateway_is_reached_on_its_declared_http_port(plans, tmp_path):
    port = exercise.gateway_port(plans["prod"])
    pods = {
        "gateway-a": {"workload": "Deployment/gateway", "ready": True, "ip": "10.9.0.5"},
        "gateway-b": {"workload": "Deployment/gateway", "ready": False, "ip": "10.9.0.6"},
        "auth-a": {"workload": "Deployment/auth", "ready": True, "ip": "10.9.0.7"},
    }
    (tmp_path / "status.json").write_text(json.dumps({"pods": pods}))
    assert exercise.gateways(tmp_path, port)() == [f"http://10.9.0.5:{port}"]


def test_the_load_suites_read_the_gateway_and_the_accounts_from_the_stack_document():
    seeded = DemoAccounts(students=(Account(username="student1", password="p" * 12),))
    document = StackFile.model_validate(load.stack_document("prod", "http://10.9.0.5:8000", seeded))
    assert gateway_url(document) == "http://10.9.0.5:8000"
    assert accounts(None, document).students[0].username == "student1"


# --- traffic, against a small HTTP server whose answers the test scripts -----------------


class Scripted(BaseHTTPRequestHandler):
    answers: ClassVar[list[int]] = []
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.seen.append(self.path)
        code = self.answers.pop(0) if self.answers else 200
        if code == 0:  # drop the connection: what a dying pod does
            self.connection.close()
            return
        self._reply(code, b"{}")

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", 0))
        self.rfile.read(length)
        self.seen.append(self.path)
        code = self.answers.pop(0) if self.answers else 200
        body = b'{"access_token": "a", "refresh_token": "r"}' if code == 200 else b"{}"
        self._reply(code, body)

    def _reply(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    Scripted.answers, Scripted.seen = [], []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


STUDENT = Account(username="student1", password="p" * 12)


def test_failed_requests_are_5xx_and_broken_connections_and_429s_are_counted_apart(server):
    # The login, then: ok, limited, failed, dropped, ok...
    Scripted.answers = [200, 200, 429, 503, 0]
    flow = traffic.Traffic(lambda: [server], STUDENT, course_id=7, rate_per_second=50)
    with flow:
        while flow.tally.requests < 8:
            threading.Event().wait(0.02)
    figures = flow.tally.figures()
    assert figures["rate_limited"] == 1
    assert figures["failed_requests"] == 2
    assert set(figures["failures"]) == {"503", "RemoteProtocolError"}
    assert flow.tally.ok == flow.tally.requests - 3
    assert "/courses/7" in Scripted.seen and Scripted.seen[0] == "/auth/login"


def test_no_ready_gateway_counts_as_a_failed_request(server):
    pods: list[str] = [server]
    flow = traffic.Traffic(lambda: list(pods), STUDENT, course_id=7, rate_per_second=50)
    with flow:
        pods.clear()
        while flow.tally.failed < 2:
            threading.Event().wait(0.02)
    assert flow.tally.failures["ConnectError"] >= 2


def test_a_login_is_retried_while_the_stack_settles_and_refused_logins_stop_it(server):
    Scripted.answers = [503, 200]
    assert traffic.login(lambda: [server], STUDENT, within_s=10)["access_token"] == "a"
    Scripted.answers = [401]
    with pytest.raises(traffic.TrafficError, match="login as student1 failed: 401"):
        traffic.login(lambda: [server], STUDENT, within_s=10)


def test_held_data_is_kept_when_the_refresh_rotates_and_the_revoked_token_is_refused(server):
    Scripted.answers = [200, 401]
    held = traffic.Held(refresh_token="r", revoked_access_token="gone")
    kept = traffic.check_held(lambda: [server], held, course_id=7)
    assert kept["session_kept"] and kept["revocation_kept"]
    Scripted.answers = [401, 200]  # a Redis that lost its data: both come back wrong
    lost = traffic.check_held(lambda: [server], held, course_id=7)
    assert not lost["session_kept"] and not lost["revocation_kept"]
