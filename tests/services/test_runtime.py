"""A service's start-up state is attached to its runtime and found again by its type."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from courseredis.services.runtime import PartMissing, Runtime


@dataclass(frozen=True)
class ExampleState:
    name: str


def a_runtime() -> Runtime:
    return Runtime("courses", None, None, None)  # type: ignore[arg-type]


def test_an_attached_state_is_found_by_its_type():
    runtime = a_runtime()
    state = ExampleState("first")
    runtime.attach(state)
    assert runtime.part(ExampleState) is state
    runtime.attach(ExampleState("second"))  # one per type: the later one replaces it
    assert runtime.part(ExampleState).name == "second"


def test_a_state_no_hook_attached_is_an_error_naming_the_service_and_the_type():
    with pytest.raises(PartMissing, match="courses holds no ExampleState"):
        a_runtime().part(ExampleState)
