"""What several commands share: loading valid specs, planning, finding tasks in storage."""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from orchestra.errors import DamagedTaskError, FatalError
from orchestra.plan.desired import DesiredTask, expand
from orchestra.plan.observe import Orphan, find_orphans, find_task_dirs, load_noting, observe
from orchestra.plan.planner import Plan, make_plan
from orchestra.spec.checker import validate_paths
from orchestra.spec.model import ClusterSpec, SpecSet, split_name
from orchestra.status.model import TaskRecord
from orchestra.status.store import TaskStore


def load_specs(paths: Sequence[str], directory: str) -> SpecSet:
    """The valid specs under ``paths``; invalid specs stop the command before it changes
    anything, with every error printed as ``orchestra validate`` would."""
    result = validate_paths(paths, Path(directory))
    if not result.valid:
        for diagnostic in result.diagnostics:
            print(diagnostic.format(), file=sys.stderr)
        count = len(result.diagnostics)
        errors = f"{count} error{'s' if count != 1 else ''}"
        raise FatalError(
            f"the specs are invalid ({errors}): nothing was changed",
            hint="run 'orchestra validate' for the details",
        )
    if not result.specs.requested_tasks and not result.files:
        where = ", ".join(paths) if paths else directory
        raise FatalError(f"no spec files found under {where}")
    warn_invalid(result.specs)
    return result.specs


def warn_invalid(specs: SpecSet) -> None:
    """Files read as context that are invalid: their tasks are no orphans, --prune refuses."""
    for file in specs.invalid_files:
        print(
            f"orchestra: warning: {file} is invalid (read for context): its tasks are not "
            f"orphans and --prune is refused until it is fixed ('orchestra validate {file}')",
            file=sys.stderr,
        )


def refuse_prune_if_invalid(specs: SpecSet) -> None:
    """design.md, "Day 2": nothing is pruned while any document of the repository is invalid
    (a task whose spec has a typo would otherwise be judged an orphan and stopped)."""
    if specs.invalid_files:
        files = ", ".join(specs.invalid_files)
        raise FatalError(
            f"--prune refused: the repository has invalid spec files ({files}); "
            "nothing was pruned or applied",
            hint=f"fix them ('orchestra validate {specs.invalid_files[0]}' shows why), "
            "or run without --prune",
        )


@dataclass
class Planned:
    specs: SpecSet
    desired: list[DesiredTask]
    observed: dict[str, TaskRecord | None]
    orphans: list[Orphan]
    plan: Plan
    #: tasks (or directories of orphans) left out as unsafe -> why (a symlinked task directory,
    #: a FIFO as its status...): the others are planned and applied all the same
    refused: dict[str, str] = field(default_factory=dict)
    #: tasks left out of the plan: their sidecar is damaged (reported, exit 1)
    damaged: list[DamagedTaskError] = field(default_factory=list)


def make_full_plan(specs: SpecSet) -> Planned:
    """The plan of the tasks asked for, without those orchestra refuses (unsafe files) or
    whose sidecar is damaged: they are in ``refused`` / ``damaged``, and the others are
    planned as if they were not there."""
    refused: dict[str, str] = {}
    damaged: list[DamagedTaskError] = []
    desired = expand(specs, sorted(specs.requested_tasks), refused)
    observed = observe(desired, refused, damaged)
    desired = [task for task in desired if task.name in observed]
    orphans = find_orphans(specs, refused, damaged)
    plan = make_plan(desired, observed, orphans, refused)
    return Planned(specs, desired, observed, orphans, plan, refused, damaged)


def report_refused(refused: dict[str, str]) -> int:
    """Name each refused task on stderr; the exit code of a command that met any: 1."""
    for name, message in refused.items():
        print(f"orchestra: error: {name} refused: {message}", file=sys.stderr)
    return 1 if refused else 0


def report_damaged(damaged: Sequence[DamagedTaskError]) -> None:
    """Each damaged task on stderr: its file, line and problem, and that it was skipped."""
    for exc in damaged:
        print(f"orchestra: error: {exc.message}; skipped", file=sys.stderr)
    if damaged:
        print(f"hint: {damaged[0].hint}", file=sys.stderr)


def warn_replayed(records: Iterable[TaskRecord | None]) -> None:
    """Say which snapshots were of the wrong shape (each task was read from its log)."""
    for record in records:
        if record is not None and record.snapshot_problem:
            print(
                f"orchestra: warning: {record.snapshot_problem}; read events.jsonl instead "
                "(the next apply rewrites status.yaml)",
                file=sys.stderr,
            )


def acting_user() -> str:
    """Who runs this command: ``$ORCHESTRA_USER``, else the login name."""
    return os.environ.get("ORCHESTRA_USER") or getpass.getuser()


@dataclass
class FoundTask:
    name: str
    task_dir: Path
    cluster: ClusterSpec
    record: TaskRecord | None


def task_owner(name: str) -> str:
    """The owner in a task name given on the command line; a name that is not
    ``user.<owner>.<name>`` (``/``, ``..``, a newline...) never reaches a path."""
    parts = split_name(name)
    if parts is None:
        raise FatalError(
            f"{name!r} is not a task name: user.<owner>.<name> (owner: lower-case letters, "
            "digits, '_', '-'; name: letters, digits, '_', '-', '.')"
        )
    return parts[0]


def find_task(specs: SpecSet, name: str) -> FoundTask:
    """A task by name: from its spec when it has one, else from the storages (an orphan)."""
    owner = task_owner(name)
    spec = specs.tasks.get(name)
    if spec is not None:
        cluster = specs.clusters[spec.cluster]
        task_dir = cluster.storage / spec.owner / spec.name
        return FoundTask(name, task_dir, cluster, TaskStore(task_dir).load())
    for cluster in specs.clusters.values():
        task_dir = cluster.storage / owner / name
        record = TaskStore(task_dir).load()
        if record is not None and record.name == name:
            return FoundTask(name, task_dir, specs.clusters.get(record.cluster, cluster), record)
    known = sorted(specs.tasks)
    raise FatalError(
        f"no task named {name!r} (neither a spec nor a status in the storage)",
        hint=f"known tasks: {', '.join(known[:10])}" if known else None,
    )


def check_owner(name: str, action: str) -> None:
    owner = task_owner(name)
    user = acting_user()
    if owner != user:
        raise FatalError(
            f"{name} belongs to {owner!r}; {user!r} may not {action} it",
            hint="set ORCHESTRA_USER if you act for that user on purpose",
        )


def all_records(
    specs: SpecSet,
    *,
    summary: bool = False,
    refused: dict[str, str] | None = None,
    damaged: list[DamagedTaskError] | None = None,
) -> list[tuple[Path, TaskRecord]]:
    """Every task with a sidecar in the storages of the Clusters defined; with ``summary``,
    from the snapshot's header alone where it is up to date (counts, no jobs). An unsafe one
    (a symlinked directory, a FIFO as a file of its sidecar) is named in ``refused``; damaged
    ones are left out and added to ``damaged`` (raised when that is None)."""
    storages = sorted({c.storage for c in specs.clusters.values()})
    refused = {} if refused is None else refused
    return [
        found for storage in storages for found in _records_in(storage, summary, refused, damaged)
    ]


def all_records_of(
    storage: Path, damaged: list[DamagedTaskError] | None = None
) -> list[TaskRecord]:
    """Every task with a sidecar in one storage (an unsafe one left out, damaged ones as in
    all_records)."""
    return [record for _dir, record in _records_in(storage, False, {}, damaged)]


def _records_in(
    storage: Path,
    summary: bool,
    refused: dict[str, str],
    damaged: list[DamagedTaskError] | None,
) -> list[tuple[Path, TaskRecord]]:
    found = []
    for task_dir in find_task_dirs(storage):
        store = TaskStore(task_dir)

        def load(store: TaskStore = store) -> TaskRecord | None:
            return (store.load_summary() if summary else None) or store.load()

        read, record = load_noting(load, str(task_dir), refused, damaged)
        if read and record is not None:
            found.append((task_dir, record))
    return found


def load_clusters(directory: str) -> SpecSet:
    """The specs here, read only for their Clusters (status, delete): invalid Tasks do not
    stop a command that needs only to find the storage."""
    specs = validate_paths([], Path(directory), offline=True).specs
    if not specs.clusters:
        raise FatalError(
            f"no Cluster documents under {directory}: the storage is found through them",
            hint="run it in the spec repository, or with -C DIR",
        )
    return specs
