"""The machines the Redis nodes run on, through testinfra.

A host is a testinfra spec: `local://` (the local stack: every node on this machine),
`kubectl://redis-0?namespace=course-redis-prod&container=redis` (one pod per node, matched
to the node whose host name starts with the pod's name), `ssh://user@host` (matched to the
node on that host). With a single host, every node is on it.

Pods of the official Redis image have neither `ps` nor `ss`: the process is then found in
`/proc` and the port through `redis-cli`, whose `PING` answers `PONG` or, since the
`default` user is off, `NOAUTH`; either proves a Redis listens there, with no password on
any command line.
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import testinfra  # type: ignore[import-untyped]  # no type information
from testinfra.host import Host  # type: ignore[import-untyped]

from courseredis.engines import SERVER_NAMES
from courseredis.topology import split_addr


@dataclass(frozen=True)
class HostSpec:
    spec: str
    backend: str  # local, kubectl, ssh, paramiko, docker, ...
    name: str  # the pod, the machine or the container; "localhost" for local://
    namespace: str | None = None

    @classmethod
    def parse(cls, spec: str) -> HostSpec:
        parts = urlsplit(spec if "://" in spec else f"ssh://{spec}")
        backend = parts.scheme or "ssh"
        if backend == "local":
            return cls(spec, "local", "localhost")
        name = parts.hostname or parts.netloc.rpartition("@")[2]
        if not name:
            raise ValueError(f"testinfra host {spec!r} names no host")
        namespaces = parse_qs(parts.query).get("namespace")
        namespace = namespaces[0] if namespaces else None
        return cls(spec, backend, name, namespace)


def nodes_on(spec: HostSpec, specs: list[HostSpec], nodes: list[str]) -> list[str]:
    """The nodes that run on `spec`: all of them when it is the only host, else those whose
    host is its name or starts with it as a DNS label (`redis-0.redis-headless...`)."""
    if len(specs) == 1:
        return list(nodes)
    return [
        node
        for node in nodes
        if (host := split_addr(node)[0]) == spec.name or host.startswith(spec.name + ".")
    ]


def machine_of(spec: HostSpec, kubectl: str) -> str:
    """The machine a host is: the Kubernetes node of a pod, else the host itself."""
    if spec.backend != "kubectl":
        return spec.name
    command = [kubectl, "get", "pod", spec.name, "--output", "jsonpath={.spec.nodeName}"]
    if spec.namespace:
        command += ["--namespace", spec.namespace]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"cannot tell the node of pod {spec.name}: {exc}") from None
    if result.returncode != 0 or not result.stdout.strip():
        reason = result.stderr.strip() or "no nodeName"
        raise RuntimeError(f"cannot tell the node of pod {spec.name}: {reason}")
    return result.stdout.strip()


def placement_problems(masters: list[tuple[str, list[str]]], machine: dict[str, str]) -> list[str]:
    """Each master (address, its replicas' addresses) sharing a machine with a replica."""
    return [
        f"master {master} and its replica {replica} are both on {machine[master]}"
        for master, replicas in masters
        for replica in replicas
        if master in machine and machine.get(replica) == machine[master]
    ]


_HOSTS: dict[str, Host] = {}


def get_host(spec: str) -> Host:
    if spec not in _HOSTS:
        _HOSTS[spec] = testinfra.get_host(spec)
    return _HOSTS[spec]


def redis_processes(host: Host) -> list[tuple[int, str]]:
    """(pid, command line) of every redis-server or valkey-server on the host.

    Redis rewrites its process title to `redis-server <addr>:<port> [cluster]` (Valkey to
    `valkey-server ...`), which is what names the node a process serves.
    """
    if host.exists("ps"):
        return [
            (int(p.pid), str(p.args))
            for server in SERVER_NAMES
            for p in host.process.filter(comm=server)
        ]
    script = (
        "for d in /proc/[0-9]*; do "
        '[ -r "$d/cmdline" ] || continue; '
        'printf "%s\\t%s\\t" "${d#/proc/}" "$(cat "$d/comm" 2>/dev/null)"; '
        'tr "\\000" " " < "$d/cmdline"; echo; '
        "done"
    )
    out = host.check_output(f"sh -c {shlex.quote(script)}")
    found = []
    for line in str(out).splitlines():
        pid, _, rest = line.partition("\t")
        name, _, command = rest.partition("\t")
        if name in SERVER_NAMES and pid.isdigit():
            found.append((int(pid), command.strip()))
    return found


def serves_port(command: str, port: int) -> bool:
    """Whether a redis-server process title says it serves `port`."""
    return any(word.endswith(f":{port}") for word in command.split()[1:])


def listening(host: Host, port: int) -> tuple[bool, str]:
    """Whether something listens on TCP `port`, and how that was found out."""
    if host.exists("ss") or host.exists("netstat"):
        sockets = host.socket.get_listening_sockets()
        return any(s.startswith("tcp://") and s.endswith(f":{port}") for s in sockets), "ss"
    for cli in ("redis-cli", "valkey-cli"):  # the official images have their engine's own
        if host.exists(cli):
            result = host.run(f"{cli} -h 127.0.0.1 -p {port} PING")
            out = f"{result.stdout}{result.stderr}"
            return "PONG" in out or "NOAUTH" in out, f"{cli} PING: {out.strip()[:100]}"
    raise RuntimeError(
        "the host has neither ss, netstat, redis-cli nor valkey-cli: cannot check the port"
    )


def read_config(host: Host, path: str) -> dict[str, str]:
    """The directives of a redis.conf on the host, following `include` one level deep.

    Only directive names and values are returned; the caller compares a few of them and
    never prints the file (it may hold `masterauth`).
    """
    directives: dict[str, str] = {}

    def parse(text: str, depth: int) -> None:
        for line in text.splitlines():
            words = line.strip().split(maxsplit=1)
            if not words or words[0].startswith("#"):
                continue
            name = words[0].lower()
            value = words[1].strip() if len(words) > 1 else ""
            if name == "include" and depth == 0:
                included = host.file(value.strip('"'))
                if included.exists:
                    parse(included.content_string, depth + 1)
                continue
            directives[name] = value.strip('"')

    config = host.file(path)
    if not config.exists:
        raise FileNotFoundError(path)
    parse(config.content_string, 0)
    return directives
