"""Both local stacks, booted concurrently once per session and stopped at its end."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.smoke.support import LocalStacks


@pytest.fixture(scope="session")
def local_stacks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStacks]:
    stacks = LocalStacks(tmp_path_factory.mktemp("smoke-stacks"))
    stacks.start("dev", "prod")
    try:
        yield stacks
    finally:
        stacks.close()
