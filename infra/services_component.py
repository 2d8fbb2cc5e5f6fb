"""`ServicesComponent`: the services chart, the token signing keys, the database Secret and
the smoke account's."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s
import pulumi_tls as tls

from infra.kube import chart_path, secret
from infra.redis_component import RedisComponent, generated_password
from infra.settings import StackSettings
from infra.values import (
    JWT_PRIVATE_KEY_FILE,
    JWT_PUBLIC_KEYS_FILE,
    SECRETS,
    SERVICES_CHART,
    SMOKE_ACCOUNT,
    ephemeral_database_url,
    services_chart_values,
)


class ServicesComponent(pulumi.ComponentResource):
    """The services of `courseredis.services.registry`, each with its own Redis user.

    Access tokens are signed with Ed25519 (docs/security.md): one key pair per generation
    the stack config publishes (`services.jwtKeys`), generated here and kept in the state.
    The private key of the signing generation goes to its own Secret, which the chart gives
    to the signing service alone; the public keys of every published generation, one PEM
    after the other, to another, which every service gets.

    The post-deploy smoke suite's student (issue 14) has a generated password, kept in the
    state as a secret output, in a Secret the chart gives only to the `prepare-database`
    init containers, which create the account before the services start; `smokeCommand`
    names the Secret, never the password.
    """

    signing_keys: dict[int, tls.PrivateKey]
    smoke_password: pulumi.Output[str]
    private_keys: dict[int, pulumi.Output[str]]
    public_keys: pulumi.Output[str]
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

        jwt_keys = settings.services.jwt_keys
        # Named by generation, so publishing generation 2 adds a key and leaves 1 as it was,
        # and retiring 1 deletes its pair from the state.
        self.signing_keys = {
            generation: tls.PrivateKey(
                f"{name}-jwt-key-{generation}",
                algorithm="ED25519",
                opts=pulumi.ResourceOptions(parent=self),
            )
            for generation in jwt_keys.published
        }
        # PKCS#8, what the services read (courseredis.services.tokens.SigningKey); secret
        # wherever it flows in this program, as the provider marks it in the engine.
        self.private_keys = {
            generation: pulumi.Output.secret(key.private_key_pem_pkcs8)
            for generation, key in self.signing_keys.items()
        }
        private_key = self.private_keys[jwt_keys.signing]
        self.public_keys = pulumi.Output.all(
            *(key.public_key_pem for key in self.signing_keys.values())
        ).apply(lambda pems: "".join(pem if pem.endswith("\n") else pem + "\n" for pem in pems))
        self.smoke_password = generated_password(f"{name}-smoke-password", self)
        secrets = [
            secret(self, SECRETS.jwt_private, namespace, {JWT_PRIVATE_KEY_FILE: private_key}),
            secret(self, SECRETS.jwt_public, namespace, {JWT_PUBLIC_KEYS_FILE: self.public_keys}),
            secret(self, SECRETS.database, namespace, {"url": pulumi.Output.secret(database_url)}),
            secret(
                self,
                SECRETS.smoke,
                namespace,
                {"username": SMOKE_ACCOUNT, "password": self.smoke_password},
            ),
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
        # The public keys only: no signing secret leaves the component.
        self.register_outputs({"jwtPublicKeys": self.public_keys})
