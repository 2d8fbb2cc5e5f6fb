"""The chart's start script and redis.conf, and the program's ACL file, on a real server.

The chart is rendered for the engine of the test run (`tests.support.run_engine`), whose
start script then execs that engine's server, found on PATH as in its official image.

Helm proves the chart renders; only redis-server proves Redis accepts what it rendered
(every directive, and every command name in the ACL file). The script and config run as in
the pod, with the pod's paths moved into a temporary directory and ports made free.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError
from redis.retry import Retry

from courseredis.acl import LOADTEST_USER
from courseredis.engines import PINNED
from courseredis.local.ports import free_ports
from courseredis.redis_config import BUSY_REPLY_THRESHOLD_MS, MAXMEMORY_POLICY
from courseredis.services import registry
from infra import values as infra_values
from infra.credentials import acl_file
from infra.settings import StackSettings
from tests.charts.helm import only, render
from tests.charts.password_leaks import assert_no_account_reads_a_password
from tests.support import run_engine, wait_for_ping

ADMIN_PASSWORD = "AdminPw0123456789"
EXPORTER_PASSWORD = "ExporterPw0123456789"
REPLICATION_PASSWORD = "ReplicationPw0123456789"
LOADTEST_PASSWORD = "LoadtestPw0123456789"
SERVICE_PASSWORDS = {s: f"{s.capitalize()}Pw0123456789" for s in registry.NAMES}


@contextmanager
def pod_redis(settings: StackSettings, workdir: Path) -> Iterator[int]:
    engine = run_engine()
    redis_topology = settings.redis.model_copy(update={"engine": engine, "version": PINNED[engine]})
    settings = settings.model_copy(update={"redis": redis_topology})
    objects = render("redis", infra_values.redis_chart_values(settings), settings.namespace)
    data = only(objects, "ConfigMap", "redis-config")["data"]
    port, bus = free_ports(2)
    (workdir / "data").mkdir()
    (workdir / "users.acl").write_text(
        acl_file(
            ADMIN_PASSWORD,
            SERVICE_PASSWORDS,
            EXPORTER_PASSWORD,
            REPLICATION_PASSWORD,
            LOADTEST_PASSWORD,
        )
    )
    conf = (
        data["redis.conf"]
        .replace("bind * -::*", "bind 127.0.0.1")
        .replace(f"port {infra_values.REDIS_PORT}\n", f"port {port}\n")
        .replace(f"cluster-port {infra_values.CLUSTER_BUS_PORT}", f"cluster-port {bus}")
        .replace("dir /data", f"dir {workdir / 'data'}")
        .replace("/etc/redis/acl/users.acl", str(workdir / "users.acl"))
        .replace("/tmp/redis", str(workdir / "run"))
    )
    (workdir / "redis.conf").write_text(conf)
    script = (
        data["start.sh"]
        .replace("/tmp/redis", str(workdir / "run"))
        .replace("/etc/redis/redis.conf", str(workdir / "redis.conf"))
    )
    (workdir / "start.sh").write_text(script)
    env = {
        "PATH": "/usr/bin:/bin:/usr/local/bin",
        "POD_NAME": "redis-0",
        "POD_NAMESPACE": settings.namespace,
        "POD_IP": "127.0.0.1",
        "REDIS_USERNAME": infra_values.ADMIN_USER,
        "REDIS_PASSWORD": ADMIN_PASSWORD,
        "REDIS_REPLICATION_USERNAME": infra_values.REPLICATION_ACCOUNT,
        "REDIS_REPLICATION_PASSWORD": REPLICATION_PASSWORD,
    }
    log = (workdir / "redis.log").open("w")
    process = subprocess.Popen(
        ["/bin/sh", str(workdir / "start.sh")], env=env, stdout=log, stderr=log
    )
    try:
        _wait_for(port, process, workdir / "redis.log")
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def _wait_for(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    with redis.Redis(port=port, username="admin", password=ADMIN_PASSWORD) as client:
        wait_for_ping(client, process, log)


def test_redis_runs_the_chart_config_with_the_program_acl(settings: StackSettings, tmp_path: Path):
    with pod_redis(settings, tmp_path) as port:
        admin = redis.Redis(
            port=port, username="admin", password=ADMIN_PASSWORD, decode_responses=True
        )
        try:
            config = admin.config_get("maxmemory-policy")
            assert config["maxmemory-policy"] == MAXMEMORY_POLICY
            assert admin.config_get("maxmemory")["maxmemory"] == str(
                infra_values.maxmemory_bytes(settings.redis.maxmemory)
            )
            clustered = settings.redis.mode == "cluster"
            assert admin.info("cluster")["cluster_enabled"] == (1 if clustered else 0)
            aof = settings.redis.persistence == "aof"
            assert admin.config_get("appendonly")["appendonly"] == ("yes" if aof else "no")
            if clustered:  # what start.sh wrote for this pod
                hostname = admin.config_get("cluster-announce-hostname")
                expected = infra_values.redis_pod_hosts(settings)[0]
                assert hostname["cluster-announce-hostname"] == expected
                assert admin.config_get("masteruser")["masteruser"] == "replication"
                assert admin.config_get("masterauth")["masterauth"] == REPLICATION_PASSWORD
        finally:
            admin.close()
        # No retries: the refusal is the answer, not a transient error.
        anonymous = redis.Redis(port=port, retry=Retry(NoBackoff(), 0))
        with pytest.raises((AuthenticationError, ResponseError)):
            anonymous.ping()  # `default` is off
        anonymous.close()
        exporter = redis.Redis(port=port, username="exporter", password=EXPORTER_PASSWORD)
        assert "redis_version" in exporter.info()
        with pytest.raises(NoPermissionError):
            exporter.get("session:x")
        exporter.close()
        gateway = redis.Redis(port=port, username="gateway", password=SERVICE_PASSWORDS["gateway"])
        with pytest.raises(NoPermissionError):
            gateway.flushall()
        gateway.close()


def test_no_account_but_admin_reads_a_password(settings: StackSettings, tmp_path: Path):
    """Issue 13: the exporter could `CONFIG GET masterauth`, and masterauth was the admin's
    password. Every account of the ACL file the program writes now tries every way it has
    to read a password on the node the chart configures (masterauth set, in prod)."""
    with pod_redis(settings, tmp_path) as port:
        assert_no_account_reads_a_password(
            port,
            {
                infra_values.ADMIN_USER: ADMIN_PASSWORD,
                infra_values.EXPORTER_USER: EXPORTER_PASSWORD,
                infra_values.REPLICATION_ACCOUNT: REPLICATION_PASSWORD,
                LOADTEST_USER: LOADTEST_PASSWORD,
                **SERVICE_PASSWORDS,
            },
        )


def test_a_runaway_script_gets_busy_after_the_threshold_and_admin_kills_it(
    settings: StackSettings, tmp_path: Path
):
    """A service may EVAL, only the admin may SCRIPT KILL: after `busy-reply-threshold`
    others get BUSY (not a hang of the default 5 s) and the admin stops the loop."""
    with pod_redis(settings, tmp_path) as port:
        admin = redis.Redis(port=port, username="admin", password=ADMIN_PASSWORD)
        assert admin.config_get("busy-reply-threshold") == {
            "busy-reply-threshold": str(BUSY_REPLY_THRESHOLD_MS)
        }
        gateway = redis.Redis(port=port, username="gateway", password=SERVICE_PASSWORDS["gateway"])
        errors: list[Exception] = []

        def hostile() -> None:
            try:
                gateway.eval("while true do end", 0)
            except redis.RedisError as error:
                errors.append(error)

        thread = threading.Thread(target=hostile)
        thread.start()
        other = redis.Redis(port=port, username="admin", password=ADMIN_PASSWORD)
        courses = redis.Redis(port=port, username="courses", password=SERVICE_PASSWORDS["courses"])
        try:
            time.sleep(BUSY_REPLY_THRESHOLD_MS / 1000 + 0.3)
            with pytest.raises(ResponseError, match="BUSY"):
                other.ping()
            with pytest.raises(NoPermissionError):
                courses.script_kill()  # a service cannot stop it
            admin.script_kill()
            thread.join(5)
            assert not thread.is_alive() and errors and "killed" in str(errors[0]).lower()
            assert other.ping()
        finally:
            if thread.is_alive():  # never leave the node spinning for the teardown
                admin.script_kill()
                thread.join(5)
            for client in (admin, gateway, other, courses):
                client.close()


def test_the_exporter_reads_its_figures_without_config(settings: StackSettings, tmp_path: Path):
    """What the exporter still gets with REDIS_EXPORTER_CONFIG_COMMAND=-: INFO (maxmemory
    included), CLUSTER INFO, the slow log and latency; CONFIG GET is refused."""
    with pod_redis(settings, tmp_path) as port:
        exporter = redis.Redis(
            port=port, username="exporter", password=EXPORTER_PASSWORD, decode_responses=True
        )
        try:
            memory = exporter.info("memory")
            assert memory["maxmemory"] == infra_values.maxmemory_bytes(settings.redis.maxmemory)
            if settings.redis.mode == "cluster":
                assert "cluster_state" in exporter.execute_command("CLUSTER", "INFO")
            exporter.slowlog_get(10)
            exporter.execute_command("LATENCY", "LATEST")
            with pytest.raises(NoPermissionError):
                exporter.config_get("maxmemory")
        finally:
            exporter.close()
