"""The embedded local backend: jobs run on this machine, ``maxParallel`` at a time.

Each attempt runs as ``/bin/sh -c`` in its job directory, in a session of its own, with stdout
and stderr appended to ``jobs/<job>/log``. The command runs on the host: the Task's ``image``
is recorded, not pulled. A one-line shell trap writes ``<rc> <run id>`` to ``.orchestra-exit``
when the shell exits, so that an orchestra process started after this one died can still learn
the outcome; the attempt's ``ORCHESTRA_RUN_ID`` in its environment lets it find the job's
processes while they run.

A fixed pool of ``maxParallel`` threads starts and waits for the processes (no thread per job).
"""

from __future__ import annotations

import contextlib
import os
import queue
import select
import shlex
import signal
import socket
import threading
import time
from collections.abc import Collection, Sequence

from orchestra.backends.base import EXIT_MARKER, JobEvent, JobRun
from orchestra.fsutil import now_iso
from orchestra.spec.model import ClusterSpec

LOG_FILE = "log"
TERM_GRACE = 5.0
PREFETCH = 16  # jobs queued ahead of the free slots
STARTED_AFTER = 0.05  # seconds a job runs before it is reported as started
_RUN_KEY = b"ORCHESTRA_RUN_ID="


class LocalBackend:
    def __init__(self, cluster: ClusterSpec) -> None:
        self._slots = cluster.max_parallel or os.cpu_count() or 1
        # (attempt, its log's file descriptor or the error preparing it); None stops a slot
        self._queue: queue.Queue[tuple[JobRun, int | OSError] | None] = queue.Queue()
        self._events: queue.Queue[JobEvent] = queue.Queue()
        self._lock = threading.Lock()
        self._running: dict[str, tuple[JobRun, int]] = {}  # run id -> (attempt, pid)
        self._cancelled: set[str] = set()
        self._adopted: dict[str, tuple[JobRun, list[int]]] = {}
        self._in_flight = 0  # submitted or adopted, outcome not yet reported
        self._node = socket.gethostname()
        self._base_env = dict(os.environ)
        self._workers = [
            threading.Thread(target=self._work, name=f"orchestra-slot-{i}", daemon=True)
            for i in range(self._slots)
        ]
        for worker in self._workers:
            worker.start()

    # Backend protocol ----------------------------------------------------------------------
    def capacity(self) -> int | None:
        # Keep a few jobs queued beyond the free slots, so that a slot that frees up starts
        # the next job at once instead of waiting for the engine's thread to hand one over.
        return self._slots + max(self._slots, PREFETCH) - self._in_flight

    def submit(self, run: JobRun) -> None:
        # The job's directory and log are prepared here, in the caller's thread, so that a slot
        # that frees up only has to start the process.
        with self._lock:
            self._in_flight += 1
        prepared: int | OSError
        try:
            prepared = _prepare(run)
        except OSError as exc:
            prepared = exc
        self._queue.put((run, prepared))

    def _report(self, event: JobEvent) -> None:
        if event.kind != "started":
            with self._lock:
                self._in_flight -= 1
        self._events.put(event)

    def poll(self, timeout: float) -> list[JobEvent]:
        events: list[JobEvent] = []
        if self._adopted:
            events += self._check_adopted()
            timeout = min(timeout, 0.2)
        try:
            events.append(
                self._events.get(timeout=timeout) if not events else self._events.get_nowait()
            )
        except queue.Empty:
            return events
        while True:
            try:
                events.append(self._events.get_nowait())
            except queue.Empty:
                return events

    def cancel(self, run_ids: Collection[str]) -> None:
        with self._lock:
            self._cancelled.update(run_ids)
            targets = [pid for rid, (_run, pid) in self._running.items() if rid in run_ids]
            adopted = [pids for rid, (_run, pids) in self._adopted.items() if rid in run_ids]
        for pid in targets:
            _signal_group(pid, signal.SIGTERM)
            timer = threading.Timer(TERM_GRACE, self._kill_if_running, (pid,))
            timer.daemon = True
            timer.start()
        for pids in adopted:
            for pid in pids:
                _signal(pid, signal.SIGTERM)

    def recover(self, runs: Sequence[JobRun]) -> list[JobEvent]:
        if not runs:
            return []
        alive = _processes_by_run_id()
        events = []
        for run in runs:
            pids = alive.get(run.run_id)
            if pids:
                with self._lock:
                    self._adopted[run.run_id] = (run, pids)
                    self._in_flight += 1
                events.append(JobEvent(run, "started", now_iso(), pid=min(pids), node=self._node))
            else:
                events.append(_outcome_from_marker(run))
        return events

    def close(self) -> list[JobRun]:
        """Stop the pool; terminate what runs (SIGTERM, then SIGKILL after a grace period).
        Returns the attempts stopped or never started."""
        queued: list[JobRun] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                run, prepared = item
                if isinstance(prepared, int):
                    os.close(prepared)
                queued.append(run)
        for _ in self._workers:
            self._queue.put(None)
        with self._lock:
            running = list(self._running.values())
            self._cancelled.update(self._running)
        for _run, pid in running:
            _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + TERM_GRACE
        for worker in self._workers:  # each reaps its job, then reads the stop sentinel
            worker.join(timeout=max(0.0, deadline - time.monotonic()))
        for _run, pid in running:
            self._kill_if_running(pid)
        for worker in self._workers:
            worker.join(timeout=TERM_GRACE)
        return [run for run, _pid in running] + queued

    def _kill_if_running(self, pid: int) -> None:
        with self._lock:
            still = any(p == pid for _run, p in self._running.values())
        if still:
            _signal_group(pid, signal.SIGKILL)

    # the pool ------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            run, prepared = item
            if run.run_id in self._cancelled:
                if isinstance(prepared, int):
                    os.close(prepared)
                self._report(JobEvent(run, "finished", now_iso(), reason="cancelled"))
                continue
            try:
                if isinstance(prepared, OSError):
                    raise prepared
                pid = self._spawn(run, prepared)
            except OSError as exc:
                self._report(
                    JobEvent(
                        run, "finished", now_iso(), exit_code=127, reason=f"cannot start: {exc}"
                    )
                )
                continue
            started = now_iso()
            with self._lock:
                self._running[run.run_id] = (run, pid)
            if not _ends_within(pid, STARTED_AFTER):
                # only a job still running after a moment is reported as started: a short one
                # costs one event, not two (its pid and start time come with its outcome)
                self._report(JobEvent(run, "started", started, pid=pid, node=self._node))
            _pid, status = os.waitpid(pid, 0)
            code = os.waitstatus_to_exitcode(status)
            with self._lock:
                self._running.pop(run.run_id, None)
                cancelled = run.run_id in self._cancelled
            exit_code = code if code >= 0 else 128 - code
            reason = "cancelled" if cancelled else _reason(code)
            written = os.path.exists(run.output) if run.output and exit_code == 0 else None
            self._report(
                JobEvent(
                    run,
                    "finished",
                    now_iso(),
                    exit_code=exit_code,
                    pid=pid,
                    node=self._node,
                    reason=reason,
                    started=started,
                    output_written=written,
                )
            )

    def _spawn(self, run: JobRun, log: int) -> int:
        """Start ``/bin/sh -c`` with ``posix_spawn`` (much cheaper than ``subprocess.Popen``):
        in a new session, stdin from /dev/null, stdout and stderr appended to the log (whose
        descriptor this closes)."""
        job_dir = str(run.job_dir)
        marker = shlex.quote(f"{job_dir}/{EXIT_MARKER}")
        trap = f'printf \'%s %s\\n\' "$?" "$ORCHESTRA_RUN_ID" > {marker}'
        cd = f"cd {shlex.quote(job_dir)} || exit 126"  # posix_spawn has no cwd
        script = f"{cd}\ntrap {shlex.quote(trap)} EXIT\n{run.command}"
        env = self._base_env | run.env
        env.update(
            ORCHESTRA_TASK=run.task,
            ORCHESTRA_JOB=run.job,
            ORCHESTRA_ATTEMPT=str(run.attempt),
            ORCHESTRA_RUN_ID=run.run_id,
        )
        try:
            return os.posix_spawn(
                "/bin/sh",
                ["/bin/sh", "-c", script],
                env,
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_DUP2, log, 1),
                    (os.POSIX_SPAWN_DUP2, log, 2),
                ],
                setsid=True,
            )
        finally:
            os.close(log)

    def _check_adopted(self) -> list[JobEvent]:
        events = []
        with self._lock:
            adopted = list(self._adopted.items())
        for run_id, (run, pids) in adopted:
            if any(_alive(pid) for pid in pids):
                continue
            with self._lock:
                self._adopted.pop(run_id, None)
                self._in_flight -= 1
            events.append(_outcome_from_marker(run))
        return events


def _prepare(run: JobRun) -> int:
    """Make the job's directory and open its log for appending; return the descriptor. An
    exit marker of an earlier attempt may stay: it names its own run id, never this one."""
    job_dir = str(run.job_dir)
    try:
        os.mkdir(job_dir)
    except FileExistsError:
        pass
    except FileNotFoundError:
        os.makedirs(job_dir, exist_ok=True)
    return os.open(f"{job_dir}/{LOG_FILE}", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def _ends_within(pid: int, seconds: float) -> bool:
    """Whether child ``pid`` exits within ``seconds`` (without reaping it)."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        return False  # no pidfd here: report every job as started
    try:
        readable, _w, _x = select.select([fd], [], [], seconds)
        return bool(readable)
    finally:
        os.close(fd)


def _reason(code: int) -> str | None:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return None


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stream:
            state = stream.read().rsplit(b")", 1)[1].split()[0]
        return state != b"Z"
    except (OSError, IndexError):
        return False


def _processes_by_run_id() -> dict[str, list[int]]:
    """Run id -> live pids carrying it in their environment (this user's processes)."""
    found: dict[str, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as stream:
                environ = stream.read()
        except OSError:
            continue
        start = environ.find(_RUN_KEY)
        if start < 0 or (start > 0 and environ[start - 1] != 0):
            continue
        end = environ.find(b"\0", start)
        value = environ[start + len(_RUN_KEY) : end if end >= 0 else None].decode(errors="replace")
        if _alive(int(entry)):
            found.setdefault(value, []).append(int(entry))
    return found


def _outcome_from_marker(run: JobRun) -> JobEvent:
    """The outcome the job's shell trap wrote, if it is this attempt's; else the job is lost."""
    try:
        text = (run.job_dir / EXIT_MARKER).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        text = ""
    if text.endswith("\n"):
        code, _, run_id = text.strip().partition(" ")
        if run_id == run.run_id and code.lstrip("-").isdigit():
            mtime = (run.job_dir / EXIT_MARKER).stat().st_mtime
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(mtime))
            return JobEvent(run, "finished", stamp, exit_code=int(code), reason="recovered")
    return JobEvent(
        run, "lost", now_iso(), reason="the orchestra that ran it died; outcome unknown"
    )
