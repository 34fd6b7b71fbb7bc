"""``orchestra retry TASK``: run a task's failed jobs again (failed test jobs first)."""

from __future__ import annotations

import argparse

from orchestra.commands._common import check_owner, load_specs, report_refused
from orchestra.commands._run import exit_code, print_outcome, run_engine
from orchestra.errors import FatalError
from orchestra.plan.desired import expand
from orchestra.status.store import TaskStore


def run(args: argparse.Namespace) -> int:
    check_owner(args.task, "retry")
    specs = load_specs([], args.directory)
    if args.task not in specs.tasks:
        raise FatalError(
            f"no spec for task {args.task!r}: only a task with a spec can be retried",
            hint="'orchestra status' lists the tasks in storage",
        )
    (desired,) = expand(specs, [args.task])
    refused: dict[str, str] = {}
    runs = run_engine([desired], retry=[args.task], refused=refused)
    if refused:
        return report_refused(refused)
    if runs is None:
        record = TaskStore(desired.task_dir).load()
        phase = record.phase if record is not None else "never applied"
        print(f"{args.task}: {phase}, no failed job to retry.")
        return 0
    print_outcome(runs)
    return exit_code(runs)
