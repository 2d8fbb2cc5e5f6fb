from __future__ import annotations

import pytest

from infra.settings import StackSettings
from tests.charts.helm import stack_settings


@pytest.fixture(scope="session", params=["dev", "prod"])
def settings(request: pytest.FixtureRequest) -> StackSettings:
    return stack_settings(request.param)
