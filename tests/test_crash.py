"""Crash safety: the orchestrator is SIGKILLed at random moments of an apply; after a final
run every job ended as its spec says, no job ran twice, and the sidecar agrees with the job
directories (design.md, "A process killed at any instant loses no status and duplicates no
job when run again"). The same with SIGINT and SIGTERM, as CI cancels a job: each interrupted
apply exits 130 or 143, and no job that had completed ever runs again."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from orchestra.backends.base import EXIT_MARKER
from orchestra.status.store import TaskStore, read_snapshot
from tests.helpers import Repo

KILLS = 25
JOBS = 50
# a job appends to `runs` each time it starts, so a second run of a job shows
EXEC = (
    "echo run >> runs; grep -q fail %IN && exit 3; sleep $(head -n 1 %IN); cat %IN > %OUT # %DATA"
)


def _kill_repeatedly(repo: Repo, configs: dict[str, str], rng: random.Random) -> int:
    """Start apply and SIGKILL it after a random moment, KILLS times."""
    kills = 0
    for _round in range(200):
        if kills == KILLS:
            break
        process = repo.spawn("apply")
        time.sleep(rng.uniform(0.05, 0.55))
        if process.poll() is not None:
            process.communicate()
            # it finished before this kill: give it more work, so that every run of this
            # test kills it KILLS times however fast the machine is
            more = {f"c{len(configs) + i:02d}.txt": "0.2\n" for i in range(10)}
            configs.update(more)
            repo.configs(more)
            continue
        process.kill()
        process.communicate()
        kills += 1
    return kills


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing_and_runs_nothing_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCHESTRA_USER", "alice")
    rng = random.Random(20261125)
    repo = Repo(tmp_path)
    configs = {f"c{i:02d}.txt": f"0.{rng.randint(5, 35):02d}\n" for i in range(JOBS)}
    configs["c07.txt"] = "fail\n"  # fails for good after its retry: the task ends finalized
    repo.configs(configs)
    task = repo.task(exec=EXEC, testJobs=5, maxRetries=1)

    kills = _kill_repeatedly(repo, configs, rng)
    assert kills == KILLS
    repo.orchestra("apply")  # the run that finishes the work
    final = repo.orchestra("apply")
    assert final == 0  # nothing left to do, and an old finalized task does not exit 3

    status = repo.status(task)
    assert status["phase"] == "finalized"
    jobs = status["jobs"]
    assert len(jobs) == len(configs)
    for name, job in jobs.items():
        runs = (repo.job_dir(task, name) / "runs").read_text().splitlines()
        if name == "c07":
            assert job["state"] == "failed" and job["attempts"] == 2 and job["exitCode"] == 3
            assert len(runs) == 2, name  # one attempt and one retry, never more
            continue
        assert job["state"] == "done", (name, job)
        assert len(runs) == 1, f"{name} ran {len(runs)} times"
        assert job["attempts"] == 1
        job_dir = repo.job_dir(task, name)
        assert (job_dir / "output").read_text() == configs[f"{name}.txt"]
        # the marker the job's shell wrote agrees with the sidecar
        assert (job_dir / EXIT_MARKER).read_text() == f"0 {job['run']}\n"
    # the snapshot and the event log say the same
    snapshot, _offset = read_snapshot(repo.task_dir(task) / "status.yaml")
    (repo.task_dir(task) / "status.yaml").unlink()
    replayed = TaskStore(repo.task_dir(task)).load()
    assert snapshot is not None and replayed is not None
    assert snapshot.phase == replayed.phase
    assert {n: j.to_json() for n, j in snapshot.jobs.items()} == {
        n: j.to_json() for n, j in replayed.jobs.items()
    }
    # the kills did land while jobs were in flight: some outcomes were recovered afterwards
    reasons = [e.get("reason") for e in repo.events(task) if e.get("ev") == "job"]
    recovered = reasons.count("recovered")
    lost = sum(1 for r in reasons if r and r.startswith("the orchestra that ran it died"))
    adopted = sum(
        1 for e in repo.events(task) if e.get("ev") == "job" and e.get("state") == "running"
    )
    print(f"kills={kills} recovered={recovered} lost={lost} running-events={adopted}")
    assert recovered + lost > 0


INTERRUPTS = 20
# a job records its start and, as its very last step, its completion
EXEC_DONE = (
    "echo run >> runs; grep -q fail %IN && { echo failed >> runs; exit 3; }; "
    "sleep $(head -n 1 %IN); cat %IN > %OUT; echo done >> runs # %DATA"
)
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


def _handler_installed(process: subprocess.Popen[str]) -> bool:
    """Whether orchestra's own code runs: its SIGTERM handler is in the process's SigCgt mask
    (a signal before that reaches the interpreter's startup, which is not orchestra's)."""
    try:
        with open(f"/proc/{process.pid}/status") as stream:
            for line in stream:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    except OSError:
        pass
    return process.poll() is not None


def _interrupt_repeatedly(
    repo: Repo, task: str, configs: dict[str, str], rng: random.Random
) -> dict[int, int]:
    """Start apply and send it SIGINT or SIGTERM after a random moment, INTERRUPTS times;
    each stopped apply exits with its signal's code, one line and no traceback."""
    sent = {signal.SIGINT: 0, signal.SIGTERM: 0}
    for _round in range(200):
        if sum(sent.values()) == INTERRUPTS:
            break
        sig = rng.choice((signal.SIGINT, signal.SIGTERM))
        process = repo.spawn("apply")
        deadline = time.monotonic() + 60
        while not _handler_installed(process):
            assert time.monotonic() < deadline
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.6))
        if process.poll() is None:
            process.send_signal(sig)
        out, err = process.communicate(timeout=120)
        if process.returncode != EXIT_CODES[sig]:
            # it had finished its work as the signal came (-sig: as the interpreter exited,
            # its handlers reset): more work, so that every run of this test interrupts it
            # INTERRUPTS times however fast the machine is
            assert process.returncode in (0, 3, -sig), (process.returncode, err)
            assert f"{task}: " in out, (sig, out, err)
            more = {f"c{len(configs) + i:02d}.txt": "0.4\n" for i in range(6)}
            configs.update(more)
            repo.configs(more)
            continue
        assert "Traceback" not in err, err
        assert err.strip().splitlines()[-1].startswith("orchestra: "), err
        sent[sig] += 1
    return sent


@pytest.mark.slow
def test_sigint_and_sigterm_at_random_moments_keep_every_outcome(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCHESTRA_USER", "alice")
    monkeypatch.setenv("PYTHONFAULTHANDLER", "1")  # a crash of the interpreter says where
    rng = random.Random(20261201)
    repo = Repo(tmp_path)
    # jobs of 0.3 s and more: the instant between a job's last step and its exit, where an
    # interrupt rightly counts it as stopped (it did not complete), stays negligible
    configs = {f"c{i:02d}.txt": f"0.{rng.randint(3, 9)}\n" for i in range(24)}
    configs["c05.txt"] = "fail\n"  # fails for good after its retry: the task ends finalized
    repo.configs(configs)
    task = repo.task(exec=EXEC_DONE, testJobs=3, maxRetries=1)

    sent = _interrupt_repeatedly(repo, task, configs, rng)
    assert sum(sent.values()) == INTERRUPTS and all(sent.values()), sent
    assert repo.orchestra("apply") in (0, 3)  # the run that finishes the work
    assert repo.orchestra("apply") == 0

    status = repo.status(task)
    assert status["phase"] == "finalized"
    assert len(status["jobs"]) == len(configs)
    for name, job in status["jobs"].items():
        lines = (repo.job_dir(task, name) / "runs").read_text().splitlines()
        if name == "c05":
            assert job["state"] == "failed" and job["attempts"] == 2 and job["exitCode"] == 3
            assert lines.count("failed") == 2, lines  # one attempt and one retry, never more
            continue
        assert job["state"] == "done", (name, job)
        # it may have been stopped and started again, but it completed once, and last
        assert lines.count("done") == 1 and lines[-1] == "done", (name, lines)
        assert job["attempts"] == 1  # a stopped attempt does not count
        assert (repo.job_dir(task, name) / "output").read_text() == configs[f"{name}.txt"]
        assert (repo.job_dir(task, name) / EXIT_MARKER).read_text() == f"0 {job['run']}\n"
    reasons = [e.get("reason") for e in repo.events(task) if e.get("ev") == "job"]
    print(f"interrupts={sent} interrupted-jobs={reasons.count('interrupted')}")
    assert reasons.count("interrupted") > 0  # the interrupts did land while jobs ran
