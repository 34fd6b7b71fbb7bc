"""Interrupts (issue 14, items 3, 4, 17, 18): Ctrl-C and SIGTERM keep the outcomes already
known; recovery after a SIGKILL goes by what the job's wrapper recorded, not by its
environment; ``delete --purge`` never removes a task from under a running apply; the exit
code of an interrupt is 130 (SIGINT) or 143 (SIGTERM), with one line and no traceback."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from orchestra.backends.base import EXIT_MARKER, JobEvent, JobRun
from orchestra.backends.local import LocalBackend, _freeze
from orchestra.commands import _run
from orchestra.engine.runner import TaskRun
from orchestra.spec.loader import load_text
from orchestra.spec.model import ClusterSpec, SlurmSettings
from orchestra.status.store import TaskStore
from tests.helpers import Repo
from tests.helpers import processes_by_run_id as _processes_by_run_id

DEADLINE = 60.0


def _wait_for(condition: Callable[[], object], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not met in {timeout:.0f} s: {what}"
        time.sleep(0.05)


def _cluster(tmp_path: Path, slots: int = 2) -> ClusterSpec:
    doc = load_text("a: 1\n", "x.yaml").documents[0]
    return ClusterSpec("c", "local", tmp_path, slots, None, SlurmSettings(), doc)


def _run_of(tmp_path: Path, job: str, command: str) -> JobRun:
    return JobRun("user.a.t", job, 1, f"run-{job}", command, tmp_path / "jobs" / job)


def _collect(backend: LocalBackend, count: int) -> list[JobEvent]:
    events: list[JobEvent] = []
    deadline = time.monotonic() + DEADLINE
    while len(events) < count and time.monotonic() < deadline:
        events += backend.poll(0.2)
    return events


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Repo:
    monkeypatch.setenv("ORCHESTRA_USER", "alice")
    return Repo(tmp_path / "specs")


@pytest.fixture
def leftovers() -> Iterator[list[str]]:
    """Run ids whose processes are killed at the end of the test, whatever happened."""
    run_ids: list[str] = []
    yield run_ids
    for run_id, pids in _processes_by_run_id().items():
        if run_id in run_ids:
            for pid in pids:
                os.kill(pid, signal.SIGKILL)


# item 3: an interrupt keeps the outcomes already known ---------------------------------------
def _ended(marker: Path) -> bool:
    """The marker holds the exit code 0 (while the job runs it holds its "run <pids>" line)."""
    try:
        return marker.read_text().startswith("0 ")
    except OSError:
        return False


def test_close_hands_over_the_outcome_of_a_job_that_finished_unpolled(tmp_path: Path) -> None:
    backend = LocalBackend(_cluster(tmp_path))
    done = _run_of(tmp_path, "done", "exit 0")
    slow = _run_of(tmp_path, "slow", "sleep 60")
    backend.submit(done)
    backend.submit(slow)
    _wait_for(lambda: _ended(done.job_dir / EXIT_MARKER), "the quick job's exit code")
    events = backend.close()  # never polled: its outcome is still queued
    finished = {e.run.job: e for e in events if e.kind == "finished"}
    assert finished["done"].exit_code == 0 and finished["done"].reason is None
    assert finished["slow"].reason == "interrupted"


def test_a_job_the_stop_signal_reached_first_is_interrupted_not_failed(tmp_path: Path) -> None:
    """CI runners and systemd signal every process of the job at once: a job that the
    SIGTERM killed before this process could stop it is left pending, not failed."""
    backend = LocalBackend(_cluster(tmp_path))
    run = _run_of(tmp_path, "j", "exec sleep 60")
    backend.submit(run)
    (started,) = _collect(backend, 1)
    assert started.kind == "started" and started.pid is not None
    os.kill(started.pid, signal.SIGTERM)
    _wait_for(lambda: (run.job_dir / EXIT_MARKER).read_text() == "143 run-j\n", "the job's marker")
    (event,) = backend.close()
    assert event.kind == "finished" and event.reason == "interrupted"


def test_ctrl_c_while_an_outcome_is_queued_logs_it_and_never_reruns_it(
    repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The interrupt lands after the quick job ended (its marker is written) and before the
    engine read its outcome: it is logged done, and the next apply does not run it again."""
    gate, hold = repo.root / "go", repo.root / "hold"
    hold.touch()
    repo.configs({"a.txt": "quick\n", "b.txt": "slow\n"})
    task = repo.task(
        exec=(
            f"echo run >> runs; grep -q slow %IN && [ -e {hold} ] && sleep 60; "
            f"while [ ! -e {gate} ]; do sleep 0.02; done; cat %IN > %OUT # %DATA"
        ),
        bypass=True,
    )
    marker = repo.job_dir(task, "a") / EXIT_MARKER

    def progress(runs: list[TaskRun], final: bool) -> None:
        if final or hold.exists() is False:
            return
        job = runs[0].record.jobs.get("a")
        if job is None or job.state not in ("submitted", "running"):
            return
        gate.touch()  # let it end now: its outcome is queued while this callback waits
        # its exit code, not the "run <pids>" line the marker holds while the job runs
        _wait_for(lambda: _ended(marker), "the quick job's marker")
        raise KeyboardInterrupt

    monkeypatch.setattr(_run, "make_progress", lambda out: progress)
    assert repo.orchestra("apply") == 130
    status = repo.status(task)
    assert status["jobs"]["a"]["state"] == "done" and status["jobs"]["a"]["attempts"] == 1
    assert status["jobs"]["b"]["state"] == "pending"
    assert status["jobs"]["b"]["reason"] == "interrupted"
    hold.unlink()  # the next apply runs b to its end, and has nothing to do with a
    assert repo.orchestra("apply") == 0
    assert _lines(repo.job_dir(task, "a") / "runs") == 1
    assert repo.status(task)["phase"] == "done"


def test_a_job_frozen_by_close_is_told_from_one_that_ended(tmp_path: Path) -> None:
    """close() decides "it ended on its own" against a stopped process, not a race."""
    running = subprocess.Popen(["sleep", "60"])
    ended = subprocess.Popen(["true"])
    try:
        _wait_for(lambda: _state(ended.pid) in ("Z", None), "the ended process to be a zombie")
        assert _freeze(running.pid) is True
        assert _state(running.pid) in ("T", "t")
        assert _freeze(ended.pid) is False
    finally:
        running.kill()
        running.wait()
        ended.wait()


def _state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stream:
            return stream.read().rsplit(b")", 1)[1].split()[0].decode()
    except OSError:
        return None


# item 4: recovery by the wrapper's records --------------------------------------------------
def test_a_job_that_clears_its_environment_and_leaves_its_directory_is_adopted(
    repo: Repo, leftovers: list[str]
) -> None:
    """``env -i`` and ``cd /``: after a SIGKILL of orchestra the next apply waits for the
    running job instead of starting it a second time."""
    gate, runs = repo.root / "go", repo.root / "runs"
    repo.configs({"a.txt": "x\n"})
    inner = f"echo run >> {runs}; while [ ! -e {gate} ]; do sleep 0.05; done"
    task = repo.task(exec=f"cd / && exec env -i /bin/sh -c '{inner}' # %IN %OUT %DATA", bypass=True)
    first = repo.spawn("apply")
    try:
        _wait_for(lambda: _lines(runs) == 1, "the job to start")
        record = TaskStore(repo.task_dir(task)).load()
        assert record is not None and record.jobs["a"].run_id
        leftovers.append(record.jobs["a"].run_id)
        first.kill()
        first.wait()  # not communicate(): the job's shell holds its stderr open
        size = (repo.task_dir(task) / "events.jsonl").stat().st_size
        second = repo.spawn("apply")
        try:
            # the second apply has decided about the job: adopted (running) or started anew
            _wait_for(
                lambda: (
                    b'"state":"running"'
                    in (repo.task_dir(task) / "events.jsonl").read_bytes()[size:]
                ),
                "the second apply to take the job over",
            )
        finally:
            gate.touch()
            _out, err = second.communicate(timeout=DEADLINE)
        assert second.returncode == 0, err
    finally:
        gate.touch()
        if first.poll() is None:
            first.kill()
    assert _lines(runs) == 1  # one run, adopted, never a second
    job = repo.status(task)["jobs"]["a"]
    assert job["state"] == "done" and job["attempts"] == 1 and job["reason"] == "recovered"


def test_a_command_that_replaces_its_shell_still_leaves_its_marker(tmp_path: Path) -> None:
    backend = LocalBackend(_cluster(tmp_path))
    try:
        run = _run_of(tmp_path, "exec", "exec /bin/sh -c 'exit 7'")
        backend.submit(run)
        (event,) = [e for e in _collect(backend, 1) if e.kind == "finished"]
        assert event.exit_code == 7
        assert (run.job_dir / EXIT_MARKER).read_text() == "7 run-exec\n"
    finally:
        backend.close()


def test_an_exec_job_ending_while_no_orchestra_watches_has_its_outcome_recovered(
    tmp_path: Path,
) -> None:
    gate = tmp_path / "go"
    first = LocalBackend(_cluster(tmp_path))
    run = _run_of(
        tmp_path, "j", f"exec /bin/sh -c 'while [ ! -e {gate} ]; do sleep 0.05; done; exit 4'"
    )
    first.submit(run)
    try:
        assert _collect(first, 1)[0].kind == "started"
        # the first orchestra "dies": its pool is abandoned, the job runs on
        second = LocalBackend(_cluster(tmp_path))
        try:
            (adopted,) = second.recover([run])
            assert adopted.kind == "started"
            gate.touch()
            (outcome,) = _collect(second, 1)
            assert outcome.kind == "finished" and outcome.exit_code == 4
            assert outcome.reason == "recovered"
        finally:
            second.close()
    finally:
        gate.touch()
        first.close()


def test_a_leftover_process_with_the_run_id_does_not_hold_up_recovery(
    tmp_path: Path, leftovers: list[str]
) -> None:
    """The job ended (its marker says so) but left a process behind that carries its run id:
    the next orchestra takes the marker's word and does not wait for the straggler."""
    first = LocalBackend(_cluster(tmp_path))
    run = _run_of(tmp_path, "j", "(sleep 300 &) ; exit 0")
    leftovers.append(run.run_id)
    try:
        first.submit(run)
        assert [e.kind for e in _collect(first, 1)] == ["finished"]
        assert run.run_id in _processes_by_run_id()  # the straggler is there
        second = LocalBackend(_cluster(tmp_path))
        try:
            (event,) = second.recover([run])
            assert event.kind == "finished" and event.exit_code == 0
            assert event.reason == "recovered"
        finally:
            second.close()
    finally:
        first.close()


def test_a_job_killed_by_a_cancel_still_gets_its_marker(tmp_path: Path) -> None:
    """The marker's writer is the parent that waits: a cancel (or a timeout) signals the job's
    processes, never the writer."""
    backend = LocalBackend(_cluster(tmp_path))
    try:
        run = _run_of(tmp_path, "j", "exec sleep 60")
        backend.submit(run)
        assert _collect(backend, 1)[0].kind == "started"
        backend.cancel([run.run_id])
        (event,) = _collect(backend, 1)
        assert event.reason == "cancelled"
        assert (run.job_dir / EXIT_MARKER).read_text() == "143 run-j\n"
    finally:
        backend.close()


def test_a_job_leaving_fifos_for_its_records_blocks_nothing(tmp_path: Path) -> None:
    """A job that puts a FIFO where its marker goes: its slot writes no record there and runs
    the next job; a later recovery does not read it (no hang): the job is lost."""
    backend = LocalBackend(_cluster(tmp_path, slots=1))
    hostile = _run_of(tmp_path, "hostile", "rm -f .orchestra-exit; mkfifo .orchestra-exit")
    try:
        backend.submit(hostile)
        backend.submit(_run_of(tmp_path, "next", "exit 5"))
        finished = {e.run.job: e for e in _collect(backend, 2) if e.kind == "finished"}
        assert finished["hostile"].exit_code == 0 and finished["next"].exit_code == 5
    finally:
        backend.close()
    results: list[JobEvent] = []
    second = LocalBackend(_cluster(tmp_path))
    reader = threading.Thread(target=lambda: results.extend(second.recover([hostile])), daemon=True)
    reader.start()
    reader.join(DEADLINE)
    assert not reader.is_alive(), "recovery blocked on a FIFO"
    second.close()
    assert [e.kind for e in results] == ["lost"]


# item 17: purge waits for the lock ----------------------------------------------------------
def test_purge_while_an_apply_runs_the_task_waits_for_it(repo: Repo) -> None:
    """The jobs ignore SIGTERM, so the apply asked to kill the task winds down for its grace
    period, holding the task's lock: purge removes the directory only once it let go."""
    repo.configs({f"c{i}.txt": "x\n" for i in range(3)})
    task = repo.task(
        exec="trap '' TERM; echo run >> runs; sleep 60; cat %IN > %OUT # %DATA", bypass=True
    )
    apply = repo.spawn("apply")
    try:
        _wait_for(
            lambda: sum(_lines(p) for p in repo.task_dir(task).glob("jobs/*/runs")) == 2,
            "two jobs running",
        )
        assert repo.orchestra("delete", "--purge", task) == 0
        assert not _holds_lock(apply.pid)  # it had let go when the directory went
        assert not repo.task_dir(task).exists()
        _out, err = apply.communicate(timeout=DEADLINE)
    finally:
        if apply.poll() is None:
            apply.kill()
    assert apply.returncode == 0, err
    assert "error" not in err
    assert not repo.task_dir(task).exists()  # nothing recreated by the apply winding down


def _holds_lock(pid: int) -> bool:
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            if ".orchestra-lock" in os.readlink(f"/proc/{pid}/fd/{fd}"):
                return True
    return False


def test_purge_refuses_while_the_lock_stays_held(
    repo: Repo, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from orchestra.engine import stop

    repo.configs({"c0.txt": "x\n"})
    task = repo.task(bypass=True)
    assert repo.orchestra("apply") == 0
    assert repo.orchestra("delete", task) == 0  # killed: what an engine asked to stop leaves
    monkeypatch.setattr(stop, "WAIT_FOR_ENGINE", 0.5)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path\n"
            "from orchestra.engine.lock import TaskLock\n"
            "TaskLock(Path(sys.argv[1])).acquire('t'); print('held', flush=True); time.sleep(60)",
            str(repo.task_dir(task)),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert repo.orchestra("delete", "--purge", task) == 1
        err = capsys.readouterr().err
        assert "being worked on by another orchestra" in err and "not purged" in err
        assert repo.task_dir(task).is_dir() and (repo.task_dir(task) / "status.yaml").exists()
    finally:
        holder.kill()
        holder.wait()


# item 18: exit codes and messages of an interrupt -------------------------------------------
SLOW_IMPORT = (
    "import sys, time\n"
    "class Slow:\n"
    "    def find_spec(self, name, path, target=None):\n"
    "        if name == 'orchestra.cli':\n"
    "            print('loading', flush=True)\n"
    "            time.sleep(1)\n"
    "        return None\n"
    "sys.meta_path.insert(0, Slow())\n"
    "sys.argv[1:] = ['--version']\n"
    "from orchestra.__main__ import main\n"
    "raise SystemExit(main())\n"
)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupt_while_the_modules_load_is_one_line(sig: int, code: int) -> None:
    """The signal lands while orchestra.cli is imported: it is acted on once the modules have
    loaded (held back meanwhile: some compiled extensions crash when interrupted in their
    initialisation), with one line and the exit code of a clean stop."""
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_IMPORT],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "loading"
    process.send_signal(sig)
    _out, err = process.communicate(timeout=DEADLINE)
    assert process.returncode == code, err
    assert "Traceback" not in err
    assert err.strip() in ("orchestra: interrupted", "orchestra: terminated (SIGTERM)")


SLOW_COMMAND = (
    "import sys, time, orchestra.commands.validate as v\n"
    "def slow(args):\n"
    "    print('started', flush=True)\n"
    "    time.sleep(60)\n"
    "    return 0\n"
    "v.run = slow\n"
    "sys.argv[1:] = ['validate']\n"
    "from orchestra.__main__ import main\n"
    "raise SystemExit(main())\n"
)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_any_command_exits_130_on_sigint_and_143_on_sigterm(
    tmp_path: Path, sig: int, code: int
) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_COMMAND],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "started"
    process.send_signal(sig)
    _out, err = process.communicate(timeout=DEADLINE)
    assert process.returncode == code, err
    assert "Traceback" not in err


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_apply_stops_cleanly_on_sigint_130_and_sigterm_143(repo: Repo, sig: int, code: int) -> None:
    repo.configs({"c0.txt": "x\n", "c1.txt": "x\n"})
    task = repo.task(exec="echo run >> runs; sleep 60; cat %IN > %OUT # %DATA", bypass=True)
    process = repo.spawn("apply")
    try:
        _wait_for(
            lambda: sum(_lines(p) for p in repo.task_dir(task).glob("jobs/*/runs")) == 2,
            "both jobs running",
        )
        process.send_signal(sig)
        _out, err = process.communicate(timeout=DEADLINE)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == code, err
    assert "Traceback" not in err
    status = repo.status(task)
    assert status["counts"]["pending"] == 2 and status["counts"]["running"] == 0
    assert {job["reason"] for job in status["jobs"].values()} == {"interrupted"}
