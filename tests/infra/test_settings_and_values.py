"""Stack config to settings to chart values: the pure half of the program, without Pulumi."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from courseredis.environments import StackConfigError, load_environment
from courseredis.redis_config import MAXMEMORY_POLICY
from infra import values
from infra.settings import StackSettings


def raw(env: str) -> dict[str, Any]:
    return copy.deepcopy(load_environment(env).config)


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_both_stack_files_parse_with_no_unknown_key(env: str):
    settings = StackSettings.from_config(env, raw(env))
    assert settings.redis == load_environment(env).redis  # one topology, read one way
    assert settings.namespace == f"course-redis-{env}"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.update(servics={}), "servics: unknown key"),
        (lambda c: c["services"]["ingress"].update(hots=""), "services.ingress.hots: unknown key"),
        (lambda c: c.pop("image"), "image: missing key"),
        (lambda c: c["tls"].pop("secretName"), "tls.secretName: missing key"),
        (lambda c: c["image"].update(tag="latest"), "image.tag: .*pinned tag"),
        (lambda c: c["services"].update(replicas=7), "services: .*replicas <= maxReplicas"),
        (lambda c: c["services"].update(replicas=True), "services.replicas: .*valid integer"),
        (lambda c: c["services"].update(trustedProxies=["10.0.0.0/33"]), "trustedProxies"),
        (lambda c: c["services"].update(logLevel="info"), "services.logLevel: .*'DEBUG'"),
        (lambda c: c["redisDeployment"].update(antiAffinity="soft"), "antiAffinity: .*'required'"),
        (lambda c: c["tls"].update(enabled=True), "tls: .*secretName"),
        (lambda c: c["tls"].update(enabled=True, secretName="redis-tls"), "standalone"),
        (lambda c: c.update(namespace="Course_Redis"), "namespace: .*DNS label"),
        (lambda c: c.update(env="prod"), "env: unknown key"),
        (lambda c: c["services"]["jwtKeys"].update(signing=2), "signing .*one of published"),
        (lambda c: c["services"]["jwtKeys"].update(published=[1, 2, 3]), "two during a rotation"),
        (lambda c: c["services"]["jwtKeys"].update(published=[]), "two during a rotation"),
        (lambda c: c["services"]["jwtKeys"].pop("signing"), "jwtKeys.signing: missing key"),
    ],
)
def test_a_wrong_stack_config_is_refused_with_the_reason(change: Any, message: str):
    config = raw("prod")
    change(config)
    with pytest.raises(StackConfigError, match=message):
        StackSettings.from_config("prod", config)


def test_redis_memory_leaves_room_for_buffers_and_rewrites():
    dev, prod = (StackSettings.from_config(e, raw(e)).redis for e in ("dev", "prod"))
    assert values.redis_memory(dev) == ("384Mi", "512Mi")
    assert values.redis_memory(prod) == ("1536Mi", "2048Mi")
    assert values.maxmemory_bytes("1gb") == 1024**3


def test_cluster_nodes_are_the_pods_stable_names():
    settings = StackSettings.from_config("prod", raw("prod"))
    assert values.redis_nodes(settings)[5] == (
        "redis-5.redis-headless.course-redis-prod.svc.cluster.local:6379"
    )
    chart = values.redis_chart_values(settings)
    assert chart["maxmemoryPolicy"] == MAXMEMORY_POLICY


def test_the_gateway_url_follows_the_ingress():
    settings = StackSettings.from_config("prod", raw("prod"))
    ingress = settings.services.ingress.model_copy(
        update={"enabled": True, "host": "courses.example.com", "tls_secret": "tls"}
    )
    published = settings.model_copy(
        update={"services": settings.services.model_copy(update={"ingress": ingress})}
    )
    assert values.gateway_url(published) == "https://courses.example.com"
    assert "SMOKE_GATEWAY_URL=https://courses.example.com " in values.smoke_command(published)


def test_standalone_tls_uses_rediss():
    settings = StackSettings.from_config("dev", raw("dev"))
    tls = settings.model_copy(update={"tls": settings.tls.model_copy(update={"enabled": True})})
    assert values.redis_url(tls).startswith("rediss://")
    assert values.services_chart_values(tls)["redis"]["tls"] is True


def _published(config: dict[str, Any], **ingress: Any) -> dict[str, Any]:
    config["services"]["ingress"].update(
        {"enabled": True, "host": "courses.example.com", "tlsSecret": "courses-tls", **ingress}
    )
    return config


def test_a_published_gateway_needs_trusted_proxies():
    """Issue 13 (finding 6): behind an ingress, with no proxy trusted, every client is the
    controller's address: one login bucket for everybody. Refused, saying what to set."""
    config = _published(raw("prod"))
    config["services"]["trustedProxies"] = []
    with pytest.raises(StackConfigError, match=r"services: ingress.enabled needs trustedProxies"):
        StackSettings.from_config("prod", config)
    config["services"]["trustedProxies"] = ["10.42.0.0/16"]
    settings = StackSettings.from_config("prod", config)
    assert values.gateway_url(settings) == "https://courses.example.com"
    chart = values.services_chart_values(settings)["gateway"]
    assert chart["trustedProxies"] == ["10.42.0.0/16"]


def test_a_published_gateway_needs_a_tls_secret():
    config = _published(raw("prod"), tlsSecret="")
    config["services"]["trustedProxies"] = ["10.42.0.0/16"]
    with pytest.raises(StackConfigError, match=r"ingress.enabled needs ingress.tlsSecret"):
        StackSettings.from_config("prod", config)


def test_an_unpublished_gateway_needs_neither():
    config = raw("prod")
    assert config["services"]["ingress"]["enabled"] is False
    assert config["services"]["trustedProxies"] == []
    StackSettings.from_config("prod", config)
