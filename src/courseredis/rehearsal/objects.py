"""The Kubernetes objects `pulumi up -s <env>` would apply, without the Pulumi CLI.

One code path for the rehearsal and for the project's tests (`tests/infra/mocks.py` and
`tests/charts/helm.py` import from here):

- `deploy(env)` loads the real `Pulumi.<env>.yaml` into Pulumi's mocked runtime, runs
  `infra/__main__.py` as `pulumi up` would, and records every resource registration the
  engine would have received (type, name, inputs with their secrets still wrapped) and the
  stack's exports. A `RandomPassword` gets a fixed, recognisable value in the tests
  (`fixed_password`) and a real random one in the rehearsal (`random_password`); a
  pulumi-tls `PrivateKey` a real, random Ed25519 pair in both (`ed25519_key_state`).
- `render_chart` is `helm template` in-process: real Helm (helm-python-sdk binds Helm's Go
  SDK), values coalesced over the chart's defaults and checked against its schema.
- `declared_objects(deployment)` is what reaches the cluster: every plain Kubernetes
  resource the program declares (inputs unwrapped), plus every `helm.v4.Chart` rendered
  with the chart, release name, namespace and values the program passed, as Chart v4 does
  it (the release namespace on namespaced objects that name none; hooks skipped).
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import runpy
import secrets
import string
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import helm_python
import pulumi
import yaml
from pulumi.runtime import rpc

from courseredis.environments import PROJECT_NAME, REPO_ROOT

PROGRAM = REPO_ROOT / "infra" / "__main__.py"
PASSWORD_TYPE = "random:index/randomPassword:RandomPassword"
PRIVATE_KEY_TYPE = "tls:index/privateKey:PrivateKey"
CHART_TYPE = "kubernetes:helm.sh/v4:Chart"
SECRET_TYPE = "kubernetes:core/v1:Secret"
HOOK_ANNOTATION = "helm.sh/hook"
# Kinds that live outside any namespace (Chart v4 gives the others the release namespace).
CLUSTER_SCOPED = frozenset(
    {
        "Namespace",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "PersistentVolume",
        "StorageClass",
        "PriorityClass",
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
    }
)

PasswordMaker = Callable[[str, int], str]


def fixed_password(name: str, length: int) -> str:
    """The tests' password: derived from the resource name, so a leak is recognisable."""
    digest = hashlib.sha256(name.encode()).hexdigest()
    return f"Gen{digest[: length - 3]}"


def random_password(name: str, length: int) -> str:
    """What the random provider makes (letters and digits, `special=False`): really random."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


def ed25519_key_state(algorithm: str) -> dict[str, str]:
    """What pulumi-tls returns for a new PrivateKey: a real, random Ed25519 pair (the
    services refuse anything else, and the rehearsal signs real tokens with it)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if algorithm != "ED25519":
        raise ValueError(f"the mocks make Ed25519 keys only, not {algorithm}")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return {
        "privateKeyPem": private_pem,  # pulumi-tls gives Ed25519 keys as PKCS#8 here too
        "privateKeyPemPkcs8": private_pem,
        "publicKeyPem": public_pem,
    }


@dataclass(frozen=True)
class Registration:
    typ: str
    name: str
    inputs: dict[str, Any]


class RecordingMocks(pulumi.runtime.Mocks):
    """Records registrations; a RandomPassword's result comes from `passwords`."""

    def __init__(self, passwords: PasswordMaker = fixed_password) -> None:
        self.registrations: list[Registration] = []
        self.generated: dict[str, str] = {}
        self.passwords = passwords

    def new_resource(
        self, args: pulumi.runtime.MockResourceArgs
    ) -> tuple[str | None, dict[Any, Any]]:
        self.registrations.append(Registration(args.typ, args.name, dict(args.inputs)))
        state = dict(args.inputs)
        if args.typ == PASSWORD_TYPE:
            value = self.passwords(args.name, int(args.inputs["length"]))
            self.generated[args.name] = value
            state["result"] = value
        if args.typ == PRIVATE_KEY_TYPE:
            state |= ed25519_key_state(str(args.inputs["algorithm"]))
            self.generated[args.name] = state["privateKeyPemPkcs8"]
        return f"{args.name}-id", state

    def call(
        self, args: pulumi.runtime.MockCallArgs
    ) -> tuple[dict[Any, Any], list[tuple[str, str]] | None]:
        return {}, None


@dataclass
class Deployment:
    env: str
    mocks: RecordingMocks
    exports: dict[str, Any] = field(default_factory=dict)
    secret_exports: set[str] = field(default_factory=set)
    program: dict[str, Any] = field(default_factory=dict)  # the module globals of __main__
    secret_flags: dict[str, bool] = field(default_factory=dict)  # filled by `inspect`

    def of_type(self, typ: str) -> list[Registration]:
        return [r for r in self.mocks.registrations if r.typ == typ]

    def one(self, typ: str, name: str) -> Registration:
        found = [r for r in self.of_type(typ) if r.name == name]
        assert len(found) == 1, f"{typ} {name}: {len(found)} registrations"
        return found[0]


# Runs inside the mocked runtime after the program, to await outputs of its components.
Inspector = Callable[[Deployment], Awaitable[None]]


def stack_config(env: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The stack file's config as the engine hands it to a program: objects as JSON text."""
    document = yaml.safe_load(Path(REPO_ROOT / f"Pulumi.{env}.yaml").read_text())
    config = {
        key: value if isinstance(value, str) else json.dumps(value)
        for key, value in document["config"].items()
    }
    return config | (extra or {})


def deploy(
    env: str,
    secrets: dict[str, str] | None = None,
    plain: dict[str, str] | None = None,
    *,
    passwords: PasswordMaker = fixed_password,
    inspect: Inspector | None = None,
) -> Deployment:
    """Run the program for stack `env`; `secrets` are extra config keys set as secrets,
    `plain` extra keys set as `pulumi config set` would."""
    # A fresh context per run: the runtime keeps its root stack and config in context
    # variables, so two stacks in one process must not share them.
    return contextvars.Context().run(_deploy, env, secrets or {}, plain or {}, passwords, inspect)


def _deploy(
    env: str,
    secrets: dict[str, str],
    plain: dict[str, str],
    passwords: PasswordMaker,
    inspect: Inspector | None,
) -> Deployment:
    mocks = RecordingMocks(passwords)
    pulumi.runtime.set_mocks(mocks, project=PROJECT_NAME, stack=env, preview=False)
    secret_keys = [f"{PROJECT_NAME}:{key}" for key in secrets]
    extra = {f"{PROJECT_NAME}:{key}": value for key, value in {**plain, **secrets}.items()}
    pulumi.runtime.set_all_config(stack_config(env, extra), secret_keys=secret_keys)
    deployment = Deployment(env=env, mocks=mocks)

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def run() -> pulumi.Output[None]:
        deployment.program = runpy.run_path(str(PROGRAM), run_name="__main__")
        root = pulumi.runtime.get_root_resource()
        assert isinstance(root, pulumi.runtime.stack.Stack)

        async def collect() -> None:
            for name, value in root.outputs.items():
                output = pulumi.Output.from_input(value)
                deployment.exports[name] = await output.future()
                if await output.is_secret():
                    deployment.secret_exports.add(name)
            if inspect is not None:
                await inspect(deployment)

        return pulumi.Output.from_input(collect())

    run()
    return deployment


def unwrap(value: Any) -> Any:
    """Inputs with their secret markers removed (the values the cluster would receive)."""
    if rpc.is_rpc_secret(value):
        return unwrap(rpc.unwrap_rpc_secret(value))
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def plain_strings(value: Any) -> list[str]:
    """Every string in `value` outside a secret: what would sit in plain text in the state."""
    if rpc.is_rpc_secret(value):
        return []
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (str(k), *plain_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in plain_strings(v)]
    return [value] if isinstance(value, str) else []


def contains_secret(value: Any) -> bool:
    if rpc.is_rpc_secret(value):
        return True
    if isinstance(value, dict):
        return any(contains_secret(v) for v in value.values())
    if isinstance(value, list):
        return any(contains_secret(v) for v in value)
    return False


# --- Helm ---------------------------------------------------------------------------------


def render_chart(
    chart: Path, values: dict[str, Any], release: str, namespace: str
) -> list[dict[str, Any]]:
    """`helm template` of a local chart: one dict per rendered document, NOTES.txt left out."""
    with helm_python.Chart.load(chart) as loaded:
        manifests = loaded.render(values, name=release, namespace=namespace, is_install=True)
    objects: list[dict[str, Any]] = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        objects += [doc for doc in yaml.safe_load_all(text) if doc]
    return objects


# --- What reaches the cluster -------------------------------------------------------------


@dataclass(frozen=True)
class Skipped:
    """A declared object that never reaches the cluster under `pulumi up`, and why."""

    kind: str
    name: str
    reason: str


@dataclass
class DeclaredObjects:
    objects: list[dict[str, Any]]
    skipped: list[Skipped] = field(default_factory=list)


def api_of(typ: str) -> tuple[str, str] | None:
    """`kubernetes:apps/v1:Deployment` -> ("apps/v1", "Deployment"); None if not an object."""
    if not typ.startswith("kubernetes:") or typ == CHART_TYPE or ".sh/" in typ:
        return None
    _, module, kind = typ.split(":", 2)
    group, _, version = module.rpartition("/")
    if group == "core":
        return version, kind
    return f"{group}/{version}", kind


def declared_objects(deployment: Deployment, cwd: Path | None = None) -> DeclaredObjects:
    """Every object `pulumi up` would create for this deployment, in declaration order.

    Chart paths are relative to where the program ran (`infra.kube.chart_path`), so they
    are resolved against `cwd` (default: the current directory, as the program saw it).
    """
    base = cwd or Path.cwd()
    result = DeclaredObjects(objects=[])
    for registration in deployment.mocks.registrations:
        if registration.typ == CHART_TYPE:
            inputs = unwrap(registration.inputs)
            release = inputs.get("name") or registration.name
            namespace = inputs.get("namespace") or "default"
            rendered = render_chart(
                (base / inputs["chart"]).resolve(), inputs.get("values") or {}, release, namespace
            )
            for obj in rendered:
                metadata = obj.setdefault("metadata", {})
                if HOOK_ANNOTATION in (metadata.get("annotations") or {}):
                    result.skipped.append(
                        Skipped(obj["kind"], metadata.get("name", "?"), "a Helm hook")
                    )
                    continue
                if obj["kind"] not in CLUSTER_SCOPED:
                    metadata.setdefault("namespace", namespace)
                result.objects.append(obj)
            continue
        api = api_of(registration.typ)
        if api is None:
            continue
        inputs = unwrap(registration.inputs)
        obj = {"apiVersion": api[0], "kind": api[1], **inputs}
        obj.setdefault("metadata", {}).setdefault("name", registration.name)
        result.objects.append(obj)
    return result
