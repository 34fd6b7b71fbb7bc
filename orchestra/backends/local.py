"""The embedded local backend: jobs run on this machine, ``maxParallel`` at a time.

Each slot keeps one long-lived ``/bin/sh`` (a *worker*, in a session of its own) and runs every
attempt in a fresh subshell of it: a fork, with no ``exec`` of a new shell per job, which is
what makes dispatch cheaper than ``xargs -P`` starting ``sh -c`` per command. The subshell
changes to the job's directory, exports the job's environment, appends stdout and stderr to
``jobs/<job>/log`` and evaluates the command exactly as ``sh -c`` would parse it. The command
runs on the host: the Task's ``image`` is recorded, not pulled.

The worker is the parent that waits for the attempt, and it keeps the record an orchestra
started after this one died needs (design.md, "A shape that makes crash safety cheap"), in
``.orchestra-exit``: as the attempt starts, ``run <pid> <worker pid> <worker start> <run id>``
(the attempt's process is that pid in the session its worker leads; the worker is known by its
pid and start time from ``/proc/PID/stat``), and once it has waited for it the marker proper,
``<exit code> <run id>``, over it. (One file, not two: on ext4 a second inode per job cost
more than the rest of the dispatch.) A command that clears its environment, changes directory
or replaces its shell (``exec``) changes none of it; a cancel or a timeout signals the
attempt's processes, never the worker, so a stopped attempt still gets its marker. Recovery
trusts this record only: the attempt's marker means its outcome is known (a process it left
behind is not waited for); its pid alive in its worker's session means it still runs.

The worker reports ``s <pid>`` when an attempt starts and ``e <pid> <status>`` when it ends,
on a pipe read by the slot's thread: a fixed pool of ``maxParallel`` threads, no thread per
job. If this process dies, the workers read end-of-file after their current job and exit.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import select
import shlex
import signal
import socket
import threading
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace

from orchestra.backends.attempts import LOG_FILE, output_written
from orchestra.backends.base import (
    EXIT_MARKER,
    JobEvent,
    JobRun,
    read_exit_marker,
    read_job_file,
)
from orchestra.errors import UnsafePath
from orchestra.fsutil import check_directory, make_job_dir, now_iso
from orchestra.spec.model import ClusterSpec

TERM_GRACE = 5.0
PREFETCH = 16  # jobs queued ahead of the free slots
STARTED_AFTER = 0.05  # seconds a job runs before it is reported as started
FREEZE_WAIT = 1.0  # seconds for a stopped (SIGSTOP) attempt to show as stopped
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_TORN_READS = 20  # reads of a marker file caught half-written, 10 ms apart


class WorkerGone(Exception):
    """The slot's shell ended (killed from outside, or it could not start)."""


class _Worker:
    """One long-lived ``/bin/sh -s`` reading attempts on its stdin, reporting on its stdout."""

    def __init__(self, env: dict[str, str]) -> None:
        script_r, script_w = os.pipe()
        report_r, report_w = os.pipe()
        try:
            self.pid = os.posix_spawn(
                "/bin/sh",
                ["/bin/sh", "-s"],
                env,
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, script_r, 0),
                    (os.POSIX_SPAWN_DUP2, report_w, 1),
                ],
                setsid=True,
            )
        except OSError:
            for fd in (script_r, script_w, report_r, report_w):
                os.close(fd)
            raise
        os.close(script_r)
        os.close(report_w)
        try:
            self.start = _start_time(self.pid)  # written with each attempt it runs
        except (OSError, IndexError):
            self.start = ""
        self._script = script_w
        self._report = report_r
        self._buffer = b""
        # poll, not select: select() refuses descriptors above 1023, which an apply of
        # hundreds of tasks (a log and a lock open per task) reaches
        self._poller = select.poll()
        self._poller.register(report_r, select.POLLIN)

    def send(self, text: str) -> None:
        try:
            os.write(self._script, text.encode())
        except OSError as exc:  # EPIPE: it died
            raise WorkerGone(str(exc)) from exc

    def line(self, timeout: float | None = None) -> str | None:
        """The next report line; None if none comes within ``timeout``."""
        while b"\n" not in self._buffer:
            if timeout is not None:
                if not self._poller.poll(max(0, int(timeout * 1000))):
                    return None
                timeout = None
            chunk = os.read(self._report, 4096)
            if not chunk:
                raise WorkerGone("the slot's shell ended")
            self._buffer += chunk
        text, _, self._buffer = self._buffer.partition(b"\n")
        return text.decode()

    def close(self, kill: bool = False) -> None:
        """End of input: the shell exits after its current attempt (at once with ``kill``)."""
        with contextlib.suppress(OSError):
            os.close(self._script)
        if kill:
            _signal_group(self.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)
        with contextlib.suppress(OSError):
            os.close(self._report)


# Variables that hold, or lead to, credentials: the orchestrator's own (a CI token, the
# kubeconfig, cloud keys) are not handed to the commands of the jobs it runs.
_CREDENTIAL_NAME = re.compile(
    r"TOKEN|SECRET|PASSW(OR)?D|CREDENTIAL|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|AUTH|JWT|COOKIE"
    r"|^KUBECONFIG$|^DOCKER_CONFIG$|^REGISTRY_AUTH_FILE$|^NETRC$|^SSH_AGENT_PID$",
    re.IGNORECASE,
)


def job_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment a job starts from: orchestra's own, without credentials (by name, see
    _CREDENTIAL_NAME) and without ``ORCHESTRA_RUN_ID`` (a job's id only ever names that job).
    The Task's ``env`` is added on top, so a value a spec sets on purpose still reaches it."""
    return {
        key: value
        for key, value in environ.items()
        if key != "ORCHESTRA_RUN_ID" and not _CREDENTIAL_NAME.search(key)
    }


class LocalBackend:
    def __init__(self, cluster: ClusterSpec) -> None:
        self._slots = cluster.max_parallel or os.cpu_count() or 1
        # attempts, each with the error making its directory if any; None stops a slot
        self._queue: queue.Queue[tuple[JobRun, OSError | None] | None] = queue.Queue()
        self._events: queue.Queue[JobEvent] = queue.Queue()
        self._lock = threading.Lock()
        # run id -> (attempt, its shell's pid, the slot's worker)
        self._running: dict[str, tuple[JobRun, int, _Worker]] = {}
        self._cancelled: set[str] = set()
        self._interrupted: set[str] = set()  # stopped by close(): "interrupted", not "cancelled"
        self._adopted: dict[str, tuple[JobRun, _PidRecord]] = {}
        self._pending: dict[str, JobRun] = {}  # submitted, outcome not yet handed out by poll
        self._closing = False
        self._node = socket.gethostname()
        self._base_env = job_environment(os.environ)
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
        busy = len(self._pending) + len(self._adopted)
        return self._slots + max(self._slots, PREFETCH) - busy

    def submit(self, run: JobRun) -> None:
        # The job's directory is made here, in the caller's thread, so that a slot that frees
        # up only has to start the job.
        self._pending[run.run_id] = run
        error: OSError | None = None
        try:
            _prepare(run)
        except OSError as exc:
            error = exc
        except UnsafePath as exc:  # the job fails, naming it; its task's other jobs go on
            error = OSError(exc.message)
        self._queue.put((run, error))

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
                break
        for event in events:
            if event.kind != "started":
                self._pending.pop(event.run.run_id, None)
        return events

    def cancel(self, run_ids: Collection[str]) -> None:
        with self._lock:
            self._cancelled.update(run_ids)
            targets = [
                (rid, worker.pid)
                for rid, (_r, _p, worker) in self._running.items()
                if rid in run_ids
            ]
            adopted = [rec for rid, (_run, rec) in self._adopted.items() if rid in run_ids]
        for run_id, worker_pid in targets:
            _signal_jobs_of(worker_pid, signal.SIGTERM)
            timer = threading.Timer(TERM_GRACE, self._kill_if_running, (run_id, worker_pid))
            timer.daemon = True
            timer.start()
        for record in adopted:
            _signal_adopted(record, signal.SIGTERM)
            timer = threading.Timer(TERM_GRACE, _signal_adopted, (record, signal.SIGKILL))
            timer.daemon = True
            timer.start()

    def recover(self, runs: Sequence[JobRun]) -> list[JobEvent]:
        """From the attempt's own records only (no scan of other processes): its marker, then
        the pids and start times its worker recorded. A job directory that is not one (a
        symlink planted as it) holds no record of this attempt's: the job is lost."""
        events = []
        for run in runs:
            if not _real_job_dir(run):  # a symlink planted as it: none of its records is ours
                reason = f"{run.job_dir} is not a directory (a symlink?): outcome unknown"
                events.append(JobEvent(run, "lost", now_iso(), reason=reason))
                continue
            record = _recorded(run)
            if isinstance(record, tuple) and (_job_alive(record) or _same_process(*record[1:])):
                with self._lock:
                    self._adopted[run.run_id] = (run, record)
                events.append(JobEvent(run, "started", now_iso(), pid=record[0], node=self._node))
            elif isinstance(record, JobEvent):
                events.append(record)
            else:
                events.append(_outcome_from_marker(run))
        return events

    def close(self) -> list[JobEvent]:
        """Stop the pool; terminate what runs (SIGTERM, then SIGKILL after a grace period).
        Returns every event :meth:`poll` has not handed out: an attempt that ended before the
        stop keeps its outcome; one stopped, or never started, is ``interrupted``."""
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        for _ in self._workers:
            self._queue.put(None)
        with self._lock:
            self._closing = True  # a job a slot starts from now on is stopped at once
            running = list(self._running.items())
        for rid, (_run, pid, worker) in running:
            self._interrupt(rid, pid, worker)
        deadline = time.monotonic() + TERM_GRACE
        for thread in self._workers:  # each reaps its job, then reads the stop sentinel
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        with self._lock:
            running = list(self._running.items())
        for rid, (_run, _pid, worker) in running:
            self._kill_if_running(rid, worker.pid)
        for thread in self._workers:
            thread.join(timeout=TERM_GRACE)
        events = []
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                break
            if event.kind == "finished" and (event.exit_code or 0) - 128 in _STOP_SIGNALS:
                # killed by the stop signal itself: a CI runner or systemd signals every
                # process of the job at once, so the job can die before this process acts
                event = replace(event, reason="interrupted")
            events.append(event)
        answered = {event.run.run_id for event in events if event.kind != "started"}
        for run_id, run in self._pending.items():
            if run_id not in answered:  # never started, or its slot gave up: its marker, if any
                event = _outcome_from_marker(run)
                if event.kind != "finished":
                    event = JobEvent(run, "finished", now_iso(), reason="interrupted")
                events.append(event)
        self._pending.clear()
        return events

    def _interrupt(self, run_id: str, pid: int, worker: _Worker) -> None:
        """Stop an attempt for close() unless it has ended already: it is frozen first
        (SIGSTOP), so that whether it ended on its own is a fact, not a race with the signal,
        then terminated and thawed. An attempt that ended keeps its own outcome."""
        if pid and not _freeze(pid):
            return
        with self._lock:
            self._cancelled.add(run_id)
            self._interrupted.add(run_id)
        _signal_jobs_of(worker.pid, signal.SIGTERM)
        if pid:
            _signal(pid, signal.SIGCONT)

    def _kill_if_running(self, run_id: str, worker_pid: int) -> None:
        with self._lock:
            still = run_id in self._running
        if still:
            _signal_jobs_of(worker_pid, signal.SIGKILL)

    # the pool ------------------------------------------------------------------------------
    def _work(self) -> None:
        worker: _Worker | None = None
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                run, error = item
                if run.run_id in self._cancelled:
                    self._events.put(JobEvent(run, "finished", now_iso(), reason="cancelled"))
                    continue
                try:
                    if error is not None:
                        raise error
                    if worker is None:
                        worker = _Worker(self._base_env)
                except OSError as exc:
                    self._events.put(
                        JobEvent(
                            run, "finished", now_iso(), exit_code=127, reason=f"cannot start: {exc}"
                        )
                    )
                    continue
                try:
                    self._attempt(worker, run)
                except WorkerGone:
                    worker.close(kill=True)
                    worker = None
                    with self._lock:
                        self._running.pop(run.run_id, None)
                        cancelled = run.run_id in self._cancelled
                    event = _outcome_from_marker(run)
                    if cancelled:
                        event = JobEvent(run, "finished", now_iso(), reason="cancelled")
                    self._events.put(event)
                except Exception as exc:  # a bug here must fail the job, not hang the apply
                    worker.close(kill=True)
                    worker = None
                    with self._lock:
                        self._running.pop(run.run_id, None)
                    event = _outcome_from_marker(run)
                    if event.kind != "finished":
                        reason = f"orchestra could not run it: {type(exc).__name__}: {exc}"
                        event = JobEvent(run, "finished", now_iso(), exit_code=127, reason=reason)
                    self._events.put(event)
        finally:
            if worker is not None:
                worker.close()

    def _attempt(self, worker: _Worker, run: JobRun) -> None:
        worker.send(_script(run, worker))
        started = now_iso()
        first = worker.line()
        pid = int(first.split()[1]) if first and first.startswith("s ") else 0
        with self._lock:
            self._running[run.run_id] = (run, pid, worker)
            closing = self._closing
            stop = run.run_id in self._cancelled
        if stop:  # cancelled while it was handed to the worker
            self.cancel([run.run_id])
        elif closing:  # close() began while it was handed over
            self._interrupt(run.run_id, pid, worker)
        ended = worker.line(STARTED_AFTER)
        timed_out = False
        if ended is None:
            # only a job still running after a moment is reported as started: a short one
            # costs one event, not two (its pid and start time come with its outcome)
            self._events.put(JobEvent(run, "started", started, pid=pid, node=self._node))
            limit = run.spec.timeout if run.spec is not None else None
            ended = worker.line(None if limit is None else max(0.0, limit - STARTED_AFTER))
            if ended is None:  # its deadline: ended as a cancel would end it
                timed_out = True
                _signal_jobs_of(worker.pid, signal.SIGTERM)
                ended = worker.line(TERM_GRACE)
                if ended is None:
                    _signal_jobs_of(worker.pid, signal.SIGKILL)
                    ended = worker.line()
        assert ended is not None
        status = int(ended.rsplit(" ", 1)[1])
        with self._lock:
            self._running.pop(run.run_id, None)
            cancelled = run.run_id in self._cancelled
            interrupted = run.run_id in self._interrupted
        reason = ("interrupted" if interrupted else "cancelled") if cancelled else _reason(status)
        if timed_out and not cancelled:
            assert run.spec is not None and run.spec.timeout is not None
            reason = f"DeadlineExceeded: still running after its timeout ({run.spec.timeout} s)"
            status = status or 124  # failed, even if it caught SIGTERM and exited 0
        written = (
            output_written(run.job_dir, os.path.basename(run.output))
            if run.output and status == 0
            else None
        )
        self._events.put(
            JobEvent(
                run,
                "finished",
                now_iso(),
                exit_code=status,
                pid=pid,
                node=self._node,
                reason=reason,
                started=started,
                output_written=written,
            )
        )

    def _check_adopted(self) -> list[JobEvent]:
        """An adopted attempt has ended when its process has; its outcome is known once its
        worker wrote the marker (or died without: then it is lost)."""
        events = []
        with self._lock:
            adopted = list(self._adopted.items())
        for run_id, (run, record) in adopted:
            if _job_alive(record):
                continue
            outcome = _recorded(run)
            event = outcome if isinstance(outcome, JobEvent) else _outcome_from_marker(run)
            if event.kind != "finished" and _same_process(*record[1:]):
                continue  # its worker is about to write the marker
            with self._lock:
                self._adopted.pop(run_id, None)
            events.append(event)
        return events


def _script(run: JobRun, worker: _Worker) -> str:
    """The worker's text for one attempt: a subshell in the background, so that its pid is
    known. The command goes through ``eval`` of one quoted word: whatever it contains, it can
    only break its own subshell (a syntax error is exit 2 in its log), never the worker.

    Then, in the worker (shell builtins only, no process started): report the pid, record it
    in the marker file with the worker's own pid and start time, wait, write the marker over
    it, report the wait status. The marker is written before the report: an orchestra that
    died takes the worker with it at the report (SIGPIPE). (Reading the attempt's own start
    time from /proc in the shell cost more than the rest of the dispatch: ``read`` takes a
    byte per system call.) The file is written only if nothing but a regular file is there:
    a job that left a FIFO in its place must not block its slot."""
    job_dir = shlex.quote(str(run.job_dir))
    run_id = shlex.quote(run.run_id)
    env = {
        **run.env,
        "ORCHESTRA_TASK": run.task,
        "ORCHESTRA_JOB": run.job,
        "ORCHESTRA_ATTEMPT": str(run.attempt),
        "ORCHESTRA_RUN_ID": run.run_id,
    }
    exports = " ".join(f"{name}={shlex.quote(value)}" for name, value in env.items())
    return (
        f"(cd {job_dir} || exit 126\n"
        f"export {exports}\n"
        f"eval {shlex.quote(run.command)}\n"
        f") </dev/null >>{job_dir}/{LOG_FILE} 2>&1 &\n"
        'echo "s $!"\n'
        f"p={job_dir}/{EXIT_MARKER}\n"
        '{ [ ! -e "$p" ] || [ -f "$p" ]; } && '
        f"printf 'run %s %s\\n' \"$!\" '{worker.pid} {worker.start} '{run_id} 2>/dev/null >\"$p\"\n"
        # 2>/dev/null: the shell's own "Terminated" notice when a job is killed by a signal
        "wait $! 2>/dev/null\nr=$?\n"
        '{ [ ! -e "$p" ] || [ -f "$p" ]; } && '
        f'printf \'%s %s\\n\' "$r" {run_id} 2>/dev/null >"$p"\n'
        'echo "e $! $r"\n'
    )


def _prepare(run: JobRun) -> None:
    """Make the job's directory. An exit marker of an earlier attempt may stay: it names its
    own run id, never this one. A symlink as ``jobs`` or as the job's directory is refused
    (:class:`UnsafePath`): the job's log would go where it leads."""
    make_job_dir(run.job_dir)


def _real_job_dir(run: JobRun) -> bool:
    try:
        return check_directory(run.job_dir.parent) and check_directory(run.job_dir)
    except UnsafePath:
        return False


def _reason(status: int) -> str | None:
    """The shell reports a job killed by signal N as status 128+N."""
    if status > 128:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(status - 128).name}"
    return None


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _stat_fields(pid: str | int) -> list[bytes]:
    """/proc/PID/stat after the command name: state, ppid, pgrp, session, ..."""
    with open(f"/proc/{pid}/stat", "rb") as stream:
        return stream.read().rsplit(b")", 1)[1].split()


def _signal_jobs_of(worker_pid: int, sig: int) -> None:
    """Signal every process of the worker's session but the worker: its current job, and
    whatever the job started (the worker itself keeps serving its slot)."""
    session = str(worker_pid).encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == worker_pid:
            continue
        try:
            fields = _stat_fields(entry)
        except (OSError, IndexError):
            continue
        if len(fields) > 3 and fields[3] == session:
            _signal(int(entry), sig)


def _start_time(pid: int) -> str:
    """Field 22 of /proc/PID/stat, the process's start time: with the pid, it names one
    process for the machine's uptime (a pid is reused, the pair is not)."""
    return _stat_fields(pid)[19].decode()


def _same_process(pid: int, start: str) -> bool:
    """Whether the process ``pid`` that started at ``start`` still runs."""
    try:
        fields = _stat_fields(pid)
    except (OSError, IndexError):
        return False
    return len(fields) > 19 and fields[0] != b"Z" and fields[19].decode() == start


# the attempt's pid, its worker's pid and start time
_PidRecord = tuple[int, int, str]


def _job_alive(record: _PidRecord) -> bool:
    """Whether the attempt's process still runs: that pid, in its worker's session. The kernel
    does not hand out a pid that still names a session, so while any process of the attempt
    lives (its worker dead or not), no stranger carries both."""
    try:
        fields = _stat_fields(record[0])
    except (OSError, IndexError):
        return False
    return len(fields) > 3 and fields[0] != b"Z" and fields[3] == str(record[1]).encode()


def _recorded(run: JobRun) -> _PidRecord | JobEvent | None:
    """What the worker wrote in the marker file for this attempt: its outcome (a ``finished``
    event) or, while it runs, its pids; None if neither. An incomplete line is the worker
    rewriting the file at that instant (or a job's garbage): read again, a few times."""
    for _ in range(_TORN_READS):
        try:
            data, mtime = read_job_file(run.job_dir / EXIT_MARKER)
            text = data.decode()
        except (OSError, UnicodeDecodeError):
            return None
        if text.endswith("\n"):
            break
        time.sleep(0.01)
    else:
        return None
    code, _, run_id = text[:-1].partition(" ")
    if run_id == run.run_id and code.lstrip("-").isdigit():
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(mtime))
        return JobEvent(run, "finished", stamp, exit_code=int(code), reason="recovered")
    words = text[:-1].split(" ", 4)
    if len(words) != 5 or words[0] != "run" or words[4] != run.run_id:
        return None
    if not all(word.isdigit() for word in words[1:4]):
        return None
    return int(words[1]), int(words[2]), words[3]


def _signal_adopted(record: _PidRecord, sig: int) -> None:
    """Signal an adopted attempt: every process of its worker's session but the worker
    (whatever the attempt started, wherever it went; the session keeps the worker's pid as its
    name while any of them lives, the worker gone or not)."""
    if _job_alive(record):
        _signal_jobs_of(record[1], sig)


def _freeze(pid: int) -> bool:
    """Stop ``pid`` (SIGSTOP); True once it shows as stopped, False when it had ended (a
    zombie, or gone). A process that neither shows stopped nor ended in time counts as
    running: it is then stopped as one."""
    _signal(pid, signal.SIGSTOP)
    deadline = time.monotonic() + FREEZE_WAIT
    while True:
        try:
            state = _stat_fields(pid)[0]
        except (OSError, IndexError):
            return False
        if state == b"Z":
            return False
        if state in (b"T", b"t") or time.monotonic() > deadline:
            return True
        time.sleep(0.001)


def _outcome_from_marker(run: JobRun) -> JobEvent:
    """The outcome its worker wrote, if it is this attempt's; else the job is lost."""
    marker = read_exit_marker(run)
    if marker is not None:
        return JobEvent(run, "finished", marker[1], exit_code=marker[0], reason="recovered")
    return JobEvent(
        run, "lost", now_iso(), reason="the orchestra that ran it died; outcome unknown"
    )
