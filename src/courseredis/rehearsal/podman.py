"""The one way the rehearsal calls podman: rootful, `runc`, explicit ulimits, a conf of its own.

Every call goes through `Podman.run` with `CONTAINERS_CONF` pointing at a containers.conf the
rehearsal writes itself (never /etc/containers): on VMs that refuse to raise rlimits every
container start fails with `setrlimit ... operation not permitted` unless the container's
ulimits are at or below the host's hard limits, and `crun` fails where `runc` works.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# What a container gets when the host allows it: enough for redis-server (maxclients) and
# uvicorn; never more than the host's hard limit, which the VM will not raise.
WANTED_NOFILE = 10240
WANTED_NPROC = 4096
# Every object the rehearsal creates carries this label, so cleanup can find by id what a
# crashed run left behind, and never touch anything else.
LABEL = "io.courseredis.rehearsal"


class PodmanError(RuntimeError):
    """A podman command failed; the message carries the command and podman's own words."""


class PodmanMissingError(PodmanError):
    """podman (or runc) is not installed: `scripts/setup.sh` installs both."""


def ulimits(
    hard_nofile: int | None = None, hard_nproc: int | None = None
) -> dict[str, tuple[int, int]]:
    """The ulimits every container gets: what it wants, capped at the host's hard limits."""

    def capped(wanted: int, hard: int) -> int:
        return wanted if hard == resource.RLIM_INFINITY or hard < 0 else min(wanted, hard)

    nofile = (
        hard_nofile if hard_nofile is not None else resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    )
    nproc = hard_nproc if hard_nproc is not None else resource.getrlimit(resource.RLIMIT_NPROC)[1]
    limit_nofile = capped(WANTED_NOFILE, nofile)
    limit_nproc = capped(WANTED_NPROC, nproc)
    return {"nofile": (limit_nofile, limit_nofile), "nproc": (limit_nproc, limit_nproc)}


def containers_conf(limits: Mapping[str, tuple[int, int]]) -> str:
    """The rehearsal's containers.conf (TOML): runc, netavark, explicit ulimits."""
    quoted = ", ".join(f'"{name}={soft}:{hard}"' for name, (soft, hard) in sorted(limits.items()))
    return (
        "# Written by courseredis.rehearsal: the only podman settings the rehearsal relies on.\n"
        "[containers]\n"
        f"default_ulimits = [{quoted}]\n"
        "\n[engine]\n"
        'runtime = "runc"\n'
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n'
        "\n[network]\n"
        'network_backend = "netavark"\n'
    )


@dataclass
class Podman:
    """podman with the rehearsal's containers.conf, written into `state_dir`."""

    state_dir: Path
    executable: str = "podman"

    def __post_init__(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.conf_path = self.state_dir / "containers.conf"
        text = containers_conf(ulimits())
        if not self.conf_path.exists() or self.conf_path.read_text() != text:
            self.conf_path.write_text(text)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "CONTAINERS_CONF": str(self.conf_path)}

    def available(self) -> bool:
        return shutil.which(self.executable) is not None and shutil.which("runc") is not None

    def run(
        self,
        args: Sequence[str],
        *,
        check: bool = True,
        input_bytes: bytes | None = None,
        timeout: float | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run `podman <args>`; on failure raise PodmanError with its stderr. `env` is added
        to podman's own environment (`--env NAME` then copies a value from it: values
        never appear on a command line, and may hold newlines, as PEM keys do)."""
        if shutil.which(self.executable) is None:
            raise PodmanMissingError(
                "podman is not installed: run scripts/setup.sh (installs podman, runc, "
                "netavark and debootstrap from Debian's packages)"
            )
        command = [self.executable, *args]
        environment = {**self.env, **(env or {})}
        try:
            if input_bytes is None:
                done = subprocess.run(
                    command, capture_output=True, text=True, env=environment, timeout=timeout
                )
            else:
                raw = subprocess.run(
                    command,
                    capture_output=True,
                    input=input_bytes,
                    env=environment,
                    timeout=timeout,
                )
                done = subprocess.CompletedProcess(
                    raw.args,
                    raw.returncode,
                    raw.stdout.decode(errors="replace"),
                    raw.stderr.decode(errors="replace"),
                )
        except subprocess.TimeoutExpired as exc:
            raise PodmanError(f"podman {' '.join(args)}: no answer in {timeout} s") from exc
        if check and done.returncode != 0:
            raise PodmanError(
                f"podman {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}"
            )
        return done

    def json(self, args: Sequence[str]) -> Any:
        output = self.run(args).stdout.strip()
        return json.loads(output) if output else None

    def image_label(self, reference: str, label: str) -> str | None:
        """A label of a local image, or None when there is no such image (or label)."""
        done = self.run(["image", "inspect", "--format", "json", reference], check=False)
        if done.returncode != 0:
            return None
        images = json.loads(done.stdout or "[]")
        if not images:
            return None
        labels = images[0].get("Labels") or images[0].get("Config", {}).get("Labels") or {}
        value = labels.get(label)
        return str(value) if value is not None else None

    def image_id(self, reference: str) -> str | None:
        done = self.run(["image", "inspect", "--format", "{{.Id}}", reference], check=False)
        return done.stdout.strip() or None if done.returncode == 0 else None
