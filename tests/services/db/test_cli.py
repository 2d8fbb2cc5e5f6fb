"""`python -m courseredis.services.db`: migrate, prepare, seed, and one-line errors with exit
code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from courseredis.services.db.cli import main
from courseredis.services.db.migrate import head_revision


def _sqlite(tmp_path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'courses.db'}"


def test_migrate_then_seed(tmp_path, capsys) -> None:
    url = _sqlite(tmp_path)
    assert main(["migrate", "--database-url", url]) == 0
    assert f"to {head_revision()}" in capsys.readouterr().err
    assert main(["seed", "--database-url", url, "--courses", "3", "--students", "2"]) == 0
    credentials = json.loads(capsys.readouterr().out)
    assert [s["username"] for s in credentials["students"]] == ["student1", "student2"]
    assert credentials["admin"]["username"] == "admin"


def test_seed_takes_the_password_from_a_file(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("DATABASE_URL", _sqlite(tmp_path))
    secret = tmp_path / "password"
    secret.write_text("a demo password\n")
    assert main(["migrate"]) == 0
    assert main(["seed", "--students", "1", "--courses", "1", "--password-file", str(secret)]) == 0
    credentials = json.loads(capsys.readouterr().out)
    assert credentials["students"][0]["password"] == credentials["admin"]["password"]
    assert credentials["admin"]["password"] == "a demo password"


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["migrate", "--database-url", "mysql://u:secret@db/c"], "unsupported database URL"),
        (["seed", "--database-url", "SQLITE"], "run `python -m courseredis.services.db migrate"),
        (
            ["migrate", "--database-url", "postgresql://u:secret@127.0.0.1:1/c"],
            "is the server running",
        ),
        (["seed", "--database-url", "SQLITE", "--password-file", "/nonexistent"], "cannot read"),
    ],
)
def test_errors_are_one_actionable_line_and_exit_2(tmp_path, capsys, argv, says) -> None:
    argv = [_sqlite(tmp_path) if arg == "SQLITE" else arg for arg in argv]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1
    assert says in captured.err and "secret" not in captured.err


def test_runs_as_a_module(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "courseredis.services.db", "migrate"],
        env={**os.environ, "DATABASE_URL": _sqlite(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "courses.db").exists()


# --- prepare: what the services chart's init container runs ------------------------------


def test_prepare_migrates_and_creates_the_smoke_account_from_the_environment(
    tmp_path, capsys, monkeypatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", _sqlite(tmp_path))
    monkeypatch.setenv("SMOKE_ACCOUNT_USERNAME", "smoke")
    monkeypatch.setenv("SMOKE_ACCOUNT_PASSWORD", "a-generated-smoke-password")
    assert main(["prepare"]) == 0
    said = capsys.readouterr()
    assert said.out == "" and said.err.count("\n") == 1
    assert f"schema at {head_revision()}" in said.err
    assert "created the account, created the course" in said.err
    assert "a-generated-smoke-password" not in said.err
    assert main(["prepare"]) == 0
    assert "nothing to change" in capsys.readouterr().err


def test_prepare_without_the_smoke_variables_only_migrates(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("SMOKE_ACCOUNT_USERNAME", raising=False)
    monkeypatch.delenv("SMOKE_ACCOUNT_PASSWORD", raising=False)
    assert main(["prepare", "--database-url", _sqlite(tmp_path)]) == 0
    assert "no smoke account asked for" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("variables", "says"),
    [
        ({"SMOKE_ACCOUNT_USERNAME": "smoke"}, "SMOKE_ACCOUNT_PASSWORD is not"),
        ({"SMOKE_ACCOUNT_PASSWORD": "secret-pw-1"}, "SMOKE_ACCOUNT_USERNAME is not"),
        ({"SMOKE_ACCOUNT_USERNAME": "smoke", "SMOKE_ACCOUNT_PASSWORD": "secret"}, "shorter"),
    ],
)
def test_prepare_refuses_bad_settings_and_writes_nothing(
    tmp_path, capsys, monkeypatch, variables, says
) -> None:
    monkeypatch.delenv("SMOKE_ACCOUNT_USERNAME", raising=False)
    monkeypatch.delenv("SMOKE_ACCOUNT_PASSWORD", raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    database = tmp_path / "deep" / "courses.db"
    assert main(["prepare", "--database-url", f"sqlite+aiosqlite:///{database}"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1
    assert says in captured.err and "secret" not in captured.err
    assert not (tmp_path / "deep").exists()  # not even the folder: nothing was written


def test_prepare_runs_as_a_module(tmp_path) -> None:
    """As the init container runs it: `python -m courseredis.services.db prepare`."""
    result = subprocess.run(
        [sys.executable, "-m", "courseredis.services.db", "prepare"],
        env={
            **os.environ,
            "DATABASE_URL": _sqlite(tmp_path),
            "SMOKE_ACCOUNT_USERNAME": "smoke",
            "SMOKE_ACCOUNT_PASSWORD": "a-generated-smoke-password",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "smoke account user 1, smoke course 1" in result.stderr
