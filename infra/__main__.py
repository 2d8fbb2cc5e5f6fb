"""The Pulumi program: read the stack's config, deploy Redis and the services, export.

`pulumi up -s dev` / `-s prod`; what each stack means is in `Pulumi.<stack>.yaml`.
"""

import sys
from pathlib import Path

# Pulumi runs this directory as a script, with infra/ itself first on sys.path. Swap it for
# the repository root: the program's modules are then the `infra` package, as the tests
# import them, and none of them can shadow a top-level module (`redis`, say). Hence the
# imports below come after it (E402).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import pulumi  # noqa: E402
import pulumi_kubernetes as k8s  # noqa: E402

from infra import values  # noqa: E402
from infra.kube import LABELS  # noqa: E402
from infra.loadtest import LoadtestSettings, loadtest_command  # noqa: E402
from infra.loadtest_component import LoadtestComponent  # noqa: E402
from infra.redis_component import RedisComponent  # noqa: E402
from infra.services_component import ServicesComponent  # noqa: E402
from infra.settings import OBJECT_KEYS, STRING_KEYS, StackSettings  # noqa: E402

config = pulumi.Config()
raw = {key: config.get(key) for key in STRING_KEYS} | {
    key: config.get_object(key) for key in OBJECT_KEYS
}
settings = StackSettings.from_config(
    pulumi.get_stack(), {k: v for k, v in raw.items() if v is not None}
)

namespace = k8s.core.v1.Namespace(
    "namespace",
    metadata=k8s.meta.v1.ObjectMetaArgs(name=settings.namespace, labels=LABELS),
)
namespace_name = namespace.metadata.apply(lambda meta: meta.name or settings.namespace)
redis = RedisComponent("redis", settings, namespace_name)
services = ServicesComponent(
    "services", settings, namespace_name, redis, config.get_secret("databaseUrl")
)
# The at-scale load suites: off unless `course-redis:loadtest` says `enabled: true`.
loadtest_settings = LoadtestSettings.from_config(
    config.get_object("loadtest"), f"Pulumi.{settings.env}.yaml"
)
loadtest = (
    LoadtestComponent("loadtest", settings, loadtest_settings, namespace_name, services)
    if loadtest_settings.enabled
    else None
)

pulumi.export("namespace", namespace_name)
pulumi.export("redisMode", settings.redis.mode)
pulumi.export("redisEndpoints", values.redis_endpoints(settings))
if settings.redis.mode == "cluster":
    pulumi.export("redisClusterNodes", ",".join(values.redis_nodes(settings)))
else:
    pulumi.export("redisUrl", values.redis_url(settings))
pulumi.export("redisAdminUser", values.ADMIN_USER)
pulumi.export("redisAdminPassword", redis.admin_password)  # secret: --show-secrets to see it
pulumi.export(
    "secretNames",
    {
        "redisAdmin": values.SECRETS.admin,
        "redisAcl": values.SECRETS.acl,
        "redisExporter": values.SECRETS.exporter,
        "redisUsers": {s: values.SECRETS.service(s) for s in redis.service_passwords},
        "redisLoadtest": values.SECRETS.loadtest,
        "jwtSigningKey": values.SECRETS.jwt_private,
        "jwtPublicKeys": values.SECRETS.jwt_public,
        "database": values.SECRETS.database,
        "smokeAccount": values.SECRETS.smoke,
    },
)
pulumi.export("gatewayService", values.gateway_service(settings))
pulumi.export("gatewayUrl", values.gateway_url(settings))
pulumi.export("smokeCommand", values.smoke_command(settings))
if loadtest is not None:
    pulumi.export("loadtestCommand", loadtest_command(settings, loadtest_settings))
