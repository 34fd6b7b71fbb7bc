"""``orchestra apply``: carry the plan out."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from orchestra.commands._common import (
    Planned,
    all_records_of,
    load_specs,
    make_full_plan,
    refuse_prune_if_invalid,
    report_damaged,
    report_refused,
    warn_replayed,
)
from orchestra.commands._run import exit_code, print_outcome, run_engine
from orchestra.commands.plan import print_plan
from orchestra.engine.runner import TaskRun
from orchestra.engine.stop import kill_task
from orchestra.errors import DamagedTaskError, FatalError
from orchestra.spec.model import SpecSet


def read_saved_plan(path: Path) -> dict[str, Any] | None:
    """The saved plan at ``path``, or None when ``path`` is not one."""
    if path.name == "-":  # 'orchestra plan -o - | orchestra apply -'
        text = sys.stdin.read()
    elif path.suffix != ".json" or not path.is_file():
        return None
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, ValueError) as exc:
            raise FatalError(f"{path}: not a readable plan file ({exc})") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise FatalError(f"{path}: not a readable plan file ({exc})") from exc
    if not isinstance(data, dict) or "desired_digest" not in data:
        raise FatalError(f"{path}: not a plan saved by 'orchestra plan -o'")
    return data


def run(args: argparse.Namespace) -> int:
    paths, directory = list(args.paths), args.directory
    saved = read_saved_plan(Path(directory) / paths[0]) if len(paths) == 1 else None
    if saved is not None:
        paths, directory = saved.get("paths", []), saved.get("directory", directory)
    specs = load_specs(paths, directory)
    if args.prune:
        refuse_prune_if_invalid(specs)
    planned = make_full_plan(specs)
    plan = planned.plan
    warn_replayed([*planned.observed.values(), *(o.record for o in planned.orphans)])
    if saved is not None:
        if saved["desired_digest"] != plan.desired_digest:
            raise FatalError(
                "the saved plan is stale: the specs or their data changed since it was made",
                hint="run 'orchestra plan -o PLAN' again and review it",
            )
        if saved["observed_digest"] != plan.observed_digest:
            raise FatalError(
                "the saved plan is stale: the tasks' status in storage changed since it was made",
                hint="run 'orchestra plan -o PLAN' again and review it",
            )
    text = args.format != "json"
    if text:
        print_plan(plan, sys.stdout)
    runs, pruned = execute(planned, wait=args.wait, prune=args.prune, force=args.force, text=text)
    damaged = planned.damaged  # execute adds those the engine found damaged
    if runs is None:
        if text:
            print("Nothing to apply." + (f" Pruned {len(pruned)} orphan(s)." if pruned else ""))
        else:
            _print_json([], pruned, planned.refused, damaged)
    elif text:
        print_outcome(runs)
    else:
        _print_json(runs, pruned, planned.refused, damaged)
    # the others were applied; a refused or damaged task is an error the user must see: exit 1
    report_damaged(damaged)
    return report_refused(planned.refused) or (1 if damaged else exit_code(runs or []))


def execute(
    planned: Planned,
    *,
    wait: bool,
    prune: bool,
    force: bool,
    text: bool,
    commit: str | None = None,
) -> tuple[list[TaskRun] | None, list[str]]:
    """Carry a plan out (apply and reconcile): prune if asked, then run the tasks with work.
    Returns the runs (None: no task had work) and what was pruned."""
    plan, specs = planned.plan, planned.specs
    work_names = {t.name for t in plan.tasks if t.action in ("create", "update", "resume")}
    work = [task for task in planned.desired if task.name in work_names]
    pruned = []
    if prune:
        refuse_prune_if_invalid(specs)
        for orphan in planned.orphans:
            cluster = specs.clusters.get(orphan.record.cluster)
            if orphan.invalid_spec is not None:
                continue  # its spec is there, only invalid (never reached: refused above)
            if cluster is not None and orphan.record.phase != "killed":
                kill_task(orphan.task_dir, cluster, reason="pruned: no spec defines it")
                pruned.append(orphan.record.name)
        pruned += _prune_cluster_jobs(specs, force=force, text=text, damaged=planned.damaged)
    _refresh_stale_snapshots(planned, exclude=work_names)
    if not work:
        return None, pruned
    local = all(t.cluster.backend == "local" for t in work)
    runs = run_engine(
        work,
        wait=wait or local,
        commit=commit,
        refused=planned.refused,
        damaged=planned.damaged,
    )
    return runs or [], pruned


def _print_json(
    runs: list[TaskRun],
    pruned: list[str],
    refused: dict[str, str],
    damaged: list[DamagedTaskError],
) -> None:
    tasks = [
        {"name": r.name, "phase": r.phase, "message": r.record.message, "counts": r.record.counts()}
        for r in runs
    ]
    errors = [exc.to_json() for exc in damaged]
    json.dump(
        {"tasks": tasks, "pruned": pruned, "refused": refused, "errors": errors},
        sys.stdout,
        indent=2,
    )
    sys.stdout.write("\n")


def _prune_cluster_jobs(
    specs: SpecSet, *, force: bool, text: bool, damaged: list[DamagedTaskError]
) -> list[str]:
    """Delete the Kubernetes Jobs of orchestra that no sidecar knows as a current attempt;
    never those of a damaged task, whose current attempts cannot be known."""
    from orchestra.backends import create_backend
    from orchestra.engine.prune import choose_prunable, managed_job

    deleted = []
    for cluster in specs.clusters.values():
        if cluster.backend != "kubernetes":
            continue
        unreadable: list[DamagedTaskError] = []
        records = all_records_of(cluster.storage, unreadable)
        damaged += [e for e in unreadable if e.path not in {d.path for d in damaged}]
        skip = {e.task_dir.name for e in unreadable}
        owners = {r.owner or r.name.split(".")[1] for r in records}
        owners |= {t.owner for t in specs.tasks.values() if t.cluster == cluster.name}
        if not owners:
            continue
        backend: Any = create_backend(cluster)
        jobs = [
            managed_job(j) for j in backend.managed_jobs({backend.namespace_of(o) for o in owners})
        ]
        jobs = [job for job in jobs if job.task not in skip]
        # (a done job's run id is read from status.yaml unchecked: a string, or not one)
        current = {j.run_id for r in records for j in r.jobs.values() if isinstance(j.run_id, str)}
        for job in choose_prunable(jobs, current, set(specs.tasks), force=force):
            backend.delete_job(job.namespace, job.name)
            deleted.append(f"{job.namespace}/{job.name}")
            if text:
                print(f"pruned Job {job.namespace}/{job.name} (task {job.task or '?'})")
    return deleted


def _refresh_stale_snapshots(planned: Planned, exclude: set[str]) -> None:
    """A task whose status.yaml is behind its log (its orchestra died between the two) gets
    its snapshot rewritten, even when there is nothing else to do for it."""
    from orchestra.engine.lock import TaskLock
    from orchestra.status.store import TaskStore

    for task in planned.desired:
        record = planned.observed.get(task.name)
        if task.name in exclude or record is None or not record.snapshot_stale:
            continue
        lock = TaskLock(task.task_dir)
        try:
            lock.acquire(task.name)
        except FatalError:
            continue  # another orchestra is at it: it will write the snapshot
        try:
            TaskStore(task.task_dir).refresh_snapshot()
        finally:
            lock.release()
