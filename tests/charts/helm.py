"""Real Helm, in-process: `helm-python-sdk` binds Helm's Go SDK (v4) through ctypes.

`render` is `helm template`: values coalesced over the chart's defaults, checked against
`values.schema.json`, templates rendered offline (no cluster, `lookup` empty). `lint` is
`helm lint --strict`. Objects come back parsed, one dict per YAML document.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import helm_python
import kubernetes_validate

from courseredis.environments import REPO_ROOT, load_environment
from courseredis.rehearsal.objects import render_chart
from infra.settings import StackSettings

CHARTS = REPO_ROOT / "charts"
# The newest Kubernetes whose schemas kubernetes-validate ships (offline).
KUBE_VERSION = kubernetes_validate.latest_version()
RELEASES = {"redis": "redis", "services": "services"}  # the release names infra uses


def stack_settings(env: str) -> StackSettings:
    return StackSettings.from_config(env, load_environment(env).config)


def render(
    chart: str, values: dict[str, Any], namespace: str = "course-redis-test"
) -> list[dict[str, Any]]:
    # The renderer the deploy rehearsal uses for the program's charts: one code path.
    return render_chart(CHARTS / chart, values, release=RELEASES[chart], namespace=namespace)


def notes(chart: str, values: dict[str, Any], namespace: str = "course-redis-test") -> str:
    with helm_python.Chart.load(CHARTS / chart) as loaded:
        manifests = loaded.render(values, name=RELEASES[chart], namespace=namespace)
    return next(text for path, text in manifests.items() if path.endswith("NOTES.txt"))


def lint(
    chart: str, values: dict[str, Any], namespace: str = "course-redis-test"
) -> dict[str, Any]:
    return helm_python.lint(
        CHARTS / chart,
        values,
        strict=True,
        namespace=namespace,
        kube_version=f"v{KUBE_VERSION}",
    )


def defaults(chart: str) -> dict[str, Any]:
    with helm_python.Chart.load(CHARTS / chart) as loaded:
        return loaded.values


def validate_schema(chart: str, values: dict[str, Any]) -> None:
    with helm_python.Chart.load(CHARTS / chart) as loaded:
        loaded.validate_schema(loaded.merge_values(values))


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]


def only(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = find(objects, kind, name)
    assert len(found) == 1, f"{kind} {name}: {len(found)} objects"
    return found[0]


def pod_specs(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(object label, pod spec) of every workload."""
    for o in objects:
        if o["kind"] in ("Deployment", "StatefulSet", "Job", "DaemonSet"):
            yield f"{o['kind']}/{o['metadata']['name']}", o["spec"]["template"]["spec"]


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    """name -> value, or the valueFrom mapping."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}
