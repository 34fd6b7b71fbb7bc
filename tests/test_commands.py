"""status, retry, delete, and Ctrl-C, as a user runs them."""

from __future__ import annotations

import json
import shutil
import signal
import time
from pathlib import Path

import pytest

from tests.helpers import Repo

FAIL_IF_FLAG = "test -f ../../../../../flag && exit 7; cat %IN > %OUT # %DATA"  # <root>/flag


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Repo:
    monkeypatch.setenv("ORCHESTRA_USER", "alice")
    return Repo(tmp_path)


def test_status_table_and_json(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo.configs({f"c{i}.txt": "ok\n" for i in range(3)})
    task = repo.task()
    capsys.readouterr()
    assert repo.orchestra("status") == 0
    assert "No tasks yet." in capsys.readouterr().out
    assert repo.orchestra("apply") == 0
    capsys.readouterr()
    assert repo.orchestra("status") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "TASK",
        "PHASE",
        "DONE",
        "RUNNING",
        "FAILED",
        "PENDING",
        "STARTED",
        "DURATION",
    ]
    assert lines[1].split()[:6] == [task, "done", "3", "0", "0", "0"]
    assert repo.orchestra("status", "--format", "json") == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["name"] == task and entry["phase"] == "done" and entry["counts"]["done"] == 3
    assert repo.orchestra("status", "--user", "bob") == 0
    assert "No tasks yet." in capsys.readouterr().out


def test_status_of_one_task_lists_jobs_and_filters(
    repo: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    repo.configs({"c0.txt": "ok\n", "c1.txt": "bad\n"})
    task = repo.task(exec="grep -q ok %IN && cat %IN > %OUT # %DATA", bypass=True)
    assert repo.orchestra("apply") == 3
    capsys.readouterr()
    assert repo.orchestra("status", task, "--state", "failed") == 0
    out = capsys.readouterr().out
    assert "Phase:     finalized (1 job(s) failed)" in out
    rows = [line.split() for line in out.splitlines() if line.startswith("c")]
    assert [row[:4] for row in rows] == [["c1", "failed", "1", "1"]]
    assert "Logs:" in out
    assert repo.orchestra("status", task, "--format", "json") == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data["jobs"]) == {"c0", "c1"}
    assert data["jobs"]["c1"]["log"].endswith("/jobs/c1/log")
    assert data["jobs"]["c1"]["state"] == "failed" and data["phase"] == "finalized"
    assert repo.orchestra("status", task, "--state", "running", "--format", "json") == 0
    assert json.loads(capsys.readouterr().out)["jobs"] == {}


def test_status_of_an_unknown_task(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo.task()
    assert repo.orchestra("status", "user.alice.nope") == 1
    assert "no task named 'user.alice.nope'" in capsys.readouterr().err


def test_retry_reruns_failed_jobs(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo.configs({"c0.txt": "ok\n", "c1.txt": "ok\n"})
    (repo.root / "flag").write_text("fail\n")
    task = repo.task(exec=FAIL_IF_FLAG, testJobs=1)
    assert repo.orchestra("apply") == 3
    assert repo.status(task)["phase"] == "broken"
    (repo.root / "flag").unlink()
    assert repo.orchestra("apply") == 0  # apply does not rerun failed jobs: retry does
    assert repo.status(task)["phase"] == "broken"
    capsys.readouterr()
    assert repo.orchestra("retry", task) == 0
    status = repo.status(task)
    assert status["phase"] == "done"
    assert status["jobs"]["c0"]["attempts"] == 1  # a fresh retry budget
    capsys.readouterr()
    assert repo.orchestra("retry", task) == 0
    assert "no failed job to retry" in capsys.readouterr().out


def test_retry_and_delete_refuse_another_users_task(
    repo: Repo, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.configs({"c0.txt": "ok\n"})
    task = repo.task()
    assert repo.orchestra("apply") == 0
    monkeypatch.setenv("ORCHESTRA_USER", "bob")
    for command in (["retry", task], ["delete", task], ["delete", "--purge", task]):
        capsys.readouterr()
        assert repo.orchestra(*command) == 1
        assert "belongs to 'alice'; 'bob' may not" in capsys.readouterr().err
    assert repo.status(task)["phase"] == "done"


@pytest.mark.parametrize(
    "name",
    [
        "user.alice.t/../../bob/user.bob.task",  # alice's prefix, bob's directory
        "user.alice.x\n",
        "user.alice/../bob.task",
        "user.alice..",
        "../../etc",
    ],
)
def test_a_task_argument_never_reaches_outside_its_directory(
    repo: Repo, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    repo.configs({"c0.txt": "ok\n"})
    task = repo.task()
    assert repo.orchestra("apply") == 0
    # bob's task, next to alice's in the same storage
    bob_dir = repo.storage / "bob" / "user.bob.task"
    shutil.copytree(repo.task_dir(task), bob_dir)
    before = sorted(p.name for p in bob_dir.rglob("*"))
    for command in (["delete", "--purge", name], ["retry", name], ["status", name]):
        capsys.readouterr()
        assert repo.orchestra(*command) == 1, command
        assert "is not a task name" in capsys.readouterr().err
    assert sorted(p.name for p in bob_dir.rglob("*")) == before
    assert repo.status(task)["phase"] == "done"


def test_delete_kills_and_purge_relaunches(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo.configs({"c0.txt": "ok\n"})
    task = repo.task()
    assert repo.orchestra("apply") == 0
    assert repo.orchestra("delete", task) == 0
    assert repo.status(task)["phase"] == "killed"
    capsys.readouterr()
    assert repo.orchestra("plan", "--detailed-exitcode") == 0  # left alone: spec unchanged
    assert "No changes" in capsys.readouterr().out
    capsys.readouterr()
    assert repo.orchestra("plan", "--detail") == 0
    assert "killed; left alone while its spec is unchanged" in capsys.readouterr().out
    assert repo.orchestra("delete", "--purge", task) == 0
    assert not repo.task_dir(task).exists()
    assert repo.orchestra("apply") == 0
    assert repo.status(task)["phase"] == "done"


def test_delete_stops_running_jobs_of_a_live_apply(repo: Repo) -> None:
    repo.configs({f"c{i}.txt": "ok\n" for i in range(4)})
    task = repo.task(exec="sleep 30; cat %IN > %OUT # %DATA", bypass=True)
    apply = repo.spawn("apply")
    _wait_for(lambda: repo.task_dir(task).exists() and _running(repo, task) == 2)
    assert repo.orchestra("delete", task) == 0
    _out, err = apply.communicate(timeout=30)
    assert apply.returncode == 0, err
    status = repo.status(task)
    assert status["phase"] == "killed"
    assert status["counts"]["running"] == 0
    assert not _job_processes_alive(repo, task)


def test_ctrl_c_stops_jobs_leaves_them_pending_and_apply_resumes(repo: Repo) -> None:
    delay = repo.root / "delay"
    delay.write_text("30")
    repo.configs({f"c{i}.txt": "ok\n" for i in range(3)})
    task = repo.task(exec=f"sleep $(cat {delay}); cat %IN > %OUT # %DATA", bypass=True)
    apply = repo.spawn("apply")
    _wait_for(lambda: repo.task_dir(task).exists() and _running(repo, task) == 2)
    apply.send_signal(signal.SIGINT)
    _out, err = apply.communicate(timeout=30)
    assert apply.returncode == 130, err
    assert "Traceback" not in err
    status = repo.status(task)
    assert status["counts"]["pending"] == 3 and status["counts"]["running"] == 0
    assert all(job["attempts"] == 0 for job in status["jobs"].values())
    assert not _job_processes_alive(repo, task)
    delay.write_text("0")
    assert repo.orchestra("apply") == 0
    assert repo.status(task)["phase"] == "done"


def test_a_second_apply_on_a_busy_task_refuses_clearly(repo: Repo) -> None:
    repo.configs({"c0.txt": "ok\n"})
    task = repo.task(exec="sleep 30; cat %IN > %OUT # %DATA", bypass=True)
    first = repo.spawn("apply")
    _wait_for(lambda: repo.task_dir(task).exists() and _running(repo, task) == 1)
    second = repo.spawn("apply")
    _out, err = second.communicate(timeout=30)
    assert second.returncode == 1
    assert f"task {task} is being worked on by another orchestra (pid {first.pid}" in err
    first.send_signal(signal.SIGINT)
    first.communicate(timeout=30)


def _running(repo: Repo, task: str) -> int:
    from orchestra.status.store import TaskStore

    record = TaskStore(repo.task_dir(task)).load()
    return 0 if record is None else record.counts()["running"]


def _job_processes_alive(repo: Repo, task: str) -> bool:
    from orchestra.status.store import TaskStore
    from tests.helpers import processes_by_run_id as _processes_by_run_id

    record = TaskStore(repo.task_dir(task)).load()
    assert record is not None
    alive = _processes_by_run_id()
    return any(job.run_id in alive for job in record.jobs.values())


def _wait_for(condition: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_plan_as_markdown_for_a_ci_job_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = Repo(tmp_path)
    repo.configs({"c0.txt": "0\n", "c1.txt": "1\n"})
    task = repo.task(testJobs=1, exec="echo 'a|b' > %OUT # %IN %DATA")
    assert repo.orchestra("plan", "--format", "markdown", "--detailed-exitcode") == 2
    out = capsys.readouterr().out
    assert out.startswith("### Orchestra plan: 1 task to create (2 jobs)\n")
    assert f"| + | `{task}` | create | 2 jobs, the first 1 as tests, on here |" in out
    assert repo.orchestra("apply") == 0
    capsys.readouterr()
    assert repo.orchestra("plan", "--format", "markdown") == 0
    assert "No changes: the tasks match their specs." in capsys.readouterr().out
