"""Planning as a pure function, and job names."""

from __future__ import annotations

from pathlib import Path

from orchestra.plan.desired import DesiredJob, DesiredTask, job_name, job_names, render_command
from orchestra.plan.observe import Orphan
from orchestra.plan.planner import Plan, make_plan
from orchestra.spec.loader import load_text
from orchestra.spec.model import ClusterSpec, SlurmSettings, task_from
from orchestra.status.model import JobRecord, TaskRecord

TASK_DOC = """\
apiVersion: orchestra/v1
kind: Task
metadata: {name: user.a.t}
spec: {cluster: c, image: i, data: user.a.d, configs: user.a.c, output: o, exec: "%DATA %IN %OUT"}
"""


def _desired(jobs: dict[str, str], spec_digest: str = "s1") -> DesiredTask:
    doc = load_text(TASK_DOC, "t.yaml").documents[0]
    cluster = ClusterSpec("c", "local", Path("/s"), 2, None, SlurmSettings(), doc)
    desired_jobs = [
        DesiredJob(name, f"{name}.json", index < 2, digest, "cmd")
        for index, (name, digest) in enumerate(jobs.items())
    ]
    return DesiredTask.of_jobs(
        task_from(doc),
        cluster,
        (Path("/s/a/user.a.t"), Path("/d"), Path("/c")),
        spec_digest,
        desired_jobs,
    )


def _record(
    jobs: dict[str, tuple[str, str]], phase: str = "done", spec_digest: str = "s1"
) -> TaskRecord:
    record = TaskRecord("user.a.t", phase=phase, spec_digest=spec_digest)
    for name, (state, digest) in jobs.items():
        record.jobs[name] = JobRecord(name, state=state, digest=digest)
    return record


def test_create_when_never_applied() -> None:
    plan = make_plan([_desired({"a": "1", "b": "2", "c": "3"})], {"user.a.t": None})
    (task,) = plan.tasks
    assert (task.action, task.to_create, task.test_jobs) == ("create", 3, 2)
    assert plan.has_changes


def test_unchanged_when_everything_matches() -> None:
    record = _record({"a": ("done", "1"), "b": ("failed", "2")}, phase="finalized")
    plan = make_plan([_desired({"a": "1", "b": "2"})], {"user.a.t": record})
    assert plan.tasks[0].action == "unchanged"
    assert not plan.has_changes and not plan.has_work


def test_update_lists_new_rerun_and_orphaned_jobs() -> None:
    record = _record({"a": ("done", "1"), "b": ("done", "2"), "gone": ("done", "9")})
    plan = make_plan([_desired({"a": "1", "b": "2b", "new": "4"})], {"user.a.t": record})
    (task,) = plan.tasks
    assert task.action == "update"
    assert [(c.name, c.action) for c in task.changes] == [
        ("b", "rerun"),
        ("new", "create"),
        ("gone", "orphan"),
    ]


def test_resume_when_jobs_are_unfinished() -> None:
    record = _record({"a": ("done", "1"), "b": ("pending", "2")}, phase="running")
    (task,) = make_plan([_desired({"a": "1", "b": "2"})], {"user.a.t": record}).tasks
    assert (task.action, task.pending) == ("resume", 1)


def test_killed_task_is_left_alone_until_its_spec_changes() -> None:
    record = _record({"a": ("done", "1"), "b": ("pending", "2")}, phase="killed")
    (task,) = make_plan([_desired({"a": "1", "b": "2"})], {"user.a.t": record}).tasks
    assert task.action == "unchanged"
    (task,) = make_plan([_desired({"a": "1", "b": "2"}, "s2")], {"user.a.t": record}).tasks
    assert task.action == "update" and [c.name for c in task.changes] == ["b"]


def test_orphans_are_listed_unless_killed() -> None:
    running = _record({"a": ("running", "1")}, phase="running")
    running.name = "user.a.old"
    killed = _record({}, phase="killed")
    killed.name = "user.a.older"
    plan = make_plan([], {}, [Orphan(running, Path("/x")), Orphan(killed, Path("/y"))])
    assert [(t.name, t.action, t.pending) for t in plan.tasks] == [("user.a.old", "orphan", 1)]
    assert not plan.has_changes


def test_plan_round_trips_through_json() -> None:
    record = _record({"a": ("done", "1")})
    plan = make_plan([_desired({"a": "0", "b": "2"})], {"user.a.t": record})
    assert Plan.from_json(plan.to_json()) == plan


def test_digests_tell_what_changed() -> None:
    base = make_plan([_desired({"a": "1"})], {"user.a.t": None})
    spec_changed = make_plan([_desired({"a": "2"})], {"user.a.t": None})
    state_changed = make_plan([_desired({"a": "1"})], {"user.a.t": _record({"a": ("done", "1")})})
    assert base.desired_digest != spec_changed.desired_digest
    assert base.observed_digest == spec_changed.observed_digest
    assert base.observed_digest != state_changed.observed_digest


def test_job_names() -> None:
    assert job_name("config_sort_1_init_2.json") == "config_sort_1_init_2"
    assert job_name("noext") == "noext"
    assert job_name("a.b.json") == "a.b"
    odd = job_name("my config (1).json")
    assert odd.startswith("my_config_1-") and len(odd.split("-")[-1]) == 8
    assert odd == job_name("my config (1).json")  # stable
    names = job_names(["a.json", "a.yaml", "b.json"])
    assert names["b.json"] == "b"
    assert names["a.json"] != names["a.yaml"] and names["a.json"].startswith("a-")


def test_render_command_quotes_paths_and_keeps_longer_words() -> None:
    command = render_command("run %DATA %IN %OUT %INPUT", "/d d", "/c'c", "/o")
    assert command == "run '/d d' '/c'\"'\"'c' /o %INPUT"
