"""What the smoke suite runs against: resolved once from options, environment variables and
the local stack's `stack.json`, in that order of precedence.

With no option and no `SMOKE_*` variable the target is the local stack described by
`.local/stack.json` in the current directory. As soon as the gateway or the Redis nodes
are given (the deployed case: `pulumi stack output smokeCommand`), no local file is read
unless `--stack-json` names one, so a laptop's local stack never leaks into a deployed run.

Passwords never need to be on a command line: the Redis admin's can come from a Kubernetes
Secret (`SMOKE_REDIS_PASSWORD_SECRET=<namespace>/<secret>`, read with `kubectl`, key
`password`), and then the service users' from the Secrets beside it
(`redis-user-<service>`, keys `username` and `password`), as the Pulumi program writes them.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from courseredis import keys
from courseredis.environments import (
    ENVIRONMENTS,
    REPO_ROOT,
    Environment,
    StackConfigError,
    load_environment,
)
from courseredis.services import registry
from courseredis.stack_file import STACK_FILE, StackFile, read_stack_file
from courseredis.stack_file import Account as Account
from courseredis.stack_file import TargetError as TargetError
from courseredis.topology import split_addr
from infra.values import SECRETS

LOCAL_HOST = "local://"


@dataclass(frozen=True)
class Option:
    """One suite option: its command-line flag and the environment variable behind it."""

    dest: str
    flag: str
    env: str
    help: str


OPTIONS: tuple[Option, ...] = (
    Option(
        "stack_json",
        "--stack-json",
        "SMOKE_STACK_JSON",
        "the local stack's description (default: .local/stack.json when no target is given)",
    ),
    Option(
        "env",
        "--env",
        "SMOKE_ENV",
        f"the environment ({', '.join(ENVIRONMENTS)}); its Pulumi.<env>.yaml says the topology "
        "and persistence to expect (default: stack.json's, else the one whose namespace the "
        "Secret or the node names are in)",
    ),
    Option("gateway_url", "--gateway-url", "SMOKE_GATEWAY_URL", "the gateway's base URL"),
    Option(
        "redis_nodes",
        "--redis-nodes",
        "SMOKE_REDIS_NODES",
        "comma-separated host:port of every Redis node (every cluster node, replicas too)",
    ),
    Option(
        "redis_mode",
        "--redis-mode",
        "SMOKE_REDIS_MODE",
        "standalone or cluster (default: stack.json's, else the environment's)",
    ),
    Option(
        "redis_tls_ca_file",
        "--redis-tls-ca-file",
        "SMOKE_REDIS_TLS_CA_FILE",
        "connect to Redis with TLS, trusting this CA (the chart's tls.secretName ca.crt)",
    ),
    Option(
        "redis_username",
        "--redis-username",
        "SMOKE_REDIS_USERNAME",
        "the Redis admin account (default: stack.json's, else admin)",
    ),
    Option(
        "redis_password",
        "--redis-password",
        "SMOKE_REDIS_PASSWORD",
        "the Redis admin password (prefer the variable or the Secret to the flag)",
    ),
    Option(
        "redis_password_secret",
        "--redis-password-secret",
        "SMOKE_REDIS_PASSWORD_SECRET",
        "<namespace>/<secret> whose `password` holds the admin password (read with kubectl); "
        "the service users' Secrets redis-user-<service> are read from the same namespace",
    ),
    Option(
        "service_users",
        "--service-users",
        "SMOKE_SERVICE_USERS",
        'a JSON file {"<service>": {"username": ..., "password": ...}} of the service ACL '
        "users (default: stack.json's redis.users, or the Secrets beside the admin's)",
    ),
    Option(
        "student_username",
        "--student-username",
        "SMOKE_STUDENT_USERNAME",
        "a student account that drives the flows (default: stack.json's first demo student)",
    ),
    Option(
        "student_password",
        "--student-password",
        "SMOKE_STUDENT_PASSWORD",
        "its password",
    ),
    Option(
        "student_secret",
        "--student-secret",
        "SMOKE_STUDENT_SECRET",
        "<namespace>/<secret> holding the student account (`username`, `password`), read "
        "with kubectl: a dedicated smoke account in a deployed environment",
    ),
    Option(
        "app_admin_username",
        "--app-admin-username",
        "SMOKE_APP_ADMIN_USERNAME",
        "a platform admin account, to read the enrollment back (default: stack.json's demo "
        "admin; without one, the student reads its own enrollment back)",
    ),
    Option(
        "app_admin_password",
        "--app-admin-password",
        "SMOKE_APP_ADMIN_PASSWORD",
        "its password",
    ),
    Option(
        "app_admin_secret",
        "--app-admin-secret",
        "SMOKE_APP_ADMIN_SECRET",
        "<namespace>/<secret> holding the platform admin account (`username`, `password`)",
    ),
    Option(
        "course_id",
        "--course-id",
        "SMOKE_COURSE_ID",
        "the course the flows read and enroll in (default: the smoke course a deployment "
        "creates, found by its title; else the first course listed)",
    ),
    Option(
        "client_ip",
        "--client-ip",
        "SMOKE_CLIENT_IP",
        "the address the gateway sees for this machine (default: the local address of the "
        "connection to the gateway; found in Redis when a proxy is in between)",
    ),
    Option(
        "smoke_hosts",
        "--smoke-hosts",
        "SMOKE_HOSTS",
        "testinfra hosts of the Redis nodes, comma-separated: local://, "
        "kubectl://POD?namespace=NS&container=redis, ssh://user@host (testinfra's own --hosts "
        "works too; default: local:// for a local stack)",
    ),
    Option(
        "kubectl",
        "--kubectl",
        "SMOKE_KUBECTL",
        "the kubectl command, for Secrets and pod placement (default: kubectl)",
    ),
)


@dataclass(frozen=True)
class Target:
    env: Environment
    mode: str  # standalone | cluster
    nodes: list[str]
    redis_admin: Account
    gateway_url: str | None
    service_users: dict[str, Account]
    # Why a service user's live login cannot be checked (no password given), per service.
    service_users_missing: dict[str, str]
    student: Account | None
    app_admin: Account | None
    course_id: int | None
    client_ip: str | None
    tls_ca_file: str | None  # set: Redis speaks TLS only
    hosts: list[str]  # testinfra host specs
    # Announced host name -> IP, from stack.json (a rehearsal's pod DNS names)
    address_map: dict[str, str]
    kubectl: str
    source: str  # where the target came from, for the report header
    local: bool  # the local stack (everything on this machine, from stack.json)

    def describe(self) -> list[str]:
        """The report header: what runs against what, no secret."""
        users = ", ".join(sorted(self.service_users)) or "none"
        return [
            f"smoke target: {self.source}; env {self.env.name} ({self.mode}, "
            f"{len(self.nodes)} node(s)): {' '.join(self.nodes)}",
            f"gateway: {self.gateway_url or 'not given'}; redis admin: "
            f"{self.redis_admin.username}; service user passwords: {users}",
            f"student: {self.student.username if self.student else 'not given'}; app admin: "
            f"{self.app_admin.username if self.app_admin else 'not given'}; hosts: "
            f"{', '.join(self.hosts) or 'not given'}",
        ]


Getter = Callable[[str], str | None]


def resolve(
    value_of: Getter,
    *,
    cwd: Path,
    environ: Mapping[str, str],
    stack_dir: Path = REPO_ROOT,
    read_secret: Callable[[str, str, str], dict[str, str]] | None = None,
) -> Target:
    """The target from option values (`value_of(dest)`: the flag's value or None), the
    environment variables and the stack file; `TargetError` says what is missing."""

    def get(dest: str) -> str | None:
        option = _BY_DEST[dest]
        value = value_of(dest)
        if value in (None, ""):
            value = environ.get(option.env) or None
        return value

    _refuse_unknown_variables(environ)
    reader = read_secret or read_k8s_secret
    kubectl = get("kubectl") or "kubectl"
    given_target = bool(get("gateway_url") or get("redis_nodes"))
    stack_json = get("stack_json")
    document: StackFile | None = None
    source = "options"
    if stack_json or not given_target:
        path = Path(stack_json) if stack_json else cwd / STACK_FILE
        if not path.is_file():
            raise TargetError(
                f"no target: {path} does not exist. Start the local stack (`make up`) or name "
                "a deployed one with --gateway-url and --redis-nodes (SMOKE_GATEWAY_URL, "
                "SMOKE_REDIS_NODES) and the admin credentials"
            )
        document = read_stack_file(path)
        source = str(path)
    recorded = document.redis if document else None

    nodes_text = get("redis_nodes")
    nodes = (
        [n.strip() for n in nodes_text.split(",") if n.strip()]
        if nodes_text
        else list(recorded.nodes if recorded else [])
    )
    if not nodes:
        raise TargetError("no Redis nodes: give --redis-nodes / SMOKE_REDIS_NODES")
    for node in nodes:
        try:
            split_addr(node)
        except ValueError:
            raise TargetError(f"Redis node {node!r} is not host:port") from None

    secret_ref = get("redis_password_secret")
    namespace = _secret_namespace(secret_ref) if secret_ref else None
    recorded_env = document.env if document else None
    env = _environment(get("env") or recorded_env, namespace, nodes, stack_dir)

    mode = get("redis_mode") or (recorded.mode if recorded else None) or env.redis.mode
    if mode not in ("standalone", "cluster"):
        raise TargetError(f"--redis-mode is standalone or cluster, not {mode!r}")

    username = get("redis_username") or (recorded.username if recorded else None) or "admin"
    password = get("redis_password")
    if not password and secret_ref:
        password = reader(kubectl, secret_ref, "password").get("password")
        if not password:
            raise TargetError(f"Secret {secret_ref} has no `password` key")
    password = password or (recorded.password if recorded else None)
    if not password:
        raise TargetError(
            "no Redis admin password: set SMOKE_REDIS_PASSWORD or SMOKE_REDIS_PASSWORD_SECRET "
            "(<namespace>/<secret>)"
        )

    service_users, missing = _service_users(
        get("service_users"),
        (recorded.users if recorded else {}) if document else None,
        namespace,
        kubectl,
        reader,
    )

    # Field by field over the local demo accounts: `SMOKE_STUDENT_USERNAME=student7` alone
    # picks another demo student (they share a password).
    demo = document.demo if document else None
    first_student = demo.students[0] if demo and demo.students else None
    student = _account(
        get("student_username") or (first_student and first_student.username),
        get("student_password") or (first_student and first_student.password),
        "student",
    )
    admin_demo = demo.admin if demo else None
    app_admin = _account(
        get("app_admin_username") or (admin_demo and admin_demo.username),
        get("app_admin_password") or (admin_demo and admin_demo.password),
        "app admin",
    )
    if (ref := get("student_secret")) and not get("student_username"):
        student = _secret_account(reader(kubectl, ref, ""), ref)
    if (ref := get("app_admin_secret")) and not get("app_admin_username"):
        app_admin = _secret_account(reader(kubectl, ref, ""), ref)

    course_text = get("course_id")
    course_id: int | None = None
    if course_text:
        try:
            course_id = keys.valid_int_id("course id", int(course_text))
        except (ValueError, keys.InvalidIdentifier) as exc:
            raise TargetError(f"--course-id must be a positive integer: {exc}") from None

    client_ip = get("client_ip")
    if client_ip:
        try:
            ipaddress.ip_address(client_ip)
        except ValueError:
            raise TargetError(f"--client-ip {client_ip!r} is not an IP address") from None

    local = bool(document) and not given_target and all(_loopback(n) for n in nodes)
    hosts_text = get("smoke_hosts")
    if hosts_text:
        hosts = [h.strip() for h in hosts_text.split(",") if h.strip()]
    else:
        hosts = [LOCAL_HOST] if local else []

    gateway = get("gateway_url") or ((document and document.services) or {}).get("gateway")
    return Target(
        env=env,
        mode=mode,
        nodes=nodes,
        redis_admin=Account(username=username, password=password),
        gateway_url=gateway.rstrip("/") if gateway else None,
        service_users=service_users,
        service_users_missing=missing,
        student=student,
        app_admin=app_admin,
        course_id=course_id,
        client_ip=client_ip,
        tls_ca_file=get("redis_tls_ca_file"),
        hosts=hosts,
        # Only with the stack.json's own nodes: given nodes are reachable as named.
        address_map=dict(recorded.address_map) if recorded and not nodes_text else {},
        kubectl=kubectl,
        source=source,
        local=local,
    )


_BY_DEST = {option.dest: option for option in OPTIONS}
# SMOKE_* names that are not options: the Makefile's pytest arguments, which `make smoke
# SMOKE_ARGS=...` exports to the run's environment.
_NOT_OPTIONS = ("SMOKE_ARGS",)


def _refuse_unknown_variables(environ: Mapping[str, str]) -> None:
    """A misspelt variable (SMOKE_GATEWAY_ULR) would silently test the local stack instead."""
    known = {option.env for option in OPTIONS} | set(_NOT_OPTIONS)
    unknown = sorted(n for n in environ if n.startswith("SMOKE_") and n not in known)
    if unknown:
        raise TargetError(
            f"unknown variable(s) {', '.join(unknown)} (`python -m smoke --help` lists the SMOKE_*)"
        )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise TargetError(f"cannot read {path}: {exc}") from exc
    if not isinstance(document, dict):
        raise TargetError(f"{path} does not hold a JSON object")
    return document


def _loopback(node: str) -> bool:
    host = split_addr(node)[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _account(username: Any, password: Any, what: str) -> Account | None:
    if bool(username) != bool(password):
        raise TargetError(f"the {what} account needs both a username and a password")
    if not (username and password):
        return None
    return Account(username=str(username), password=str(password))


def _secret_account(data: Mapping[str, str], ref: str) -> Account:
    if not data.get("username") or not data.get("password"):
        raise TargetError(f"Secret {ref} needs both `username` and `password`")
    return Account(username=data["username"], password=data["password"])


def _secret_namespace(ref: str) -> str:
    namespace, sep, name = ref.partition("/")
    if not sep or not namespace or not name or "/" in name:
        raise TargetError(f"a Secret is given as <namespace>/<name>, not {ref!r}")
    return namespace


def _environment(
    name: str | None, namespace: str | None, nodes: list[str], stack_dir: Path
) -> Environment:
    """The named environment, else the one whose namespace the Secret or the nodes are in."""
    if name:
        try:
            return load_environment(name, stack_dir)
        except StackConfigError as exc:
            raise TargetError(str(exc)) from None
    candidates = []
    for env in ENVIRONMENTS:
        try:
            loaded = load_environment(env, stack_dir)
        except StackConfigError:
            continue
        env_namespace = str(loaded.config.get("namespace") or "")
        if not env_namespace:
            continue
        in_nodes = any(f".{env_namespace}." in node for node in nodes)
        if namespace == env_namespace or in_nodes:
            candidates.append(loaded)
    if len(candidates) == 1:
        return candidates[0]
    raise TargetError(
        f"cannot tell the environment of this target; pass --env / SMOKE_ENV "
        f"({', '.join(ENVIRONMENTS)})"
    )


def _service_users(
    path: str | None,
    recorded: Mapping[str, Account] | None,
    namespace: str | None,
    kubectl: str,
    reader: Callable[[str, str, str], dict[str, str]],
) -> tuple[dict[str, Account], dict[str, str]]:
    users: dict[str, Account] = {}
    missing: dict[str, str] = {}
    given: dict[str, Account] = {}
    if path:
        for service, entry in _read_json(Path(path)).items():
            if isinstance(entry, dict) and entry.get("password"):
                username = str(entry.get("username") or service)
                given[service] = Account(username=username, password=str(entry["password"]))
        where = f"in {path}"
    elif recorded is not None:
        given = {service: user for service, user in recorded.items() if user.password}
        where = "in stack.json"
    else:
        where = "given (--service-users / SMOKE_SERVICE_USERS, or SMOKE_REDIS_PASSWORD_SECRET)"
    for service in registry.NAMES:
        if service in given:
            users[service] = given[service]
        elif namespace and not path:
            ref = f"{namespace}/{SECRETS.service(service)}"  # as the Pulumi program names them
            try:
                data = reader(kubectl, ref, "")
            except TargetError as exc:
                missing[service] = f"its Secret could not be read ({exc})"
                continue
            if data.get("password"):
                username = data.get("username") or service
                users[service] = Account(username=username, password=data["password"])
            else:
                missing[service] = f"Secret {ref} has no password"
        else:
            missing[service] = f"no password for user {service} {where}"
    return users, missing


def read_k8s_secret(kubectl: str, ref: str, key: str) -> dict[str, str]:
    """The decoded data of Secret `<namespace>/<name>` (only `key` when given), via kubectl.

    The values never reach a command line or the output; errors name the Secret only.
    """
    namespace = _secret_namespace(ref)
    name = ref.split("/", 1)[1]
    if shutil.which(kubectl) is None:
        raise TargetError(f"cannot read Secret {ref}: {kubectl!r} is not on PATH")
    try:
        result = subprocess.run(
            [kubectl, "get", "secret", name, "--namespace", namespace, "--output", "json"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TargetError(f"cannot read Secret {ref}: {exc}") from None
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise TargetError(f"cannot read Secret {ref}: kubectl: {reason}")
    try:
        data = json.loads(result.stdout).get("data") or {}
        decoded = {str(k): base64.b64decode(v).decode() for k, v in data.items()}
    except (ValueError, AttributeError, binascii.Error) as exc:
        raise TargetError(f"Secret {ref} is not readable JSON with base64 data: {exc}") from None
    if key:
        return {key: decoded[key]} if key in decoded else {}
    return decoded
