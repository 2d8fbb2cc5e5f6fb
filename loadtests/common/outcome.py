"""One HTTP exchange as a user saw it, and the wait a 429 asks for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Outcome:
    """One HTTP exchange as a user saw it."""

    status: int
    headers: dict[str, str]
    body: Any
    sent: float  # wall clock, for checks across workers
    answered: float

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def detail(self) -> str:
        return str(self.body.get("detail", "")) if isinstance(self.body, dict) else ""


def retry_after_s(outcome: Outcome, default: float = 1.0) -> float:
    value = outcome.header("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else default
    except ValueError:
        return default
