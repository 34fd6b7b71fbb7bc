"""Drive tasks to a terminal phase (design.md, "Task and job lifecycle").

registered -> testing (the first ``testJobs`` jobs) -> running (the rest) -> done | finalized;
a test job failing for good makes the task ``broken`` once the test jobs still running have
finished; ``killed`` when ``orchestra delete`` asks. Every change is an event in the task's
``events.jsonl`` before (submissions) or after (outcomes) it happens, so a process killed at
any instant is followed by one that recovers: it asks the backend about every job the log
says was submitted, adopts those still running, reads the outcome of those that finished and
re-queues the rest.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from orchestra.backends import create_backend
from orchestra.backends.attempts import UnsafeJobDirectory, archive_previous_attempt, output_written
from orchestra.backends.base import Backend, JobEvent, JobRun
from orchestra.engine.lock import TaskLock
from orchestra.errors import DamagedTaskError, UnsafePath
from orchestra.fsutil import now_iso, read_regular
from orchestra.plan.desired import DesiredTask
from orchestra.status.model import ACTIVE_JOB_STATES, TERMINAL_PHASES, JobRecord, TaskRecord
from orchestra.status.store import TaskStore

KILL_REQUEST = ".orchestra-kill"
_CHECK_KILL_EVERY = 0.5


@dataclass
class TaskRun:
    """One task while the engine drives it."""

    desired: DesiredTask
    store: TaskStore
    lock: TaskLock
    record: TaskRecord
    backend: Backend
    commit: str | None = None
    active: dict[str, JobRun] = field(default_factory=dict)  # run id -> attempt
    counts: Counter[tuple[bool, str]] = field(default_factory=Counter)  # (test, state) -> n
    queue_tests: deque[str] = field(default_factory=deque)
    queue_rest: deque[str] = field(default_factory=deque)
    commands: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def phase(self) -> str:
        return self.record.phase

    def count(self, state: str, test: bool | None = None) -> int:
        if test is None:
            return self.counts[(True, state)] + self.counts[(False, state)]
        return self.counts[(test, state)]

    # every job change goes through here: log, apply, keep counters and queues right
    def job_event(self, name: str, fields: dict[str, Any], *, flush: bool = True) -> None:
        job = self.record.jobs.get(name)
        before = (job.test, job.state, job.orphan) if job is not None else None
        self.store.append({"ev": "job", "job": name, **fields}, flush=flush)
        job = self.record.jobs[name]
        self._recount(before, job)

    def define_jobs(self, items: list[dict[str, Any]]) -> None:
        if not items:
            return
        befores = {}
        for item in items:
            job = self.record.jobs.get(item["name"])
            befores[item["name"]] = (job.test, job.state, job.orphan) if job is not None else None
        self.store.append({"ev": "jobs", "set": items})
        for name, before in befores.items():
            self._recount(before, self.record.jobs[name])

    def _recount(self, before: tuple[bool, str, bool] | None, job: JobRecord) -> None:
        if before is not None and not before[2]:
            self.counts[(before[0], before[1])] -= 1
        if not job.orphan:
            self.counts[(job.test, job.state)] += 1
            if job.state == "pending" and (before is None or before[1] != "pending" or before[2]):
                (self.queue_tests if job.test else self.queue_rest).append(job.name)

    def rebuild_counters(self) -> None:
        self.counts.clear()
        self.queue_tests.clear()
        self.queue_rest.clear()
        for job in self.record.jobs.values():
            self._recount(None, job)

    def set_phase(self, phase: str, **fields: Any) -> None:
        if phase != self.record.phase:
            if phase in TERMINAL_PHASES:
                fields.setdefault("finished", now_iso())
            elif self.record.started is None or self.record.phase in TERMINAL_PHASES:
                fields.setdefault("started", now_iso())
                fields.setdefault("finished", None)
            self.store.append({"ev": "task", "phase": phase, **fields})


Progress = Callable[[list[TaskRun], bool], None]


class Engine:
    """Carries out the work on a set of tasks; ``run()`` returns when every one is terminal
    (local backend) or, with ``wait=False``, once every job is submitted."""

    def __init__(self, progress: Progress | None = None) -> None:
        self.progress = progress
        self.backends: dict[str, Backend] = {}
        self.runs: list[TaskRun] = []
        self.damaged: list[DamagedTaskError] = []  # tasks skipped: their sidecar is damaged
        self._token = uuid.uuid4().hex[:16]
        self._attempts = 0
        # tasks with an attempt that could not start (its directory unsafe): touched next round
        self._unstarted: set[str] = set()
        #: tasks left out as unsafe (a symlinked task directory, a FIFO as its log...) -> why
        self.refused: dict[str, str] = {}

    # preparation ---------------------------------------------------------------------------
    def prepare(
        self,
        desired: Iterable[DesiredTask],
        *,
        retry: Iterable[str] = (),
        commit: str | None = None,
    ) -> None:
        """Lock each task, load its sidecar, recover what a previous process left running,
        and bring its jobs in line with the specs. Nothing is launched yet. A task whose
        directory is unsafe is left out, in :attr:`refused`: the others go on."""
        retry = set(retry)
        try:
            for task in desired:
                try:
                    self._prepare_task(task, task.name in retry, commit)
                except DamagedTaskError as exc:  # that task's problem only: the others go on
                    self.damaged.append(exc)
                except UnsafePath as exc:
                    self.refused[task.name] = exc.message
        except BaseException:
            self.release()
            raise

    def _backend(self, task: DesiredTask) -> Backend:
        backend = self.backends.get(task.cluster.name)
        if backend is None:
            backend = self.backends[task.cluster.name] = create_backend(task.cluster)
        return backend

    def _prepare_task(self, task: DesiredTask, retry: bool, commit: str | None) -> None:
        backend = self._backend(task)  # first: a backend that cannot be had touches nothing
        lock = TaskLock(task.task_dir)
        lock.acquire(task.name)
        store = TaskStore(task.task_dir)
        try:
            record = store.load()
            fresh = record is None
            record = record or TaskRecord(task.name)
            store.open(record)
        except BaseException:
            lock.release()
            raise
        run = TaskRun(task, store, lock, record, backend, commit)
        run.commands = dict(zip(task.job_names, task.commands, strict=True))
        self.runs.append(run)
        run.rebuild_counters()
        if fresh:
            store.append(
                {
                    "ev": "task",
                    "phase": "registered",
                    "owner": task.spec.owner,
                    "cluster": task.cluster.name,
                    "backend": task.cluster.backend,
                    "image": task.spec.image,
                    "specDigest": task.spec_digest,
                    "commit": commit,
                    "created": now_iso(),
                }
            )
        self._recover(run)
        self._sync(run, retry)

    def _recover(self, run: TaskRun) -> None:
        stale = [job for job in run.record.jobs.values() if job.state in ACTIVE_JOB_STATES]
        runs = [self._attempt(run, job, job.attempts, job.run_id or "") for job in stale]
        for event in run.backend.recover(runs):
            run.active[event.run.run_id] = event.run
            self._handle(run, event)

    def _sync(self, run: TaskRun, retry: bool) -> None:
        task, record = run.desired, run.record
        relaunch = record.phase == "killed" and record.spec_digest != task.spec_digest
        changes: list[dict[str, Any]] = []
        cancel: list[str] = []
        reset = {
            "state": "pending",
            "attempts": 0,
            "exitCode": None,
            "reason": None,
            "warning": None,
        }
        wanted = set()
        for job in task.jobs:
            wanted.add(job.name)
            seen = record.jobs.get(job.name)
            item: dict[str, Any] = {"name": job.name, "config": job.config, "test": job.test}
            if seen is None:
                changes.append({**item, "digest": job.digest, **reset})
                continue
            rerun = seen.digest != job.digest or (
                seen.state != "done" and (relaunch or seen.orphan)
            )
            rerun = rerun or (retry and seen.state == "failed")
            if rerun:
                if seen.state in ACTIVE_JOB_STATES and seen.run_id:
                    cancel.append(seen.run_id)
                changes.append({**item, "digest": job.digest, "orphan": False, **reset})
            elif seen.orphan or seen.test != job.test or seen.config != job.config:
                changes.append({**item, "orphan": False})
        for name, seen in record.jobs.items():
            if name not in wanted and not seen.orphan:
                orphaned: dict[str, Any] = {"name": name, "orphan": True}
                if seen.state in ACTIVE_JOB_STATES and seen.run_id:
                    cancel.append(seen.run_id)  # its config is gone: stop it, keep its files
                    orphaned.update(state="pending", reason="cancelled: config file removed")
                changes.append(orphaned)
        if cancel:
            run.backend.cancel(cancel)
            for run_id in cancel:
                run.active.pop(run_id, None)
        run.define_jobs(changes)
        header = {}
        if record.spec_digest != task.spec_digest:
            header["specDigest"] = task.spec_digest
        if record.image != task.spec.image:
            header["image"] = task.spec.image
        if run.commit and record.commit != run.commit:
            header["commit"] = run.commit
        if header:
            run.store.append({"ev": "task", **header})
        reopened = any(c.get("state") == "pending" for c in changes)
        if record.phase in TERMINAL_PHASES and (
            relaunch or (record.phase != "killed" and reopened)
        ):
            run.set_phase("registered")

    # the loop ------------------------------------------------------------------------------
    def run(self, *, wait: bool = True) -> dict[str, str]:
        """Drive every prepared task; return each task's final phase."""
        by_name = {r.name: r for r in self.runs}
        live = list(self.runs)
        touched: set[str] = set(by_name)  # tasks whose phase may move
        unsaved: set[str] = set(by_name)  # tasks with changes not yet in status.yaml
        last_kill_check = 0.0
        try:
            while True:
                # only the tasks touched since the last round can move: a round costs what
                # happened in it, not the number of tasks
                ended = False
                for name in touched:
                    task_run = by_name[name]
                    self._advance(task_run)
                    ended = ended or task_run.phase in TERMINAL_PHASES
                touched.clear()
                if os.times().elapsed - last_kill_check >= _CHECK_KILL_EVERY:
                    last_kill_check = os.times().elapsed
                    for task_run in live:
                        self._check_kill(task_run)
                    ended = True
                if ended:
                    live = [r for r in live if r.phase not in TERMINAL_PHASES]
                if not live:
                    break
                # Without --wait (Kubernetes, Slurm): stop once nothing more can be submitted.
                # A task in testing launches the rest only when its test jobs have passed,
                # and one whose test job failed launches nothing: a later apply or reconcile
                # pass carries them on (design.md, "Local backend runs to completion").
                if not wait and all(
                    not (r.queue_tests and not (r.phase == "testing" and r.count("failed", True)))
                    and not (r.queue_rest and r.phase == "running")
                    for r in live
                ):
                    break
                submitted = self._schedule(live)
                touched |= self._unstarted
                self._unstarted.clear()
                for backend in self.backends.values():
                    timeout = 0.0 if submitted else 0.5 / max(1, len(self.backends))
                    for event in backend.poll(timeout):
                        owner = by_name.get(event.run.task)
                        if owner is not None:
                            self._handle(owner, event)
                            touched.add(owner.name)
                for name in touched:
                    by_name[name].store.flush()
                unsaved |= touched
                for name in list(unsaved):
                    store = by_name[name].store
                    store.maybe_snapshot()
                    if not store.unsaved:
                        unsaved.discard(name)
                if self.progress is not None:
                    self.progress(self.runs, False)
        except BaseException:
            self._interrupt()
            raise
        finally:
            self._finish()
        return {r.name: r.phase for r in self.runs}

    def _advance(self, run: TaskRun) -> None:
        phase = run.phase
        if phase in TERMINAL_PHASES:
            return
        tests_open = run.count("pending", True) + run.count("submitted", True)
        tests_open += run.count("running", True)
        if phase == "registered":
            phase = "testing" if tests_open or run.count("failed", True) else "running"
            run.set_phase(phase)
        if phase == "testing":
            if run.count("failed", True):
                if not run.count("submitted", True) and not run.count("running", True):
                    failed = run.count("failed", True)
                    run.set_phase("broken", message=f"{failed} test job(s) failed")
                return
            if tests_open:
                return
            run.set_phase("running")
        active = run.count("submitted") + run.count("running")
        if not run.count("pending") and not active:
            failed = run.count("failed")
            if failed:
                run.set_phase("finalized", message=f"{failed} job(s) failed")
            else:
                run.set_phase("done", message=None)

    def _schedule(self, live: list[TaskRun]) -> bool:
        """Submit pending jobs, round robin over tasks, within the backends' slots and each
        task's ``parallelism``. True when anything was submitted."""
        free = {id(backend): backend.capacity() for backend in self.backends.values()}
        if all(f is not None and f <= 0 for f in free.values()):
            return False
        submitted = False
        progress = True
        launches: list[tuple[TaskRun, JobRun]] = []
        # A round costs the jobs it launches, not the number of tasks: a task with nothing it
        # may launch is passed over at the cost of two tests, and the pass stops once every
        # slot is taken (at 1,000 tasks, walking them all each round took a third of apply).
        while progress:
            progress = False
            for task_run in live:
                if not task_run.queue_tests and not (
                    task_run.queue_rest and task_run.phase == "running"
                ):
                    continue
                key = id(task_run.backend)
                room = free[key]
                if room is not None and room <= 0:
                    continue
                cap = task_run.desired.spec.parallelism
                if cap is not None and len(task_run.active) >= cap:
                    continue
                name = self._next_job(task_run)
                if name is None:
                    continue
                launches.append((task_run, self._submitted(task_run, name)))
                submitted = progress = True
                if room is not None:
                    free[key] = room - 1
                    if room == 1 and all(f is not None and f <= 0 for f in free.values()):
                        break
            if all(f is not None and f <= 0 for f in free.values()):
                break
        # every "submitted" line reaches the kernel before its job can start: a crash after
        # this point finds the job (running, finished, or never started), never a stranger
        for task_run in {id(t): t for t, _a in launches}.values():
            task_run.store.flush()
        for task_run, attempt in launches:
            refused = _clear_job_dir(task_run, attempt)
            if refused is None:
                task_run.backend.submit(attempt)
            else:
                self._handle(task_run, refused)
                self._unstarted.add(task_run.name)
        return submitted

    def _next_job(self, run: TaskRun) -> str | None:
        if run.phase == "testing":
            if run.count("failed", True):
                return None  # a test job failed for good: launch nothing more
            queue = run.queue_tests
        elif run.phase == "running":
            queue = run.queue_tests if run.queue_tests else run.queue_rest
        else:
            return None
        while queue:
            name = queue.popleft()
            job = run.record.jobs.get(name)
            if job is not None and job.state == "pending" and not job.orphan:
                return name
        return None

    def _attempt(self, run: TaskRun, job: JobRecord, attempt: int, run_id: str) -> JobRun:
        spec = run.desired.spec
        return JobRun(
            task=run.name,
            job=job.name,
            attempt=attempt,
            run_id=run_id,
            command=run.commands.get(job.name, ""),
            job_dir=run.desired.job_dir(job.name),
            image=spec.image,
            env=spec.env,
            output=f"{run.desired.task_dir}/jobs/{job.name}/{spec.output}",
            spec=spec,
            spec_digest=run.desired.spec_digest,
            digest=job.digest,
            commit=run.commit,
        )

    def _submitted(self, run: TaskRun, name: str) -> JobRun:
        """Log the next attempt of ``name`` as submitted (not flushed yet); return it."""
        job = run.record.jobs[name]
        attempt = job.attempts + 1
        self._attempts += 1
        run_id = f"{self._token}{self._attempts:08x}"  # unique: a random token per process
        run.job_event(
            name,
            {
                "state": "submitted",
                "attempts": attempt,
                "run": run_id,
                "exitCode": None,
                "reason": None,
                "warning": None,
                "pid": None,
                "node": None,
                "started": None,
                "finished": None,
            },
            flush=False,
        )
        attempt_run = self._attempt(run, job, attempt, run_id)
        run.active[run_id] = attempt_run
        return attempt_run

    def _handle(self, run: TaskRun, event: JobEvent) -> None:
        name = event.run.job
        job = run.record.jobs.get(name)
        if event.run.run_id not in run.active or job is None or job.run_id != event.run.run_id:
            run.active.pop(event.run.run_id, None)
            return  # an attempt that was replaced (cancelled rerun): its news is old
        if event.kind == "waiting":  # still running; why it is held back, or no longer
            if event.reason is not None or (job.reason or "").startswith("waiting: "):
                run.job_event(name, {"reason": event.reason})
            return
        if event.kind == "started":
            run.job_event(
                name,
                {"state": "running", "pid": event.pid, "node": event.node, "started": event.time},
            )
            return
        run.active.pop(event.run.run_id, None)
        if event.kind == "lost" or event.reason in ("cancelled", "interrupted"):
            # the attempt did not run to an outcome: it does not count against the retries
            run.job_event(
                name,
                {"state": "pending", "attempts": max(0, job.attempts - 1), "reason": event.reason},
            )
            return
        fields: dict[str, Any] = {"exitCode": event.exit_code, "finished": event.time}
        if job.state != "running" and event.started is not None:
            fields.update(started=event.started, pid=event.pid, node=event.node)
        if event.exit_code == 0:
            fields["state"] = "done"
            fields["reason"] = event.reason  # "recovered": it ended while no orchestra watched
            written = event.output_written
            if written is None:
                written = output_written(event.run.job_dir, run.desired.spec.output)
            if not written:
                fields["warning"] = f"exited 0 but wrote no {run.desired.spec.output}"
        elif job.attempts <= run.desired.spec.max_retries:
            fields["state"] = "pending"  # retried
            fields["reason"] = event.reason or f"exit code {event.exit_code}; retrying"
        else:
            fields["state"] = "failed"
            fields["reason"] = event.reason or f"exit code {event.exit_code}"
        run.job_event(name, fields, flush=False)  # flushed after the batch; the marker knows too

    def _check_kill(self, run: TaskRun) -> None:
        if run.phase in TERMINAL_PHASES:
            return
        # in the task directory this engine opened, wherever its path leads now
        dir_fd = run.store.dir_fd
        if dir_fd is None:  # not being written: not this engine's to drive
            return
        reason = _read_request(KILL_REQUEST, dir_fd)
        if reason is None:
            return
        self.kill(run, reason=reason)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(KILL_REQUEST, dir_fd=dir_fd)

    def kill(self, run: TaskRun, *, reason: str = "deleted") -> None:
        """Cancel the task's running jobs and mark it killed."""
        if run.active:
            run.backend.cancel(list(run.active))
        for attempt in list(run.active.values()):
            run.job_event(
                attempt.job,
                {
                    "state": "pending",
                    "attempts": max(0, attempt.attempt - 1),
                    "reason": "cancelled",
                },
            )
        run.active.clear()
        run.set_phase("killed", message=reason or "deleted")

    # stopping ------------------------------------------------------------------------------
    def _interrupt(self) -> None:
        """Ctrl-C, SIGTERM (or any error): stop the running jobs and leave them pending. What
        the backend learnt before it stopped is logged first: a job that had finished keeps
        its outcome and never runs again."""
        by_name = {r.name: r for r in self.runs}
        for backend in self.backends.values():
            for event in backend.close():
                owner = by_name.get(event.run.task)
                if owner is not None:
                    self._handle(owner, event)
        for task_run in self.runs:
            task_run.store.flush()
        self.backends.clear()

    def _finish(self) -> None:
        try:
            self._interrupt()  # what is left (e.g. a local job when not waiting) stops, logged
        finally:
            if self.progress is not None:
                self.progress(self.runs, True)
            self.release()

    def release(self) -> None:
        errors: list[BaseException] = []
        for task_run in self.runs:
            try:
                task_run.store.close()
            except OSError as exc:
                errors.append(exc)
            task_run.lock.release()
        if errors:
            raise errors[0]


def _clear_job_dir(run: TaskRun, attempt: JobRun) -> JobEvent | None:
    """Move the previous attempt's log and output into ``attempts/<n>/`` (design.md,
    "Attempts"), so that ``%OUT`` never shows an old result. Done after the "submitted" line
    is on disk: a crash in between finds the attempt lost and queues it again, and the next
    archive finishes an interrupted move. None, or the outcome of an attempt that cannot
    start because its directory is unsafe or the storage refuses the move."""
    try:
        archive_previous_attempt(
            attempt.job_dir, run.desired.spec.output, run.desired.cluster.keep_attempts
        )
    except UnsafeJobDirectory as exc:
        why = str(exc)
    except OSError as exc:
        why = f"moving the previous attempt of {attempt.job_dir} aside: {exc}"
    else:
        return None
    return JobEvent(attempt, "finished", now_iso(), exit_code=127, reason=f"cannot start: {why}")


def _read_request(path: str, dir_fd: int) -> str | None:
    """The reason in a kill request; None without one. A FIFO, a device or a symlink there is
    none that orchestra wrote (``delete`` writes a regular file): it is not opened for reading,
    which could block the loop that drives every task of this apply."""
    try:
        return read_regular(path, dir_fd=dir_fd).decode("utf-8", errors="replace").strip()
    except (FileNotFoundError, UnsafePath):
        return None
    except OSError:
        return ""  # there but unreadable: a request all the same
