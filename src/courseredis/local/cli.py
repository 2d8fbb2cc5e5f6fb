"""`python -m courseredis.local up|down|status`: the local stack from the command line.

State lives in `ROOT/.local/` (ROOT defaults to the current directory): `stack.json` and
one data directory per environment. The local stack is disposable: `down` removes the
environment's data directory along with the processes.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from courseredis.engines import ENGINES, SPECS, Engine, EngineError, wanted_engine
from courseredis.environments import ENVIRONMENTS, REPO_ROOT, StackConfigError, load_environment
from courseredis.local import services as local_services
from courseredis.local.processes import LocalStackError
from courseredis.local.stack import LocalStack, check_stack, start_stack, stop_stack
from courseredis.local.state import (
    env_data_dir,
    locked,
    read_state,
    remove_state,
    state_dir,
    write_state,
)
from courseredis.stack_file import StackFile, stack_file_path


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    root = Path(args.root).resolve()
    try:
        if args.command == "up":
            return up(
                root,
                args.env,
                Path(args.stack_dir),
                with_services=not args.redis_only,
                engine=args.engine or None,
            )
        if args.command == "down":
            return down(root)
        return status(root, Path(args.stack_dir))
    except (LocalStackError, StackConfigError, EngineError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def up(
    root: Path,
    env: str,
    stack_dir: Path,
    *,
    with_services: bool = True,
    engine: Engine | None = None,
) -> int:
    """Start the `env` stack; a no-op when it already runs healthy, replacing any other.

    With services: the database is migrated and seeded and the four services started,
    connected to Redis as their own ACL users. `engine` runs that engine instead of the
    stack file's (`make up ENGINE=valkey`), at its pinned release or the nearest the
    machine's packages offer.
    """
    topology = load_environment(env, stack_dir).redis
    wanted = wanted_engine(topology.engine, topology.version, engine)
    with locked(root):
        document = read_state(root)
        _refuse_rehearsal(document)
        if document.redis is not None:
            current = _recorded(document)
            if current.env == env:
                problems = check_stack(current, topology)
                if current.engine is not None and current.engine.wanted_name != wanted[0]:
                    problems.insert(0, f"it runs {current.engine.name}, {wanted[0]} was asked for")
                if with_services:
                    problems += local_services.problems(document)
                if not problems:
                    print(f"the {env} stack is already running and healthy; nothing to do")
                    _describe(current, root)
                    return 0
                print(f"the recorded {env} stack is not healthy ({problems[0]}); restarting it")
            else:
                print(f"stopping the running {current.env} stack first")
            local_services.stop_all(document)
            _stop_recorded(root, current)
            document = document.without_own_sections()
            write_state(root, document)
        started = time.monotonic()
        stack = start_stack(topology, env_data_dir(root, env), env=env, engine=engine)
        redis_part = {k: v for k, v in stack.to_json().items() if k != "env"}
        document = document.updated(
            {
                "env": env,
                "redis": redis_part,
                "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
        )
        write_state(root, document)  # recorded at once: `down` can stop it whatever follows
        print(f"started the {env} Redis in {time.monotonic() - started:.2f} s")
        if with_services:
            entries = local_services.start_all(stack, topology, env_data_dir(root, env))
            document = document.updated(entries)
            write_state(root, document)
    print(f"the {env} stack is up in {time.monotonic() - started:.2f} s")
    _describe(stack, root)
    if with_services:
        local_services.describe(document, stack_file_path(root))
    return 0


def down(root: Path) -> int:
    """Stop the recorded stack by PID and remove its data; nothing running is not an error."""
    with locked(root):
        document = read_state(root)
        if document.rehearsal is not None:
            # Its pods are not ours to stop, nor its state directory ours to delete.
            print(
                f"{stack_file_path(root)} describes the {document.rehearsal.env} rehearsal, not "
                "a local stack: nothing of ours to stop (`python -m courseredis.rehearsal down` "
                "ends it)"
            )
            return 0
        if document.redis is None:
            print(f"no local stack is running under {root}; nothing to stop")
            return 0
        current = _recorded(document)
        local_services.stop_all(document)
        _stop_recorded(root, current)
        remove_state(root)
    print(
        f"stopped the {current.env} stack ({len(current.pids)} redis-server) and removed its data"
    )
    return 0


def status(root: Path, stack_dir: Path) -> int:
    """Describe the recorded stack; exit 0 only when it runs and is healthy."""
    document = read_state(root)
    if document.rehearsal is not None:
        print(
            f"no local stack: {stack_file_path(root)} describes the {document.rehearsal.env} "
            "rehearsal (`python -m courseredis.rehearsal status`)"
        )
        return 1
    if document.redis is None:
        print(f"no local stack is running under {root}")
        return 1
    current = _recorded(document)
    _describe(current, root)
    print(f"started at: {document.started_at or 'unknown'}")
    problems = check_stack(current, load_environment(current.env, stack_dir).redis)
    if document.services is not None:  # started with its services: they count too
        problems += local_services.problems(document)
        local_services.describe(document, stack_file_path(root))
    for problem in problems:
        print(f"problem: {problem}")
    print("healthy" if not problems else "NOT healthy")
    return 0 if not problems else 1


def _refuse_rehearsal(document: StackFile) -> None:
    """A rehearsal's stack.json is its controller's: replacing it would leave the tools
    pointed at a local stack while the rehearsal runs, and its `down` would not find it."""
    if document.rehearsal is not None:
        raise LocalStackError(
            f"stack.json describes the running {document.rehearsal.env} rehearsal "
            f"(run {document.rehearsal.run_id}): `make down` ends it, then `make up`"
        )


def _recorded(document: StackFile) -> LocalStack:
    assert document.redis is not None  # the callers checked
    return LocalStack.from_record(document.redis, env=str(document.env))


def _stop_recorded(root: Path, stack: LocalStack) -> None:
    stop_stack(stack)
    # Only ever delete inside ROOT/.local, whatever a hand-edited stack.json says.
    if stack.data_dir.resolve().is_relative_to(state_dir(root)):
        shutil.rmtree(stack.data_dir, ignore_errors=True)


def _describe(stack: LocalStack, root: Path) -> None:
    print(f"env: {stack.env} ({stack.mode}, {len(stack.nodes)} node(s))")
    if stack.engine is not None:
        print(f"engine: {stack.engine.describe()} ({stack.engine.binary})")
        if stack.engine.note:
            print(stack.engine.note)
    print(f"nodes: {' '.join(stack.nodes)}")
    print(f"user: {stack.username} (password: redis.password in {stack_file_path(root)})")
    if stack.users:
        print(f"service users: {', '.join(stack.users)} (passwords: redis.users in stack.json)")
    cluster_flag = " -c" if stack.mode == "cluster" else ""
    cli = SPECS[stack.engine.name].cli if stack.engine is not None else "redis-cli"
    print(f"connect: {cli}{cluster_flag} -p {stack.ports[0]} --user {stack.username} --pass ...")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m courseredis.local",
        description="Run the Redis of an environment as local redis-server processes.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--root", default=".", help="directory whose .local/ holds the state (default: .)"
    )
    stack_dir = argparse.ArgumentParser(add_help=False)
    stack_dir.add_argument(
        "--stack-dir",
        default=str(REPO_ROOT),
        help="directory of the Pulumi.<env>.yaml files (default: the repository root)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up_parser = commands.add_parser(
        "up", parents=[common, stack_dir], help="start (or keep) the stack of an environment"
    )
    up_parser.add_argument("--env", required=True, choices=ENVIRONMENTS)
    up_parser.add_argument(
        "--redis-only", action="store_true", help="start Redis only, not the services"
    )
    up_parser.add_argument(
        "--engine",
        choices=[*ENGINES, ""],
        default="",
        help="run this engine instead of the stack file's (its pinned release, or the "
        "nearest the machine's packages offer)",
    )
    commands.add_parser("down", parents=[common], help="stop the stack and remove its data")
    commands.add_parser(
        "status", parents=[common, stack_dir], help="show the stack; exit 1 unless healthy"
    )
    return parser
