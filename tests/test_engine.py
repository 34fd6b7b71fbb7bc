"""The lifecycle of design.md on the local backend, through the real commands."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.helpers import Repo

# each run appends a line to runs: a job that runs twice shows it
COUNTED = "echo run >> runs; cat %IN > %OUT  # %DATA"
FAIL_ON_BAD = "echo run >> runs; grep -q ok %IN && cat %IN > %OUT  # %DATA"


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Repo:
    monkeypatch.setenv("ORCHESTRA_USER", "alice")
    return Repo(tmp_path)


def runs(repo: Repo, task: str, job: str) -> int:
    path = repo.job_dir(task, job) / "runs"
    return len(path.read_text().splitlines()) if path.exists() else 0


def phases(repo: Repo, task: str) -> list[str]:
    return [e["phase"] for e in repo.events(task) if e["ev"] == "task" and "phase" in e]


def test_all_jobs_run_once_tests_first_then_the_rest(repo: Repo) -> None:
    repo.configs({f"c{i:02d}.txt": "ok\n" for i in range(12)})
    task = repo.task(exec=COUNTED, testJobs=3)
    assert repo.orchestra("apply") == 0
    status = repo.status(task)
    assert status["phase"] == "done"
    assert status["counts"] == {"pending": 0, "submitted": 0, "running": 0, "done": 12, "failed": 0}
    assert phases(repo, task) == ["registered", "testing", "running", "done"]
    jobs = status["jobs"]
    assert [name for name, job in jobs.items() if job.get("test")] == ["c00", "c01", "c02"]
    # no non-test job was submitted before every test job was done
    events = repo.events(task)
    first_rest = min(i for i, e in enumerate(events) if e.get("job") == "c03")
    last_test_done = max(
        i
        for i, e in enumerate(events)
        if e.get("job") in ("c00", "c01", "c02") and e.get("state") == "done"
    )
    assert last_test_done < first_rest
    for name in jobs:
        assert runs(repo, task, name) == 1
        assert (repo.job_dir(task, name) / "output").read_text() == "ok\n"
        assert jobs[name]["exitCode"] == 0 and jobs[name]["attempts"] == 1


def test_bypass_goes_straight_to_running(repo: Repo) -> None:
    repo.configs({f"c{i}.txt": "ok\n" for i in range(3)})
    task = repo.task(bypass=True)
    assert repo.orchestra("apply") == 0
    assert phases(repo, task) == ["registered", "running", "done"]
    assert not any(job.get("test") for job in repo.status(task)["jobs"].values())


def test_a_failing_test_job_breaks_the_task_and_launches_nothing_else(repo: Repo) -> None:
    repo.configs(
        {"c0.txt": "ok\n", "c1.txt": "bad\n", **{f"c{i}.txt": "ok\n" for i in range(2, 8)}}
    )
    task = repo.task(exec=FAIL_ON_BAD, testJobs=2)
    assert repo.orchestra("apply") == 3
    status = repo.status(task)
    assert status["phase"] == "broken"
    assert status["jobs"]["c1"]["state"] == "failed"
    assert status["jobs"]["c0"]["state"] == "done"  # a test job running alongside finished
    for i in range(2, 8):
        assert status["jobs"][f"c{i}"]["state"] == "pending"
        assert runs(repo, task, f"c{i}") == 0


def test_failure_after_testing_finalizes(repo: Repo) -> None:
    repo.configs({"c0.txt": "ok\n", "c1.txt": "ok\n", "c2.txt": "bad\n", "c3.txt": "ok\n"})
    task = repo.task(exec=FAIL_ON_BAD, testJobs=2)
    assert repo.orchestra("apply") == 3
    status = repo.status(task)
    assert status["phase"] == "finalized"
    assert status["counts"]["done"] == 3 and status["counts"]["failed"] == 1
    assert status["jobs"]["c2"]["exitCode"] == 1


def test_retries_up_to_max_retries(repo: Repo) -> None:
    # c0 fails once then succeeds; c1 always fails
    flaky = (
        "grep -q never %IN && exit 5; "
        "if [ -f tried ]; then cat %IN > %OUT; else touch tried; exit 4; fi # %DATA"
    )
    repo.configs({"c0.txt": "flaky\n", "c1.txt": "never\n"})
    task = repo.task(exec=flaky, maxRetries=2, bypass=True)
    assert repo.orchestra("apply") == 3
    jobs = repo.status(task)["jobs"]
    assert jobs["c0"]["state"] == "done" and jobs["c0"]["attempts"] == 2
    assert jobs["c1"]["state"] == "failed" and jobs["c1"]["attempts"] == 3
    assert jobs["c1"]["exitCode"] == 5


def test_apply_twice_launches_nothing_twice(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo.configs({f"c{i}.txt": "ok\n" for i in range(4)})
    task = repo.task(exec=COUNTED)
    assert repo.orchestra("apply") == 0
    capsys.readouterr()
    assert repo.orchestra("plan", "--detailed-exitcode") == 0
    assert "No changes" in capsys.readouterr().out
    assert repo.orchestra("apply") == 0
    assert "Nothing to apply" in capsys.readouterr().out
    assert all(runs(repo, task, f"c{i}") == 1 for i in range(4))


def test_changed_inputs_rerun_only_their_jobs(
    repo: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    repo.configs({f"c{i}.txt": "ok\n" for i in range(4)})
    task = repo.task(exec=COUNTED)
    assert repo.orchestra("apply") == 0
    repo.configs({"c2.txt": "ok, changed\n", "c9.txt": "ok, new\n"})
    capsys.readouterr()
    assert repo.orchestra("plan", "--detailed-exitcode") == 2
    out = capsys.readouterr().out
    assert "~ c2  rerun: inputs changed" in out
    assert "+ c9  create: new config file" in out
    assert "Plan: 1 to update (1 new job, 1 job to rerun)." in out
    assert repo.orchestra("apply") == 0
    assert [runs(repo, task, f"c{i}") for i in (0, 1, 2, 3, 9)] == [1, 1, 2, 1, 1]
    # the mtime alone is not a change
    (repo.files / "configs" / "c0.txt").touch()
    assert repo.orchestra("plan", "--detailed-exitcode") == 0


def test_changing_the_image_reruns_every_job(repo: Repo) -> None:
    repo.configs({f"c{i}.txt": "ok\n" for i in range(3)})
    task = repo.task(exec=COUNTED)
    assert repo.orchestra("apply") == 0
    repo.tasks[task]["image"] = "alice/img:2"
    repo.write()
    assert repo.orchestra("apply") == 0
    assert [runs(repo, task, f"c{i}") for i in range(3)] == [2, 2, 2]
    assert repo.status(task)["image"] == "alice/img:2"


def test_a_removed_config_makes_an_orphan_job(
    repo: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    repo.configs({f"c{i}.txt": "ok\n" for i in range(3)})
    task = repo.task()
    assert repo.orchestra("apply") == 0
    (repo.files / "configs" / "c1.txt").unlink()
    capsys.readouterr()
    repo.orchestra("plan")
    assert "! c1  orphan: config file removed" in capsys.readouterr().out
    assert repo.orchestra("apply") == 0
    status = repo.status(task)
    assert status["jobs"]["c1"]["orphan"] is True
    assert status["counts"]["done"] == 2  # orphans are not counted
    assert (repo.job_dir(task, "c1") / "output").exists()  # never deleted


def test_stale_saved_plan_is_refused(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo.configs({"c0.txt": "ok\n"})
    task = repo.task()
    assert repo.orchestra("plan", "-o", "plan.json") == 0
    repo.configs({"c0.txt": "ok, edited\n"})
    capsys.readouterr()
    assert repo.orchestra("apply", "plan.json") == 1
    assert "the saved plan is stale: the specs or their data changed" in capsys.readouterr().err
    assert not repo.task_dir(task).exists()  # nothing was done
    assert repo.orchestra("plan", "-o", "plan.json") == 0
    assert repo.orchestra("apply", "plan.json") == 0
    assert repo.status(task)["phase"] == "done"
    # the state changed since (it was applied): the same plan is now stale
    assert repo.orchestra("apply", "plan.json") == 1
    assert "status in storage changed" in capsys.readouterr().err


def test_orphan_tasks_are_listed_and_pruned_only_on_request(
    repo: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    repo.configs({"c0.txt": "ok\n"})
    keep = repo.task("keep")
    gone = repo.task("gone")
    assert repo.orchestra("apply") == 0
    repo.remove_task(gone)
    capsys.readouterr()
    assert repo.orchestra("plan") == 0
    out = capsys.readouterr().out
    assert f"! {gone}  orphan" in out and "1 orphan" in out
    assert repo.orchestra("apply") == 0
    assert repo.status(gone)["phase"] == "done"  # listed, not touched
    assert repo.orchestra("apply", "--prune") == 0
    assert repo.status(gone)["phase"] == "killed"
    assert (repo.job_dir(gone, "c0") / "output").exists()  # outputs are never deleted
    assert repo.status(keep)["phase"] == "done"


def test_file_names_with_spaces_and_quotes(repo: Repo) -> None:
    odd = 'it\'s a "config" $(touch pwned) ;.txt'
    repo.configs({odd: "ok\n", "plain.txt": "ok\n"})
    task = repo.task(output="out put's")
    assert repo.orchestra("apply") == 0
    jobs = repo.status(task)["jobs"]
    (odd_name,) = [n for n in jobs if n != "plain"]
    assert odd_name.startswith("it_s_a_config_touch_pwned-")
    assert (repo.job_dir(task, odd_name) / "out put's").read_text() == "ok\n"
    assert not list(repo.root.rglob("pwned"))  # quoted, never executed


def test_environment_of_a_job(repo: Repo) -> None:
    repo.configs({"c0.txt": "ok\n"})
    task = repo.task(
        exec='printf "%s %s %s %s" "$ORCHESTRA_TASK" "$ORCHESTRA_JOB" "$ORCHESTRA_ATTEMPT" '
        '"$MINE" > %OUT # %IN %DATA',
        env={"MINE": "value"},
    )
    assert repo.orchestra("apply") == 0
    assert (repo.job_dir(task, "c0") / "output").read_text() == f"{task} c0 1 value"


def test_exit_zero_without_output_is_a_warning(
    repo: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    repo.configs({"c0.txt": "ok\n"})
    task = repo.task(exec="true %IN %DATA %OUT")
    assert repo.orchestra("apply") == 0
    job = repo.status(task)["jobs"]["c0"]
    assert job["state"] == "done" and job["warning"] == "exited 0 but wrote no output"
    capsys.readouterr()
    repo.orchestra("status", task)
    assert "exited 0 but wrote no output" in capsys.readouterr().out


def test_parallelism_caps_running_jobs(repo: Repo) -> None:
    repo.configs({f"c{i}.txt": "ok\n" for i in range(6)})
    # every job records how many jobs run at its start (a directory entry per running job)
    probe = (
        "mkdir -p ../../../running; touch ../../../running/$ORCHESTRA_JOB; "
        "ls ../../../running | wc -l > %OUT; sleep 0.2; "
        "rm ../../../running/$ORCHESTRA_JOB # %IN %DATA"
    )
    task = repo.task(exec=probe, parallelism=1, bypass=True)
    assert repo.orchestra("apply") == 0
    seen = [int((repo.job_dir(task, f"c{i}") / "output").read_text()) for i in range(6)]
    assert seen == [1] * 6


def test_invalid_specs_change_nothing(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo.configs({"c0.txt": "ok\n"})
    task = repo.task(exec="no placeholders")
    assert repo.orchestra("apply") == 1
    err = capsys.readouterr().err
    assert "users/alice/specs.yaml" in err and "exec must contain %DATA" in err
    assert "nothing was changed" in err
    assert not repo.task_dir(task).exists()


def test_no_op_plan_reads_only_snapshot_headers_and_still_sees_changes(repo: Repo) -> None:
    from orchestra.commands._common import load_specs, make_full_plan

    repo.configs({f"c{i}.txt": "ok\n" for i in range(3)})
    task = repo.task()
    assert repo.orchestra("apply") == 0
    assert "jobsDigest" in repo.status(task)
    planned = make_full_plan(load_specs([], str(repo.root)))
    record = planned.observed[task]
    assert record is not None and not record.jobs_loaded  # the job lines were not parsed
    assert planned.plan.tasks[0].action == "unchanged"
    repo.configs({"c1.txt": "ok, changed\n"})
    planned = make_full_plan(load_specs([], str(repo.root)))
    record = planned.observed[task]
    assert record is not None and record.jobs_loaded
    assert [(c.name, c.action) for c in planned.plan.tasks[0].changes] == [("c1", "rerun")]
    # an event the snapshot does not have yet: the header is not trusted
    with open(repo.task_dir(task) / "events.jsonl", "a") as log:
        log.write('{"ev":"task","phase":"running"}\n')
    repo.configs({"c1.txt": "ok\n"})
    planned = make_full_plan(load_specs([], str(repo.root)))
    record = planned.observed[task]
    assert record is not None and record.jobs_loaded and record.phase == "running"
    assert planned.plan.tasks[0].action == "resume"


def test_removing_the_config_of_a_running_job_stops_it(repo: Repo) -> None:
    from orchestra.status.store import TaskStore
    from tests.helpers import processes_by_run_id as _processes_by_run_id

    repo.configs({"c0.txt": "ok\n", "c1.txt": "ok\n"})
    task = repo.task(exec="sleep 30; cat %IN > %OUT # %DATA", bypass=True)
    apply = repo.spawn("apply")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        record = TaskStore(repo.task_dir(task)).load()
        if record is not None and record.counts()["running"] == 2:
            break
        time.sleep(0.05)
    apply.kill()  # the orchestrator dies; its jobs run on
    apply.wait(timeout=30)
    record = TaskStore(repo.task_dir(task)).load()
    assert record is not None
    orphan_run = record.jobs["c1"].run_id
    assert orphan_run in _processes_by_run_id()
    (repo.files / "configs" / "c1.txt").unlink()
    repo.tasks[task]["exec"] = "cat %IN > %OUT # %DATA"
    repo.write()
    assert repo.orchestra("apply") == 0
    jobs = repo.status(task)["jobs"]
    assert jobs["c0"]["state"] == "done"
    assert jobs["c1"]["orphan"] is True and jobs["c1"]["state"] == "pending"
    deadline = time.monotonic() + 10
    while orphan_run in _processes_by_run_id() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert orphan_run not in _processes_by_run_id()  # stopped, not left to run


def test_a_backend_whose_tools_are_missing_changes_nothing(
    repo: Repo, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import yaml

    repo.configs({"c0.txt": "ok\n"})
    task = repo.task()
    cluster = yaml.safe_load((repo.root / "cluster.yaml").read_text())
    cluster["spec"].update(backend="slurm")
    (repo.root / "cluster.yaml").write_text(yaml.safe_dump(cluster))
    monkeypatch.setenv("PATH", str(repo.root / "nothing-here"))  # no sbatch, squeue, scancel
    capsys.readouterr()
    assert repo.orchestra("apply") == 1
    err = capsys.readouterr().err
    assert "the slurm backend needs sbatch, squeue, scancel on PATH" in err
    assert not repo.task_dir(task).exists()


def test_read_only_storage_is_a_clear_error(
    repo: Repo, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    import orchestra.status.store as store_module

    repo.configs({"c0.txt": "ok\n"})
    repo.task()

    def read_only(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(repo.storage))

    monkeypatch.setattr(store_module.TaskStore, "open", read_only)
    capsys.readouterr()
    assert repo.orchestra("apply") == 1
    err = capsys.readouterr().err
    assert f"orchestra: error: {repo.storage}: Read-only file system" in err
    assert "Traceback" not in err and "bug" not in err


@pytest.mark.parametrize("target", ["/etc/passwd", "bob"])
def test_a_config_symlinked_out_of_the_owners_files_is_refused(
    repo: Repo, capsys: pytest.CaptureFixture[str], target: str
) -> None:
    repo.configs({"c0.txt": "ok\n"})
    if target == "bob":
        secret = repo.storage / "bob" / "files" / "secret.txt"
        secret.parent.mkdir(parents=True)
        secret.write_text("bob's\n")
        target = str(secret)
    (repo.files / "configs" / "c1.txt").symlink_to(target)
    task = repo.task()
    for command in ("plan", "apply"):
        capsys.readouterr()
        assert repo.orchestra(command) == 1
        err = capsys.readouterr().err
        assert "c1.txt' is a symlink to" in err and "outside" in err
    assert not repo.task_dir(task).exists()  # nothing written


def test_a_config_symlinked_inside_the_owners_files_runs(repo: Repo) -> None:
    repo.configs({"c0.txt": "ok\n"})
    (repo.files / "shared.txt").write_text("shared\n")
    (repo.files / "configs" / "c1.txt").symlink_to(repo.files / "shared.txt")
    task = repo.task()
    assert repo.orchestra("apply") == 0
    assert repo.status(task)["counts"]["done"] == 2


def test_a_job_that_hangs_is_ended_at_its_timeout(
    repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestra.backends import local

    monkeypatch.setattr(local, "TERM_GRACE", 0.5)
    repo.configs({"hangs.txt": "hang\n", "quick.txt": "quick\n"})
    # it ignores SIGTERM and would run for a minute: the deadline still ends it
    task = repo.task(
        exec="if grep -q hang %IN; then trap '' TERM; sleep 60; fi; cp %IN %OUT # %DATA",
        bypass=True,
        timeout=1,
        maxRetries=1,
    )
    started = time.monotonic()
    assert repo.orchestra("apply") == 3  # finalized: one job failed for good
    elapsed = time.monotonic() - started
    status = repo.status(task)
    hangs, quick = status["jobs"]["hangs"], status["jobs"]["quick"]
    assert quick["state"] == "done"
    assert (hangs["state"], hangs["attempts"]) == ("failed", 2)
    assert hangs["reason"] == "DeadlineExceeded: still running after its timeout (1 s)"
    assert hangs["exitCode"] == 137  # SIGTERM ignored: SIGKILL after the grace period
    assert elapsed < 30  # two attempts of 1 s plus the grace, not two minutes


@pytest.mark.parametrize(
    ("code", "message"),
    [(28, "No space left on device"), (30, "Read-only file system")],
)
def test_storage_failing_mid_run_is_a_clear_error_and_loses_nothing(
    repo: Repo,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    code: int,
    message: str,
) -> None:
    import yaml

    import orchestra.status.store as store_module

    repo.configs({f"c{i}.txt": f"{i}\n" for i in range(8)})
    task = repo.task(exec="echo run >> runs; sleep 0.1; cat %IN > %OUT # %DATA", bypass=True)
    append = store_module.TaskStore.append
    calls = {"n": 0}

    def failing(self: store_module.TaskStore, *args: object, **kwargs: object) -> None:
        calls["n"] += 1
        if calls["n"] > 6:  # the disk fills (or turns read-only) in the middle of the run
            raise OSError(code, message, str(self.events_path))
        append(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store_module.TaskStore, "append", failing)
    capsys.readouterr()
    assert repo.orchestra("apply") == 1
    err = capsys.readouterr().err
    assert f"orchestra: error: {repo.task_dir(task) / 'events.jsonl'}: {message}" in err
    assert "Traceback" not in err
    snapshot = repo.task_dir(task) / "status.yaml"
    assert yaml.safe_load(snapshot.read_text())["name"] == task  # the last snapshot, whole
    monkeypatch.undo()
    assert repo.orchestra("apply") == 0  # space again: the next apply finishes the work
    status = repo.status(task)
    assert status["phase"] == "done"
    for name in status["jobs"]:
        runs = (repo.job_dir(task, name) / "runs").read_text().splitlines()
        assert len(runs) == 1, name  # what ran before the failure was not run again


def test_an_apply_with_descriptors_above_1023_runs_its_jobs(repo: Repo) -> None:
    """Hundreds of tasks hold a log and a lock open each, so the slots' pipes get descriptors
    above 1023, which select() refuses: the jobs must still run (this hung, slots dead)."""
    import subprocess
    import sys

    repo.configs({f"c{i}.txt": f"{i}\n" for i in range(4)})
    task = repo.task(bypass=True)
    script = (
        "import os, resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (2048, resource.getrlimit("
        "resource.RLIMIT_NOFILE)[1]))\n"
        "held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]\n"
        "from orchestra.cli import main\n"
        f"sys.exit(main(['-C', {str(repo.root)!r}, 'apply']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "ORCHESTRA_USER": "alice"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert repo.status(task)["counts"]["done"] == 4


def test_a_scheduling_round_costs_the_jobs_it_launches_not_the_tasks(
    repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With many tasks and 2 slots, a round of the engine looks only at tasks that may launch
    something, until the slots are taken: the scheduler's work grows with the jobs, not with
    jobs x tasks (at 1,000 tasks the latter was a third of an apply)."""
    from orchestra.engine.runner import Engine

    repo.configs({f"c{i}.txt": "ok\n" for i in range(4)})
    tasks = [
        repo.task(f"t{i:02d}", exec="sleep 0.01; cat %IN > %OUT # %DATA", testJobs=1)
        for i in range(30)
    ]
    asked: list[str] = []
    next_job = Engine._next_job

    def counting(self: Engine, run: object) -> str | None:
        asked.append(run.name)  # type: ignore[attr-defined]
        return next_job(self, run)  # type: ignore[arg-type]

    monkeypatch.setattr(Engine, "_next_job", counting)
    assert repo.orchestra("apply") == 0
    launched = sum(len(repo.status(task)["jobs"]) for task in tasks)
    assert launched == 120 and all(repo.status(t)["phase"] == "done" for t in tasks)
    # each launch asks one task; a task is asked in vain at most when its queue holds only
    # names that are no longer pending
    assert len(asked) <= launched + len(tasks), len(asked)


def test_whole_floats_where_integers_are_asked_for_are_used_as_integers(repo: Repo) -> None:
    """JSON Schema counts 2.0 as an integer, so ``maxRetries: 2.0`` passes validation: it is
    used as 2 (a float there made apply fail with an internal error, found by the fuzz test)."""
    from orchestra.commands._common import load_specs

    repo.configs({f"c{i}.txt": "ok\n" for i in range(3)})
    task = repo.task(exec=COUNTED, timeout=30.0, maxRetries=1.0, testJobs=1.0, parallelism=2.0)
    assert repo.orchestra("validate") == 0
    spec = load_specs([], str(repo.root)).tasks[task]
    values = (spec.timeout, spec.max_retries, spec.test_jobs, spec.parallelism)
    assert values == (30, 1, 1, 2) and all(type(v) is int for v in values)
    assert repo.orchestra("apply") == 0
    assert repo.status(task)["phase"] == "done"


def _plan_sees(repo: Repo) -> dict[str, object]:
    from orchestra.commands._common import load_specs, make_full_plan

    planned = make_full_plan(load_specs([], str(repo.root)))
    (task,) = planned.desired
    record = planned.observed[task.name]
    return {
        "action": planned.plan.tasks[0].action,
        "reruns": planned.plan.tasks[0].to_rerun,
        "jobs_rendered": "_columns" in task.__dict__,  # digests and commands were made
        "jobs_read": record is not None and record.jobs_loaded,
    }


@pytest.mark.parametrize(
    "change",
    [
        "image",
        "exec",
        "env",
        "output",
        "data",
        "a config",
        "jobs cache lost",
        "jobs cache torn",
        "jobs cache junk",
    ],
)
def test_the_jobs_digest_cache_spares_the_work_and_misses_no_change(
    repo: Repo, change: str
) -> None:
    """A plan of a task whose inputs did not change takes its jobs digest from the cache
    (<storage>/.orchestra/jobs-cache.json) and neither renders nor hashes its jobs; any change
    of what the digests are made from still shows as reruns."""
    repo.configs({f"c{i}.txt": "ok\n" for i in range(3)})
    task = repo.task(exec=COUNTED)
    assert repo.orchestra("apply") == 0
    assert _plan_sees(repo) == {
        "action": "unchanged",
        "reruns": 0,
        "jobs_rendered": False,
        "jobs_read": False,
    }
    cache = repo.storage / ".orchestra" / "jobs-cache.json"
    spec = repo.tasks[task]
    reruns = 3
    if change == "image":
        spec["image"] = "alice/img:2"
    elif change == "exec":
        spec["exec"] = COUNTED + " "
    elif change == "env":
        spec["env"] = {"SEED": "1"}
    elif change == "output":
        spec["output"] = "result"
    elif change == "data":
        (repo.files / "data.txt").write_text("other data\n")
    elif change == "a config":
        repo.configs({"c1.txt": "ok, changed\n"})
        reruns = 1
    elif change == "jobs cache lost":
        cache.unlink()
        reruns = 0
    else:
        cache.write_text('{"not": 1, "a": ["digest"]}' if change.endswith("junk") else "[")
        reruns = 0
    repo.write()
    seen = _plan_sees(repo)
    assert seen["reruns"] == reruns and seen["jobs_rendered"]
    assert seen["action"] == ("update" if reruns else "unchanged")
    assert seen["jobs_read"] == bool(reruns)
    if not reruns:  # the cache is written again: the next plan is spared the work
        assert _plan_sees(repo)["jobs_rendered"] is False
