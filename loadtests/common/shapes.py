"""Load shapes as tables of stages, scaled by the run's -u/--users and -t/--run-time."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

from locust import LoadTestShape


@dataclass(frozen=True)
class Stage:
    """Until `until` (a fraction of --run-time), run `users` (a fraction of --users),
    spawning `spawn_rate` users per second (0: --spawn-rate)."""

    until: float
    users: float
    spawn_rate: float = 0.0


class StageShape(LoadTestShape):
    """A load shape read from a table of stages, scaled by -u/--users and -t/--run-time.

    Without a run time (the web UI), the last stage holds until the run is stopped.
    """

    abstract = True
    use_common_options = True
    stages: ClassVar[tuple[Stage, ...]] = (Stage(1.0, 1.0),)

    def tick(self) -> tuple[int, float] | None:
        runner = self.runner
        options = runner.environment.parsed_options if runner else None
        users = int(getattr(options, "num_users", None) or 1)
        default_rate = float(getattr(options, "spawn_rate", None) or users)
        run_time = getattr(options, "run_time", None)
        elapsed = time.perf_counter() - self.start_time
        if run_time and elapsed >= run_time:
            return None
        fraction = elapsed / run_time if run_time else 0.0
        stage = next((s for s in self.stages if fraction < s.until), self.stages[-1])
        return max(1, round(users * stage.users)), stage.spawn_rate or default_rate
