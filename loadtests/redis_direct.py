"""Redis-direct users: each pattern's library class against Redis, no HTTP in between, to
size the Redis layer alone. Every call is reported to Locust with `events.request.fire`.

    locust -f loadtests/redis_direct.py --headless -u 14 -r 14 -t 20s
    locust -f loadtests/redis_direct.py --headless -u 8 -t 20s CacheRedisUser LockRedisUser

One user class per pattern (pick some by name, as above, or run them all):

| user | pattern | checked at the end |
|---|---|---|
| `RateLimitRedisUser` | `RateLimiter`, all four algorithms | admitted-over-limit = 0 |
| `LockRedisUser` | `Lock`, a few hot keys | no two owners at once |
| `CacheRedisUser` | `CourseCache`, Zipf reads, invalidations | hit ratio vs ideal |
| `BlacklistRedisUser` | `Blacklist`: revoke, check | answers right |
| `RefreshRedisUser` | `RefreshTokens`: issue, rotate, revoke | answers right |
| `SessionRedisUser` | `Sessions`: create, touch, read, delete | answers right |
| `IdempotencyRedisUser` | `Idempotency`: claim, complete, claim again | answers right |

The suite connects as its own ACL user, `loadtest` (`courseredis.acl.loadtest_user`; the
local stack's from stack.json, or `REDIS_URL`/`REDIS_CLUSTER_NODES`, `REDIS_USERNAME`,
`REDIS_PASSWORD`, which the Locust chart takes from the `redis-loadtest` Secret), never the
admin: it may run its patterns' commands on its own keys and nothing else. So every key it
makes is built from `courseredis.acl`'s load-test identifiers, which that user's key globs
come from too: integer ids from 4e9 up (below 5e9), UUIDs starting `10ad7e57`, route and
consumer names starting `loadtest`. Every key keeps its schema TTL; refresh families and
sessions are deleted at the end of their round.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import gevent  # type: ignore[import-untyped]
from locust import User, constant, task

from courseredis import acl, keys
from courseredis.connection import SyncClient, create_client
from courseredis.patterns import (
    Algorithm,
    Blacklist,
    CacheOptions,
    ClaimStatus,
    CourseCache,
    Idempotency,
    Lock,
    LockNotAcquired,
    LockOptions,
    Policy,
    RateLimiter,
    RefreshTokens,
    RotationStatus,
    Sessions,
)
from loadtests import target
from loadtests.analysis import (
    Holding,
    Read,
    Timed,
    Update,
    ZipfSampler,
    check_window,
    exclusion_violations,
    ideal_hit_ratio,
    ratio,
)
from loadtests.common.findings import Finding, gate
from loadtests.common.options import Option, option
from loadtests.common.run_state import RunState, state
from loadtests.common.suite import Suite

T = TypeVar("T")
BASE_ID = acl.LOADTEST_ID_BASE  # above every id the services hand out
POLICIES = {
    algorithm: Policy.of(
        (20, timedelta(seconds=1)), (300, timedelta(seconds=60)), algorithm=algorithm
    )
    for algorithm in Algorithm
}


class WrongAnswer(AssertionError):
    """A pattern answered something its contract rules out: a failed request."""


def redis_client(run: RunState) -> SyncClient:
    """One client (one connection pool) per process, as the suite's ACL user, shared."""
    client: SyncClient | None = run.extras.get("redis_client")
    if client is None:
        client = create_client(target.redis_settings(run.stack))
        run.extras["redis_client"] = client
    return client


class RedisUser(User):
    """A user that calls a pattern's library directly and reports each call to Locust."""

    abstract = True
    wait_time = constant(0)

    def on_start(self) -> None:
        self.ctx = state()
        self.redis = redis_client(self.ctx)

    def timed(self, name: str, call: Callable[[], T]) -> tuple[T | None, float, float]:
        """Run `call`, report it as a request named `name`; (result, sent, answered)."""
        sent, started = time.time(), time.perf_counter()
        result: T | None = None
        error: Exception | None = None
        try:
            result = call()
        except Exception as exc:  # reported, not raised: a failed request, not a crash
            error = exc
        self.environment.events.request.fire(
            request_type="redis",
            name=name,
            response_time=(time.perf_counter() - started) * 1000.0,
            response_length=0,
            exception=error,
            context={},
        )
        return result, sent, time.time()


def check(condition: bool, what: str) -> None:
    if not condition:
        raise WrongAnswer(what)


class RateLimitRedisUser(RedisUser):
    """Hammers keys of its own with each algorithm; every decision is kept for the check."""

    def on_start(self) -> None:
        super().on_start()
        self.limiter = RateLimiter(self.redis)
        self.user = BASE_ID + self.ctx.rng.randrange(acl.LOADTEST_ID_LIMIT - BASE_ID)

    @task
    def hit(self) -> None:
        algorithm = self.ctx.rng.choice(list(Algorithm))
        key = keys.ratelimit_user(self.user, f"{acl.LOADTEST_NAME}.{algorithm.value}")
        decision, sent, answered = self.timed(
            f"ratelimit.hit {algorithm.value}",
            lambda: self.limiter.hit(key, POLICIES[algorithm]),
        )
        if decision is not None:
            self.ctx.collector.add(
                "rl", [key, algorithm.value, sent, answered, bool(decision.allowed)]
            )


class LockRedisUser(RedisUser):
    """Several owners contend for a few keys; each holding is kept for the exclusion check."""

    HOT_KEYS = 3

    def on_start(self) -> None:
        super().on_start()
        self.lock = Lock(self.redis)
        self.options = LockOptions(lease=timedelta(seconds=5), wait=timedelta(milliseconds=200))

    @task
    def acquire_hold_release(self) -> None:
        course = BASE_ID + 1 + self.ctx.rng.randrange(self.HOT_KEYS)
        key = keys.enrollment_lock(course, BASE_ID)

        def acquire() -> Any:
            try:
                return self.lock.acquire(key, self.options)
            except LockNotAcquired:
                return None

        lease, _, acquired = self.timed("lock.acquire", acquire)
        if lease is None:
            self.ctx.collector.count("lock_gave_up")
            return
        gevent.sleep(self.ctx.rng.uniform(0.001, 0.005))  # the work under the lock
        releasing = time.time()
        self.timed("lock.release", lambda: self.lock.release(lease))
        self.ctx.collector.add("hold", [key, lease.token, acquired, releasing])


class CacheRedisUser(RedisUser):
    """Zipf reads through get-or-load (a 2 ms loader) and a few invalidations."""

    COURSES = 200

    def on_start(self) -> None:
        super().on_start()
        self.cache = CourseCache(self.redis, CacheOptions())
        zipf: ZipfSampler | None = self.ctx.extras.get("zipf")
        if zipf is None:
            zipf = ZipfSampler(self.COURSES, 1.1, self.ctx.rng)
            self.ctx.extras["zipf"] = zipf
        self.zipf = zipf

    @task
    def read(self) -> None:
        course = self.zipf.sample()
        key = keys.course(BASE_ID + course)
        if self.ctx.rng.random() < float(option(self.environment, "invalidation_rate")):
            _, sent, answered = self.timed("cache.invalidate", lambda: self.cache.invalidate(key))
            self.ctx.collector.add("update", [course, sent, answered])
            return

        def load() -> dict[str, Any]:
            gevent.sleep(0.002)  # the database
            return {"id": BASE_ID + course, "title": f"load test course {course}"}

        result, sent, answered = self.timed(
            "cache.get_or_load", lambda: self.cache.get_or_load(key, load)
        )
        if result is not None:
            self.ctx.collector.add("read", [course, sent, answered, result.status.value])


class BlacklistRedisUser(RedisUser):
    """Revoke a token id (as auth), then check it and an unrevoked one (as the gateway)."""

    def on_start(self) -> None:
        super().on_start()
        self.writer = Blacklist(self.redis)
        self.reader = Blacklist(self.redis)

    @task
    def revoke_and_check(self) -> None:
        jti = acl.loadtest_uuid()
        self.timed("blacklist.revoke", lambda: self.writer.revoke(jti, int(time.time()) + 60))
        self.timed("blacklist.is_revoked", lambda: check(self.reader.is_revoked(jti), "revoked"))
        other = acl.loadtest_uuid()
        self.timed(
            "blacklist.is_revoked",
            lambda: check(not self.reader.is_revoked(other), "never revoked"),
        )


class RefreshRedisUser(RedisUser):
    """A refresh family: issued, rotated five times (each must rotate), revoked."""

    def on_start(self) -> None:
        super().on_start()
        self.tokens = RefreshTokens(self.redis)

    @task
    def family(self) -> None:
        issued, _, _ = self.timed(
            "refresh.issue",
            lambda: self.tokens.issue(BASE_ID + 1, "loadtest", family=acl.loadtest_uuid()),
        )
        if issued is None:
            return
        token = issued.token
        for _ in range(5):

            def rotate(current: str = token) -> str:
                rotation = self.tokens.rotate(current)
                check(rotation.status is RotationStatus.ROTATED, f"rotated: {rotation.status}")
                assert rotation.token is not None
                return rotation.token

            successor, _, _ = self.timed("refresh.rotate", rotate)
            if successor is None:
                break
            token = successor
        self.timed("refresh.revoke", lambda: self.tokens.revoke(token))


class SessionRedisUser(RedisUser):
    """A session's life: create, touch, read, delete."""

    def on_start(self) -> None:
        super().on_start()
        self.sessions = Sessions(self.redis)

    @task
    def session(self) -> None:
        created, _, _ = self.timed(
            "session.create",
            lambda: self.sessions.create(BASE_ID + 1, ("student",), session_id=acl.loadtest_uuid()),
        )
        if created is None:
            return
        sid = created.session_id
        self.timed("session.touch", lambda: check(self.sessions.touch(sid) is not None, "live"))
        self.timed("session.read", lambda: check(self.sessions.read(sid) is not None, "live"))
        self.timed("session.delete", lambda: self.sessions.delete(sid))


class IdempotencyRedisUser(RedisUser):
    """An event claimed, completed, and delivered again: the second claim must say done."""

    def on_start(self) -> None:
        super().on_start()
        self.idempotency = Idempotency(self.redis)

    @task
    def event(self) -> None:
        event_id = str(uuid.uuid4())  # under the suite's own consumer name
        claim, _, _ = self.timed(
            "idempotency.claim", lambda: self.idempotency.claim(acl.LOADTEST_NAME, event_id)
        )
        if claim is None or claim.status is not ClaimStatus.CLAIMED:
            return
        self.timed("idempotency.complete", lambda: self.idempotency.complete(claim))

        def again() -> None:
            status = self.idempotency.claim(acl.LOADTEST_NAME, event_id).status
            if status is ClaimStatus.CLAIMED:
                self.ctx.collector.count("double_claims")
            check(status is ClaimStatus.DONE, f"redelivery seen as {status}")

        self.timed("idempotency.claim (redelivery)", again)


def analyse(run: RunState) -> Finding:
    environment = run.environment
    figures: dict[str, Any] = {}
    gates = []
    skew = 0.0

    decisions = run.collector.get("rl")
    if decisions:
        by_key: dict[tuple[str, str], list[Timed]] = {}
        total_over = 0
        rows = []
        for key, algorithm, sent, answered, allowed in decisions:
            if allowed:
                by_key.setdefault((key, algorithm), []).append(Timed(sent, answered))
        for algorithm in Algorithm:
            for limit in POLICIES[algorithm].limits:
                checks = [
                    check_window(
                        timed,
                        algorithm=algorithm.value,
                        limit=limit.limit,
                        window_s=limit.window.total_seconds(),
                        skew_s=skew,
                    )
                    for (_, alg), timed in by_key.items()
                    if alg == algorithm.value
                ]
                over = sum(c.over_limit for c in checks)
                total_over += over
                rows.append(
                    {
                        "algorithm": algorithm.value,
                        "limit": limit.limit,
                        "window_s": limit.window.total_seconds(),
                        "keys": len(checks),
                        "admitted": sum(c.admitted for c in checks),
                        "max_admitted_in_window": max((c.max_in_window for c in checks), default=0),
                        "over_limit": over,
                    }
                )
        figures["rate_limit"] = {
            "decisions": len(decisions),
            "refused_ratio": ratio(sum(1 for d in decisions if not d[4]), len(decisions)),
            "limits": rows,
            "admitted_over_limit": total_over,
        }
        gates.append(gate(environment, "admitted_over_limit", "max", "max_over_limit", total_over))

    holds = run.collector.get("hold")
    if holds or run.collector.counters.get("lock_gave_up"):
        violations = exclusion_violations(Holding(h[0], h[1], h[2], h[3]) for h in holds)
        figures["lock"] = {
            "holdings": len(holds),
            "gave_up": run.collector.counters.get("lock_gave_up", 0),
            "exclusion_violations": violations,
        }
        gates.append(
            gate(environment, "exclusion_violations", "max", "max_exclusion_violations", violations)
        )

    reads = [Read(r[0], r[1], r[2], r[3]) for r in run.collector.get("read")]
    if reads:
        updates = [Update(u[0], u[1], u[2]) for u in run.collector.get("update")]
        ideal = ideal_hit_ratio(reads, updates, CacheOptions().ttl.total_seconds())
        hits = sum(1 for r in reads if r.status == "hit")
        figures["cache"] = {
            "reads": len(reads),
            "invalidations": len(updates),
            "hit_ratio": ratio(hits, len(reads)),
            "ideal_hit_ratio": ideal.hit_ratio,
            "stale": sum(1 for r in reads if r.status == "stale"),
        }

    double_claims = run.collector.counters.get("double_claims", 0)
    figures["idempotency_double_claims"] = double_claims
    notes = ["latencies are of the library calls, from this process, Redis alone"]
    return Finding(figures, gates, notes)


SUITE = Suite(
    name="redis_direct",
    p95_ms=100.0,
    needs_gateway=False,
    options=[
        Option(
            "--invalidation-rate",
            "LOAD_INVALIDATION_RATE",
            0.02,
            "CacheRedisUser: the share of operations that invalidate instead of read",
        ),
        Option(
            "--max-over-limit",
            "LOAD_MAX_OVER_LIMIT",
            0.0,
            "gate: decisions admitted beyond a limit",
        ),
        Option(
            "--max-exclusion-violations",
            "LOAD_MAX_EXCLUSION_VIOLATIONS",
            0.0,
            "gate: times two owners certainly held one lock at once",
        ),
    ],
    analyse=analyse,
)
SUITE.install()
