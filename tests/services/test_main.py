"""Building a service: only auth holds the signing key, and it signs what the others verify."""

from __future__ import annotations

import pytest

from courseredis.services import registry
from courseredis.services.main import MisconfiguredService, build, main
from courseredis.services.tokens import KeyPair
from courseredis.settings import RedisSettings
from tests.services.platform import JWT_KEYS, service_settings

NOWHERE = RedisSettings(url="redis://127.0.0.1:1/0")  # nothing connects before start-up


def test_auth_is_the_one_service_that_signs():
    assert registry.SIGNER == "auth"
    assert [s.name for s in registry.SERVICES if s.signs_tokens] == ["auth"]


@pytest.mark.parametrize("service", [n for n in registry.NAMES if n != registry.SIGNER])
def test_a_service_given_the_private_key_refuses_to_start(service):
    settings = service_settings(
        service, "sqlite+aiosqlite://", jwt_private_key=JWT_KEYS.private_pem
    )
    with pytest.raises(MisconfiguredService, match="must not hold JWT_PRIVATE_KEY"):
        build(service, settings=settings, redis_settings=NOWHERE)


def test_auth_without_the_private_key_refuses_to_start():
    settings = service_settings("gateway", "sqlite+aiosqlite://")  # no private key
    with pytest.raises(MisconfiguredService, match="set JWT_PRIVATE_KEY"):
        build("auth", settings=settings, redis_settings=NOWHERE)


def test_auth_refuses_a_key_whose_public_half_the_verifiers_do_not_have():
    """Signing with the new key before every verifier has its public key would make every
    new token a 401: the rotation's first step must come first."""
    settings = service_settings(
        "auth", "sqlite+aiosqlite://", jwt_private_key=KeyPair.generate().private_pem
    )
    with pytest.raises(MisconfiguredService, match="not in JWT_PUBLIC_KEYS"):
        build("auth", settings=settings, redis_settings=NOWHERE)


def test_the_command_exits_2_naming_the_key_it_must_not_hold(monkeypatch, capsys):
    monkeypatch.setenv("JWT_PUBLIC_KEYS", JWT_KEYS.public_pem)
    monkeypatch.setenv("JWT_PRIVATE_KEY", JWT_KEYS.private_pem)
    assert main(["gateway"]) == 2
    assert "must not hold JWT_PRIVATE_KEY" in capsys.readouterr().err


def test_the_command_exits_2_on_a_key_that_is_not_ed25519(monkeypatch, capsys):
    monkeypatch.setenv(
        "JWT_PUBLIC_KEYS", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"
    )
    assert main(["courses"]) == 2
    assert "JWT_PUBLIC_KEYS" in capsys.readouterr().err.upper()
