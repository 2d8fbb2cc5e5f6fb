"""What a suite's analysis contributes to its summary: figures, gates and notes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from locust.env import Environment

from loadtests.common.options import option
from loadtests.common.run_state import current
from loadtests.gates import Gate


@dataclass(frozen=True)
class Finding:
    """What a suite contributes to its summary: figures, gates and notes."""

    figures: dict[str, Any]
    gates: list[Gate]
    notes: list[str] = field(default_factory=list)


def gate(
    environment: Environment,
    name: str,
    bound: Literal["max", "min"],
    dest: str,
    actual: float | None,
) -> Gate:
    """A gate whose threshold is the option `dest` (its flag and variable are looked up)."""
    run = current()
    suite = run.suite if run is not None else None
    options = suite.all_options() if suite else []
    found = next((o for o in options if o.dest == dest), None)
    return Gate(
        name=name,
        bound=bound,
        threshold=float(option(environment, dest)),
        actual=None if actual is None else float(actual),
        option=found.flag if found else f"--{dest.replace('_', '-')}",
        env_var=found.env_var if found else "",
    )
