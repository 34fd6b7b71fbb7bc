"""Crash safety beyond apply: ``retry``, ``delete``, ``delete --purge`` and ``reconcile`` are
SIGKILLed at random moments; after they are run again no status is lost, no job ran twice, and
status.yaml agrees with the event log (a reader never sees a torn file: it is replaced by
rename, and read back here after every kill)."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path

import git
import pytest

from orchestra.status.model import TaskRecord
from orchestra.status.store import TaskStore, read_snapshot
from tests.helpers import Repo
from tests.helpers import processes_by_run_id as _processes_by_run_id

KILLS = 12
# a job appends to `runs` each time it starts; a "flaky" config fails its first run only
EXEC = (
    "echo run >> runs; "
    'if grep -q flaky %IN && [ "$(wc -l < runs)" -eq 1 ]; then exit 3; fi; '
    "sleep 0.2; cat %IN > %OUT # %DATA"
)


def _runs(repo: Repo, task: str, job: str) -> int:
    path = repo.job_dir(task, job) / "runs"
    return len(path.read_text().splitlines()) if path.exists() else 0


def _consistent(repo: Repo, task: str) -> None:
    """status.yaml parses and is exactly what the log says up to its ``eventsOffset`` (the log
    may be ahead of the snapshot, never behind; and an attempt whose outcome was lost is taken
    back, so the log's later events may lower a job's attempts)."""
    snapshot, offset = read_snapshot(repo.task_dir(task) / "status.yaml")
    assert snapshot is not None, "status.yaml unreadable"
    log = (repo.task_dir(task) / "events.jsonl").read_bytes()
    assert 0 < offset <= len(log) and log[offset - 1 : offset] == b"\n"
    replayed = TaskRecord(task)
    for line in log[:offset].splitlines():
        replayed.apply(json.loads(line))
    assert snapshot.phase == replayed.phase
    assert snapshot.jobs == replayed.jobs


def _kill_at_random(
    repo: Repo, argv: list[str], rng: random.Random, check: Callable[[], None]
) -> int:
    kills = 0
    for _round in range(KILLS):
        process = repo.spawn(*argv)
        time.sleep(rng.uniform(0.0, 0.4))
        process.send_signal(signal.SIGKILL)
        process.communicate()
        kills += process.returncode == -signal.SIGKILL
        check()
    return kills


def _no_job_process_left(repo: Repo, task: str) -> bool:
    """No process carries the run id of one of the task's jobs or works in its directory."""
    record = TaskStore(repo.task_dir(task)).load()
    assert record is not None
    dirs = {os.path.realpath(repo.job_dir(task, name)): name for name in record.jobs}
    alive = _processes_by_run_id(dirs)
    return not set(alive) & ({job.run_id for job in record.jobs.values()} | set(dirs.values()))


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Repo:
    monkeypatch.setenv("ORCHESTRA_USER", "alice")
    return Repo(tmp_path / "specs")


@pytest.mark.slow
def test_retry_killed_at_random_moments(repo: Repo) -> None:
    rng = random.Random(7)
    configs = {f"c{i:02d}.txt": ("flaky\n" if i % 2 else "ok\n") for i in range(16)}
    repo.configs(configs)
    task = repo.task(exec=EXEC, bypass=True, maxRetries=0)
    assert repo.orchestra("apply") == 3  # the flaky half failed: finalized
    kills = _kill_at_random(repo, ["retry", task], rng, lambda: _consistent(repo, task))
    assert kills > 0
    assert repo.orchestra("retry", task) == 0
    assert repo.orchestra("apply") == 0
    status = repo.status(task)
    assert status["phase"] == "done", status["counts"]
    for name in status["jobs"]:
        flaky = "flaky" in configs[f"{name}.txt"]
        assert _runs(repo, task, name) == (2 if flaky else 1), name  # one retry, never more
    _consistent(repo, task)


@pytest.mark.slow
def test_delete_and_purge_killed_at_random_moments(repo: Repo) -> None:
    rng = random.Random(11)
    repo.configs({f"c{i:02d}.txt": "ok\n" for i in range(12)})
    task = repo.task(exec=EXEC.replace("sleep 0.2", "sleep 30"), bypass=True)
    apply = repo.spawn("apply")
    deadline = time.monotonic() + 30
    while not (repo.task_dir(task) / "status.yaml").exists() or not any(
        (repo.task_dir(task) / "jobs").glob("*/runs")
    ):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert not _no_job_process_left(repo, task)  # the check below sees running jobs
    kills = _kill_at_random(repo, ["delete", task], rng, lambda: _consistent(repo, task))
    assert repo.orchestra("delete", task) == 0
    apply.communicate(timeout=60)
    status = repo.status(task)
    assert status["phase"] == "killed" and status["counts"]["running"] == 0
    assert _no_job_process_left(repo, task)
    _consistent(repo, task)
    # purge, killed: a half-removed directory is finished by the next purge
    kills += _kill_at_random(repo, ["delete", "--purge", task], rng, lambda: None)
    assert kills > 0
    assert repo.orchestra("delete", "--purge", task) in (0, 1)  # 1: already gone entirely
    assert not repo.task_dir(task).exists()
    # the same name launches afresh, each job once
    repo.task(exec=EXEC, bypass=True)
    assert repo.orchestra("apply") == 0
    assert all(_runs(repo, task, name) == 1 for name in repo.status(task)["jobs"])


@pytest.mark.slow
def test_reconcile_killed_at_random_moments(repo: Repo) -> None:
    rng = random.Random(13)
    (repo.root / ".gitignore").write_text("storage/\n")
    configs = {f"c{i:02d}.txt": "ok\n" for i in range(30)}
    repo.configs(configs)
    task = repo.task(exec=EXEC, testJobs=3)
    specs = git.Repo.init(repo.root)
    specs.git.add(A=True)
    specs.index.commit("specs")

    def check() -> None:
        if (repo.task_dir(task) / "status.yaml").exists():
            _consistent(repo, task)

    kills = _kill_at_random(repo, ["reconcile"], rng, check)
    assert kills > 0
    assert repo.orchestra("reconcile") == 0
    status = repo.status(task)
    assert status["phase"] == "done", status["counts"]
    assert all(_runs(repo, task, name) == 1 for name in status["jobs"])
    _consistent(repo, task)
