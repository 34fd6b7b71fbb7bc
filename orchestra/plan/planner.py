"""The plan: a pure function of (desired tasks, observed records, orphans) -> Plan.

Task actions: ``create`` (no sidecar yet), ``update`` (jobs to create or rerun, or a changed
spec), ``resume`` (nothing changed, but jobs are still pending or running), ``unchanged``,
``orphan`` (a sidecar with no spec: listed, touched only with ``--prune``), ``invalid`` (a
sidecar whose spec fails validation: listed, never an orphan). A task orchestra refuses to
touch (its directory a symlink, a FIFO as its status...) is in ``refused``, with why. Job
actions:
``create`` (a new config file), ``rerun`` (inputs changed, judged by content digests), and
``orphan`` (its config file is gone). Unchanged jobs are counted, not listed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from orchestra import __version__
from orchestra.plan.desired import DesiredTask
from orchestra.plan.observe import Orphan
from orchestra.status.model import ACTIVE_JOB_STATES, TaskRecord

PLAN_FORMAT = 1


@dataclass
class JobChange:
    name: str
    action: str  # create | rerun | orphan
    reason: str


@dataclass
class TaskPlan:
    name: str
    owner: str
    cluster: str
    action: str  # create | update | resume | unchanged | orphan | invalid
    reason: str
    phase: str | None  # observed phase (None: never applied)
    jobs_total: int
    test_jobs: int
    to_create: int = 0
    to_rerun: int = 0
    pending: int = 0  # jobs waiting or running that apply will carry on
    orphaned: int = 0
    changes: list[JobChange] = field(default_factory=list)

    @property
    def changes_anything(self) -> bool:
        return self.action in ("create", "update")


@dataclass
class Plan:
    tasks: list[TaskPlan]
    desired_digest: str
    observed_digest: str
    version: str = __version__
    format: int = PLAN_FORMAT
    refused: dict[str, str] = field(default_factory=dict)  # task (or directory) -> why

    def by_action(self, action: str) -> list[TaskPlan]:
        return [t for t in self.tasks if t.action == action]

    @property
    def has_changes(self) -> bool:
        return any(t.changes_anything for t in self.tasks)

    @property
    def has_work(self) -> bool:
        """Anything for apply to do: changes, or unfinished jobs to carry on."""
        return any(t.action in ("create", "update", "resume") for t in self.tasks)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Plan:
        tasks = []
        for item in data["tasks"]:
            fields = dict(item)
            fields["changes"] = [JobChange(**c) for c in fields.get("changes", [])]
            tasks.append(TaskPlan(**fields))
        return cls(
            tasks=tasks,
            desired_digest=data["desired_digest"],
            observed_digest=data["observed_digest"],
            version=data.get("version", ""),
            format=data.get("format", 0),
            refused=dict(data.get("refused", {})),
        )


def desired_digest(desired: Sequence[DesiredTask]) -> str:
    digest = hashlib.sha256()
    for task in desired:  # a task's jobs digest covers its jobs' names and input digests
        digest.update(f"{task.name}\0{task.spec_digest}\0{task.jobs_digest}\0".encode())
    return digest.hexdigest()


def observed_digest(observed: Mapping[str, TaskRecord | None], orphans: Sequence[Orphan]) -> str:
    """Changes when any task's status changes: its log grows with every event."""
    records = [r for r in observed.values() if r is not None] + [o.record for o in orphans]
    digest = hashlib.sha256()
    for record in sorted(records, key=lambda r: r.name):
        counts = ",".join(str(n) for n in record.counts().values())
        digest.update(
            f"{record.name}\0{record.phase}\0{record.spec_digest}\0{record.log_size}\0"
            f"{counts}\0{record.jobs_digest}\0".encode()
        )
    return digest.hexdigest()


def make_plan(
    desired: Sequence[DesiredTask],
    observed: Mapping[str, TaskRecord | None],
    orphans: Sequence[Orphan] = (),
    refused: Mapping[str, str] | None = None,
) -> Plan:
    tasks = [plan_task(task, observed.get(task.name)) for task in desired]
    for orphan in orphans:
        record = orphan.record
        if record.phase == "killed":
            continue  # stopped already: nothing left to prune
        counts = record.counts()
        invalid = orphan.invalid_spec
        tasks.append(
            TaskPlan(
                name=record.name,
                owner=record.owner,
                cluster=record.cluster,
                action="invalid" if invalid else "orphan",
                reason=f"its spec {invalid} is invalid: left as it is until fixed"
                if invalid
                else "no spec defines it any more (--prune stops it)",
                phase=record.phase,
                jobs_total=sum(counts.values()),
                test_jobs=0,
                pending=counts["pending"] + counts["submitted"] + counts["running"],
            )
        )
    plan = Plan(tasks, desired_digest(desired), observed_digest(observed, orphans))
    plan.refused = dict(refused or {})
    return plan


def plan_task(task: DesiredTask, record: TaskRecord | None) -> TaskPlan:
    test_jobs = task.test_jobs
    result = TaskPlan(
        name=task.name,
        owner=task.spec.owner,
        cluster=task.cluster.name,
        action="unchanged",
        reason="",
        phase=record.phase if record is not None else None,
        jobs_total=len(task.job_names),
        test_jobs=test_jobs,
    )
    if record is None:
        result.action = "create"
        result.reason = "new task"
        result.to_create = len(task.job_names)
        return result
    relaunch = record.phase == "killed" and record.spec_digest != task.spec_digest
    if not record.jobs_loaded:
        # the snapshot vouched that the jobs are the desired ones, digests included
        counts = record.counts()
        if not record.terminal:
            result.pending = counts["pending"] + counts["submitted"] + counts["running"]
        return _settle(result, record, task, relaunch)
    if record.phase == "killed" and not relaunch:
        return _settle(result, record, task, relaunch)
    wanted = set()
    for job in task.jobs:
        wanted.add(job.name)
        seen = record.jobs.get(job.name)
        if seen is None:
            result.changes.append(JobChange(job.name, "create", "new config file"))
        elif seen.digest != job.digest:
            result.changes.append(JobChange(job.name, "rerun", "inputs changed"))
        elif seen.orphan:
            if seen.state == "done":
                continue
            result.changes.append(JobChange(job.name, "create", "config file is back"))
        elif relaunch and seen.state != "done":
            result.changes.append(JobChange(job.name, "rerun", "task relaunched"))
        elif not record.terminal and (seen.state == "pending" or seen.state in ACTIVE_JOB_STATES):
            result.pending += 1  # (a broken task's untested jobs wait for retry, not apply)
    for name, seen in record.jobs.items():
        if name not in wanted and not seen.orphan:
            result.changes.append(JobChange(name, "orphan", "config file removed"))
    result.to_create = sum(c.action == "create" for c in result.changes)
    result.to_rerun = sum(c.action == "rerun" for c in result.changes)
    result.orphaned = sum(c.action == "orphan" for c in result.changes)
    return _settle(result, record, task, relaunch)


def _settle(result: TaskPlan, record: TaskRecord, task: DesiredTask, relaunch: bool) -> TaskPlan:
    """The task's action, from its job changes and its record."""
    if record.phase == "killed" and not relaunch:
        result.reason = "killed; left alone while its spec is unchanged"
    elif relaunch:
        result.action, result.reason = "update", "killed task whose spec changed: relaunched"
    elif result.to_create or result.to_rerun:
        result.action, result.reason = "update", "jobs to create or rerun"
    elif record.spec_digest != task.spec_digest or result.orphaned:
        result.action, result.reason = "update", "spec changed; no job to run"
    elif result.pending or not record.terminal:
        result.action, result.reason = "resume", "jobs still to finish"
    else:
        result.reason = f"{record.phase}; nothing changed"
    return result
