"""The smoke suite against a local `dev` stack (one node): it passes, within a minute,
writes JUnit XML and leaves no test data. (Planted violations: test_smoke_prod.py.)"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from tests.smoke.support import LocalStacks, keyspace, run_smoke


@pytest.fixture(scope="module")
def dev(local_stacks: LocalStacks) -> tuple[Path, dict[str, Any]]:
    return local_stacks.get("dev")


def test_passes_within_a_minute_writes_junit_and_leaves_no_test_data(dev, tmp_path):
    stack_json, document = dev
    before = keyspace(document)
    junit = tmp_path / "smoke.xml"
    run = run_smoke(stack_json, "--junitxml", str(junit))
    assert run.returncode == 0, run.output
    assert run.seconds < 60, f"the smoke run took {run.seconds:.1f} s"
    assert "env dev (standalone, 1 node(s))" in run.output

    root = ET.parse(junit).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    assert suite is not None
    assert int(suite.get("failures", -1)) == 0 and int(suite.get("errors", -1)) == 0
    assert int(suite.get("tests", 0)) >= 30

    after = keyspace(document)
    # The one thing a first run leaves: the student's enrollment (a database row, its event
    # in the stream and the consumer's idempotency marker). Everything else is taken back.
    new = set(after) - set(before)
    assert new and all(key.startswith("idem:courses:") for key in new), new
    assert set(before) <= set(after)
