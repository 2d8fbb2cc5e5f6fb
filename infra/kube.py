"""Small Kubernetes helpers the components share."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s

REPO_ROOT = Path(__file__).resolve().parents[1]
LABELS = {"app.kubernetes.io/part-of": "course-redis", "app.kubernetes.io/managed-by": "pulumi"}


def chart_path(relative: str) -> str:
    """A local chart's path relative to the working directory, so the input does not
    change with where the repository is checked out."""
    return os.path.relpath(REPO_ROOT / relative)


def secret(
    parent: pulumi.Resource,
    name: str,
    namespace: pulumi.Input[str],
    string_data: Mapping[str, pulumi.Input[str]],
) -> k8s.core.v1.Secret:
    """An Opaque Secret with a fixed name, since the charts refer to it by name.

    A fixed name cannot be created before the old object is gone, hence delete before
    replace; the Secret provider marks `stringData` secret in the state.
    """
    return k8s.core.v1.Secret(
        name,
        metadata=k8s.meta.v1.ObjectMetaArgs(name=name, namespace=namespace, labels=LABELS),
        type="Opaque",
        string_data=string_data,
        opts=pulumi.ResourceOptions(parent=parent, delete_before_replace=True),
    )
