"""`RedisComponent`: the Redis chart, its generated passwords and the Secrets holding them."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from courseredis.acl import LOADTEST_USER
from courseredis.services import registry
from infra.credentials import acl_file
from infra.kube import chart_path, secret
from infra.settings import StackSettings
from infra.values import (
    ACL_FILE_KEY,
    ADMIN_USER,
    EXPORTER_USER,
    REDIS_CHART,
    REDIS_NAME,
    REPLICATION_ACCOUNT,
    SECRETS,
    redis_chart_values,
)


def generated_password(name: str, parent: pulumi.Resource, length: int = 40) -> pulumi.Output[str]:
    """A password made once and kept in the stack's state, as a secret output.

    Letters and digits only: the ACL file and redis.conf split on whitespace and give quotes
    meaning, and 40 alphanumerics are still ~238 bits. The random provider marks `result`
    secret in the engine; wrapping it here keeps it secret wherever it flows in this
    program, tests with mocks included.
    """
    password = random.RandomPassword(
        name, length=length, special=False, opts=pulumi.ResourceOptions(parent=parent)
    )
    return pulumi.Output.secret(password.result)


class RedisComponent(pulumi.ComponentResource):
    """Redis for one stack: passwords, Secrets (credentials and ACL file) and the chart."""

    admin_password: pulumi.Output[str]
    service_passwords: dict[str, pulumi.Output[str]]
    exporter_password: pulumi.Output[str]
    replication_password: pulumi.Output[str]
    loadtest_password: pulumi.Output[str]
    chart: k8s.helm.v4.Chart

    def __init__(
        self,
        name: str,
        settings: StackSettings,
        namespace: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("course-redis:index:Redis", name, None, opts)

        self.admin_password = generated_password(f"{name}-admin-password", self)
        self.exporter_password = generated_password(f"{name}-exporter-password", self)
        self.replication_password = generated_password(f"{name}-replication-password", self)
        self.service_passwords = {
            service: generated_password(f"{name}-{service}-password", self)
            for service in registry.NAMES
        }
        # The redis_direct load suite's own user (courseredis.acl.loadtest_user), in every
        # stack: switching the load suite on must not change the ACL file Redis runs with.
        self.loadtest_password = generated_password(f"{name}-loadtest-password", self)

        credentials = [
            secret(
                self,
                SECRETS.admin,
                namespace,
                {"username": ADMIN_USER, "password": self.admin_password},
            ),
            secret(
                self,
                SECRETS.exporter,
                namespace,
                {"username": EXPORTER_USER, "password": self.exporter_password},
            ),
            secret(
                self,
                SECRETS.replication,
                namespace,
                {"username": REPLICATION_ACCOUNT, "password": self.replication_password},
            ),
            *(
                secret(
                    self,
                    SECRETS.service(service),
                    namespace,
                    {"username": service, "password": password},
                )
                for service, password in self.service_passwords.items()
            ),
            secret(
                self,
                SECRETS.loadtest,
                namespace,
                {"username": LOADTEST_USER, "password": self.loadtest_password},
            ),
        ]
        # Rendered inside apply, from the secret outputs: the file holds every password, so
        # it must never exist as a plain value in the program or its state.
        acl_text = pulumi.Output.all(
            self.admin_password,
            self.exporter_password,
            self.replication_password,
            self.loadtest_password,
            *self.service_passwords.values(),
        ).apply(
            lambda passwords: acl_file(
                admin_password=passwords[0],
                exporter_password=passwords[1],
                replication_password=passwords[2],
                loadtest_password=passwords[3],
                service_passwords=dict(zip(self.service_passwords, passwords[4:], strict=True)),
            )
        )
        acl = secret(self, SECRETS.acl, namespace, {ACL_FILE_KEY: pulumi.Output.secret(acl_text)})

        self.chart = k8s.helm.v4.Chart(
            REDIS_NAME,
            chart=chart_path(REDIS_CHART),
            name=REDIS_NAME,
            namespace=namespace,
            values=redis_chart_values(settings),
            # Pods would wait for their Secrets anyway; saying so orders the deploy.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*credentials, acl]),
        )
        self.register_outputs(
            {
                "adminPassword": self.admin_password,
                "serviceSecrets": {s: SECRETS.service(s) for s in registry.NAMES},
            }
        )
