"""``orchestra retry TASK``: run a task's failed jobs again (failed test jobs first)."""

from __future__ import annotations

import argparse
import signal
import sys

from orchestra.commands._common import EXIT_TASK_FAILED, check_owner, load_specs
from orchestra.commands._progress import make_progress
from orchestra.commands.apply import FAILED_PHASES, _raise_interrupt, print_outcome
from orchestra.engine.runner import Engine
from orchestra.errors import FatalError
from orchestra.plan.desired import expand


def run(args: argparse.Namespace) -> int:
    check_owner(args.task, "retry")
    specs = load_specs([], args.directory)
    if args.task not in specs.tasks:
        raise FatalError(
            f"no spec for task {args.task!r}: only a task with a spec can be retried",
            hint="'orchestra status' lists the tasks in storage",
        )
    (desired,) = expand(specs, [args.task])
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        engine = Engine(make_progress(sys.stderr))
        engine.prepare([desired], retry=[args.task])
        run_ = engine.runs[0]
        if not run_.count("pending") and not run_.active:
            engine.release()
            print(f"{args.task}: {run_.phase}, no failed job to retry.")
            return 0
        engine.run(wait=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
    print_outcome(engine.runs)
    return EXIT_TASK_FAILED if any(r.phase in FAILED_PHASES for r in engine.runs) else 0
