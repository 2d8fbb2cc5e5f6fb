"""Checks every rendered object must pass, whatever the chart and the stack."""

from __future__ import annotations

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
