"""``orchestra plan``: what apply would do, Terraform style."""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any, TextIO

from orchestra.commands._common import (
    Planned,
    load_specs,
    make_full_plan,
    report_damaged,
    report_refused,
    warn_replayed,
)
from orchestra.errors import FatalError
from orchestra.fsutil import atomic_write, now_iso
from orchestra.plan.planner import Plan, TaskPlan

EXIT_CHANGES = 2
SYMBOLS = {
    "create": "+",
    "update": "~",
    "resume": ">",
    "unchanged": " ",
    "orphan": "!",
    "invalid": "?",
}
MAX_JOB_LINES = 10


def run(args: argparse.Namespace) -> int:
    if args.out and args.out != "-":
        check_plan_target(Path(args.directory) / args.out, args.out)  # before any work
    specs = load_specs(args.paths, args.directory)
    planned = make_full_plan(specs)
    warn_replayed([*planned.observed.values(), *(o.record for o in planned.orphans)])
    # with -o -, stdout carries the saved plan and the plan as --format says goes to stderr
    out = sys.stderr if args.out == "-" else sys.stdout
    if args.out:
        save_plan(planned, args)
    if args.format == "json":
        data = plan_json(planned.plan)
        data["errors"] = [exc.to_json() for exc in planned.damaged]
        json.dump(data, out, indent=2)
        out.write("\n")
    elif args.format == "markdown":
        print_markdown(planned.plan, out)
    else:
        print_plan(planned.plan, out, detail=args.detail)
        if args.out and args.out != "-":
            print(f"\nSaved the plan to {args.out}; 'orchestra apply {args.out}' carries it out.")
    if planned.damaged or planned.refused:
        report_damaged(planned.damaged)
        report_refused(planned.refused)
        return 1
    if args.detailed_exitcode and planned.plan.has_changes:
        return EXIT_CHANGES
    return 0


def check_plan_target(path: Path, shown: str) -> None:
    """Refuse to replace anything but a regular file (or nothing) with a saved plan: the
    plan is renamed over its target, which would replace a symlink, a FIFO or a device."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise FatalError(f"cannot write the plan to {shown}: {exc.strerror}") from exc
    if not stat.S_ISREG(mode):
        kind = (
            "a symbolic link"
            if stat.S_ISLNK(mode)
            else "a directory"
            if stat.S_ISDIR(mode)
            else "a FIFO"
            if stat.S_ISFIFO(mode)
            else "a device"
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "not a regular file"
        )
        raise FatalError(
            f"refusing to write the plan to {shown}: it is {kind}, not a regular file "
            "(nothing was written)",
            hint="name a new or a regular file, or '-o -' for stdout",
        )


def plan_json(plan: Plan) -> dict[str, Any]:
    data = plan.to_json()
    data["summary"] = summary(plan)
    data["hasChanges"] = plan.has_changes
    return data


def save_plan(planned: Planned, args: argparse.Namespace) -> None:
    data = plan_json(planned.plan)
    data["created"] = now_iso()
    data["paths"] = list(args.paths)
    data["directory"] = args.directory
    text = json.dumps(data, indent=2) + "\n"
    if args.out == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    path = Path(args.directory) / args.out
    check_plan_target(path, args.out)
    try:
        atomic_write(path, text)
    except OSError as exc:
        raise FatalError(f"cannot write the plan to {args.out}: {exc.strerror}") from exc


def _plural(count: int, word: str, plural: str | None = None) -> str:
    return f"{count} {word if count == 1 else (plural or word + 's')}"


def summary(plan: Plan) -> str:
    parts = []
    create = plan.by_action("create")
    if create:
        jobs = sum(t.to_create for t in create)
        parts.append(f"{_plural(len(create), 'task')} to create ({_plural(jobs, 'job')})")
    update = plan.by_action("update")
    if update:
        what = []
        new = sum(t.to_create for t in update)
        rerun = sum(t.to_rerun for t in update)
        if new:
            what.append(f"{_plural(new, 'new job')}")
        if rerun:
            what.append(f"{_plural(rerun, 'job')} to rerun")
        detail = f" ({', '.join(what)})" if what else ""
        parts.append(f"{len(update)} to update{detail}")
    resume = plan.by_action("resume")
    if resume:
        pending = sum(t.pending for t in resume)
        parts.append(f"{len(resume)} to resume ({_plural(pending, 'job')} to finish)")
    unchanged = plan.by_action("unchanged")
    if unchanged:
        parts.append(f"{len(unchanged)} unchanged")
    orphans = plan.by_action("orphan")
    if orphans:
        parts.append(_plural(len(orphans), "orphan"))
    invalid = plan.by_action("invalid")
    if invalid:
        parts.append(f"{len(invalid)} with an invalid spec")
    if plan.refused:
        parts.append(f"{len(plan.refused)} refused")
    if not parts:
        return "no tasks"
    return ", ".join(parts)


def _task_line(task: TaskPlan) -> str:
    if task.action == "create":
        tests = f", the first {task.test_jobs} as tests" if task.test_jobs else ", no test jobs"
        what = f"{_plural(task.jobs_total, 'job')}{tests}, on {task.cluster}"
    elif task.action == "update":
        bits = []
        if task.to_create:
            bits.append(f"{task.to_create} new")
        if task.to_rerun:
            bits.append(f"{task.to_rerun} to rerun")
        if task.orphaned:
            bits.append(f"{task.orphaned} orphaned")
        what = (", ".join(bits) or "no job to run") + f" ({task.reason})"
    elif task.action == "resume":
        what = f"{_plural(task.pending, 'job')} to finish ({task.phase})"
    elif task.action in ("orphan", "invalid"):
        what = f"{task.phase}, {task.pending} unfinished: {task.reason}"
    else:
        what = task.reason
    return f"  {SYMBOLS[task.action]} {task.name}  {task.action}: {what}"


def print_markdown(plan: Plan, out: TextIO) -> None:
    """The plan as GitHub/GitLab markdown (a CI job summary, a merge-request comment)."""
    out.write(f"### Orchestra plan: {summary(plan)}\n\n")
    shown = [t for t in plan.tasks if t.action != "unchanged"]
    if not shown and not plan.refused:
        out.write("No changes: the tasks match their specs.\n")
        return
    out.write("| | task | action | what |\n|---|---|---|---|\n")
    for task in shown:
        what = _task_line(task).split(f"{task.action}: ", 1)[1].replace("|", "\\|")
        out.write(f"| {SYMBOLS[task.action]} | `{task.name}` | {task.action} | {what} |\n")
    for name, why in plan.refused.items():
        cell = why.replace("|", "\\|")
        out.write(f"| x | `{name}` | refused | {cell} |\n")


def print_plan(plan: Plan, out: TextIO, *, detail: bool = False) -> None:
    shown = [t for t in plan.tasks if t.action != "unchanged" or detail]
    listed = plan.by_action("orphan") or plan.by_action("invalid") or plan.refused
    if not plan.has_work and not listed and not detail:
        out.write(f"No changes: the tasks match their specs ({summary(plan)}).\n")
        return
    for task in shown:
        out.write(_task_line(task) + "\n")
        limit = len(task.changes) if detail else MAX_JOB_LINES
        for change in task.changes[:limit]:
            symbol = {"create": "+", "rerun": "~", "orphan": "!"}[change.action]
            out.write(f"      {symbol} {change.name}  {change.action}: {change.reason}\n")
        if len(task.changes) > limit:
            out.write(f"      ... and {len(task.changes) - limit} more (--detail lists them)\n")
    for name, why in plan.refused.items():  # left alone: neither applied nor changed
        out.write(f"  x {name}  refused: {why}\n")
    out.write(f"\nPlan: {summary(plan)}.\n")
