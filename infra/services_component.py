"""`ServicesComponent`: the services chart, the JWT signing key and the database Secret."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from infra.kube import chart_path, secret
from infra.redis_component import RedisComponent, generated_password
from infra.settings import StackSettings
from infra.values import SECRETS, SERVICES_CHART, ephemeral_database_url, services_chart_values


class ServicesComponent(pulumi.ComponentResource):
    """The services of `courseredis.services.registry`, each with its own Redis user."""

    jwt_secret: pulumi.Output[str]
    chart: k8s.helm.v4.Chart

    def __init__(
        self,
        name: str,
        settings: StackSettings,
        namespace: pulumi.Input[str],
        redis: RedisComponent,
        database_url: pulumi.Output[str] | None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("course-redis:index:Services", name, None, opts)
        if database_url is None:
            if not settings.services.ephemeral_database:
                raise ValueError(
                    f"stack {settings.env}: set the database, "
                    "`pulumi config set --secret databaseUrl postgresql+asyncpg://...` "
                    "(or services.ephemeralDatabase: true for a throwaway SQLite per pod)"
                )
            database_url = pulumi.Output.secret(ephemeral_database_url())

        # HS256 wants at least 256 bits of key; 64 alphanumerics are ~380.
        self.jwt_secret = generated_password(f"{name}-jwt-secret", self, length=64)
        secrets = [
            secret(self, SECRETS.jwt, namespace, {"secret": self.jwt_secret}),
            secret(self, SECRETS.database, namespace, {"url": pulumi.Output.secret(database_url)}),
        ]
        self.chart = k8s.helm.v4.Chart(
            name,
            chart=chart_path(SERVICES_CHART),
            name=name,
            namespace=namespace,
            values=services_chart_values(settings),
            # The Redis users' Secrets come with Redis; and services started before Redis
            # only fail their readiness, so roll them out once Redis is up.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*secrets, redis]),
        )
        self.register_outputs({"jwtSecret": self.jwt_secret})
