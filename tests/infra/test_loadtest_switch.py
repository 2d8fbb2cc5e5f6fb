"""The at-scale load switch (`course-redis:loadtest`) under Pulumi's mocks: off declares
nothing, on declares the Locust chart with the repository's locustfiles."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pytest

from tests.infra.mocks import (
    CHART_TYPE,
    PASSWORD_TYPE,
    PROD_DATABASE_URL,
    SECRET_TYPE,
    Deployment,
    RecordingMocks,
    contains_secret,
    deploy,
    unwrap,
)

pulumi.runtime.set_mocks(RecordingMocks(), project="course-redis", stack="dev", preview=False)

from courseredis.environments import StackConfigError, load_environment  # noqa: E402
from infra import values as infra_values  # noqa: E402
from infra.loadtest import LOCUSTFILES, LoadtestSettings, read_locustfiles  # noqa: E402

LOADTEST_TYPE = "course-redis:index:Loadtest"


def deploy_with_loadtest(env: str, loadtest: dict[str, Any]) -> Deployment:
    """Run the program with `course-redis:loadtest` set (plain, as `pulumi config set`)."""
    secrets = {"databaseUrl": PROD_DATABASE_URL} if env == "prod" else None
    return deploy(env, secrets=secrets, plain={"loadtest": json.dumps(loadtest)})


@pytest.fixture(scope="module", params=["dev", "prod"])
def switched_off(request: pytest.FixtureRequest) -> Deployment:
    env = request.param
    return deploy(env, secrets={"databaseUrl": PROD_DATABASE_URL} if env == "prod" else None)


def test_the_stack_files_keep_the_switch_off():
    for env in ("dev", "prod"):
        raw = load_environment(env).config["loadtest"]
        assert raw["enabled"] is False
        assert LoadtestSettings.from_config(raw, f"Pulumi.{env}.yaml").enabled is False
    assert LoadtestSettings.from_config(None, "x").enabled is False  # absent: off


def test_off_declares_nothing_of_the_load_suites(switched_off: Deployment):
    assert switched_off.of_type(LOADTEST_TYPE) == []
    charts = {r.name for r in switched_off.of_type(CHART_TYPE)}
    assert charts == {"redis", "services"}
    assert "loadtestCommand" not in switched_off.exports
    assert not any("locust" in str(r.inputs) for r in switched_off.mocks.registrations)


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_on_declares_the_locust_chart_with_the_locustfiles(env: str):
    deployment = deploy_with_loadtest(
        env,
        {
            "enabled": True,
            "suite": "lock_contention",
            "workers": 3,
            "users": 60,
            "runTime": "3m",
            "env": {"LOAD_MAX_P95_MS": "400"},
        },
    )
    (component,) = deployment.of_type(LOADTEST_TYPE)
    assert component.name == "loadtest"
    chart = deployment.one(CHART_TYPE, "loadtest").inputs
    assert chart["chart"].replace("\\", "/").endswith("charts/locust")
    assert chart["namespace"] == f"course-redis-{env}"
    values = chart["values"]
    assert not contains_secret(values)
    assert values["suite"] == "lock_contention" and values["workers"]["replicas"] == 3
    assert (values["users"], values["runTime"]) == (60, "3m")
    assert values["env"] == {"LOAD_MAX_P95_MS": "400"}
    assert set(values["locustfiles"]) == set(LOCUSTFILES)
    assert values["locustfiles"] == read_locustfiles()
    settings_image = load_environment(env).config["image"]
    assert values["image"]["repository"] == f"{settings_image['repository']}-load"
    gateway = values["host"]
    assert gateway == f"http://gateway.course-redis-{env}.svc.cluster.local:8000"
    assert values["credentialsSecret"]["name"] == "loadtest-credentials"
    assert deployment.exports["loadtestCommand"] == (
        f"kubectl -n course-redis-{env} logs -f job/locust-master-1"
    )
    # The switch adds a chart, not a password or a Secret (Redis' four, one per service and
    # the smoke student's, as without it).
    assert len(deployment.of_type(PASSWORD_TYPE)) == 4 + 4 + 1


def test_redis_direct_at_scale_uses_its_own_redis_user_and_the_client_label():
    """Issue 13 (finding 9): the suite ran as the admin. Now as `loadtest`, whose Secret
    the program writes in every stack (tests/test_acl.py: what that user may do)."""
    deployment = deploy_with_loadtest("prod", {"enabled": True, "suite": "redis_direct"})
    values = deployment.one(CHART_TYPE, "loadtest").inputs["values"]
    assert (
        values["redis"]["secretName"]
        == infra_values.SECRETS.loadtest
        != (infra_values.SECRETS.admin)
    )
    data = unwrap(deployment.one(SECRET_TYPE, infra_values.SECRETS.loadtest).inputs["stringData"])
    assert data == {
        "username": "loadtest",
        "password": deployment.mocks.generated["redis-loadtest-password"],
    }
    acl_text = unwrap(deployment.one(SECRET_TYPE, "redis-acl").inputs["stringData"])["users.acl"]
    (line,) = [x for x in acl_text.splitlines() if x.startswith("user loadtest ")]
    assert "+@all" not in line and "~*" not in line
    assert len(values["redis"]["clusterNodes"].split(",")) == 6
    assert values["podLabels"] == {"course-redis/redis-client": "true"}
    assert values["host"] == ""


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"enabled": True, "suit": "x"}, "loadtest.suit: unknown key"),
        ({"enabled": True, "suite": "soak"}, "suite"),
        ({"enabled": "yes"}, "enabled"),
        ({"enabled": True, "workers": 0}, "loadtest.workers: .*greater than or equal to 1"),
        ({"enabled": True, "spawnRate": True}, "loadtest.spawnRate"),
        ({"enabled": True, "env": {"LOAD_X": True}}, "LOAD_"),
        ({"enabled": True, "runTime": "five"}, "runTime"),
        ({"enabled": True, "image": {"repository": "r", "tag": "latest"}}, "pinned"),
        ({"enabled": True, "env": {"PATH": "/"}}, "LOAD_"),
        ({"enabled": True, "runId": "Run 2"}, "runId"),
    ],
)
def test_a_wrong_switch_is_refused_with_the_reason(raw: dict[str, Any], message: str):
    with pytest.raises(StackConfigError, match=message):
        LoadtestSettings.from_config(raw, "Pulumi.prod.yaml")


def test_numbers_are_read_as_people_write_them():
    # `runId: 2` (bumped by hand) is a label; `spawnRate: 10` a rate.
    settings = LoadtestSettings.from_config(
        {"enabled": True, "runId": 2, "spawnRate": 10, "env": {"LOAD_TIME": 30}}, "Pulumi.prod.yaml"
    )
    assert (settings.run_id, settings.spawn_rate, settings.env) == ("2", 10.0, {"LOAD_TIME": "30"})
