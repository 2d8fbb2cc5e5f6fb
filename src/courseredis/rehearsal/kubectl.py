#!/usr/bin/env python3
"""`kubectl` in the rehearsal's smoke container: the three calls the smoke suite makes,
answered by the rehearsal's controller from the rehearsal's own state.

The smoke suite (`smoke/`) reads Secrets (`get secret NAME --namespace NS --output json`),
each Redis pod's node (`get pod NAME --output jsonpath={.spec.nodeName} [--namespace NS]`)
and runs its host checks through testinfra's kubectl backend
(`-n NS -c CONTAINER exec POD -- /bin/sh -c CMD`). There is no API server here, so this
file is installed as `kubectl` on the smoke container's PATH (mounted read-only): it
forwards its argv to the controller through the requests directory (mounted from the
run's state directory, `REQUESTS_ENV` names it), waits for the answer, prints its stdout
and stderr and exits with its code. The controller (`courseredis.rehearsal.daemon`)
answers with `answer()`: Secrets from the declared objects, every pod its own node (affinity
is not honoured: `NODE_NOT_HONOURED`), `exec` by `podman exec` into the pod's container.
Anything else exits 1 with `kubectl (rehearsal stand-in): unsupported: ...`.

This file is also the one home of the requests directory's protocol (`submit`,
`wait_answer`), which the command line uses for its own requests: request names are unique
across processes and containers, so concurrent calls never collide. It is stdlib only: it
runs under whatever python3 the smoke image has.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

REQUESTS_ENV = "COURSEREDIS_REHEARSAL_REQUESTS"
CONTAINER_REQUESTS = "/rehearsal/requests"  # where the smoke container mounts the directory
ANSWER_SUFFIX = ".done.json"
PREFIX = "kubectl (rehearsal stand-in)"
# Longer than any timeout the smoke suite gives its own kubectl calls (30 s).
CLIENT_TIMEOUT = 300.0
NODE_JSONPATH = "jsonpath={.spec.nodeName}"
NOT_FOUND = "Error from server (NotFound):"  # kubectl's words
# Every pod is its own node here, so the smoke suite's placement check (no master on the
# node of its replica) passes whatever the affinity says; the summary lists it.
NODE_NOT_HONOURED = (
    "Pod/*: spec.nodeName: every pod is its own node (kubectl stand-in: "
    "rehearsal-node-<pod>), so placement (affinity, topology spread) is not checked"
)


def node_name(pod: str) -> str:
    return f"rehearsal-node-{pod}"


# --- the requests directory --------------------------------------------------------------


def request_name() -> str:
    """Sorts by time; unique across processes and containers (pids repeat across them)."""
    return f"{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(4)}.json"


def submit(requests: Path, document: Mapping[str, Any]) -> Path:
    """Write a request atomically (mode 0600: answers and requests may hold passwords)."""
    path = requests / request_name()
    temporary = requests / f".{path.name}.tmp"  # not `*.json`: the controller skips it
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(document, handle)
    os.replace(temporary, path)
    return path


def answer_path(request: Path) -> Path:
    return request.with_name(request.name.removesuffix(".json") + ANSWER_SUFFIX)


def is_request(path: Path) -> bool:
    return path.name.endswith(".json") and not path.name.endswith(ANSWER_SUFFIX)


def wait_answer(request: Path, timeout: float, interval: float = 0.05) -> dict[str, Any] | None:
    """The controller's answer, None after `timeout`; both files are removed once read."""
    done = answer_path(request)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result: dict[str, Any] = json.loads(done.read_text())
        except (OSError, ValueError):  # not there yet, or not yet complete
            time.sleep(interval)
            continue
        for path in (request, done):
            path.unlink(missing_ok=True)
        return result
    request.unlink(missing_ok=True)
    return None


# --- what the controller answers -----------------------------------------------------------


class Unsupported(ValueError):
    """A kubectl call the stand-in does not answer."""


@dataclass(frozen=True)
class Call:
    verb: Literal["secret", "node", "exec"]
    name: str
    namespace: str
    container: str | None = None
    command: tuple[str, ...] = ()


@dataclass(frozen=True)
class Answer:
    code: int
    stdout: str = ""
    stderr: str = ""


# kubectl's value flags, in both spellings; any other flag is refused.
VALUE_FLAGS = {
    "-n": "namespace",
    "--namespace": "namespace",
    "-c": "container",
    "--container": "container",
    "-o": "output",
    "--output": "output",
}


def parse(argv: Sequence[str]) -> Call:
    """One of the three calls, or Unsupported naming the argv."""
    words = list(argv)
    command: list[str] = []
    if "--" in words:
        split = words.index("--")
        words, command = words[:split], words[split + 1 :]
    flags: dict[str, str] = {}
    positional: list[str] = []
    index = 0
    while index < len(words):
        word = words[index]
        name, equals, value = word.partition("=")
        if word.startswith("-"):
            if name not in VALUE_FLAGS:
                raise Unsupported(f"flag {word}")
            if not equals:
                index += 1
                if index == len(words):
                    raise Unsupported(f"flag {word} without a value")
                value = words[index]
            flags[VALUE_FLAGS[name]] = value
        else:
            positional.append(word)
        index += 1
    # Without --namespace kubectl uses its context's namespace: there is no context here.
    namespace = flags.get("namespace", "default")
    output, container = flags.get("output"), flags.get("container")
    if positional[:2] == ["get", "secret"] and len(positional) == 3 and not command:
        if output == "json" and container is None:
            return Call("secret", positional[2], namespace)
    elif positional[:2] == ["get", "pod"] and len(positional) == 3 and not command:
        if output == NODE_JSONPATH and container is None:
            return Call("node", positional[2], namespace)
    elif positional[:1] == ["exec"] and len(positional) == 2 and command and output is None:
        return Call("exec", positional[1], namespace, container, tuple(command))
    raise Unsupported(" ".join(argv))


class Cluster(Protocol):
    """What the answers read: the rehearsal's declared Secrets and its pods."""

    def secret(self, namespace: str, name: str) -> Mapping[str, str] | None:
        """The Secret's decoded data, None when it is not declared."""

    def containers(self, namespace: str, pod: str) -> list[str] | None:
        """The pod's running containers by name, None when there is no such pod."""

    def exec(self, namespace: str, pod: str, container: str, command: Sequence[str]) -> Answer:
        """Run `command` in the container; its exit code and output."""


def answer(argv: Sequence[str], cluster: Cluster) -> Answer:
    """What kubectl would print, and its exit code, in kubectl's own words on errors."""
    try:
        call = parse(argv)
    except Unsupported as exc:
        return Answer(1, stderr=f"{PREFIX}: unsupported: {exc}\n")
    if call.verb == "secret":
        data = cluster.secret(call.namespace, call.name)
        if data is None:
            return Answer(1, stderr=f'{NOT_FOUND} secrets "{call.name}" not found\n')
        document = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": call.name, "namespace": call.namespace},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        }
        return Answer(0, stdout=json.dumps(document, indent=4) + "\n")
    containers = cluster.containers(call.namespace, call.name)
    if containers is None:
        return Answer(1, stderr=f'{NOT_FOUND} pods "{call.name}" not found\n')
    if call.verb == "node":
        return Answer(0, stdout=node_name(call.name))  # jsonpath prints no newline
    # Without -c kubectl picks the pod's first container (no default-container annotation).
    container = call.container or (containers[0] if containers else "")
    if container not in containers:
        return Answer(
            1, stderr=f'error: unable to upgrade connection: container not found ("{container}")\n'
        )
    return cluster.exec(call.namespace, call.name, container, call.command)


# --- the client, in the smoke container ------------------------------------------------------


def main(argv: Sequence[str]) -> int:
    requests = Path(os.environ.get(REQUESTS_ENV, CONTAINER_REQUESTS))
    try:
        request = submit(requests, {"action": "kubectl", "argv": list(argv)})
    except OSError as exc:
        print(f"{PREFIX}: cannot reach the controller through {requests}: {exc}", file=sys.stderr)
        return 1
    result = wait_answer(request, CLIENT_TIMEOUT)
    if result is None:
        print(f"{PREFIX}: the controller did not answer in {CLIENT_TIMEOUT:.0f} s", file=sys.stderr)
        return 1
    if not result.get("ok"):
        print(f"{PREFIX}: the controller failed: {result.get('error')}", file=sys.stderr)
        return 1
    sys.stdout.write(str(result.get("stdout", "")))
    sys.stderr.write(str(result.get("stderr", "")))
    return int(result.get("code", 1))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
