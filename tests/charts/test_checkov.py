"""checkov (the policy scanner) on the manifests every stack renders, as the program does.

checkov's pinned dependencies conflict with the project's lock (pulumi needs a newer
`packaging`), so it lives in its own environment, `.venv-checkov`, which scripts/setup.sh
creates; the test runs it as a program. Missing, the test fails: a scan that did not run
is not a scan that passed.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from courseredis.environments import REPO_ROOT
from infra import values as infra_values
from infra.loadtest import LoadtestSettings, locust_chart_values, read_locustfiles
from tests.charts.helm import render, stack_settings
from tests.charts.test_locust_chart import render_locust

CHECKOV = REPO_ROOT / ".venv-checkov" / "bin" / "checkov"
SKIPS = Path(__file__).with_name("checkov_skips.yaml")


def stack_manifests(env: str) -> dict[str, list[dict[str, Any]]]:
    """chart -> objects: what the program deploys for `env`, the Locust switch on."""
    settings = stack_settings(env)
    namespace = settings.namespace
    loadtest = LoadtestSettings(enabled=True)
    return {
        "redis": render("redis", infra_values.redis_chart_values(settings), namespace),
        "services": render("services", infra_values.services_chart_values(settings), namespace),
        "locust": render_locust(
            locust_chart_values(settings, loadtest, read_locustfiles()), namespace
        ),
    }


def skips() -> dict[str, str]:
    entries = yaml.safe_load(SKIPS.read_text())
    assert all(e["reason"].strip() for e in entries), "every skip says why"
    return {e["check"]: e["reason"] for e in entries}


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_checkov_finds_nothing_but_the_listed_skips(env: str, tmp_path: Path) -> None:
    assert CHECKOV.exists(), f"{CHECKOV} is missing: run scripts/setup.sh"
    for chart, objects in stack_manifests(env).items():
        (tmp_path / f"{chart}.yaml").write_text(yaml.safe_dump_all(objects))
    result = subprocess.run(
        [str(CHECKOV), "-d", str(tmp_path), "--framework", "kubernetes", "--quiet", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.stdout, result.stderr
    report = json.loads(result.stdout)
    assert report["summary"]["parsing_errors"] == 0, report["summary"]
    assert report["summary"]["passed"] > 0, report["summary"]
    failed = report["results"]["failed_checks"]
    allowed = skips()
    unexpected = sorted(
        f"{f['check_id']} {f['check_name']}: {f['resource']}"
        for f in failed
        if f["check_id"] not in allowed
    )
    assert unexpected == []
    stale = sorted(set(allowed) - {f["check_id"] for f in failed})
    assert stale == [], f"skips that match no failure any more: remove them from {SKIPS.name}"
