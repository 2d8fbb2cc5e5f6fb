"""The suites' command-line options, each with its environment variable, and reading them.

Registered on Locust's parser (`init_command_line_parser`), so `locust -f <suite>.py --help`
lists them and the master's values travel to every worker.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from locust.argument_parser import LocustArgumentParser
from locust.env import Environment

from courseredis.services.db.seed import DEFAULT_COURSES
from loadtests import target
from loadtests.target import TargetError

# RFC 2544's benchmarking network: addresses that can never be a real client's.
DEFAULT_CLIENT_NETWORK = "198.18.0.0/15"
# The courses `python -m courseredis.services.db seed` makes by default (ids 1..n).
SEEDED_COURSES = DEFAULT_COURSES


@dataclass(frozen=True)
class Option:
    """A command-line option with its environment variable; gates name both when missed."""

    flag: str  # --max-p95-ms
    env_var: str  # LOAD_MAX_P95_MS
    default: Any
    help: str
    kind: Callable[[str], Any] = float

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


def common_options(p95_ms: float, error_ratio: float = 0.01) -> list[Option]:
    return [
        Option(
            "--stack-file",
            "LOAD_STACK_FILE",
            target.DEFAULT_STACK_FILE,
            "the local stack's state: default gateway, accounts, /metrics, Redis",
            str,
        ),
        Option(
            "--credentials-file",
            "LOAD_CREDENTIALS_FILE",
            "",
            "demo accounts (the JSON `python -m courseredis.services.db seed` prints); "
            "default: the stack file's",
            str,
        ),
        Option(
            "--summary-dir",
            "LOAD_SUMMARY_DIR",
            "",
            "where summary.json goes (default reports/load/<suite>)",
            str,
        ),
        Option(
            "--client-network",
            "LOAD_CLIENT_NETWORK",
            DEFAULT_CLIENT_NETWORK,
            "simulated client IPs are drawn from this network and sent as X-Forwarded-For "
            "(the gateway believes it from trusted proxies only); '' sends none",
            str,
        ),
        Option(
            "--refresh-after-s",
            "LOAD_REFRESH_AFTER_S",
            0.0,
            "refresh an access token once it is this old (0: at 80%% of its lifetime)",
        ),
        Option(
            "--seed", "LOAD_SEED", 0, "random seed (0: a fresh one, recorded in the summary)", int
        ),
        Option(
            "--max-error-ratio",
            "LOAD_MAX_ERROR_RATIO",
            error_ratio,
            "gate: failed requests / requests at most this",
        ),
        Option(
            "--max-p95-ms",
            "LOAD_MAX_P95_MS",
            p95_ms,
            "gate: 95th percentile latency (ms) of the suite's requests at most this",
        ),
        Option(
            "--max-p99-ms",
            "LOAD_MAX_P99_MS",
            0.0,
            "gate: 99th percentile latency (ms) at most this (0: no gate)",
        ),
        Option(
            "--max-user-exceptions",
            "LOAD_MAX_USER_EXCEPTIONS",
            0.0,
            "gate: exceptions raised in the locustfile's own code at most this",
        ),
    ]


def courses_option() -> Option:
    return Option(
        "--courses",
        "LOAD_COURSES",
        SEEDED_COURSES,
        f"courses in the database (ids 1..n; the seed makes {SEEDED_COURSES})",
        int,
    )


def add_options(parser: LocustArgumentParser, options: Sequence[Option]) -> None:
    group = parser.add_argument_group("courseredis load suite")
    for option in options:
        group.add_argument(
            option.flag,
            type=option.kind,
            default=option.default,
            env_var=option.env_var,
            help=f"{option.help} [env {option.env_var}; default {option.default!r}]",
        )


def option(environment: Environment, name: str) -> Any:
    options = environment.parsed_options
    if options is None:
        raise TargetError("Locust's options are not parsed yet")
    return getattr(options, name)
