"""The base of the models of what the bundle reads from files and variables, and the one way
their errors are worded.

A stack file (`Pulumi.<env>.yaml`), `.local/stack.json` and the smoke suite's `SMOKE_*`
variables are written by hand as often as by a program, so a typo must be an error that
names the key, never a default read in its place: every model refuses unknown keys.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel


class ConfigModel(BaseModel):
    """Frozen, unknown keys refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class StackConfigModel(ConfigModel):
    """A section of a Pulumi stack file: camelCase keys, and no coercion.

    Strict because YAML guesses types: `replicas: true` must not read as 1, nor `enabled: 1`
    as True. Fields keep snake_case names in Python (`populate_by_name`).
    """

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, strict=True)


def problems(error: ValidationError, within: str = "") -> list[str]:
    """One `key.path: reason` per problem, keys as they are spelled in the file (`within`:
    the path of the section that was validated, when it is part of a larger file)."""
    found = []
    for detail in error.errors():
        path = [within] if within else []
        where = ".".join(path + [str(part) for part in detail["loc"]])
        kind = detail["type"]
        if kind == "extra_forbidden":
            reason = "unknown key"
        elif kind == "missing":
            reason = "missing key"
        elif kind == "value_error":
            # Our validators' own words, without pydantic's "Value error, " prefix.
            reason = str(detail.get("ctx", {}).get("error", detail["msg"]))
        else:
            reason = f"{detail['msg'][0].lower()}{detail['msg'][1:]}"
            if kind != "json_invalid":  # the input is then the whole file
                reason += f", not {detail['input']!r}"
        found.append(f"{where}: {reason}" if where else reason)
    return found


def describe(error: ValidationError, within: str = "") -> str:
    """The problems of `error` as one line."""
    return "; ".join(problems(error, within))
