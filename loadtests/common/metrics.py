"""The services' /metrics, scraped before and after a run for the suites' figures."""

from __future__ import annotations

import logging

from loadtests import target
from loadtests.analysis import Samples, merge_samples, parse_metrics
from loadtests.common.options import Option, option
from loadtests.common.run_state import RunState

log = logging.getLogger("loadtests")


def metrics_option(service: str) -> Option:
    return Option(
        f"--{service}-metrics-url",
        f"LOAD_{service.upper()}_METRICS_URL",
        "",
        f"the {service} service's /metrics, comma-separated for several pods "
        "(default: the local stack's)",
        str,
    )


def scrape(run: RunState, service: str) -> Samples:
    """Sum of a service's /metrics over the URLs it has ({} when none answers)."""
    urls = target.service_metrics_urls(
        option(run.environment, f"{service}_metrics_url") if _has_option(run, service) else None,
        run.stack,
        service,
    )
    parts = []
    for url in urls:
        try:
            parts.append(parse_metrics(target.fetch_text(url)))
        except OSError as error:
            log.warning("could not scrape %s: %s", url, error)
    return merge_samples(parts)


def _has_option(run: RunState, service: str) -> bool:
    return hasattr(run.environment.parsed_options, f"{service}_metrics_url")
