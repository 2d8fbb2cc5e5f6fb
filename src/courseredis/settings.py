"""Settings read from the environment: one `BaseSettings` per concern."""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from courseredis.topology import split_addr


class RedisSettings(BaseSettings):
    """How to reach Redis: a single node by URL, or a cluster by a list of nodes.

    Environment variables: REDIS_URL or REDIS_CLUSTER_NODES (comma-separated host:port),
    REDIS_USERNAME, REDIS_PASSWORD, REDIS_TLS, REDIS_TLS_CA_FILE, REDIS_ADDRESS_MAP, and the
    timeouts below.
    """

    model_config = SettingsConfigDict(env_prefix="REDIS_", extra="ignore")

    url: str | None = None
    cluster_nodes: Annotated[list[str], NoDecode] = Field(default_factory=list)
    username: str | None = None
    password: SecretStr | None = None
    tls: bool = False
    tls_ca_file: str | None = None
    # Host name -> IP, for a cluster whose nodes announce names this machine cannot resolve
    # (the rehearsal's pod DNS names, from the host): applied to the addresses the cluster
    # gives (CLUSTER SLOTS) with redis-py's `address_remap`. REDIS_ADDRESS_MAP, as JSON.
    address_map: dict[str, str] = Field(default_factory=dict)

    # A request-path client must give up quickly: a gateway request waits for these.
    socket_timeout_s: float = Field(default=1.0, gt=0)
    connect_timeout_s: float = Field(default=1.0, gt=0)
    # A failover takes cluster-node-timeout (2 s here) plus promotion, about 3.5 s, which
    # jittered backoff capped at 1 s over 6 retries spans. redis-py's asyncio cluster client
    # (the services') re-reads the layout and retries without that wait, though: during a
    # failover the services answer quick 503s with Retry-After (docs/chaos.md, scenario 1).
    retries: int = Field(default=6, ge=0, le=20)
    retry_backoff_base_s: float = Field(default=0.05, gt=0)
    retry_backoff_cap_s: float = Field(default=1.0, gt=0)
    # Per node. Past it a command fails at once (MaxConnectionsError) instead of queueing
    # behind a stuck node; 256 covers a service worker at full concurrency.
    max_connections: int = Field(default=256, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _split_nodes(cls, data: object) -> object:
        if isinstance(data, dict) and isinstance(data.get("cluster_nodes"), str):
            text = data["cluster_nodes"]
            data = {**data, "cluster_nodes": [n.strip() for n in text.split(",") if n.strip()]}
        return data

    @model_validator(mode="after")
    def _one_target(self) -> Self:
        if bool(self.url) == bool(self.cluster_nodes):
            raise ValueError("set exactly one of REDIS_URL and REDIS_CLUSTER_NODES")
        for node in self.cluster_nodes:
            try:
                valid = 0 < split_addr(node)[1] < 65536
            except ValueError:
                valid = False
            if not valid:
                raise ValueError(f"cluster node {node!r} is not host:port")
        return self

    @property
    def is_cluster(self) -> bool:
        return bool(self.cluster_nodes)

    @classmethod
    def for_nodes(
        cls,
        nodes: list[str],
        *,
        cluster: bool,
        username: str | None = None,
        password: str | None = None,
        **overrides: object,
    ) -> RedisSettings:
        """Settings for known nodes (the local stack, the test fixtures), ignoring the env."""
        target: dict[str, object] = (
            {"cluster_nodes": nodes} if cluster else {"url": f"redis://{nodes[0]}/0"}
        )
        return cls.model_validate(
            {**target, "username": username, "password": password, **overrides}
        )
