"""How the smoke suite finds its target: options over SMOKE_* variables over stack.json; the
variables of the Pulumi program's smoke command; Secrets through kubectl; testinfra hosts."""

from __future__ import annotations

import json
import shlex
import stat
from pathlib import Path
from typing import Any

import pytest

from courseredis.environments import load_environment
from courseredis.services import registry
from courseredis.stack_file import STACK_FILE
from infra import values
from infra.settings import StackSettings
from smoke.hosts import HostSpec, machine_of, nodes_on, placement_problems, serves_port
from smoke.target import LOCAL_HOST, OPTIONS, TargetError, read_k8s_secret, resolve

STACK: dict[str, Any] = {
    "env": "prod",
    "redis": {
        "mode": "cluster",
        "nodes": ["127.0.0.1:7001", "127.0.0.1:7002"],
        "username": "admin",
        "password": "admin-pw",
        "users": {s: {"username": s, "password": f"{s}-pw"} for s in registry.NAMES},
        "data_dir": "/tmp/stack",
        "pids": [101, 102],
    },
    "services": {"gateway": "http://127.0.0.1:8000"},
    "demo": {
        "students": [{"username": "student1", "password": "s-pw"}],
        "admin": {"username": "admin", "password": "a-pw"},
    },
}


def write_stack(directory: Path, document: dict[str, Any] = STACK) -> Path:
    path = directory / STACK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))
    return path


def no_options(dest: str) -> str | None:
    return None


def options(**given: str) -> Any:
    return lambda dest: given.get(dest)


def test_no_target_says_what_to_do(tmp_path):
    with pytest.raises(TargetError, match="make up"):
        resolve(no_options, cwd=tmp_path, environ={})


def test_the_local_stack_is_the_default(tmp_path):
    write_stack(tmp_path)
    target = resolve(no_options, cwd=tmp_path, environ={})
    assert target.local and target.env.name == "prod" and target.mode == "cluster"
    assert target.nodes == STACK["redis"]["nodes"]
    assert target.redis_admin.password == "admin-pw"
    assert target.gateway_url == "http://127.0.0.1:8000"
    assert set(target.service_users) == set(registry.NAMES) and not target.service_users_missing
    assert target.student is not None and target.student.username == "student1"
    assert target.app_admin is not None and target.app_admin.password == "a-pw"
    assert target.hosts == [LOCAL_HOST]
    assert "admin-pw" not in "\n".join(target.describe())


def test_options_beat_variables_beat_the_stack_file(tmp_path):
    write_stack(tmp_path)
    environ = {"SMOKE_STUDENT_USERNAME": "student7", "SMOKE_STUDENT_PASSWORD": "env-pw"}
    target = resolve(options(student_username="student9"), cwd=tmp_path, environ=environ)
    assert target.student is not None
    assert (target.student.username, target.student.password) == ("student9", "env-pw")


def test_every_option_has_its_variable():
    assert all(o.flag.startswith("--") and o.env.startswith("SMOKE_") for o in OPTIONS)
    assert len({o.env for o in OPTIONS}) == len(OPTIONS)


def smoke_command_environ(env: str) -> dict[str, str]:
    """The variables `pulumi stack output smokeCommand` sets, parsed as a shell would."""
    settings = StackSettings.from_config(env, load_environment(env).config)
    words = shlex.split(values.smoke_command(settings))
    assert words[-2:] == ["make", "smoke"]
    return dict(word.split("=", 1) for word in words[:-2])


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_the_pulumi_smoke_command_is_understood(env, tmp_path):
    write_stack(tmp_path)  # a laptop's local stack must not leak into a deployed run
    environ = smoke_command_environ(env)
    secrets = {
        f"course-redis-{env}/redis-admin": {"username": "admin", "password": "deployed-pw"},
        # What the program writes for the smoke student (issue 14).
        f"course-redis-{env}/smoke-account": {"username": "smoke", "password": "student-pw"},
        **{
            f"course-redis-{env}/redis-user-{s}": {"username": s, "password": f"{s}-secret"}
            for s in registry.NAMES
            if s != "gateway"  # one the runner may not read
        },
    }
    reads = []

    def read_secret(kubectl: str, ref: str, key: str) -> dict[str, str]:
        reads.append(ref)
        if ref not in secrets:
            raise TargetError(f'cannot read Secret {ref}: kubectl: secrets "x" is forbidden')
        return {key: secrets[ref][key]} if key else secrets[ref]

    target = resolve(no_options, cwd=tmp_path, environ=environ, read_secret=read_secret)
    assert target.env.name == env and not target.local
    assert target.mode == load_environment(env).redis.mode
    assert target.gateway_url == environ["SMOKE_GATEWAY_URL"].rstrip("/")
    assert target.nodes == environ["SMOKE_REDIS_NODES"].split(",")
    assert target.redis_admin.username == "admin"
    assert target.redis_admin.password == "deployed-pw"
    assert set(target.service_users) == {"auth", "courses", "enrollments"}
    assert "forbidden" in target.service_users_missing["gateway"]
    # The smoke student the rollout created drives the flows; no app admin is given, so the
    # student reads its own enrollment back.
    assert target.student is not None
    assert (target.student.username, target.student.password) == ("smoke", "student-pw")
    assert target.app_admin is None
    assert environ["SMOKE_STUDENT_SECRET"] == f"course-redis-{env}/{values.SECRETS.smoke}"
    # Every Redis pod, reached through kubectl exec, for the host checks.
    assert target.hosts == environ["SMOKE_HOSTS"].split(",")
    assert len(target.hosts) == load_environment(env).redis.node_count
    assert all(h.startswith("kubectl://redis-") for h in target.hosts)
    assert f"course-redis-{env}/redis-admin" in reads


def test_accounts_can_come_from_secrets(tmp_path):
    environ = {
        "SMOKE_REDIS_NODES": "redis.course-redis-dev.svc.cluster.local:6379",
        "SMOKE_REDIS_PASSWORD": "x",
        "SMOKE_STUDENT_SECRET": "course-redis-dev/smoke-student",
        "SMOKE_APP_ADMIN_SECRET": "course-redis-dev/smoke-admin",
    }
    accounts = {
        "course-redis-dev/smoke-student": {"username": "smoke1", "password": "p1"},
        "course-redis-dev/smoke-admin": {"username": "ops", "password": "p2"},
    }
    target = resolve(
        no_options, cwd=tmp_path, environ=environ, read_secret=lambda k, ref, key: accounts[ref]
    )
    assert target.env.name == "dev"
    assert target.student is not None and target.student.username == "smoke1"
    assert target.app_admin is not None and target.app_admin.password == "p2"
    assert "given (--service-users" in target.service_users_missing["auth"]


def test_a_deployed_target_needs_the_admin_password(tmp_path):
    environ = {"SMOKE_REDIS_NODES": "redis.course-redis-dev.svc.cluster.local:6379"}
    with pytest.raises(TargetError, match="SMOKE_REDIS_PASSWORD"):
        resolve(no_options, cwd=tmp_path, environ=environ)


def test_an_unknown_environment_must_be_named(tmp_path):
    environ = {"SMOKE_REDIS_NODES": "10.0.0.1:6379", "SMOKE_REDIS_PASSWORD": "x"}
    with pytest.raises(TargetError, match="--env"):
        resolve(no_options, cwd=tmp_path, environ=environ)
    target = resolve(options(env="dev"), cwd=tmp_path, environ=environ)
    assert target.env.name == "dev" and target.mode == "standalone"
    assert target.service_users == {} and set(target.service_users_missing) == set(registry.NAMES)


@pytest.fixture
def fake_kubectl(tmp_path: Path) -> Path:
    """A `kubectl` that serves one Secret, as `kubectl get secret -o json` prints it."""
    script = tmp_path / "kubectl"
    document = {"data": {"username": "YWRtaW4=", "password": "czNjcjN0"}}  # admin / s3cr3t
    script.write_text(
        "#!/bin/sh\n"
        'if [ "$3" = redis-admin ] && [ "$5" = ns ]; then\n'
        f"  echo '{json.dumps(document)}'\n"
        "else\n"
        '  echo "Error from server (NotFound): secrets \\"$3\\" not found" >&2; exit 1\n'
        "fi\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_secrets_are_read_with_kubectl(fake_kubectl):
    assert read_k8s_secret(str(fake_kubectl), "ns/redis-admin", "password") == {
        "password": "s3cr3t"
    }
    assert read_k8s_secret(str(fake_kubectl), "ns/redis-admin", "")["username"] == "admin"
    with pytest.raises(TargetError, match=r"ns/missing.*NotFound"):
        read_k8s_secret(str(fake_kubectl), "ns/missing", "password")
    with pytest.raises(TargetError, match="<namespace>/<name>"):
        read_k8s_secret(str(fake_kubectl), "no-namespace", "password")


def test_host_specs_map_to_their_nodes():
    nodes = [f"redis-{i}.redis-headless.course-redis-prod.svc.cluster.local:6379" for i in range(3)]
    pods = [
        HostSpec.parse(f"kubectl://redis-{i}?namespace=course-redis-prod&container=redis")
        for i in range(3)
    ]
    assert pods[1].backend == "kubectl" and pods[1].namespace == "course-redis-prod"
    assert nodes_on(pods[1], pods, nodes) == [nodes[1]]
    local = HostSpec.parse("local://")
    assert nodes_on(local, [local], nodes) == nodes
    assert HostSpec.parse("ssh://ops@10.0.0.5").name == "10.0.0.5"
    assert serves_port("redis-server 127.0.0.1:7001 [cluster]", 7001)
    assert serves_port("redis-server *:6379", 6379)
    assert not serves_port("redis-server 127.0.0.1:70011", 7001)


def test_placement_names_a_master_sharing_a_machine_with_its_replica(tmp_path):
    kubectl = tmp_path / "kubectl"
    # `kubectl get pod redis-N ... jsonpath={.spec.nodeName}`: pods 0 and 3 share node-a.
    kubectl.write_text(
        '#!/bin/sh\ncase "$3" in redis-0|redis-3) echo node-a;; *) echo "node-$3";; esac\n'
    )
    kubectl.chmod(kubectl.stat().st_mode | stat.S_IEXEC)
    specs = [HostSpec.parse(f"kubectl://redis-{i}?namespace=ns&container=redis") for i in range(6)]
    machine = {f"redis-{i}.h:6379": machine_of(spec, str(kubectl)) for i, spec in enumerate(specs)}
    assert machine["redis-0.h:6379"] == "node-a" and machine["redis-1.h:6379"] == "node-redis-1"
    masters = [(f"redis-{i}.h:6379", [f"redis-{i + 3}.h:6379"]) for i in range(3)]
    assert placement_problems(masters, machine) == [
        "master redis-0.h:6379 and its replica redis-3.h:6379 are both on node-a"
    ]


def test_a_misspelt_key_in_stack_json_is_refused_by_name(tmp_path):
    document = {**STACK, "redis": {**STACK["redis"], "passwrd": "x"}}
    with pytest.raises(TargetError, match=r"stack.json: redis.passwrd: unknown key"):
        resolve(no_options, cwd=write_stack(tmp_path, document).parents[1], environ={})


def test_a_misspelt_variable_is_refused_by_name(tmp_path):
    write_stack(tmp_path)
    environ = {"SMOKE_GATEWAY_ULR": "http://x", "SMOKE_ARGS": "-x"}
    with pytest.raises(TargetError, match=r"unknown variable.*SMOKE_GATEWAY_ULR"):
        resolve(no_options, cwd=tmp_path, environ=environ)
