"""The Pulumi program per stack, under Pulumi's mocks, with the real stack files."""

from __future__ import annotations

import shlex
from typing import Any

import kubernetes_validate
import pulumi
import pytest

# The mocks are in place before any module of the program is imported (they are imported
# by `infra/__main__.py`, which `deploy` runs under fresh mocks for each stack).
from tests.infra.mocks import (
    CHART_TYPE,
    PASSWORD_TYPE,
    PRIVATE_KEY_TYPE,
    PROD_DATABASE_URL,
    SECRET_TYPE,
    Deployment,
    RecordingMocks,
    contains_secret,
    deploy,
    plain_strings,
    unwrap,
)

pulumi.runtime.set_mocks(RecordingMocks(), project="course-redis", stack="dev", preview=False)

from courseredis.redis_config import MAXMEMORY_POLICY  # noqa: E402
from courseredis.services import registry  # noqa: E402


@pytest.fixture(scope="module")
def dev() -> Deployment:
    return deploy("dev")


@pytest.fixture(scope="module")
def prod() -> Deployment:
    return deploy("prod", secrets={"databaseUrl": PROD_DATABASE_URL})


@pytest.fixture(scope="module", params=["dev", "prod"])
def stack(request: pytest.FixtureRequest, dev: Deployment, prod: Deployment) -> Deployment:
    return dev if request.param == "dev" else prod


def chart_values(deployment: Deployment, name: str) -> dict[str, Any]:
    values = deployment.one(CHART_TYPE, name).inputs["values"]
    assert isinstance(values, dict)
    return values


def test_dev_declares_one_redis_node_and_one_replica_per_service(dev: Deployment):
    redis = chart_values(dev, "redis")
    assert redis["mode"] == "standalone"
    assert "masters" not in redis["cluster"]
    assert redis["persistence"]["enabled"] is False  # persistence none: nothing to keep
    services = chart_values(dev, "services")
    assert set(services["services"]) == set(registry.NAMES)
    for service in services["services"].values():
        assert service["replicas"] == 1
        assert service["autoscaling"]["enabled"] is False
        assert service["podDisruptionBudget"]["enabled"] is False
    assert services["redis"] == {
        "mode": "standalone",
        "tls": False,
        "url": "redis://redis.course-redis-dev.svc.cluster.local:6379/0",
        "logoutReplicaAcks": 0,  # no replica to wait for
    }


def test_prod_declares_a_3x2_cluster_with_pdb_spread_and_network_policy(prod: Deployment):
    redis = chart_values(prod, "redis")
    assert redis["mode"] == "cluster"
    assert (redis["cluster"]["masters"], redis["cluster"]["replicasPerMaster"]) == (3, 1)
    assert redis["podDisruptionBudget"] == {"enabled": True, "maxUnavailable": 1}
    assert redis["antiAffinity"] == "required"
    assert redis["networkPolicy"] == {"enabled": True}
    assert redis["appendonly"] is True and redis["persistence"]["enabled"] is True
    assert redis["maxmemoryPolicy"] == MAXMEMORY_POLICY
    assert redis["bootstrapImage"]["tag"] != "latest"
    services = chart_values(prod, "services")
    nodes = services["redis"]["clusterNodes"].split(",")
    assert len(nodes) == 6 and all(n.endswith(".svc.cluster.local:6379") for n in nodes)
    assert services["redis"]["logoutReplicaAcks"] == 1  # a logout waits for a replica
    for service in services["services"].values():
        assert service["autoscaling"] == {"enabled": True, "minReplicas": 2, "maxReplicas": 6}
        assert service["podDisruptionBudget"]["enabled"] is True


def test_charts_come_from_the_repository_into_the_stack_namespace(stack: Deployment):
    for name in ("redis", "services"):
        inputs = stack.one(CHART_TYPE, name).inputs
        assert inputs["chart"].replace("\\", "/").endswith(f"charts/{name}")
        assert inputs["namespace"] == f"course-redis-{stack.env}"


def test_every_generated_password_is_a_secret_output(stack: Deployment):
    passwords = stack.of_type(PASSWORD_TYPE)
    # admin, exporter, replication, the redis_direct load suite, one per service, the smoke
    # student.
    assert len(passwords) == 5 + len(registry.NAMES)
    assert all(p.inputs["special"] is False for p in passwords)
    assert stack.secret_flags and all(stack.secret_flags.values()), stack.secret_flags
    assert stack.secret_flags["smoke"] is True
    assert "redisAdminPassword" in stack.secret_exports


def test_no_plaintext_secret_appears_in_any_resource_input(stack: Deployment):
    secrets = set(stack.mocks.generated.values())
    if stack.env == "prod":
        secrets.add(PROD_DATABASE_URL)
    leaks = [
        (r.typ, r.name)
        for r in stack.mocks.registrations
        for text in plain_strings(r.inputs)
        if any(s in text for s in secrets)
    ]
    assert leaks == []
    # ... and the secrets did reach their Secrets, wrapped: the check above is not vacuous.
    acl = stack.one(SECRET_TYPE, "redis-acl").inputs
    assert contains_secret(acl["stringData"])
    acl_text = unwrap(acl["stringData"])["users.acl"]
    redis_passwords = [v for k, v in stack.mocks.generated.items() if k.startswith("redis-")]
    assert len(redis_passwords) == 4 + len(registry.NAMES)
    assert all(password in acl_text for password in redis_passwords)
    assert "user default off" in acl_text
    smoke = stack.one(SECRET_TYPE, "smoke-account").inputs
    assert contains_secret(smoke["stringData"])
    assert (
        unwrap(smoke["stringData"])["password"] == stack.mocks.generated["services-smoke-password"]
    )
    if stack.env == "prod":
        database = stack.one(SECRET_TYPE, "database").inputs
        assert contains_secret(database["stringData"])
        assert unwrap(database["stringData"]) == {"url": PROD_DATABASE_URL}


def test_chart_values_hold_no_secret_only_secret_names(stack: Deployment):
    for name in ("redis", "services"):
        assert not contains_secret(chart_values(stack, name))
    redis = chart_values(stack, "redis")
    declared = {r.name for r in stack.of_type(SECRET_TYPE)}
    assert redis["auth"]["aclSecret"]["name"] in declared
    assert redis["auth"]["adminSecret"]["name"] in declared
    assert redis["metrics"]["secret"]["name"] in declared
    services = chart_values(stack, "services")
    for service in services["services"].values():
        assert service["redisSecret"] in declared
    assert {
        services["jwt"]["publicKeys"]["secretName"],
        services["jwt"]["privateKey"]["secretName"],
        services["database"]["secretName"],
        services["smokeAccount"]["secretName"],
    } <= declared


def test_the_smoke_student_has_a_generated_password_in_its_own_secret(stack: Deployment):
    """Issue 14: the program creates the account the smoke needs. Its Secret holds the
    username prepare-database gives the student role and the generated password; the chart
    is given the Secret's name, and the smoke command names it too."""
    from courseredis.services.db.prepare import SMOKE_USERNAME
    from courseredis.services.db.seed import is_demo_username

    (password,) = [p for p in stack.of_type(PASSWORD_TYPE) if "smoke" in p.name]
    assert password.name == "services-smoke-password" and password.inputs["length"] >= 32
    data = _secret_data(stack, "smoke-account")
    assert data == {
        "username": SMOKE_USERNAME,
        "password": stack.mocks.generated["services-smoke-password"],
    }
    assert not is_demo_username(data["username"])  # seed never resets it
    assert chart_values(stack, "services")["smokeAccount"] == {"secretName": "smoke-account"}
    assert stack.exports["secretNames"]["smokeAccount"] == "smoke-account"
    smoke = stack.exports["smokeCommand"]
    assert f"SMOKE_STUDENT_SECRET=course-redis-{stack.env}/smoke-account" in smoke
    assert data["password"] not in smoke


def test_each_service_secret_holds_its_own_user(stack: Deployment):
    for service in registry.NAMES:
        data = unwrap(stack.one(SECRET_TYPE, f"redis-user-{service}").inputs["stringData"])
        assert data["username"] == service
        assert data["password"] == stack.mocks.generated[f"redis-{service}-password"]


def test_replication_has_its_own_generated_account(stack: Deployment):
    """Issue 13: replicas authenticated as admin, whose password then sat in `masterauth`."""
    data = unwrap(stack.one(SECRET_TYPE, "redis-replication").inputs["stringData"])
    password = stack.mocks.generated["redis-replication-password"]
    assert data == {"username": "replication", "password": password}
    assert password != stack.mocks.generated["redis-admin-password"]
    acl_text = unwrap(stack.one(SECRET_TYPE, "redis-acl").inputs["stringData"])["users.acl"]
    (line,) = [x for x in acl_text.splitlines() if x.startswith("user replication ")]
    assert line.split()[4:] == ["resetchannels", "-@all", "+ping", "+replconf", "+psync"]
    (exporter,) = [x for x in acl_text.splitlines() if x.startswith("user exporter ")]
    assert "config" not in exporter
    redis = chart_values(stack, "redis")
    assert redis["auth"]["replicationSecret"] == {"name": "redis-replication"}


def test_declared_kubernetes_objects_are_valid(stack: Deployment):
    version = kubernetes_validate.latest_version()
    for registration in stack.mocks.registrations:
        if not registration.typ.startswith("kubernetes:core/"):
            continue
        body = unwrap(registration.inputs)
        kubernetes_validate.validate(body, version, strict=True)
        assert body["metadata"]["name"]


def test_exports_name_endpoints_secrets_and_the_smoke_command(stack: Deployment):
    exports = stack.exports
    namespace = f"course-redis-{stack.env}"
    assert exports["namespace"] == namespace
    assert exports["gatewayUrl"] == f"http://gateway.{namespace}.svc.cluster.local:8000"
    smoke = exports["smokeCommand"]
    assert smoke.endswith(" make smoke")
    for variable in (
        "SMOKE_GATEWAY_URL=",
        "SMOKE_REDIS_NODES=",
        "SMOKE_REDIS_USERNAME=admin",
        f"SMOKE_REDIS_PASSWORD_SECRET={namespace}/redis-admin",
        f"SMOKE_STUDENT_SECRET={namespace}/smoke-account",
    ):
        assert variable in smoke
    assigned = dict(word.split("=", 1) for word in shlex.split(smoke)[:-2])
    hosts = assigned["SMOKE_HOSTS"].split(",")
    assert len(hosts) == (6 if stack.env == "prod" else 1)  # every Redis pod
    assert hosts[0] == f"kubectl://redis-0?namespace={namespace}&container=redis"
    assert exports["redisAdminPassword"] not in smoke
    if stack.env == "prod":
        assert len(exports["redisEndpoints"]) == 6 and "redisClusterNodes" in exports
    else:
        assert exports["redisEndpoints"] == [f"redis.{namespace}.svc.cluster.local:6379"]


def test_prod_without_a_database_url_says_how_to_set_it():
    with pytest.raises(ValueError, match="pulumi config set --secret databaseUrl"):
        deploy("prod")


def test_a_stack_that_pins_the_image_by_digest_deploys_it_by_digest():
    """Issue 13: images could only be pinned by tag. The stack config's `image.digest` flows
    through the program's chart values into every container running the project's image."""
    import json

    from tests.charts.helm import containers, pod_specs, render

    digest = "sha256:" + "ab" * 32
    image = {
        "repository": "registry.example.com/course-platform/courseredis",
        "tag": "0.1.0",
        "digest": digest,
    }
    deployment = deploy(
        "prod",
        secrets={"databaseUrl": PROD_DATABASE_URL},
        plain={"image": json.dumps(image)},
    )
    pinned = f"{image['repository']}:{image['tag']}@{digest}"
    seen = []
    for chart in ("redis", "services"):
        registration = deployment.one(CHART_TYPE, chart)
        objects = render(chart, chart_values(deployment, chart), registration.inputs["namespace"])
        for label, spec in pod_specs(objects):
            for container in containers(spec):
                if container["image"].startswith(image["repository"] + ":"):
                    assert container["image"] == pinned, (label, container["name"])
                    seen.append((label, container["name"]))
    # The services, the prepare-database init containers of those that use the database,
    # the bootstrap Job and the repair init container all run it.
    databases = [s for s in registry.SERVICES if s.uses_database]
    assert len(seen) == len(registry.NAMES) + len(databases) + 2, seen


# --- the token signing keys (issue 13, finding 5) -----------------------------------------


def _secret_data(deployment: Deployment, name: str) -> dict[str, str]:
    data = unwrap(deployment.one(SECRET_TYPE, name).inputs["stringData"])
    assert isinstance(data, dict)
    return data


def _walk_strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _walk_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _walk_strings(v)]
    return [value] if isinstance(value, str) else []


def test_the_signing_key_is_an_ed25519_pair_the_program_generates(stack: Deployment):
    """The HS256 `jwt-signing` Secret every service held is gone: an Ed25519 private key in
    a Secret of its own (auth's alone, tests/charts), the public key in another."""
    from courseredis.services.tokens import SigningKey, VerifyingKeys

    keys = stack.of_type(PRIVATE_KEY_TYPE)
    assert [(k.name, k.inputs["algorithm"]) for k in keys] == [("services-jwt-key-1", "ED25519")]
    assert "jwt-signing" not in {r.name for r in stack.of_type(SECRET_TYPE)}
    private = stack.one(SECRET_TYPE, "jwt-signing-key").inputs["stringData"]
    assert contains_secret(private)
    signing = SigningKey.from_pem(unwrap(private)["private-key.pem"])
    public = VerifyingKeys.from_pem(_secret_data(stack, "jwt-public-keys")["public-keys.pem"])
    assert signing.kid in public  # what auth signs, every service verifies
    assert stack.secret_flags["jwt-key-1"] is True


def test_no_signing_secret_is_exported(stack: Deployment):
    private_pems = [v for k, v in stack.mocks.generated.items() if "jwt-key" in k]
    assert private_pems
    exported = _walk_strings(stack.exports)
    assert not [s for s in exported if any(pem.strip() in s for pem in private_pems)]
    assert "PRIVATE KEY" not in "".join(exported)
    names = stack.exports["secretNames"]
    assert (names["jwtSigningKey"], names["jwtPublicKeys"]) == (
        "jwt-signing-key",
        "jwt-public-keys",
    )
    assert "jwt" not in names


def test_a_rotation_publishes_two_keys_and_signs_with_the_configured_one():
    """docs/security.md's rotation as stack config: publish the next generation, then sign
    with it; the old one stays published until it is retired."""
    import copy
    import json

    from courseredis.environments import load_environment
    from courseredis.services.tokens import SigningKey, VerifyingKeys

    services = copy.deepcopy(load_environment("dev").config["services"])
    services["jwtKeys"] = {"published": [1, 2], "signing": 2}
    deployment = deploy("dev", plain={"services": json.dumps(services)})
    assert [k.name for k in deployment.of_type(PRIVATE_KEY_TYPE)] == [
        "services-jwt-key-1",
        "services-jwt-key-2",
    ]
    public = VerifyingKeys.from_pem(_secret_data(deployment, "jwt-public-keys")["public-keys.pem"])
    signing = SigningKey.from_pem(_secret_data(deployment, "jwt-signing-key")["private-key.pem"])
    generated = deployment.mocks.generated
    assert signing.kid == SigningKey.from_pem(generated["services-jwt-key-2"]).kid
    old = SigningKey.from_pem(generated["services-jwt-key-1"]).kid
    assert set(public.by_kid) == {old, signing.kid}


def test_every_service_of_the_declared_objects_would_start(stack: Deployment):
    """The deployed form matches the services: each Deployment's environment, with its
    Secrets resolved from the Secrets the program declares, passes the checks a service runs
    before it starts (settings parse; only the signer holds the private key, and its public
    half is among the verifiers')."""
    from courseredis.rehearsal.objects import declared_objects
    from courseredis.services.main import check_signing_key
    from courseredis.services.settings import ServiceSettings

    objects = declared_objects(stack).objects
    secrets = {
        o["metadata"]["name"]: o.get("stringData", {}) for o in objects if o["kind"] == "Secret"
    }
    started = []
    for deployment in (o for o in objects if o["kind"] == "Deployment"):
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        service = container["args"][1]
        env = {}
        for entry in container["env"]:
            ref = entry.get("valueFrom", {}).get("secretKeyRef")
            env[entry["name"]] = secrets[ref["name"]][ref["key"]] if ref else entry["value"]
        settings = ServiceSettings.model_validate(
            {k.lower(): v for k, v in env.items() if k.lower() in ServiceSettings.model_fields}
        )
        check_signing_key(service, settings)
        assert settings.metrics_port == int(env["METRICS_PORT"])
        started.append(service)
    assert sorted(started) == sorted(registry.NAMES)


def test_pulumi_up_refuses_an_ingress_that_collapses_every_client_to_one_address():
    """Issue 13 (finding 6), through the program as `pulumi up` runs it."""
    import copy
    import json

    from courseredis.environments import StackConfigError, load_environment

    services = copy.deepcopy(load_environment("prod").config["services"])
    services["ingress"] = {
        "enabled": True,
        "host": "courses.example.com",
        "className": "",
        "tlsSecret": "courses-tls",
    }
    secrets = {"databaseUrl": PROD_DATABASE_URL}
    with pytest.raises(StackConfigError, match="needs trustedProxies"):
        deploy("prod", secrets=secrets, plain={"services": json.dumps(services)})
    services["trustedProxies"] = ["10.42.0.0/16"]
    services["ingress"]["tlsSecret"] = ""
    with pytest.raises(StackConfigError, match=r"needs ingress\.tlsSecret"):
        deploy("prod", secrets=secrets, plain={"services": json.dumps(services)})
    services["ingress"]["tlsSecret"] = "courses-tls"
    published = deploy("prod", secrets=secrets, plain={"services": json.dumps(services)})
    assert published.exports["gatewayUrl"] == "https://courses.example.com"
