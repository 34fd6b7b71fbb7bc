"""Driving the engine from a command (apply, retry): progress, outcome. (SIGTERM stops it as
Ctrl-C does: the handler is the program's, see orchestra.interrupts.)"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable

from orchestra.commands._progress import describe, make_progress
from orchestra.engine.runner import Engine, TaskRun
from orchestra.errors import DamagedTaskError
from orchestra.plan.desired import DesiredTask

EXIT_TASK_FAILED = 3
FAILED_PHASES = ("broken", "finalized")


def more_open_files() -> None:
    """Raise the soft limit on open files to the hard one: each task being run holds its event
    log and its lock open, and many systems start processes at a soft limit of 1,024."""
    try:
        import resource
    except ImportError:  # pragma: no cover (not POSIX)
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = 1 << 20 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < ceiling:
        # refused: as it was, and the engine works within the soft limit
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))


def run_engine(
    work: list[DesiredTask],
    *,
    retry: Iterable[str] = (),
    wait: bool = True,
    commit: str | None = None,
    refused: dict[str, str] | None = None,
    damaged: list[DamagedTaskError] | None = None,
) -> list[TaskRun] | None:
    """Prepare and drive ``work``; None when, once prepared, there was nothing to run. The
    tasks the engine refused to touch (unsafe directories) are added to ``refused``; a task
    found damaged is skipped and added to ``damaged`` (without that list, raised)."""
    more_open_files()
    engine = Engine(make_progress(sys.stderr))
    engine.prepare(work, retry=retry, commit=commit)
    if engine.damaged:
        if damaged is None:
            engine.release()
            raise engine.damaged[0]
        damaged += engine.damaged
    if refused is not None:
        refused.update(engine.refused)
    if all(not r.count("pending") and not r.active for r in engine.runs) and all(
        r.phase in ("done", "finalized", "broken", "killed") for r in engine.runs
    ):
        engine.release()
        return None
    engine.run(wait=wait)
    return engine.runs


def exit_code(runs: list[TaskRun]) -> int:
    return EXIT_TASK_FAILED if any(r.phase in FAILED_PHASES for r in runs) else 0


def print_outcome(runs: list[TaskRun]) -> None:
    print()
    for run in runs:
        note = f" ({run.record.message})" if run.record.message else ""
        print(f"{run.name}: {run.phase}{note}, {describe(run)}")
    failed = [r.name for r in runs if r.phase in FAILED_PHASES]
    if failed:
        print(
            f"\n'orchestra status {failed[0]} --state failed' lists the failed jobs and their logs."
        )
    for run in runs:  # done is not enough when a job exited 0 without writing its output
        warned = sum(1 for job in run.record.jobs.values() if job.warning and not job.orphan)
        if warned:
            print(
                f"warning: {run.name}: {warned} job(s) exited 0 but wrote no "
                f"{run.desired.spec.output}; 'orchestra status {run.name}' names them"
            )
