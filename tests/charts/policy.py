"""Checks every rendered object must pass, whatever the chart and the stack."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import kubernetes_validate

from tests.charts.helm import KUBE_VERSION, containers, pod_specs

# Kinds of optional CRDs: no schema in kubernetes-validate, checked by hand.
CRD_GROUPS = ("monitoring.coreos.com/",)


def validate_objects(objects: list[dict[str, Any]]) -> None:
    """Every object is valid against the Kubernetes schemas, strictly (no unknown field)."""
    for obj in objects:
        label = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        if obj["apiVersion"].startswith(CRD_GROUPS):
            assert obj["metadata"]["name"] and obj["spec"], label
            continue
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise AssertionError(f"{label}: {'.'.join(map(str, exc.path))}: {exc.message}") from exc


def check_containers(objects: list[dict[str, Any]]) -> None:
    """Requests and limits, non-root and read-only, hardened, pinned images: every container."""
    workloads = list(pod_specs(objects))
    assert workloads, "no workload rendered"
    for label, spec in workloads:
        pod_security = spec.get("securityContext", {})
        assert spec.get("automountServiceAccountToken") is False, label
        for container in containers(spec):
            where = f"{label} container {container['name']}"
            resources = container.get("resources", {})
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(kind, {})), f"{where}: {kind}"
            security = {**pod_security, **container.get("securityContext", {})}
            assert security.get("runAsNonRoot") is True, where
            assert security.get("runAsUser", 0) != 0, where
            assert security.get("readOnlyRootFilesystem") is True, where
            assert security.get("allowPrivilegeEscalation") is False, where
            assert security.get("capabilities", {}).get("drop") == ["ALL"], where
            assert security.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
            assert "privileged" not in security or security["privileged"] is False, where
            image = container["image"]
            name, _, tag = image.rpartition(":")
            assert name and "/" not in tag and tag and tag != "latest", f"{where}: {image}"
            mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
            if container["name"] != "metrics":  # the exporter is a static binary; no /tmp
                assert "/tmp" in mounts, f"{where}: a read-only root needs a writable /tmp"


# --- NetworkPolicy, evaluated as Kubernetes does ---------------------------------------------


@dataclass(frozen=True)
class Pod:
    """A pod as a NetworkPolicy sees it: its labels, its namespace and that namespace's labels
    (Kubernetes gives every namespace `kubernetes.io/metadata.name: <name>`)."""

    labels: Mapping[str, str]
    namespace: str
    namespace_labels: Mapping[str, str] = field(default_factory=dict)

    def namespace_labels_with_name(self) -> dict[str, str]:
        return {**self.namespace_labels, "kubernetes.io/metadata.name": self.namespace}


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A label selector (`matchLabels`, `matchExpressions`); {} selects everything."""
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions", []):
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values", [])
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def _peer_admits(peer: Mapping[str, Any], source: Pod, policy_namespace: str) -> bool:
    if "ipBlock" in peer:
        return False  # CIDRs, not pods: never how our pods are told apart
    namespace_selector = peer.get("namespaceSelector")
    pod_selector = peer.get("podSelector", {})
    if namespace_selector is None:
        in_namespace = source.namespace == policy_namespace  # podSelector alone: same namespace
    else:
        in_namespace = selects(namespace_selector, source.namespace_labels_with_name())
    return in_namespace and selects(pod_selector, source.labels)


def _port_matches(rule_ports: list[Mapping[str, Any]] | None, port: int) -> bool:
    if not rule_ports:
        return True  # no ports: every port
    for rule_port in rule_ports:
        if rule_port.get("protocol", "TCP") != "TCP":
            continue
        start = rule_port.get("port")
        if start is None:
            return True
        if not isinstance(start, int):
            raise AssertionError(f"named port {start!r}: give the evaluator numbers")
        if start <= port <= rule_port.get("endPort", start):
            return True
    return False


def admitted(objects: list[dict[str, Any]], source: Pod, target: Pod, port: int) -> bool:
    """Whether the NetworkPolicies among `objects` (all in `target`'s namespace, as a chart
    renders them) let `source` open a TCP connection to `target` on `port`.

    A pod no Ingress policy selects admits everything; a selected pod admits what at least
    one rule of one selecting policy allows (rules are additive, there is no deny).
    """
    policies = [
        o["spec"]
        for o in objects
        if o["kind"] == "NetworkPolicy"
        and o.get("metadata", {}).get("namespace", target.namespace) == target.namespace
    ]
    isolating = [
        p
        for p in policies
        if "Ingress" in p.get("policyTypes", ["Ingress"])
        and selects(p["podSelector"], target.labels)
    ]
    if not isolating:
        return True
    for policy in isolating:
        for rule in policy.get("ingress") or []:
            if not _port_matches(rule.get("ports"), port):
                continue
            peers = rule.get("from")
            if not peers or any(_peer_admits(p, source, target.namespace) for p in peers):
                return True
    return False


def pod_of(workload: Mapping[str, Any], namespace: str) -> Pod:
    """The pod a Deployment, StatefulSet or Job of the rendered objects would start."""
    return Pod(dict(workload["spec"]["template"]["metadata"]["labels"]), namespace)
