"""A load suite: its options, and its listeners on Locust's events from init to quitting."""

from __future__ import annotations

import logging
import random
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from locust import events
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from loadtests import target
from loadtests.common.addresses import ClientAddresses
from loadtests.common.collector import COLLECTOR_KEY
from loadtests.common.findings import Finding
from loadtests.common.metrics import scrape
from loadtests.common.options import Option, add_options, common_options, option
from loadtests.common.report import report_run
from loadtests.common.run_state import RunState, current, set_current

log = logging.getLogger("loadtests")


@dataclass
class Suite:
    name: str
    p95_ms: float
    options: list[Option] = field(default_factory=list)
    # Scrapes of services' /metrics before and after the run: name -> service.
    metrics_services: tuple[str, ...] = ()
    analyse: Callable[[RunState], Finding] | None = None
    on_start: Callable[[RunState], None] | None = None
    needs_gateway: bool = True

    def all_options(self) -> list[Option]:
        return [*common_options(self.p95_ms), *self.options]

    def install(self) -> None:
        """Register the suite's options and listeners on Locust's events."""
        hooks: Any = events  # Locust's EventHook.add_listener carries no annotations
        hooks.init_command_line_parser.add_listener(
            lambda parser, **_: add_options(parser, self.all_options())
        )
        hooks.init.add_listener(self._on_init)
        hooks.test_start.add_listener(self._on_test_start)
        hooks.report_to_master.add_listener(self._on_report_to_master)
        hooks.worker_report.add_listener(self._on_worker_report)
        hooks.quitting.add_listener(self._on_quitting)

    def _on_init(self, environment: Environment, **_: Any) -> None:
        if isinstance(environment.runner, WorkerRunner):
            return  # the master's options and host arrive with its spawn message
        options = environment.parsed_options
        if options is not None and not int(options.seed):
            # Drawn here, on the master, so that it travels to every worker with the
            # options: the workers then agree on whatever the seed decides (hot courses).
            options.seed = random.SystemRandom().randrange(1, 2**31)
        if environment.host or not self.needs_gateway:
            return
        stack = target.stack_document(option(environment, "stack_file"))
        url = target.gateway_url(stack)
        if url is None:
            log.error(
                "no gateway URL: pass --host (or LOCUST_HOST), or start the local stack "
                "(`make up`) so that %s names it",
                option(environment, "stack_file"),
            )
            raise SystemExit(2)
        environment.host = url

    def _on_test_start(self, environment: Environment, **_: Any) -> None:
        seed = int(option(environment, "seed")) or random.SystemRandom().randrange(1, 2**31)
        environment.parsed_options.seed = seed  # type: ignore[union-attr]
        worker_index = max(0, getattr(environment.runner, "worker_index", 0))
        rng = random.Random(seed * 1009 + worker_index)
        stack = target.stack_document(option(environment, "stack_file"))
        run = RunState(
            environment=environment,
            suite=self,
            rng=rng,
            seed=seed,
            stack=stack,
            addresses=ClientAddresses(option(environment, "client_network"), rng),
        )
        if self.needs_gateway:
            run.accounts = target.accounts(option(environment, "credentials_file") or None, stack)
        set_current(run)
        if isinstance(environment.runner, MasterRunner):
            run.extras["workers"] = environment.runner.worker_count
        if not isinstance(environment.runner, WorkerRunner):
            for service in self.metrics_services:
                run.metrics_before[service] = scrape(run, service)
        if self.on_start is not None:
            self.on_start(run)

    def _on_report_to_master(self, data: dict[str, Any], **_: Any) -> None:
        run = current()
        if run is not None:
            data[COLLECTOR_KEY] = run.collector.drain()

    def _on_worker_report(self, data: dict[str, Any], **_: Any) -> None:
        run = current()
        if run is not None:
            run.collector.merge(data.get(COLLECTOR_KEY))

    def _on_quitting(self, environment: Environment, **_: Any) -> None:
        if isinstance(environment.runner, WorkerRunner):
            return
        try:
            summary = report_run(self, environment)
        except Exception:
            log.error(
                "the %s suite could not evaluate its gates:\n%s", self.name, traceback.format_exc()
            )
            environment.process_exit_code = 2
            return
        environment.process_exit_code = 0 if summary["passed"] else 1
