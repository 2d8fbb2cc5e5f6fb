"""The per-service ACL users, on the real single node and the real cluster.

Each service runs its real patterns as its own user, and is refused outside its key
prefixes and on the dangerous commands; `default` is off. The users come from
`courseredis.acl.all_users`, as the local stack and the prod chart create them.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError
from redis.retry import Retry

from courseredis import acl, keys
from courseredis.acl import key_prefixes
from courseredis.connection import SyncClient, create_client
from courseredis.local import LocalStack
from courseredis.patterns import (
    Algorithm,
    Blacklist,
    ClaimStatus,
    CourseCache,
    Idempotency,
    Lock,
    Policy,
    RateLimiter,
    RefreshTokens,
    RotationStatus,
    Sessions,
)
from courseredis.services import registry
from courseredis.settings import RedisSettings
from courseredis.topology import split_addr


def service_client(stack: LocalStack, service: str) -> SyncClient:
    settings = RedisSettings.for_nodes(
        stack.nodes,
        cluster=stack.mode == "cluster",
        username=service,
        password=stack.users[service],
        retries=0,
    )
    return create_client(settings)


def node_as(stack: LocalStack, index: int, username: str | None, password: str | None) -> Any:
    host, port = split_addr(stack.nodes[index])
    return redis.Redis(
        host=host,
        port=port,
        username=username,
        password=password,
        decode_responses=True,
        retry=Retry(NoBackoff(), 0),
    )


@pytest.fixture
def as_service(stack: LocalStack) -> Iterator[dict[str, SyncClient]]:
    clients = {service: service_client(stack, service) for service in registry.NAMES}
    yield clients
    for client in clients.values():
        client.close()


def test_every_service_has_its_own_user(stack: LocalStack) -> None:
    assert set(stack.users) == set(registry.NAMES)
    assert len(set(stack.users.values())) == len(registry.NAMES)
    assert all(len(password) >= 24 for password in stack.users.values())
    assert stack.to_json()["users"] == {
        service: {"username": service, "password": password}
        for service, password in stack.users.items()
    }
    # Every node knows every user: a replica serves reads, and any node may become master.
    for index in range(len(stack.nodes)):
        for service, password in stack.users.items():
            with node_as(stack, index, service, password) as client:
                assert client.ping() is True


def test_gateway_runs_its_patterns(as_service: dict[str, SyncClient]) -> None:
    gateway, auth = as_service["gateway"], as_service["auth"]
    limiter = RateLimiter(gateway)
    for algorithm in Algorithm:
        policy = Policy.of((5, timedelta(seconds=10)), algorithm=algorithm)
        for key in (keys.ratelimit_ip("10.1.2.3", "login"), keys.ratelimit_user(7, "enroll")):
            key = f"{key}-{algorithm.value.replace('_', '-')}"
            decision = limiter.hit(key, policy)
            assert decision.allowed
            assert not decision.degraded

    # It reads the blacklist the auth service writes, and touches the sessions it creates.
    jti = uuid.uuid4()
    Blacklist(auth).revoke(jti, datetime.now(UTC) + timedelta(minutes=5))
    assert Blacklist(gateway).is_revoked(jti)
    assert Blacklist(gateway).are_revoked([jti, uuid.uuid4()]) == [True, False]
    session = Sessions(auth).create(7, ["student"])
    touched = Sessions(gateway, throttle=timedelta(0)).touch(session.session_id)
    assert touched is not None and touched.user_id == 7
    assert Sessions(gateway).read(session.session_id) is not None
    assert Sessions(gateway).delete(session.session_id)


def test_auth_runs_its_patterns(as_service: dict[str, SyncClient]) -> None:
    auth = as_service["auth"]
    tokens = RefreshTokens(auth)
    issued = tokens.issue(42, "read write")
    rotated = tokens.rotate(issued.token)
    assert rotated.status is RotationStatus.ROTATED
    assert tokens.rotate(issued.token).status is RotationStatus.RETRY
    assert rotated.token is not None
    assert tokens.revoke(rotated.token)

    sessions = Sessions(auth, throttle=timedelta(0))
    session = sessions.create(42, ["admin"])
    assert sessions.touch(session.session_id) is not None
    assert sessions.delete(session.session_id)

    jti = uuid.uuid4()
    assert Blacklist(auth).revoke(jti, datetime.now(UTC) + timedelta(minutes=1))
    assert Blacklist(auth).is_revoked(jti)


def test_courses_runs_its_patterns(as_service: dict[str, SyncClient]) -> None:
    courses = as_service["courses"]
    cache = CourseCache(courses)
    key = keys.course(int(uuid.uuid4().int % 10**9) + 1)
    assert cache.get_or_load(key, lambda: {"title": "Redis"}).value == {"title": "Redis"}
    assert cache.get_or_load(key, lambda: None).status == "hit"
    assert cache.invalidate(key)

    consume_events(courses, "courses")


def test_enrollments_runs_its_patterns(as_service: dict[str, SyncClient]) -> None:
    enrollments = as_service["enrollments"]
    lock = Lock(enrollments)
    key = keys.enrollment_lock(3, int(uuid.uuid4().int % 10**9) + 1)
    with lock.hold(key) as lease:
        lock.extend(lease)
        assert lock.is_held(lease)

    consume_events(enrollments, "enrollments")


def consume_events(client: Any, service: str) -> None:
    """An event through its stream and consumer group, then the idempotent handler."""
    stream = keys.event_stream(f"acl-test-{uuid.uuid4().hex[:8]}")
    client.xgroup_create(stream, service, id="0", mkstream=True)
    client.xadd(stream, {"type": "CourseUpdated", "id": "1"}, maxlen=1000, approximate=True)
    batch = client.xreadgroup(service, "worker-1", {stream: ">"}, count=10)
    [(_, [(entry_id, _fields)])] = batch
    outcome = Idempotency(client).process(service, str(entry_id).replace("-", "_"), lambda: 1)
    assert outcome.status is ClaimStatus.CLAIMED
    again = Idempotency(client).process(service, str(entry_id).replace("-", "_"), lambda: 1)
    assert again.status is ClaimStatus.DONE
    assert client.xack(stream, service, entry_id) == 1
    assert client.xpending(stream, service)["pending"] == 0
    assert client.xautoclaim(stream, service, "worker-2", 0)[1] == []
    assert client.xlen(stream) == 1
    assert client.xinfo_stream(stream)["length"] == 1
    assert len(client.xrange(stream)) == 1
    client.xtrim(stream, maxlen=0)
    # A consumer may trim its stream but not delete it: DEL is no stream command.
    with pytest.raises(NoPermissionError):
        client.delete(stream)


def sample_keys() -> dict[str, str]:
    """One key of every pattern, by pattern name (idempotency: the courses consumer)."""
    return {
        p.name: p.example(consumer="courses") if p is keys.IDEMPOTENCY else p.example()
        for p in keys.PATTERNS
    }


def test_sample_keys_cover_every_pattern() -> None:
    assert set(sample_keys()) == {p.name for p in keys.PATTERNS}


@pytest.mark.parametrize("service", registry.NAMES)
def test_a_service_is_refused_other_services_keys(
    stack: LocalStack, as_service: dict[str, SyncClient], service: str
) -> None:
    client = as_service[service]
    samples = sample_keys()
    uses = registry.service(service).uses
    foreign = [samples[p.name] for p in keys.PATTERNS if not uses(p)]
    if service != "courses":
        foreign.append(samples["idempotency"])  # another consumer's claims
    foreign.append("unrelated:key")  # and nothing outside the schema
    assert foreign
    for key in foreign:
        # GET is a command every service has: what is refused is the key.
        with pytest.raises(NoPermissionError, match="key"):
            client.get(key)
    own = key_prefixes(service)[0].rstrip("*") + "acl-probe"
    assert client.get(own) is None  # its own prefix is readable (the key does not exist)


@pytest.mark.parametrize("service", registry.NAMES)
@pytest.mark.parametrize(
    "command",
    [("FLUSHALL",), ("KEYS", "*"), ("CONFIG", "GET", "maxmemory"), ("DEBUG", "SLEEP", "0")],
    ids=["flushall", "keys", "config-get", "debug"],
)
def test_dangerous_commands_are_refused(
    stack: LocalStack, service: str, command: tuple[str, ...]
) -> None:
    # Straight to a node: these commands name no key, so there is no slot to route by.
    with node_as(stack, 0, service, stack.users[service]) as client:
        if command[0] == "DEBUG":
            # Redis 7 refuses DEBUG to everyone before the ACL is asked (enable-debug-command
            # is off); ACL DRYRUN below shows the ACL would refuse it too.
            with pytest.raises(ResponseError, match="DEBUG command not allowed"):
                client.execute_command(*command)
        else:
            with pytest.raises(NoPermissionError, match="no permissions to run"):
                client.execute_command(*command)
    with node_as(stack, 0, stack.username, stack.password) as admin:
        verdict = str(admin.execute_command("ACL", "DRYRUN", service, *command))
    assert re.search(rf"no permissions to run the '{command[0].lower()}(\|\w+)?' command", verdict)


def test_the_default_user_is_off(stack: LocalStack) -> None:
    with node_as(stack, 0, None, None) as anonymous, pytest.raises(AuthenticationError):
        anonymous.ping()
    with node_as(stack, 0, "default", "") as default, pytest.raises(AuthenticationError):
        default.ping()
    with node_as(stack, 0, stack.username, stack.password) as admin:
        assert "off" in admin.acl_getuser("default")["flags"]


def test_a_reader_cannot_undo_a_writers_security_data(
    as_service: dict[str, SyncClient],
) -> None:
    """The gateway checks revocations but may not delete one (that would un-revoke a token),
    and a service may not run one pattern's commands on another pattern's keys."""
    jti = uuid.uuid4()
    revoked = keys.jwt_revoked(jti)
    Blacklist(as_service["auth"]).revoke(jti, int(datetime.now(UTC).timestamp()) + 60)
    gateway = as_service["gateway"]
    assert Blacklist(gateway).is_revoked(jti)
    for attempt in (
        lambda: gateway.delete(revoked),
        lambda: gateway.pexpire(revoked, 1),
        lambda: gateway.set(revoked, "0"),
    ):
        with pytest.raises(NoPermissionError):
            attempt()
    assert Blacklist(gateway).is_revoked(jti)
    # ZADD is a gateway command, but only on rate-limit keys.
    with pytest.raises(NoPermissionError):
        gateway.zadd(keys.session(uuid.uuid4()), {"x": 1})


# --- the redis_direct load suite's own user (issue 13, finding 9) --------------------------


@pytest.fixture
def as_loadtest(stack: LocalStack) -> Iterator[SyncClient]:
    assert stack.loadtest_password, "the local stack creates the load-test user"
    settings = RedisSettings.for_nodes(
        stack.nodes,
        cluster=stack.mode == "cluster",
        username=acl.LOADTEST_USER,
        password=stack.loadtest_password,
        retries=0,
    )
    client = create_client(settings)
    yield client
    client.close()


def test_the_load_suite_user_runs_what_the_suite_runs(as_loadtest: SyncClient) -> None:
    """Every pattern of loadtests/redis_direct.py, with the suite's identifiers."""
    base = acl.LOADTEST_ID_BASE
    loadtest = as_loadtest
    for algorithm in Algorithm:
        key = keys.ratelimit_user(base + 12345, f"{acl.LOADTEST_NAME}.{algorithm.value}")
        assert RateLimiter(loadtest).hit(key, Policy.of((5, timedelta(seconds=10)))).allowed
    lock = Lock(loadtest)
    with lock.hold(keys.enrollment_lock(base + 1, base)) as lease:
        assert lock.is_held(lease)
    cache = CourseCache(loadtest)
    course = keys.course(base + 7)
    assert cache.get_or_load(course, lambda: {"title": "load"}).value == {"title": "load"}
    assert cache.invalidate(course)
    jti = acl.loadtest_uuid()
    assert Blacklist(loadtest).revoke(jti, int(datetime.now(UTC).timestamp()) + 60)
    assert Blacklist(loadtest).is_revoked(jti)
    tokens = RefreshTokens(loadtest)
    issued = tokens.issue(base + 1, "loadtest", family=acl.loadtest_uuid())
    rotated = tokens.rotate(issued.token)
    assert rotated.status is RotationStatus.ROTATED and rotated.token is not None
    assert tokens.revoke(rotated.token)
    sessions = Sessions(loadtest, throttle=timedelta(0))
    session = sessions.create(base + 1, ["student"], session_id=acl.loadtest_uuid())
    assert sessions.touch(session.session_id) is not None
    assert sessions.delete(session.session_id)
    outcome = Idempotency(loadtest).process(acl.LOADTEST_NAME, uuid.uuid4().hex, lambda: 1)
    assert outcome.status is ClaimStatus.CLAIMED


def test_the_load_suite_user_touches_no_key_of_the_platform(as_loadtest: SyncClient) -> None:
    """The attack: with the load run's password, read or destroy the platform's data. Every
    real key shape (real ids, real routes, real consumers, the streams) is refused, for
    reading and for writing."""
    real = [
        keys.course(42),
        keys.ratelimit_user(7, "login"),
        keys.ratelimit_user(acl.LOADTEST_ID_BASE, "login"),  # a suite id, a real route
        keys.ratelimit_ip("192.0.2.1", "login"),
        keys.ratelimit_account("alice", "login"),
        keys.enrollment_lock(3, 7),
        keys.jwt_revoked(uuid.uuid4()),
        keys.refresh_token(uuid.uuid4()),
        keys.session(uuid.uuid4()),
        keys.idempotency("courses", "1700000000000_0"),
        keys.event_stream("courses"),
        "unrelated:key",
    ]
    assert {m.pattern for m in map(keys.classify, real[:-1]) if m} == set(keys.PATTERNS)
    for key in real:
        for attempt in (
            lambda k=key: as_loadtest.get(k),
            lambda k=key: as_loadtest.set(k, "x"),
            lambda k=key: as_loadtest.delete(k),
        ):
            with pytest.raises(NoPermissionError):
                attempt()


@pytest.mark.parametrize(
    "command",
    [
        ("FLUSHALL",),
        ("KEYS", "*"),
        ("SCAN", "0"),
        ("CONFIG", "GET", "*"),
        ("ACL", "LIST"),
        ("MONITOR",),
        ("CLIENT", "LIST"),
        ("SCRIPT", "KILL"),
        ("SCRIPT", "FLUSH"),
        ("SHUTDOWN",),
        ("WAIT", "1", "0"),
        ("SLOWLOG", "GET"),
        ("INFO",),
    ],
    ids=lambda c: "-".join(c).lower(),
)
def test_the_load_suite_user_runs_no_admin_command(
    stack: LocalStack, command: tuple[str, ...]
) -> None:
    assert stack.loadtest_password
    with node_as(stack, 0, stack.username, stack.password) as admin:
        verdict = str(admin.execute_command("ACL", "DRYRUN", acl.LOADTEST_USER, *command))
    assert "no permissions to run" in verdict, verdict
    if command[0] in ("SHUTDOWN", "MONITOR"):
        return  # not run for real: the verdict above is Redis' own answer
    with (
        node_as(stack, 0, acl.LOADTEST_USER, stack.loadtest_password) as client,
        pytest.raises(NoPermissionError),
    ):
        client.execute_command(*command)
