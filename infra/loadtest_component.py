"""`LoadtestComponent`: the Locust chart (master, workers, the locustfiles' ConfigMap)."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from infra.kube import chart_path
from infra.loadtest import (
    LOCUST_CHART,
    LOCUST_RELEASE,
    LoadtestSettings,
    locust_chart_values,
    read_locustfiles,
)
from infra.settings import StackSettings


class LoadtestComponent(pulumi.ComponentResource):
    """One load suite run at scale, against the stack's own gateway."""

    chart: k8s.helm.v4.Chart

    def __init__(
        self,
        name: str,
        settings: StackSettings,
        loadtest: LoadtestSettings,
        namespace: pulumi.Input[str],
        services: pulumi.Resource,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("course-redis:index:Loadtest", name, None, opts)
        self.chart = k8s.helm.v4.Chart(
            name,
            chart=chart_path(LOCUST_CHART),
            name=LOCUST_RELEASE,
            namespace=namespace,
            values=locust_chart_values(settings, loadtest, read_locustfiles()),
            # Load only once the services it loads are rolled out.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[services]),
        )
        self.register_outputs({})
