"""The local backend on its own: outcomes, cancellation, and recovery by another process."""

from __future__ import annotations

import os
import time
from pathlib import Path

from orchestra.backends.base import EXIT_MARKER, JobEvent, JobRun
from orchestra.backends.local import PREFETCH, LocalBackend
from orchestra.spec.loader import load_text
from orchestra.spec.model import ClusterSpec, SlurmSettings


def _cluster(tmp_path: Path, slots: int = 2) -> ClusterSpec:
    doc = load_text("a: 1\n", "x.yaml").documents[0]
    return ClusterSpec("c", "local", tmp_path, slots, None, SlurmSettings(), doc)


def _run(tmp_path: Path, job: str, command: str, run_id: str | None = None) -> JobRun:
    return JobRun("user.a.t", job, 1, run_id or f"run-{job}", command, tmp_path / "jobs" / job)


def _collect(backend: LocalBackend, count: int, timeout: float = 20.0) -> list[JobEvent]:
    events: list[JobEvent] = []
    deadline = time.monotonic() + timeout
    while len(events) < count and time.monotonic() < deadline:
        events += backend.poll(0.2)
    return events


def test_outcomes_and_capacity(tmp_path: Path) -> None:
    backend = LocalBackend(_cluster(tmp_path))
    try:
        room = backend.capacity()
        assert room == 2 + PREFETCH  # two slots, and a queue ahead of them
        backend.submit(_run(tmp_path, "ok", "sleep 0.5; echo hello"))
        backend.submit(_run(tmp_path, "bad", "sleep 0.5; exit 9"))
        assert backend.capacity() == room - 2  # until they finish
        events = _collect(backend, 4)
        finished = {e.run.job: e for e in events if e.kind == "finished"}
        assert finished["ok"].exit_code == 0 and finished["bad"].exit_code == 9
        assert {e.run.job for e in events if e.kind == "started"} == {"ok", "bad"}
        assert backend.capacity() == room
        assert (tmp_path / "jobs" / "ok" / "log").read_text() == "hello\n"
        assert (tmp_path / "jobs" / "bad" / EXIT_MARKER).read_text() == "9 run-bad\n"
    finally:
        backend.close()


def test_short_jobs_report_one_event_with_pid_and_start(tmp_path: Path) -> None:
    backend = LocalBackend(_cluster(tmp_path))
    try:
        backend.submit(_run(tmp_path, "quick", "true"))
        (event,) = _collect(backend, 1)
        assert event.kind == "finished" and event.exit_code == 0
        assert event.pid is not None and event.started is not None
        assert not _collect(backend, 1, timeout=0.5)  # and nothing else
    finally:
        backend.close()


def test_a_missing_command_is_exit_127_in_the_log(tmp_path: Path) -> None:
    backend = LocalBackend(_cluster(tmp_path))
    try:
        backend.submit(_run(tmp_path, "j", "no-such-command-here"))
        (event,) = [e for e in _collect(backend, 1) if e.kind == "finished"]
        assert event.exit_code == 127
        assert "not found" in (tmp_path / "jobs" / "j" / "log").read_text()
    finally:
        backend.close()


def test_cancel_reports_cancelled(tmp_path: Path) -> None:
    backend = LocalBackend(_cluster(tmp_path))
    try:
        run = _run(tmp_path, "slow", "sleep 30")
        backend.submit(run)
        assert _collect(backend, 1)[0].kind == "started"
        backend.cancel([run.run_id])
        (event,) = _collect(backend, 1)
        assert event.kind == "finished" and event.reason == "cancelled"
    finally:
        backend.close()


def test_another_process_adopts_a_running_job_and_reads_its_outcome(tmp_path: Path) -> None:
    first = LocalBackend(_cluster(tmp_path))
    run = _run(tmp_path, "j", "sleep 1; exit 4")
    first.submit(run)
    assert _collect(first, 1)[0].kind == "started"
    # the first orchestra "dies": its pool is abandoned, the job runs on
    second = LocalBackend(_cluster(tmp_path))
    try:
        (adopted,) = second.recover([run])
        assert adopted.kind == "started" and adopted.pid is not None
        assert second.capacity() == 2 + PREFETCH - 1  # an adopted job holds a slot
        (outcome,) = _collect(second, 1)
        assert outcome.kind == "finished" and outcome.exit_code == 4
        assert outcome.reason == "recovered"
    finally:
        second.close()
        first._queue.put(None)


def test_recovery_without_process_or_marker_is_lost(tmp_path: Path) -> None:
    backend = LocalBackend(_cluster(tmp_path))
    try:
        never = _run(tmp_path, "never", "true")
        stale = _run(tmp_path, "stale", "true", run_id="new")
        (tmp_path / "jobs" / "stale").mkdir(parents=True)
        (tmp_path / "jobs" / "stale" / EXIT_MARKER).write_text("0 old-attempt\n")
        torn = _run(tmp_path, "torn", "true")
        (tmp_path / "jobs" / "torn").mkdir(parents=True)
        (tmp_path / "jobs" / "torn" / EXIT_MARKER).write_text("0 run-t")  # no newline: torn
        events = backend.recover([never, stale, torn])
        assert [e.kind for e in events] == ["lost", "lost", "lost"]
    finally:
        backend.close()


def test_close_stops_running_and_returns_queued_attempts(tmp_path: Path) -> None:
    backend = LocalBackend(_cluster(tmp_path, slots=1))
    runs = [_run(tmp_path, f"j{i}", "sleep 30") for i in range(3)]
    for run in runs:
        backend.submit(run)
    assert _collect(backend, 1)[0].kind == "started"
    stopped = backend.close()
    assert sorted(e.run.job for e in stopped) == ["j0", "j1", "j2"]
    assert {(e.kind, e.reason) for e in stopped} == {("finished", "interrupted")}
    assert not (tmp_path / "jobs" / "j1" / EXIT_MARKER).exists()  # never started
    assert not (tmp_path / "jobs" / "j1" / "log").exists()  # nothing ran there


def test_a_job_running_only_shell_builtins_is_found_by_its_directory(tmp_path: Path) -> None:
    """No program of its own carries ORCHESTRA_RUN_ID in its environment: the job's shell is
    found by the pid its slot's shell recorded."""
    fifo = tmp_path / "gate"
    os.mkfifo(fifo)
    first = LocalBackend(_cluster(tmp_path))
    run = _run(tmp_path, "j", f"read line < {fifo}; exit 5")  # blocks in a builtin
    first.submit(run)
    assert _collect(first, 1)[0].kind == "started"
    second = LocalBackend(_cluster(tmp_path))
    try:
        (adopted,) = second.recover([run])
        assert adopted.kind == "started"
        with open(fifo, "w") as gate:
            gate.write("go\n")
        (outcome,) = _collect(second, 1)
        assert outcome.kind == "finished" and outcome.exit_code == 5
    finally:
        second.close()
        first.close()


def test_the_command_cannot_break_out_of_its_subshell(tmp_path: Path) -> None:
    """Unbalanced parentheses, a syntax error, ``exit`` or ``exec``: each ends its own job,
    and the slot's shell runs the next one."""
    backend = LocalBackend(_cluster(tmp_path, slots=1))
    try:
        commands = {"paren": "echo ) ; (", "exit": "exit 3", "exec": "exec true", "ok": "echo fine"}
        for job, command in commands.items():
            backend.submit(_run(tmp_path, job, command))
        finished = {e.run.job: e for e in _collect(backend, 4) if e.kind == "finished"}
        assert finished["paren"].exit_code == 2
        assert finished["exit"].exit_code == 3 and finished["exec"].exit_code == 0
        assert (tmp_path / "jobs" / "ok" / "log").read_text() == "fine\n"
        assert "Syntax error" in (tmp_path / "jobs" / "paren" / "log").read_text()
    finally:
        backend.close()
