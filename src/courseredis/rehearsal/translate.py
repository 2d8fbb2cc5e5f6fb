"""Kubernetes objects -> what podman runs: a `Plan`, pure data, and the podman arguments.

Nothing here calls podman, so every rule is unit-tested without it. What the rehearsal
honours, and how:

- StatefulSet, Deployment and Job pods: a podman pod each (own IP on the rehearsal's
  network, the pod's hostname), one container per Kubernetes container; init containers
  run one after the other before them. StatefulSet pods are `<name>-<ordinal>` and start in
  the `podManagementPolicy` order; Deployment pods `<name>-<hash>-<suffix>`; Job pods are
  retried up to `backoffLimit`.
- Cluster DNS: `<pod>.<service>.<ns>.svc.<domain>` for StatefulSet pods under their headless
  Service, `<service>.<ns>.svc.<domain>` for Services (ready pods only, unless
  `publishNotReadyAddresses`), the namespace's search list and `ndots:5`, served by the
  rehearsal's own DNS server (`courseredis.rehearsal.dns`).
- ConfigMap and Secret volumes (items, modes, subPath), emptyDir (on disk, or tmpfs for
  `medium: Memory`), PVCs from `volumeClaimTemplates` (`<claim>-<pod>`, kept when the pod
  goes). Env from values, Secrets, ConfigMaps and fieldRef (pod name, namespace, IP, ...),
  with `$(VAR)` expanded in command and args as the kubelet does.
- securityContext: runAsUser/Group, fsGroup, runAsNonRoot, readOnlyRootFilesystem,
  capabilities, allowPrivilegeEscalation. Resource limits (memory, CPU) as podman limits.
- Probes (exec, httpGet, tcpSocket) and preStop hooks, run by the rehearsal's controller.

Everything else a manifest asks for is listed in `Plan.unhonoured`, by kind and name;
nothing is dropped silently. A manifest that cannot start (a missing Secret, an unknown
volume, an image without a tag) raises `TranslationError` naming the object and why.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

WORKLOAD_KINDS = ("StatefulSet", "Deployment", "Job")
# Objects that configure pods or the rehearsal itself; honoured through what uses them.
USED_KINDS = ("Namespace", "ConfigMap", "Secret", "Service", *WORKLOAD_KINDS)
# Whole objects the rehearsal cannot honour, and what that means.
NOT_HONOURED = {
    "NetworkPolicy": "not enforced: every pod on the rehearsal network reaches every other",
    "PodDisruptionBudget": "not enforced: no eviction API; disruptions are the rehearsal's own",
    "HorizontalPodAutoscaler": "no metrics, no scaling: replicas held at its minReplicas",
    "Ingress": "no ingress controller: the gateway is reached on its pod IPs",
    "ServiceMonitor": "no Prometheus Operator: metrics endpoints are not scraped",
    "PodMonitor": "no Prometheus Operator: metrics endpoints are not scraped",
}
DEFAULT_GRACE_SECONDS = 30
DEFAULT_BACKOFF_LIMIT = 6
FIELD_PATHS = (
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.podIP",
    "status.podIPs",
    "status.hostIP",
)


class TranslationError(ValueError):
    """A declared object the rehearsal cannot start: the message names it and says why."""


@dataclass(frozen=True)
class Unhonoured:
    kind: str
    name: str
    what: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}: {self.what}"


@dataclass(frozen=True)
class Probe:
    kind: Literal["exec", "http", "tcp"]
    command: tuple[str, ...] = ()
    path: str = "/"
    port: int = 0
    scheme: str = "HTTP"
    initial_delay: float = 0
    period: float = 10
    timeout: float = 1
    failure_threshold: int = 3
    success_threshold: int = 1


@dataclass(frozen=True)
class Handler:
    """A lifecycle hook (preStop): exec in the container, or an HTTP GET to the pod."""

    kind: Literal["exec", "http", "sleep"]
    command: tuple[str, ...] = ()
    path: str = "/"
    port: int = 0
    seconds: float = 0


@dataclass(frozen=True)
class EnvVar:
    name: str
    value: str | None = None
    secret: tuple[str, str] | None = None  # (Secret name, key)
    config_map: tuple[str, str] | None = None
    field_path: str | None = None
    optional: bool = False


@dataclass(frozen=True)
class Volume:
    name: str
    kind: Literal["configMap", "secret", "emptyDir", "memory", "claim"]
    source: str = ""  # the ConfigMap, Secret or claim template name
    items: tuple[tuple[str, str, int | None], ...] = ()  # (key, path, mode)
    default_mode: int = 0o644


@dataclass(frozen=True)
class Mount:
    volume: str
    path: str
    sub_path: str = ""
    read_only: bool = False


@dataclass(frozen=True)
class Container:
    name: str
    image: str
    command: tuple[str, ...] | None
    args: tuple[str, ...] | None
    env: tuple[EnvVar, ...]
    mounts: tuple[Mount, ...]
    ports: Mapping[str, int]
    user: int | None
    group: int | None
    run_as_non_root: bool
    read_only_root: bool
    cap_drop: tuple[str, ...]
    cap_add: tuple[str, ...]
    no_new_privileges: bool
    readiness: Probe | None = None
    liveness: Probe | None = None
    startup: Probe | None = None
    pre_stop: Handler | None = None
    working_dir: str | None = None
    memory_limit: int | None = None  # bytes
    cpu_limit: float | None = None  # cores


@dataclass(frozen=True)
class PodTemplate:
    labels: Mapping[str, str]
    init_containers: tuple[Container, ...]
    containers: tuple[Container, ...]
    volumes: Mapping[str, Volume]
    fs_group: int | None
    supplemental_groups: tuple[int, ...]
    grace_seconds: int
    restart_policy: Literal["Always", "OnFailure", "Never"]


@dataclass(frozen=True)
class Workload:
    kind: Literal["StatefulSet", "Deployment", "Job"]
    name: str
    namespace: str
    replicas: int
    template: PodTemplate
    service_name: str = ""  # StatefulSet: the governing (headless) Service
    ordered: bool = False  # StatefulSet: OrderedReady (one at a time, in order)
    claims: tuple[str, ...] = ()  # StatefulSet: volumeClaimTemplates' names
    backoff_limit: int = DEFAULT_BACKOFF_LIMIT
    completions: int = 1

    @property
    def label(self) -> str:
        return f"{self.kind}/{self.name}"

    def pod_name(self, index: int, suffix: str = "") -> str:
        """StatefulSet: `<name>-<ordinal>`; Deployment: `<name>-<template hash>-<suffix>`;
        Job: `<name>-<suffix>`."""
        if self.kind == "StatefulSet":
            return f"{self.name}-{index}"
        if self.kind == "Deployment":
            return f"{self.name}-{template_hash(self)}-{suffix}"
        return f"{self.name}-{suffix}"


@dataclass(frozen=True)
class ServicePort:
    name: str
    port: int
    target: int | str


@dataclass(frozen=True)
class Service:
    name: str
    namespace: str
    headless: bool
    selector: Mapping[str, str]
    ports: tuple[ServicePort, ...]
    publish_not_ready: bool = False

    def selects(self, labels: Mapping[str, str]) -> bool:
        return bool(self.selector) and all(labels.get(k) == v for k, v in self.selector.items())


@dataclass
class Plan:
    namespace: str
    cluster_domain: str
    config_maps: dict[str, dict[str, str]] = field(default_factory=dict)
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)
    workloads: list[Workload] = field(default_factory=list)
    services: list[Service] = field(default_factory=list)
    unhonoured: list[Unhonoured] = field(default_factory=list)
    images: list[str] = field(default_factory=list)

    def workload(self, kind: str, name: str) -> Workload:
        for workload in self.workloads:
            if workload.kind == kind and workload.name == name:
                return workload
        raise KeyError(f"{kind}/{name}")

    @property
    def search(self) -> tuple[str, ...]:
        """The pods' DNS search list, as the kubelet writes it (ClusterFirst)."""
        domain = self.cluster_domain
        return (f"{self.namespace}.svc.{domain}", f"svc.{domain}", domain)

    def service_fqdn(self, service: Service) -> str:
        return f"{service.name}.{service.namespace}.svc.{self.cluster_domain}"

    def pod_fqdn(self, pod_name: str, workload: Workload) -> str | None:
        """A StatefulSet pod's stable name under its headless Service, if that exists."""
        if workload.kind != "StatefulSet" or not workload.service_name:
            return None
        if not any(s.name == workload.service_name and s.headless for s in self.services):
            return None
        return f"{pod_name}.{workload.service_name}.{workload.namespace}.svc.{self.cluster_domain}"


def template_hash(workload: Workload) -> str:
    """A stable stand-in for the pod-template-hash of a Deployment's ReplicaSet."""
    digest = hashlib.sha256(repr(workload.template).encode()).hexdigest()
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    return "".join(alphabet[int(digest[i : i + 2], 16) % len(alphabet)] for i in range(0, 20, 2))


# --- Parsing ------------------------------------------------------------------------------


def quantity_bytes(text: str | int) -> int:
    """A Kubernetes memory quantity (`256Mi`, `1G`, `1e3`) in bytes."""
    units = {
        "Ki": 1024,
        "Mi": 1024**2,
        "Gi": 1024**3,
        "Ti": 1024**4,
        "k": 1000,
        "M": 1000**2,
        "G": 1000**3,
        "T": 1000**4,
    }
    raw = str(text)
    match = re.fullmatch(r"([0-9.]+(?:e[0-9]+)?)([A-Za-z]*)", raw)
    if match is None or match.group(2) not in ("", *units):
        raise ValueError(f"not a quantity: {raw!r}")
    return int(float(match.group(1)) * units.get(match.group(2), 1))


def quantity_cores(text: str | int | float) -> float:
    raw = str(text)
    if raw.endswith("m"):
        return int(raw[:-1]) / 1000
    return float(raw)


def _port(value: Any, ports: Mapping[str, int], where: str) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if value in ports:
        return ports[value]
    raise TranslationError(f"{where}: port {value!r} is not a port the container declares")


def _probe(spec: Mapping[str, Any] | None, ports: Mapping[str, int], where: str) -> Probe | None:
    if not spec:
        return None
    timing = {
        "initial_delay": float(spec.get("initialDelaySeconds", 0)),
        "period": float(spec.get("periodSeconds", 10)),
        "timeout": float(spec.get("timeoutSeconds", 1)),
        "failure_threshold": int(spec.get("failureThreshold", 3)),
        "success_threshold": int(spec.get("successThreshold", 1)),
    }
    if "exec" in spec:
        return Probe("exec", command=tuple(spec["exec"]["command"]), **timing)  # type: ignore[arg-type]
    if "httpGet" in spec:
        get = spec["httpGet"]
        return Probe(
            "http",
            path=get.get("path", "/"),
            port=_port(get["port"], ports, where),
            scheme=get.get("scheme", "HTTP"),
            **timing,  # type: ignore[arg-type]
        )
    if "tcpSocket" in spec:
        return Probe("tcp", port=_port(spec["tcpSocket"]["port"], ports, where), **timing)  # type: ignore[arg-type]
    raise TranslationError(f"{where}: a probe of a kind the rehearsal cannot run ({sorted(spec)})")


def _handler(
    spec: Mapping[str, Any] | None, ports: Mapping[str, int], where: str
) -> Handler | None:
    if not spec:
        return None
    if "exec" in spec:
        return Handler("exec", command=tuple(spec["exec"]["command"]))
    if "httpGet" in spec:
        get = spec["httpGet"]
        return Handler("http", path=get.get("path", "/"), port=_port(get["port"], ports, where))
    if "sleep" in spec:
        return Handler("sleep", seconds=float(spec["sleep"]["seconds"]))
    raise TranslationError(f"{where}: a lifecycle hook the rehearsal cannot run ({sorted(spec)})")


def _env(
    spec: Mapping[str, Any],
    where: str,
    config_maps: Mapping[str, Mapping[str, str]],
    secrets: Mapping[str, Mapping[str, str]],
) -> EnvVar:
    name = spec["name"]
    if "valueFrom" not in spec:
        return EnvVar(name, value=str(spec.get("value", "")))
    source = spec["valueFrom"]
    if "secretKeyRef" in source:
        ref = source["secretKeyRef"]
        optional = bool(ref.get("optional", False))
        if not optional and ref["key"] not in secrets.get(ref["name"], {}):
            missing = "is not declared" if ref["name"] not in secrets else "has no such key"
            raise TranslationError(
                f"{where}: env {name}: Secret {ref['name']} {missing} (key {ref['key']})"
            )
        return EnvVar(name, secret=(ref["name"], ref["key"]), optional=optional)
    if "configMapKeyRef" in source:
        ref = source["configMapKeyRef"]
        optional = bool(ref.get("optional", False))
        if not optional and ref["key"] not in config_maps.get(ref["name"], {}):
            raise TranslationError(
                f"{where}: env {name}: ConfigMap {ref['name']} has no key {ref['key']}"
            )
        return EnvVar(name, config_map=(ref["name"], ref["key"]), optional=optional)
    if "fieldRef" in source:
        path = source["fieldRef"]["fieldPath"]
        if path not in FIELD_PATHS and not path.startswith(
            ("metadata.labels[", "metadata.annotations[")
        ):
            raise TranslationError(f"{where}: env {name}: fieldRef {path} is not supported")
        return EnvVar(name, field_path=path)
    raise TranslationError(f"{where}: env {name}: valueFrom {sorted(source)} is not supported")


def _container(
    spec: Mapping[str, Any],
    pod: Mapping[str, Any],
    where: str,
    volumes: Mapping[str, Volume],
    config_maps: Mapping[str, Mapping[str, str]],
    secrets: Mapping[str, Mapping[str, str]],
    unhonoured: list[Unhonoured],
    owner: tuple[str, str],
) -> Container:
    name = spec["name"]
    where = f"{where}: container {name}"
    image = str(spec.get("image") or "")
    if not image:
        raise TranslationError(f"{where}: no image")
    if "@" in image:
        unhonoured.append(
            Unhonoured(*owner, f"container {name}: image digest not checked (built locally)")
        )
        image = image.split("@", 1)[0]
    if ":" not in image.rsplit("/", 1)[-1]:
        raise TranslationError(f"{where}: image {image} has no tag")
    ports = {p["name"]: int(p["containerPort"]) for p in spec.get("ports", []) if "name" in p}
    for mount in spec.get("volumeMounts", []):
        if mount["name"] not in volumes:
            raise TranslationError(
                f"{where}: volumeMount {mount['name']} names no volume of the pod"
            )
    pod_security = pod.get("securityContext") or {}
    security = spec.get("securityContext") or {}
    capabilities = security.get("capabilities") or {}
    resources = spec.get("resources") or {}
    limits = resources.get("limits") or {}
    for extra in sorted(set(limits) - {"memory", "cpu"}):
        unhonoured.append(Unhonoured(*owner, f"container {name}: limit {extra} not applied"))
    if resources.get("requests"):
        unhonoured.append(
            Unhonoured(*owner, f"container {name}: requests reserve nothing (no scheduler)")
        )
    user = security.get("runAsUser", pod_security.get("runAsUser"))
    non_root = bool(security.get("runAsNonRoot", pod_security.get("runAsNonRoot", False)))
    if non_root and user == 0:
        raise TranslationError(f"{where}: runAsNonRoot with runAsUser 0")
    return Container(
        name=name,
        image=image,
        command=tuple(spec["command"]) if "command" in spec else None,
        args=tuple(str(a) for a in spec["args"]) if "args" in spec else None,
        env=tuple(_env(e, where, config_maps, secrets) for e in spec.get("env", [])),
        mounts=tuple(
            Mount(m["name"], m["mountPath"], m.get("subPath", ""), bool(m.get("readOnly", False)))
            for m in spec.get("volumeMounts", [])
        ),
        ports=ports,
        user=user,
        group=security.get("runAsGroup", pod_security.get("runAsGroup")),
        run_as_non_root=non_root,
        read_only_root=bool(security.get("readOnlyRootFilesystem", False)),
        cap_drop=tuple(capabilities.get("drop", [])),
        cap_add=tuple(capabilities.get("add", [])),
        no_new_privileges=security.get("allowPrivilegeEscalation") is False,
        readiness=_probe(spec.get("readinessProbe"), ports, f"{where}: readinessProbe"),
        liveness=_probe(spec.get("livenessProbe"), ports, f"{where}: livenessProbe"),
        startup=_probe(spec.get("startupProbe"), ports, f"{where}: startupProbe"),
        pre_stop=_handler((spec.get("lifecycle") or {}).get("preStop"), ports, f"{where}: preStop"),
        working_dir=spec.get("workingDir"),
        memory_limit=quantity_bytes(limits["memory"]) if "memory" in limits else None,
        cpu_limit=quantity_cores(limits["cpu"]) if "cpu" in limits else None,
    )


def _volume(
    spec: Mapping[str, Any],
    where: str,
    claims: Iterable[str],
    config_maps: Mapping[str, Mapping[str, str]],
    secrets: Mapping[str, Mapping[str, str]],
    unhonoured: list[Unhonoured],
    owner: tuple[str, str],
) -> Volume:
    name = spec["name"]
    where = f"{where}: volume {name}"

    def items(source: Mapping[str, Any], known: Mapping[str, str]) -> tuple[Any, ...]:
        listed = source.get("items")
        if not listed:
            return tuple((key, key, None) for key in sorted(known))
        for item in listed:
            if item["key"] not in known and not source.get("optional"):
                raise TranslationError(f"{where}: no key {item['key']}")
        return tuple((i["key"], i["path"], i.get("mode")) for i in listed)

    keyed: tuple[tuple[Literal["configMap", "secret"], str, str, Mapping[str, Any]], ...] = (
        ("configMap", "name", "ConfigMap", config_maps),
        ("secret", "secretName", "Secret", secrets),
    )
    for kind_key, name_key, label, declared in keyed:
        if kind_key in spec:
            source = spec[kind_key]
            named = source[name_key]
            if named not in declared and not source.get("optional"):
                raise TranslationError(f"{where}: {label} {named} is not declared")
            known = declared.get(named, {})
            return Volume(
                name, kind_key, named, items(source, known), int(source.get("defaultMode", 0o644))
            )
    if "emptyDir" in spec:
        source = spec["emptyDir"] or {}
        if source.get("sizeLimit"):
            unhonoured.append(
                Unhonoured(*owner, f"volume {name}: emptyDir sizeLimit {source['sizeLimit']}")
            )
        kind: Literal["memory", "emptyDir"] = (
            "memory" if source.get("medium") == "Memory" else "emptyDir"
        )
        return Volume(name, kind)
    if "persistentVolumeClaim" in spec:
        claim = spec["persistentVolumeClaim"]["claimName"]
        return Volume(name, "claim", claim)
    raise TranslationError(
        f"{where}: a volume of a kind the rehearsal cannot mount ({sorted(spec)})"
    )


POD_FIELDS_IGNORED_SILENTLY = {
    # Meaningless without a cluster API, and harmless to leave out.
    "automountServiceAccountToken",
    "enableServiceLinks",
    "restartPolicy",
    "terminationGracePeriodSeconds",
    "securityContext",
    "containers",
    "initContainers",
    "volumes",
    "hostname",
    "subdomain",
}
POD_FIELDS_NOT_HONOURED = {
    "affinity": "affinity not honoured: one machine, no nodes to spread over",
    "topologySpreadConstraints": "topology spread not honoured: one machine",
    "nodeSelector": "nodeSelector not honoured: one machine",
    "tolerations": "tolerations not honoured: no taints",
    "priorityClassName": "priority class not honoured: no preemption",
    "serviceAccountName": "service account not honoured: no API server",
    "imagePullSecrets": "image pull secrets unused: images are built locally",
}


def _pod_template(
    workload: Mapping[str, Any],
    plan: Plan,
    claims: tuple[str, ...],
    restart_default: Literal["Always", "OnFailure", "Never"],
) -> PodTemplate:
    kind, name = workload["kind"], workload["metadata"]["name"]
    owner = (kind, name)
    where = f"{kind}/{name}"
    template = workload["spec"]["template"]
    pod = template.get("spec") or {}
    for key, what in POD_FIELDS_NOT_HONOURED.items():
        if pod.get(key):
            plan.unhonoured.append(Unhonoured(kind, name, what))
    for key in sorted(set(pod) - POD_FIELDS_IGNORED_SILENTLY - set(POD_FIELDS_NOT_HONOURED)):
        plan.unhonoured.append(Unhonoured(kind, name, f"pod field {key} not honoured"))
    volumes = {
        v["name"]: _volume(v, where, claims, plan.config_maps, plan.secrets, plan.unhonoured, owner)
        for v in pod.get("volumes", [])
    }
    for claim in claims:
        volumes.setdefault(claim, Volume(claim, "claim", claim))
    for volume in volumes.values():
        if volume.kind == "claim" and volume.source not in claims:
            raise TranslationError(
                f"{where}: volume {volume.name}: claim {volume.source} is not a "
                "volumeClaimTemplate (standalone PVCs are not declared by the program)"
            )
    pod_security = pod.get("securityContext") or {}

    def containers(key: str) -> tuple[Container, ...]:
        return tuple(
            _container(
                c, pod, where, volumes, plan.config_maps, plan.secrets, plan.unhonoured, owner
            )
            for c in pod.get(key, [])
        )

    restart = pod.get("restartPolicy", restart_default)
    return PodTemplate(
        labels=dict((template.get("metadata") or {}).get("labels") or {}),
        init_containers=containers("initContainers"),
        containers=containers("containers"),
        volumes=volumes,
        fs_group=pod_security.get("fsGroup"),
        supplemental_groups=tuple(pod_security.get("supplementalGroups", [])),
        grace_seconds=int(pod.get("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS)),
        restart_policy=restart,
    )


def _string_data(obj: Mapping[str, Any]) -> dict[str, str]:
    data = {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
    return data | {k: str(v) for k, v in (obj.get("stringData") or {}).items()}


def translate(objects: list[dict[str, Any]], cluster_domain: str = "cluster.local") -> Plan:
    """The plan for one stack's objects (all in one namespace, as the program declares)."""
    namespaces = [o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"]
    in_namespaces = {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"}
    in_namespaces.discard(None)
    if len(in_namespaces) > 1:
        raise TranslationError(f"objects span namespaces {sorted(in_namespaces)}: one expected")
    namespace = next(iter(in_namespaces), namespaces[0] if namespaces else "default")
    plan = Plan(namespace=namespace, cluster_domain=cluster_domain)
    for obj in objects:
        if obj["kind"] == "ConfigMap":
            plan.config_maps[obj["metadata"]["name"]] = {
                k: str(v) for k, v in (obj.get("data") or {}).items()
            }
        elif obj["kind"] == "Secret":
            plan.secrets[obj["metadata"]["name"]] = _string_data(obj)
    hpa_floor: dict[tuple[str, str], int] = {}
    for obj in objects:
        kind, name = obj["kind"], obj["metadata"]["name"]
        if kind in NOT_HONOURED:
            plan.unhonoured.append(Unhonoured(kind, name, NOT_HONOURED[kind]))
            if kind == "HorizontalPodAutoscaler":
                target = obj["spec"]["scaleTargetRef"]
                hpa_floor[(target["kind"], target["name"])] = int(obj["spec"].get("minReplicas", 1))
        elif kind not in USED_KINDS:
            plan.unhonoured.append(Unhonoured(kind, name, "a kind the rehearsal does not run"))
    for obj in objects:
        kind, name = obj["kind"], obj["metadata"]["name"]
        if kind == "Service":
            plan.services.append(_service(obj, plan))
        elif kind in WORKLOAD_KINDS:
            plan.workloads.append(_workload(obj, plan, hpa_floor.get((kind, name))))
    plan.images = sorted(
        {
            c.image
            for w in plan.workloads
            for c in (*w.template.init_containers, *w.template.containers)
        }
    )
    return plan


def _service(obj: Mapping[str, Any], plan: Plan) -> Service:
    spec = obj.get("spec") or {}
    name = obj["metadata"]["name"]
    kind = spec.get("type", "ClusterIP")
    if kind not in ("ClusterIP",):
        plan.unhonoured.append(
            Unhonoured("Service", name, f"type {kind} not honoured: reached as ClusterIP")
        )
    headless = spec.get("clusterIP") == "None"
    if not headless:
        plan.unhonoured.append(
            Unhonoured(
                "Service",
                name,
                "no virtual IP: its DNS name lists the ready pods' IPs (round robin)",
            )
        )
    ports = tuple(
        ServicePort(p.get("name", ""), int(p["port"]), p.get("targetPort", p["port"]))
        for p in spec.get("ports", [])
    )
    for port in ports:
        if isinstance(port.target, int) and port.target != port.port:
            plan.unhonoured.append(
                Unhonoured("Service", name, f"port {port.port} -> {port.target} not remapped")
            )
    return Service(
        name=name,
        namespace=obj["metadata"].get("namespace", plan.namespace),
        headless=headless,
        selector=dict(spec.get("selector") or {}),
        ports=ports,
        publish_not_ready=bool(spec.get("publishNotReadyAddresses", False)),
    )


def _workload(obj: Mapping[str, Any], plan: Plan, hpa_floor: int | None) -> Workload:
    kind, name = obj["kind"], obj["metadata"]["name"]
    spec = obj["spec"]
    namespace = obj["metadata"].get("namespace", plan.namespace)
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    labels = (spec["template"].get("metadata") or {}).get("labels") or {}
    if kind != "Job" and any(labels.get(k) != v for k, v in selector.items()):
        raise TranslationError(f"{kind}/{name}: the selector does not match the pod labels")
    if kind == "StatefulSet":
        claims = tuple(t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", []))
        for template in spec.get("volumeClaimTemplates", []):
            if (template.get("spec") or {}).get("storageClassName"):
                plan.unhonoured.append(
                    Unhonoured(kind, name, "storageClassName not honoured: podman volumes")
                )
        policy = spec.get("podManagementPolicy", "OrderedReady")
        return Workload(
            "StatefulSet",
            name,
            namespace,
            int(spec.get("replicas", 1)),
            _pod_template(obj, plan, claims, "Always"),
            service_name=spec.get("serviceName", ""),
            ordered=policy == "OrderedReady",
            claims=claims,
        )
    if kind == "Deployment":
        replicas = int(spec.get("replicas", 1))
        if hpa_floor is not None:
            replicas = max(replicas if "replicas" in spec else 1, hpa_floor)
        return Workload(
            "Deployment", name, namespace, replicas, _pod_template(obj, plan, (), "Always")
        )
    template = _pod_template(obj, plan, (), "Never")
    if template.restart_policy == "Always":
        raise TranslationError(f"Job/{name}: restartPolicy Always is invalid for a Job")
    if int(spec.get("parallelism", 1)) != 1:
        plan.unhonoured.append(
            Unhonoured(kind, name, "parallelism not honoured: one pod at a time")
        )
    return Workload(
        "Job",
        name,
        namespace,
        1,
        template,
        backoff_limit=int(spec.get("backoffLimit", DEFAULT_BACKOFF_LIMIT)),
        completions=int(spec.get("completions", 1)),
    )


# --- Running a container: values the controller resolves, arguments podman takes -----------


def expand(text: str, env: Mapping[str, str]) -> str:
    """The kubelet's `$(VAR)` expansion in command and args; `$$(VAR)` stays literal."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0).startswith("$$"):
            return match.group(0)[1:]
        name = match.group(1)
        return env.get(name, match.group(0))

    return re.sub(r"\$\$?\(([A-Za-z_][A-Za-z0-9_]*)\)", replace, text)


@dataclass(frozen=True)
class PodFacts:
    """What fieldRef and $(VAR) read: known once the pod has its IP."""

    name: str
    namespace: str
    ip: str
    uid: str
    labels: Mapping[str, str]
    node: str = "rehearsal"


def resolve_env(container: Container, plan: Plan, pod: PodFacts) -> dict[str, str]:
    """The container's environment, in declaration order (later names may use earlier)."""
    resolved: dict[str, str] = {}
    fields = {
        "metadata.name": pod.name,
        "metadata.namespace": pod.namespace,
        "metadata.uid": pod.uid,
        "spec.nodeName": pod.node,
        "spec.serviceAccountName": "default",
        "status.podIP": pod.ip,
        "status.podIPs": pod.ip,
        "status.hostIP": pod.ip,
    }
    for var in container.env:
        if var.value is not None:
            resolved[var.name] = expand(var.value, resolved)
        elif var.secret is not None:
            value = plan.secrets.get(var.secret[0], {}).get(var.secret[1])
            if value is not None:
                resolved[var.name] = value
        elif var.config_map is not None:
            value = plan.config_maps.get(var.config_map[0], {}).get(var.config_map[1])
            if value is not None:
                resolved[var.name] = value
        elif var.field_path is not None:
            path = var.field_path
            if path.startswith("metadata.labels["):
                resolved[var.name] = pod.labels.get(
                    path[len("metadata.labels[") : -1].strip("'\""), ""
                )
            else:
                resolved[var.name] = fields.get(path, "")
    return resolved


def create_args(
    container: Container,
    template: PodTemplate,
    pod_id: str,
    name: str,
    env_names: list[str],
    volume_args: list[str],
    labels: Mapping[str, str],
) -> list[str]:
    """`podman create` for one container of a pod. Env values are not on the command line:
    `--env NAME` copies each from podman's environment (`Podman.run(env=...)`)."""
    args = ["create", "--pod", pod_id, "--name", name]
    for env_name in env_names:
        args += ["--env", env_name]
    for key, value in sorted(labels.items()):
        args += ["--label", f"{key}={value}"]
    if container.user is not None or container.group is not None:
        user = container.user if container.user is not None else 0
        group = container.group if container.group is not None else user
        args += ["--user", f"{user}:{group}"]
    for group_id in (template.fs_group, *template.supplemental_groups):
        if group_id is not None:
            args += ["--group-add", str(group_id)]
    if container.read_only_root:
        args += ["--read-only", "--read-only-tmpfs=false"]
    for capability in container.cap_drop:
        args += ["--cap-drop", capability.lower()]
    for capability in container.cap_add:
        args += ["--cap-add", capability.lower()]
    if container.no_new_privileges:
        args += ["--security-opt", "no-new-privileges"]
    if container.memory_limit is not None:
        args += ["--memory", str(container.memory_limit)]
    if container.cpu_limit is not None:
        args += ["--cpus", f"{container.cpu_limit:g}"]
    if container.working_dir:
        args += ["--workdir", container.working_dir]
    args += volume_args
    args += ["--stop-timeout", str(template.grace_seconds)]
    return args


def command_line(container: Container, env: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """(entrypoint arguments for podman, the image plus its arguments), as Kubernetes runs
    them: `command` replaces the image's ENTRYPOINT, `args` its CMD."""
    command = [expand(c, env) for c in container.command] if container.command is not None else None
    args = [expand(a, env) for a in container.args] if container.args is not None else None
    options: list[str] = []
    tail: list[str] = [container.image]
    if command is not None:
        options += ["--entrypoint", json.dumps(command)]
        tail += args or []
    elif args is not None:
        tail += args
    return options, tail
