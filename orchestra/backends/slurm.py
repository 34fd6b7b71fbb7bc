"""The Slurm backend: the attempts of a task go to Slurm as job arrays, one ``sbatch`` each.

Submission. :meth:`SlurmBackend.submit` only buffers; the next :meth:`~SlurmBackend.poll` (or
:meth:`~SlurmBackend.close`) hands the buffer to Slurm: per task, one ``sbatch --parsable``
of an array ``0-K%L`` per chunk of at most ``MaxArraySize`` attempts (the cluster's, asked once
with ``scontrol show config``, or the Cluster's ``slurm.maxArraySize``). The script is
rendered from ``templates/slurm/job.sh.j2`` in a sandboxed Jinja environment with
``StrictUndefined``; every user value enters it through ``shquote``/``shname``/``sbatch``
filters, never as template source. The array index picks the attempt (a ``case`` over
``$SLURM_ARRAY_TASK_ID``); the script changes to the job's directory, appends stdout and stderr
to ``jobs/<job>/log``, exports the Task's env and ``ORCHESTRA_*``, runs the command with
``/bin/sh -c`` (through the Cluster's ``containerRuntime`` and the Task's image, when one is
set) and writes the exit marker ``<code> <run id>`` as the local backend's jobs do.
Beside the script, ``<task dir>/.slurm/<key>.runs`` lists the run id of each index, written
before ``sbatch``: ``--comment=<key>`` and ``--job-name=<task>`` let a later orchestra find the
array in ``squeue`` even if this one died before it learnt the array's id.

Status. One ``squeue -h -r -t all -j <array ids> -O ...`` per poll for every array in flight
(``poll_interval`` apart), plus the exit marker of each attempt Slurm reports ended. Without
slurmdbd ``sacct`` answers "accounting storage is disabled", so it is never called: outcomes
come from the markers, and from ``squeue``'s state and exit code while Slurm still keeps the
job (``MinJobAge``). An attempt gone from ``squeue`` with no marker of its own (after
``marker_grace`` seconds), or cancelled, preempted or lost with its node by someone else than
orchestra, is ``lost``: the engine queues it again. Cancel: one ``scancel`` of
``<array>_<index>`` ids per call. Retries are new arrays of only the attempts that failed.
"""

from __future__ import annotations

import math
import os
import re
import shlex
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from orchestra.backends.attempts import LOG_FILE
from orchestra.backends.base import EXIT_MARKER, JobEvent, JobRun, read_exit_marker
from orchestra.backends.local import job_environment
from orchestra.backends.templating import sandboxed_environment
from orchestra.errors import FatalError, UnsafePath
from orchestra.fsutil import check_directory, make_job_dir, now_iso, read_regular
from orchestra.resources import data_dir
from orchestra.spec.model import ClusterSpec, TaskSpec

TEMPLATE = "job.sh.j2"
POLL_INTERVAL = 2.0
MARKER_GRACE = 15.0  # seconds an ended attempt's marker may take to show (shared storage)
SBATCH_TRIES = 4  # an sbatch/squeue/scancel failing with a transient error is tried again
MAX_SCRIPT = 3 << 20  # bytes: Slurm's default max_script_size is 4 MB
SCANCEL_BATCH = 2000  # ids per scancel call
SUBMIT_DIR = ".slurm"

#: squeue's fields: array task id, state, reason, exit code (a wait status), node, comment
_SQUEUE_FORMAT = "JobArrayID:|,State:|,Reason:|,exit_code:|,NodeList:|,Comment:|"
_PENDING = {"PENDING", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "CONFIGURING"}
_RUNNING = {"RUNNING", "SUSPENDED", "STOPPED", "SIGNALING", "RESIZING", "STAGE_OUT"}
_LOST = {"CANCELLED", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "REVOKED", "REQUEUED", "DEADLINE"}
# a pending job's usual reasons: not news (anything else, e.g. ReqNodeNotAvail, is reported)
_USUAL_WAIT = {
    "None",
    "Priority",
    "Resources",
    "JobArrayTaskLimit",
    "BeginTime",
    "Dependency",
    "Prolog",
    "NodeDown",  # transient on a node's restart; ReqNodeNotAvail says when it lasts
}
_TRANSIENT = re.compile(
    r"timed out|Unable to contact|Socket|Connection refused|try again|temporarily|busy",
    re.IGNORECASE,
)
_SAFE_OPTION = re.compile(r"--[a-z-]+(=[A-Za-z0-9_.:,%@+/=-]+)?")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


# the template's filters ------------------------------------------------------------------
def _shquote(value: Any) -> str:
    """One shell word whatever ``value`` holds (quotes, ``$(...)``, backquotes, newlines)."""
    text = str(value)
    if "\0" in text:
        raise ValueError("a NUL byte cannot be passed to a shell")
    return shlex.quote(text)


def _shname(value: Any) -> str:
    text = str(value)
    if not _ENV_NAME.fullmatch(text):
        raise ValueError(f"not an environment variable name: {text!r}")
    return text


def _sbatch(value: Any) -> str:
    """An ``#SBATCH`` line's option: sbatch reads these lines with its own rules, not a
    shell's, so only plain option values pass (anything else is an error, never a line)."""
    text = str(value)
    if not _SAFE_OPTION.fullmatch(text):
        raise ValueError(f"not a plain sbatch option: {text!r}")
    return text


@cache
def _environment(directory: Path) -> Any:
    filters = {"shquote": _shquote, "shname": _shname, "sbatch": _sbatch}
    return sandboxed_environment(directory, filters, trim=True)


# spec fields -> sbatch options -------------------------------------------------------------
_MEMORY = re.compile(r"([0-9]+(?:\.[0-9]+)?)([KMGTPE]i?|m|k)?")
_MEMORY_UNIT = {
    None: 1,
    "m": 1e-3,
    "k": 1e3,
    "K": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}


def memory_mib(quantity: str) -> int:
    """A Kubernetes memory quantity (``2Gi``, ``512Mi``, ``1G``, ``1e9`` bytes) in MiB, rounded
    up: Slurm's ``--mem=<n>M`` (Slurm's M is 2^20 bytes)."""
    match = _MEMORY.fullmatch(str(quantity).strip())
    if not match:
        raise FatalError(f"memory {quantity!r} is not a quantity Slurm can be given")
    number, unit = match.groups()
    return max(1, math.ceil(float(number) * _MEMORY_UNIT[unit] / 2**20))


def cpus(value: float | str) -> int:
    """Cores, rounded up: ``0.5`` and ``'500m'`` are 1."""
    text = str(value)
    cores = int(text[:-1]) / 1000 if text.endswith("m") else float(text)
    return max(1, math.ceil(cores))


def time_limit(seconds: int) -> str:
    """``D-HH:MM:SS``."""
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{days}-{hours:02d}:{minutes:02d}:{secs:02d}"


def sbatch_options(
    cluster: ClusterSpec, spec: TaskSpec, key: str, size: int, limit: int | None = None
) -> list[str]:
    """The ``#SBATCH`` options of one array of ``size`` attempts of ``spec``'s task."""
    settings = cluster.slurm
    cap = min(x for x in (settings.array_limit, spec.parallelism, limit) if x is not None)
    options = [
        f"--job-name={spec.name}",
        f"--comment={key}",
        f"--array=0-{size - 1}%{cap}",
        "--ntasks=1",
        f"--cpus-per-task={cpus(spec.resources.cpu) if spec.resources.cpu is not None else 1}",
    ]
    if spec.resources.memory is not None:
        options.append(f"--mem={memory_mib(spec.resources.memory)}M")
    if spec.resources.gpu:
        options.append(f"--gres=gpu:{spec.resources.gpu}")
    if spec.timeout is not None:
        options.append(f"--time={time_limit(spec.timeout)}")
    if settings.partition:
        options.append(f"--partition={settings.partition}")
    if settings.account:
        options.append(f"--account={settings.account}")
    return options


class ScriptRenderer:
    """Renders the batch script of one array; the template is compiled once."""

    def __init__(self, cluster: ClusterSpec) -> None:
        self.cluster = cluster
        directory = Path(cluster.slurm.templates or data_dir("templates") / "slurm")
        from jinja2 import TemplateError

        try:
            self.template = _environment(directory).get_template(TEMPLATE)
        except TemplateError as exc:
            raise FatalError(
                f"cluster {cluster.name!r}: template {directory}/{TEMPLATE}: {exc}"
            ) from exc
        runtime = cluster.slurm.container_runtime
        self.runtime = shlex.split(runtime) if runtime else []

    def render(self, spec: TaskSpec, runs: Sequence[JobRun], key: str) -> str:
        from jinja2 import TemplateError

        variables = {
            "options": sbatch_options(self.cluster, spec, key, len(runs)),
            "task": spec.name,
            "image": spec.image,
            "runtime": self.runtime,
            "env": dict(sorted(spec.env.items())),
            "log": LOG_FILE,
            "marker": EXIT_MARKER,
            "jobs": [
                {
                    "dir": str(run.job_dir),
                    "name": run.job,
                    "attempt": run.attempt,
                    "run_id": run.run_id,
                    "command": run.command,
                }
                for run in runs
            ],
        }
        try:
            text: str = self.template.render(variables)
        except (TemplateError, ValueError) as exc:
            raise FatalError(f"task {spec.name}: cannot render its Slurm script: {exc}") from exc
        return text


@dataclass
class _Tracked:
    run: JobRun
    array: str  # Slurm's id of the array
    index: int
    started: bool = False
    ended_since: float | None = None  # when Slurm first showed it ended (or gone) unmarked
    waiting: str | None = None  # the unusual reason it waits, as reported


@dataclass(frozen=True)
class _Row:
    state: str
    reason: str
    status: int | None  # wait status
    node: str
    comment: str


class SlurmBackend:
    poll_interval = POLL_INTERVAL
    marker_grace = MARKER_GRACE

    def __init__(self, cluster: ClusterSpec) -> None:
        self.cluster = cluster
        missing = [c for c in ("sbatch", "squeue", "scancel") if shutil.which(c) is None]
        if missing:
            raise FatalError(
                f"cluster {cluster.name!r}: the slurm backend needs {', '.join(missing)} on PATH",
                hint="run orchestra on a Slurm login node (SLURM_CONF names the cluster's "
                "slurm.conf when it is not in /etc/slurm)",
            )
        self.renderer = ScriptRenderer(cluster)
        self.calls: Counter[str] = Counter()  # Slurm commands run, by name
        self._env = job_environment(os.environ)  # what sbatch --export=ALL hands the jobs
        self._buffer: dict[str, list[JobRun]] = {}  # task -> attempts not yet submitted
        self._unsubmitted: list[JobRun] = []  # attempts whose sbatch failed for good
        self._tracked: dict[str, _Tracked] = {}  # run id -> where it is in Slurm
        self._events: list[JobEvent] = []
        self._last_poll = 0.0
        self._max_array: int | None = cluster.slurm.max_array_size

    # Backend protocol ----------------------------------------------------------------------
    def capacity(self) -> int | None:
        return None  # Slurm schedules; %limit and the task's parallelism cap what runs

    def submit(self, run: JobRun) -> None:
        assert run.spec is not None, "the engine passes the Task with each attempt"
        self._buffer.setdefault(run.task, []).append(run)

    def poll(self, timeout: float) -> list[JobEvent]:
        submitted = self._flush()
        wait = self.poll_interval - (time.monotonic() - self._last_poll)
        if wait > 0 and not submitted:
            if self._events:
                return self._take()
            time.sleep(max(0.0, min(wait, timeout)))
            if time.monotonic() - self._last_poll < self.poll_interval:
                return self._take()
        if self._tracked and not submitted:
            self._last_poll = time.monotonic()
            self._observe(self._squeue_arrays({t.array for t in self._tracked.values()}))
        return self._take()

    def cancel(self, run_ids: Collection[str]) -> None:
        wanted = set(run_ids)
        for task, runs in list(self._buffer.items()):
            for run in runs:
                if run.run_id in wanted:
                    self._events.append(JobEvent(run, "finished", now_iso(), reason="cancelled"))
            self._buffer[task] = [r for r in runs if r.run_id not in wanted]
        targets = []
        for run_id in sorted(wanted):
            tracked = self._tracked.pop(run_id, None)
            if tracked is None:
                continue
            targets.append(f"{tracked.array}_{tracked.index}")
            self._events.append(JobEvent(tracked.run, "finished", now_iso(), reason="cancelled"))
        for start in range(0, len(targets), SCANCEL_BATCH):
            done = self._slurm(["scancel", *targets[start : start + SCANCEL_BATCH]], check=False)
            if done.returncode != 0 and "Invalid job id" not in done.stderr:
                raise FatalError(f"scancel failed: {_message(done)}")

    def recover(self, runs: Sequence[JobRun]) -> list[JobEvent]:
        """Attempts a previous orchestra submitted: each index file of their tasks says which
        array (by ``--comment``) and index holds which run id; one ``squeue`` by job name
        finds the arrays."""
        if not runs:
            return []
        where: dict[str, tuple[str, int]] = {}  # run id -> (key, index)
        for task_dir in {run.job_dir.parent.parent for run in runs}:
            where.update(_read_indexes(task_dir / SUBMIT_DIR))
        rows = self._squeue(["-n", ",".join(sorted({run.task for run in runs}))])
        by_key = {(row.comment, index): (array, row) for (array, index), row in rows.items()}
        events: list[JobEvent] = []
        found: dict[tuple[str, int], _Row] = {}
        for run in runs:
            place = where.get(run.run_id)
            hit = by_key.get(place) if place is not None else None
            if hit is None:
                event = _outcome(run, None, lost="it is not in Slurm and left no outcome")
                assert event is not None
                events.append(event)
                continue
            array, row = hit
            assert place is not None
            self._tracked[run.run_id] = _Tracked(run, array, place[1])
            found[(array, place[1])] = row
        self._observe(found, grace=False)
        events += self._take()
        # the others are pending or running: watched from now on, their end comes by poll()
        answered = {event.run.run_id for event in events}
        for run in runs:
            tracked = self._tracked.get(run.run_id)
            if tracked is not None and run.run_id not in answered:
                tracked.started = True
                events.append(JobEvent(run, "started", now_iso(), node=self._node_of(tracked)))
        return events

    def close(self) -> list[JobEvent]:
        """Hands what is buffered to Slurm (jobs run on in the cluster; the next orchestra
        finds them); returns the events not yet polled and, as ``interrupted``, the attempts
        that could not be submitted."""
        try:
            self._flush()
        except FatalError:
            for runs in self._buffer.values():
                self._unsubmitted += runs
            self._buffer.clear()
        unsubmitted, self._unsubmitted = self._unsubmitted, []
        stamp = now_iso()
        return self._take() + [
            JobEvent(run, "finished", stamp, reason="interrupted") for run in unsubmitted
        ]

    # submission ----------------------------------------------------------------------------
    def _flush(self) -> bool:
        submitted = False
        while self._buffer:
            task, runs = next(iter(self._buffer.items()))
            if runs:
                self._submit_task(runs)
                submitted = True
            del self._buffer[task]
        return submitted

    def max_array_size(self) -> int:
        """Attempts per array: below the cluster's ``MaxArraySize`` (indices start at 0)."""
        if self._max_array is None:
            done = self._slurm(["scontrol", "show", "config"], check=False)
            match = re.search(r"^MaxArraySize\s*=\s*(\d+)", done.stdout, re.MULTILINE)
            self._max_array = int(match.group(1)) if match else 1001
        return max(1, self._max_array)

    def _submit_task(self, runs: list[JobRun]) -> None:
        chunk = self.max_array_size()
        pending = [runs[i : i + chunk] for i in range(0, len(runs), chunk)]
        while pending:
            part = pending.pop(0)
            spec = part[0].spec
            assert spec is not None
            key = part[0].run_id
            script = self.renderer.render(spec, part, key)
            if len(script) > MAX_SCRIPT and len(part) > 1:
                half = len(part) // 2
                pending[:0] = [part[:half], part[half:]]
                continue
            self._submit_array(part, key, script)

    def _submit_array(self, runs: list[JobRun], key: str, script: str) -> None:
        task_dir = runs[0].job_dir.parent.parent
        directory = task_dir / SUBMIT_DIR
        check_directory(directory, create=True)  # never through a symlink
        for run in runs:
            make_job_dir(run.job_dir)
        (directory / f"{key}.sh").write_text(script, encoding="utf-8")
        # which run id each index holds: written before sbatch, so that a later orchestra
        # can read the outcome of an array this one submitted and then died
        (directory / f"{key}.runs").write_text(
            "".join(f"{run.run_id}\n" for run in runs), encoding="utf-8"
        )
        output = f"{directory}/%A_%a.out"
        if "%" in str(directory) or "\\" in str(directory):
            output = "/dev/null"  # '%' would be read as a pattern; the job logs are its own
        argv = ["sbatch", "--parsable", f"--output={output}", f"--chdir={task_dir}"]
        done = self._slurm([*argv, str(directory / f"{key}.sh")], check=False, retry=True)
        if done.returncode != 0:
            self._unsubmitted += runs
            raise FatalError(
                f"task {runs[0].task}: sbatch refused its array of {len(runs)} job(s): "
                f"{_message(done)}",
                hint=f"the script is {directory / f'{key}.sh'}",
            )
        array = done.stdout.strip().split(";")[0]
        for index, run in enumerate(runs):
            self._tracked[run.run_id] = _Tracked(run, array, index)

    # status --------------------------------------------------------------------------------
    def _squeue_arrays(self, arrays: Iterable[str]) -> dict[tuple[str, int], _Row]:
        return self._squeue(["-j", ",".join(sorted(arrays, key=_numeric))])

    def _squeue(self, selection: list[str]) -> dict[tuple[str, int], _Row]:
        """(array id, index) -> its row, for every job selected, ended ones included."""
        argv = ["squeue", "-h", "-r", "-t", "all", *selection, "-O", _SQUEUE_FORMAT]
        done = self._slurm(argv, check=False, retry=True)
        if done.returncode != 0:
            if "Invalid job id" in done.stderr:
                return {}  # every one of them has left Slurm's memory
            raise FatalError(f"squeue failed: {_message(done)}")
        rows: dict[tuple[str, int], _Row] = {}
        for line in done.stdout.splitlines():
            fields = line.split("|")
            if len(fields) < 6:
                continue
            array, _, index = fields[0].strip().partition("_")
            if not index.isdigit():
                continue  # not an array element
            status = fields[3].strip()
            rows[(array, int(index))] = _Row(
                state=fields[1].strip().split()[0] if fields[1].strip() else "",
                reason=fields[2].strip(),
                status=int(status) if status.lstrip("-").isdigit() else None,
                node=fields[4].strip(),
                comment=fields[5].strip(),
            )
        return rows

    def _observe(self, rows: dict[tuple[str, int], _Row], grace: bool = True) -> None:
        now = time.monotonic()
        for run_id, tracked in list(self._tracked.items()):
            row = rows.get((tracked.array, tracked.index))
            state = row.state if row is not None else None
            run = tracked.run
            if state in _PENDING:
                assert row is not None
                reason = None if row.reason in _USUAL_WAIT else f"waiting: {row.reason}"
                if reason != tracked.waiting:
                    tracked.waiting = reason
                    self._events.append(JobEvent(run, "waiting", now_iso(), reason=reason))
                continue
            if row is not None and row.node:
                tracked_node = f"{tracked.array}_{tracked.index}@{row.node}"
            else:
                tracked_node = f"{tracked.array}_{tracked.index}"
            if state in _RUNNING:
                if not tracked.started:
                    tracked.started = True
                    self._events.append(JobEvent(run, "started", now_iso(), node=tracked_node))
                if tracked.waiting is not None:
                    tracked.waiting = None
                    self._events.append(JobEvent(run, "waiting", now_iso(), reason=None))
                continue
            if state == "COMPLETING":
                # its script has ended, but squeue shows COMPLETING for CANCELLED and TIMEOUT
                # too while the node cleans up: the final state decides (a scancel behind
                # orchestra's back leaves the marker "143", yet the attempt is lost)
                continue
            # ended (COMPLETED, FAILED, TIMEOUT, ...), or gone from Slurm's memory: the
            # marker has the outcome
            event = _outcome(run, row, node=tracked_node, marker_only=True)
            if event is None and state in _LOST:
                event = _outcome(run, row, node=tracked_node)  # cancelled, node failure...
            if event is None:
                if tracked.ended_since is None:
                    tracked.ended_since = now
                if grace and now - tracked.ended_since < self.marker_grace:
                    continue
                event = _outcome(run, row, node=tracked_node)
            assert event is not None
            del self._tracked[run_id]
            self._events.append(event)

    def _node_of(self, tracked: _Tracked) -> str:
        return f"{tracked.array}_{tracked.index}"

    def _take(self) -> list[JobEvent]:
        events, self._events = self._events, []
        return events

    def _slurm(
        self, argv: list[str], *, check: bool = True, retry: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """One Slurm command (counted in :attr:`calls`); with ``retry``, tried again with
        backoff while it fails with a transient error (controller busy or unreachable)."""
        for attempt in range(SBATCH_TRIES if retry else 1):
            self.calls[argv[0]] += 1
            try:
                done = subprocess.run(
                    argv,
                    env=self._env,
                    capture_output=True,
                    text=True,
                    check=False,
                    timeout=120,
                    stdin=subprocess.DEVNULL,
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                done = subprocess.CompletedProcess(argv, 1, "", f"{argv[0]}: {exc}")
            if done.returncode == 0 or not _TRANSIENT.search(done.stderr):
                break
            if attempt < SBATCH_TRIES - 1:
                time.sleep(min(10.0, 0.5 * 2**attempt))
        if check and done.returncode != 0:
            raise FatalError(f"{argv[0]} failed: {_message(done)}")
        return done


def _numeric(array: str) -> tuple[int, str]:
    return (int(array) if array.isdigit() else 0, array)


def _message(done: subprocess.CompletedProcess[str]) -> str:
    text = " ".join((done.stderr or done.stdout or "").split())
    return text[:500] or f"exit code {done.returncode}"


def _read_indexes(directory: Path) -> dict[str, tuple[str, int]]:
    """Run id -> (array key, index), from the ``<key>.runs`` files of one task."""
    found: dict[str, tuple[str, int]] = {}
    try:
        names = [name for name in os.listdir(directory) if name.endswith(".runs")]
    except OSError:
        return found
    for name in names:
        try:
            lines = read_regular(directory / name).decode("utf-8").splitlines()
        except (OSError, UnicodeDecodeError, UnsafePath):  # a FIFO there: never read
            continue
        key = name[: -len(".runs")]
        for index, run_id in enumerate(lines):
            found[run_id.strip()] = (key, index)
    return found


def _exit_code(status: int | None) -> int | None:
    """A wait status as a shell reports it: the exit code, or 128 + the signal."""
    if status is None:
        return None
    if status & 0x7F:
        return 128 + (status & 0x7F)
    return (status >> 8) & 0xFF


def _outcome(
    run: JobRun,
    row: _Row | None,
    *,
    node: str | None = None,
    marker_only: bool = False,
    lost: str | None = None,
) -> JobEvent | None:
    """The end of an attempt Slurm shows ended (``row``) or no longer knows (None). With
    ``marker_only``, None unless the exit marker has it."""
    state = row.state if row is not None else None
    timeout = run.spec.timeout if run.spec is not None else None
    reason: str | None = None
    if state == "TIMEOUT":
        reason = f"DeadlineExceeded: still running after its timeout ({timeout} s)"
    elif state == "OUT_OF_MEMORY":
        reason = "OOMKilled"
    marker = read_exit_marker(run)
    if marker is not None and state not in _LOST:
        marked, stamp = marker
        if state == "TIMEOUT" and marked == 0:
            marked = 124
        return JobEvent(run, "finished", stamp, exit_code=marked, node=node, reason=reason)
    if marker_only:
        return None
    if row is None or state in _LOST:
        why = lost or (
            f"Slurm ended it as {state}" + (f" ({row.reason})" if row.reason != "None" else "")
            if row is not None
            else "it left Slurm without an exit marker"
        )
        return JobEvent(run, "lost", now_iso(), node=node, reason=why)
    code: int | None = _exit_code(row.status)
    if state == "TIMEOUT":
        code = code or 124
    elif state == "OUT_OF_MEMORY":
        code = code or 137
    elif state == "COMPLETED":
        code = 0 if code is None else code
    else:  # FAILED and the like, before its script could write the marker
        code = code or 1
        reason = f"Slurm: {state} ({row.reason}); no exit marker, see {SUBMIT_DIR}/"
    return JobEvent(run, "finished", now_iso(), exit_code=code, node=node, reason=reason)
