"""The gateway: rate limits with their headers, routing, client IPs from trusted proxies."""

from __future__ import annotations

import asyncio
import ipaddress
import random
import secrets
from collections.abc import Iterator

import httpx
import pytest

from courseredis import acl, keys
from courseredis.local import LocalStack
from courseredis.services.gateway import (
    account_of,
    client_ip,
    match_route,
    plan,
    route_policies,
)
from courseredis.services.settings import (
    DEFAULT_RATE_LIMITS,
    GatewaySettings,
    LimitSpec,
    RoutePolicy,
)
from courseredis.settings import RedisSettings
from tests.services.conftest import forget_login_attempts, redis_per_service
from tests.services.flows import login
from tests.services.platform import running_platform

TIGHT_LOGIN = {"login": RoutePolicy(per_ip=[LimitSpec(limit=2, window_s=1.5)])}


async def test_a_limited_route_answers_429_with_retry_after_and_then_admits_again(
    stack, seeded_database, credentials
):
    username, password = credentials.students[3]
    body = {"username": username, "password": password}
    async with running_platform(
        redis_per_service(stack), seeded_database[0], rate_limits=TIGHT_LOGIN
    ) as platform:
        first = await platform.gateway.post("/auth/login", json=body)
        second = await platform.gateway.post("/auth/login", json=body)
        refused = await platform.gateway.post("/auth/login", json=body)
        assert [first.status_code, second.status_code, refused.status_code] == [200, 200, 429]
        assert first.headers["RateLimit-Limit"] == "2"
        assert first.headers["RateLimit-Remaining"] == "1"
        assert refused.headers["RateLimit-Remaining"] == "0"
        retry_after = int(refused.headers["Retry-After"])
        assert 1 <= retry_after <= 2
        await asyncio.sleep(retry_after)
        assert (await platform.gateway.post("/auth/login", json=body)).status_code == 200


async def test_unknown_routes_are_404_without_touching_redis(platform):
    for method, path in [("GET", "/admin"), ("DELETE", "/auth/login"), ("GET", "/courses/1/x")]:
        response = await platform.gateway.request(method, path)
        assert response.status_code == 404


async def test_requests_are_forwarded_with_the_upstream_answer(platform, credentials):
    session = await login(platform.gateway, *credentials.students[4])
    response = await platform.gateway.get("/courses?page=2&size=5", headers=session.headers)
    assert response.status_code == 200
    assert response.json()["page"] == 2
    assert len(response.json()["items"]) == 5
    assert "RateLimit-Remaining" in response.headers


async def test_behind_a_trusted_proxy_the_client_address_is_limited_not_a_forged_one(
    stack, seeded_database, credentials, admin_client
):
    client = f"198.51.100.{random.randint(1, 254)}"
    forged = f"203.0.113.{random.randint(1, 254)}"
    async with running_platform(
        redis_per_service(stack), seeded_database[0], trusted_proxies=["2001:db8::/32"]
    ) as platform:  # its peer, the proxy, is in 2001:db8::/32
        session = await login(platform.gateway, *credentials.students[5])
        # The client's own line first, then the one the proxy added: one list, in order.
        headers = [
            *session.headers.items(),
            ("X-Forwarded-For", forged),
            ("X-Forwarded-For", f"{client}, 2001:db8::7"),
        ]
        response = await platform.gateway.get("/courses/1", headers=headers)
    assert response.status_code == 200
    assert admin_client.exists(keys.ratelimit_ip(client, "courses.read")) == 1
    assert admin_client.exists(keys.ratelimit_ip(forged, "courses.read")) == 0


@pytest.fixture
def gateway_user_without_rate_limit_keys(
    stack: LocalStack, admin_client
) -> Iterator[RedisSettings]:
    """The gateway's ACL user minus its rate-limit keys: a wrong ACL, as a deploy could ship."""
    name, password = f"gw-{secrets.token_hex(4)}", secrets.token_hex(16)
    rules = acl.service_user("gateway", password)
    kept = [s for s in rules.selectors if not s[0].lstrip("%R").startswith("~ratelimit:")]
    assert len(kept) < len(rules.selectors)  # the rate-limit keys are gone, the rest kept
    setuser = ("on", f">{password}", "resetchannels", *rules.commands)
    setuser += tuple(f"({' '.join(selector)})" for selector in kept)
    everywhere = {"target_nodes": "all"} if stack.mode == "cluster" else {}
    admin_client.execute_command("ACL", "SETUSER", name, *setuser, **everywhere)
    yield RedisSettings.for_nodes(
        stack.nodes, cluster=stack.mode == "cluster", username=name, password=password
    )
    admin_client.execute_command("ACL", "DELUSER", name, **everywhere)


async def test_a_rate_limit_redis_refuses_is_a_503_never_a_request_let_through(
    stack, seeded_database, credentials, gateway_user_without_rate_limit_keys
):
    # Course reads fail open when Redis is down; a NOPERM is no outage, and must not lift
    # the limits unnoticed.
    redis_for = redis_per_service(stack) | {"gateway": gateway_user_without_rate_limit_keys}
    async with running_platform(redis_for, seeded_database[0]) as platform:
        username, password = credentials.students[6]
        logged_in = await platform.direct["auth"].post(
            "/auth/login", json={"username": username, "password": password}
        )
        token = logged_in.json()["access_token"]
        response = await platform.gateway.get(
            "/courses/1", headers={"Authorization": f"Bearer {token}"}
        )
    assert response.status_code == 503
    assert "rate limiter" in response.text


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "expected"),
    [
        ("198.51.100.1", "1.2.3.4", [], "198.51.100.1"),  # untrusted peer: header ignored
        ("10.0.0.5", "1.2.3.4", ["10.0.0.0/8"], "1.2.3.4"),
        ("10.0.0.5", "6.6.6.6, 1.2.3.4, 10.0.0.9", ["10.0.0.0/8"], "1.2.3.4"),
        ("10.0.0.5", "garbage, 1.2.3.4", ["10.0.0.0/8"], "1.2.3.4"),
        ("10.0.0.5", "1.2.3.4, garbage", ["10.0.0.0/8"], "10.0.0.5"),
        ("10.0.0.5", None, ["10.0.0.0/8"], "10.0.0.5"),
    ],
)
def test_the_client_ip_comes_from_trusted_proxies_only(peer, forwarded, trusted, expected):
    assert client_ip(peer, forwarded, trusted) == expected


def test_every_route_maps_to_a_fixed_rate_limit_name():
    assert match_route("GET", "/courses/{x}").name == "courses.read"  # type: ignore[union-attr]
    assert match_route("POST", "/courses/7/enrollments").name == "enrollments.create"  # type: ignore[union-attr]
    checks = plan("courses.read", route_policies(GatewaySettings()), "2001:db8::1", None)
    assert [op.keys for op in checks.ops] == [("ratelimit:ip:2001:db8::1:courses.read",)]  # type: ignore[union-attr]


def test_a_policy_table_naming_an_unknown_route_is_refused():
    with pytest.raises(ValueError, match="unknown routes"):
        GatewaySettings(rate_limits={"everything": RoutePolicy()})


# --- the per-account login limit --------------------------------------------------------------


def some_client_address() -> str:
    """An address no other test uses: its per-IP limits start unspent."""
    return str(ipaddress.IPv4Address(0x0A000000 + random.getrandbits(24)))


async def test_guesses_at_one_account_from_many_addresses_meet_the_account_limit(
    stack, seeded_database, credentials
):
    """The attack the per-IP limit cannot see: each guess from an address of its own."""
    forget_login_attempts(stack, credentials)
    username, password = credentials.students[5]
    limit = DEFAULT_RATE_LIMITS["login"].per_account[0].limit
    async with running_platform(
        redis_per_service(stack), seeded_database[0], trusted_proxies=["2001:db8::/32"]
    ) as platform:

        async def attempt(name: str, secret: str) -> httpx.Response:
            return await platform.gateway.post(
                "/auth/login",
                json={"username": name, "password": secret},
                headers={"X-Forwarded-For": some_client_address()},
            )

        for guess in range(limit):
            assert (await attempt(username, f"guess-{guess}")).status_code == 401
        # The next guess is refused before any password is checked, whatever the letter case.
        refused = await attempt(username.upper(), "guess")
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) >= 1
        # The owner waits out the window too: the price of not letting the guessing go on.
        assert (await attempt(username, password)).status_code == 429
        # Another account is not affected.
        assert (await attempt(*credentials.students[6])).status_code == 200


def test_a_login_is_limited_per_ip_and_per_account_both_failing_closed():
    body = b'{"username": "Student1", "password": "x"}'
    checks = plan("login", route_policies(GatewaySettings()), "192.0.2.1", None, account_of(body))
    assert [scope for _, _, scope in checks.limits] == ["ip", "account"]
    assert all(policy.on_redis_error == "closed" for _, policy, _ in checks.limits)
    assert checks.ops[1].keys == ("ratelimit:account:student1:login",)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[]",
        b'{"password": "x"}',
        b'{"username": 5}',
        b'{"username": ""}',
        b'{"username": "a b"}',
        b'{"username": "{tag}"}',
        b'{"username": "*"}',
        b'{"username": "x\\r\\nFLUSHALL"}',
        b'{"username": "' + b"a" * 65 + b'"}',
        b'{"username": "\\u00e9l\\u00e8ve"}',
        b"[" * 100_000 + b"]" * 100_000,
    ],
    ids=lambda body: repr(body[:30]),
)
def test_a_body_naming_no_valid_username_gives_no_account_key(body):
    """Auth answers 422 to these without checking a password: nothing to limit, and no
    user-controlled string may reach a key."""
    assert account_of(body) is None


def test_a_username_reaches_its_key_in_lower_case_only():
    assert account_of(b'{"username": "Alice.B-1", "password": "x"}') == "alice.b-1"
    # The last of duplicate names wins, as for the auth service's parser.
    assert account_of(b'{"username": "a", "username": "b"}') == "b"


def test_a_per_account_limit_on_a_route_without_an_account_is_refused():
    with pytest.raises(ValueError, match="per_account limits apply to"):
        GatewaySettings(
            rate_limits={"courses.read": RoutePolicy(per_account=[LimitSpec(limit=1, window_s=1)])}
        )
