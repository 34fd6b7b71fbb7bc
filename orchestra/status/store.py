"""Reading and writing a task's sidecar.

``events.jsonl`` is appended one JSON line per event and is the truth: a process killed at any
instant loses at most a line it had not finished writing, which replay ignores. ``status.yaml``
is a snapshot of it, written atomically (temp file, fsync, rename) at most every
``min_interval`` seconds, at every phase change and when the writer closes. It records how many
bytes of the log it reflects (``eventsOffset``), so a reader loads the snapshot and replays only
the tail. ``jobs`` is a flow sequence with one row per line, the values of a job in the order
of ``jobColumns``: JSON, hence YAML, parsed by one ``json.loads``; rows rather than mappings
because a 100,000-job snapshot parses twice as fast without keys. The rows are encoded all at
once (``encode_jobs``): at 100,000 jobs that takes less than keeping each job's line between
snapshots and joining them would, and holds no copy of them in memory between snapshots.
"""

from __future__ import annotations

import json
import operator
import os
import stat
import time
from collections.abc import Iterable
from itertools import starmap
from pathlib import Path
from typing import Any

import yaml

from orchestra.errors import DamagedTaskError, UnsafePath
from orchestra.fsutil import (
    atomic_write,
    check_directory,
    now_iso,
    open_directory,
    open_regular,
    paused_gc,
    read_regular,
)
from orchestra.status.check import (
    event_problem,
    replayed_jobs_problem,
    rows_problem,
    snapshot_rows_problem,
    task_problem,
)
from orchestra.status.model import (
    JOB_COLUMNS,
    JOB_STATES,
    JobRecord,
    TaskRecord,
    encode_jobs,
    jobs_digest,
)

STATUS_FILE = "status.yaml"
EVENTS_FILE = "events.jsonl"
_HEADER = (
    "# Status of an orchestra task, rebuilt from events.jsonl beside it. Written atomically:\n"
    "# any YAML parser reads it. Each job is one line, a row of values in the order of\n"
    "# jobColumns. `orchestra status TASK --format json` shows them by name. A job's output\n"
    "# and log are in jobs/<name>/ beside this file.\n"
)
_COLUMNS_LINE = f"jobColumns: {json.dumps(list(JOB_COLUMNS))}\n"


def _dumps(value: Any) -> str:
    return json.dumps(value)  # default arguments: the C encoder, without building one per call


class TaskStore:
    """The sidecar of one task directory. ``load()`` to read; ``append()`` to change it."""

    def __init__(self, task_dir: Path, *, min_interval: float = 0.5) -> None:
        self.task_dir = task_dir
        self.status_path = task_dir / STATUS_FILE
        self.events_path = task_dir / EVENTS_FILE
        self.min_interval = min_interval
        self.record: TaskRecord | None = None
        self._unsaved = False  # jobs changed since the last snapshot
        self._stream: Any = None
        #: the task directory, held open while writing: the log and the snapshots go into it
        #: even if a job replaces its path with a symlink meanwhile
        self.dir_fd: int | None = None
        self._offset = 0
        self._last_snapshot = 0.0
        self._snapshot_cost = 0.0
        self._jobs_digest: str | None = None

    # reading -----------------------------------------------------------------------------
    def exists(self) -> bool:
        return os.path.lexists(self.events_path) or os.path.lexists(self.status_path)

    def load(self) -> TaskRecord | None:
        """The task as its sidecar says: the snapshot plus the events written after it. A
        snapshot of the wrong shape is ignored (the log is the truth; ``snapshot_problem``
        says why); a log line that is not an event, or a sidecar file that cannot be read,
        raises DamagedTaskError. :class:`UnsafePath` when the task directory or a file of the
        sidecar is a symlink, a FIFO or a device (never followed, never blocked on)."""
        check_directory(self.task_dir)
        record, offset, problem = _read_snapshot(self.status_path)
        size, tail = self._read_log(offset)
        if record is None or offset > size:  # no snapshot, or one newer than its log
            if offset:
                size, tail = self._read_log(0)
            record, offset = None, 0  # trust the log
        if offset and tail[:1] != b"\n":  # the snapshot does not end where a line does
            problem = f"eventsOffset {offset} is not at the end of a line of {EVENTS_FILE}"
            record, offset = None, 0
            size, tail = self._read_log(0)
        elif offset:
            tail = tail[1:]
        tail = tail[: tail.rfind(b"\n") + 1]  # without the torn line of a killed writer
        changed: list[str] = []
        try:
            for line in tail.split(b"\n"):
                if not line:
                    continue
                event = json.loads(line)
                if record is None:
                    record = TaskRecord(event.get("task", self.task_dir.name))
                changed += record.apply(event)
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
            raise self._damaged_log(offset, None) from None
        if record is not None and tail:
            with paused_gc():
                touched = set(changed) if offset else None
                wrong = task_problem(record) or replayed_jobs_problem(record.jobs, touched)
            if wrong:
                raise self._damaged_log(offset, wrong)
        if record is None and problem:
            raise DamagedTaskError(self.status_path, None, problem)
        self.record = record
        self._offset = offset + len(tail) if record is not None else 0
        if record is not None:
            record.log_size = size
            record.snapshot_stale = bool(tail) or not os.path.lexists(self.status_path)
            if problem:
                record.snapshot_problem = f"{self.status_path}: {problem}"
        return record

    def _read_log(self, offset: int) -> tuple[int, bytes]:
        """The size of events.jsonl and its bytes from ``offset`` (from the byte before it, to
        check a line ends there). Never through a symlink, never blocking on a FIFO."""
        try:
            fd = open_regular(self.events_path)
        except FileNotFoundError:
            return 0, b""
        except OSError as exc:  # no permission
            raise DamagedTaskError(self.events_path, None, _unreadable(exc)) from exc
        with open(fd, "rb") as stream:
            size = os.fstat(fd).st_size
            stream.seek(max(0, offset - 1))
            try:
                return size, stream.read()
            except OSError as exc:
                raise DamagedTaskError(self.events_path, None, _unreadable(exc)) from exc

    def _damaged_log(self, offset: int, wrong: str | None) -> DamagedTaskError:
        """The error naming the first line from ``offset`` on that is not an event (read
        again, with line numbers: only once the replay has failed)."""
        data = self._read_log(0)[1]
        number = data.count(b"\n", 0, offset) + 1
        for line in data[offset:].split(b"\n")[:-1]:  # the last: torn, or empty
            if line:
                try:
                    problem = event_problem(json.loads(line))
                except ValueError:
                    problem = "not a line of JSON"
                except RecursionError:
                    problem = "JSON nested too deeply"
                if problem:
                    return DamagedTaskError(self.events_path, number, problem)
            number += 1
        return DamagedTaskError(self.events_path, None, wrong or "its events do not replay")

    def refresh_snapshot(self) -> None:
        """Rewrite status.yaml from the log (the caller holds the task's lock)."""
        record = self.load()
        if record is not None:
            self.open(record)
            self.close()

    def load_summary(self) -> TaskRecord | None:
        """The task from the snapshot's header only (``jobs_loaded`` False), when the snapshot
        is up to date with the log and well formed; None otherwise (then :meth:`load` it,
        which names what is wrong with a file that is not a regular one)."""
        check_directory(self.task_dir)
        try:
            info = os.lstat(self.events_path)  # not stat: a symlink is not the log
            if not stat.S_ISREG(info.st_mode):
                return None
            size = info.st_size
            with open(open_regular(self.status_path), encoding="utf-8") as stream:
                header = _header(stream)
        except (OSError, ValueError, RecursionError, UnsafePath):
            return None
        if header.get("eventsOffset") != size or "jobsDigest" not in header or "name" not in header:
            return None
        try:
            record = _from_mapping(header)
        except _BadSnapshot:
            return None  # load() says what is wrong with it, and reads the log instead
        if "counts" not in header:
            return None
        record.jobs_loaded = False
        record.summary_counts = header["counts"]
        record.jobs_digest = header["jobsDigest"]
        record.log_size = size
        return record

    # writing -----------------------------------------------------------------------------
    def open(self, record: TaskRecord) -> None:
        """Start writing. A torn last line left by a killed writer is cut off first."""
        check_directory(self.task_dir, create=True)
        dir_fd = open_directory(self.task_dir)
        try:  # one descriptor, never a symlink's target nor a FIFO, to append and repair
            fd = open_regular(EVENTS_FILE, os.O_RDWR | os.O_APPEND | os.O_CREAT, dir_fd=dir_fd)
        except BaseException:
            os.close(dir_fd)
            raise
        self.dir_fd = dir_fd
        self.record = record
        self._jobs_digest = None
        self._unsaved = bool(record.jobs)
        self._stream = open(fd, "ab")  # noqa: SIM115 (closed in close())
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            keep = _after_last_newline(fd, size)
            self._stream.truncate(keep)
            size = keep
        self._offset = size

    def append(self, event: dict[str, Any], *, snapshot: bool = False, flush: bool = True) -> None:
        """Log one event, apply it, and snapshot if due (or if ``snapshot``). With
        ``flush=False`` the line may wait in this process's buffer until :meth:`flush`."""
        assert self.record is not None and self._stream is not None, "open() first"
        event.setdefault("ts", now_iso())
        event.setdefault("task", self.record.name)
        data = (json.dumps(event, separators=(",", ":")) + "\n").encode("utf-8")
        self._stream.write(data)
        if flush:
            self._stream.flush()  # in the kernel now: survives the death of this process
        self._offset += len(data)
        if self.record.apply(event):
            self._unsaved = True
        if event.get("ev") == "jobs" or "digest" in event or "orphan" in event:
            self._jobs_digest = None  # the set of (job, inputs digest) may have changed
        if snapshot or event.get("ev") == "task":
            self.snapshot()
        else:
            self.maybe_snapshot()

    def flush(self) -> None:
        if self._stream is not None:
            self._stream.flush()

    @property
    def unsaved(self) -> bool:
        """Changes not yet in status.yaml."""
        return self._unsaved

    def maybe_snapshot(self) -> None:
        """Snapshot when the last one is older than the debounce interval (which grows with the
        cost of a snapshot, so that writing status never takes more than ~10% of the time)."""
        if self._unsaved and time.monotonic() - self._last_snapshot >= max(
            self.min_interval, 10 * self._snapshot_cost
        ):
            self.snapshot()

    def snapshot(self) -> None:
        if self.record is None:
            return
        with paused_gc():
            self._snapshot(self.record)

    def _snapshot(self, record: TaskRecord) -> None:
        started = time.monotonic()
        header = record.header_json()
        parts = [_HEADER, "apiVersion: orchestra/v1\n", "kind: TaskStatus\n"]
        parts += [f"{key}: {_dumps(value)}\n" for key, value in header.items()]
        parts.append(f"counts: {_dumps(record.counts())}\n")
        if self._jobs_digest is None:
            self._jobs_digest = jobs_digest(
                (j.name, j.digest) for j in record.jobs.values() if not j.orphan
            )
        parts.append(f"jobsDigest: {_dumps(self._jobs_digest)}\n")
        parts.append(f"updated: {_dumps(now_iso())}\n")
        parts.append(f"eventsOffset: {self._offset}\n")
        parts.append(_COLUMNS_LINE)
        if record.jobs:  # a flow sequence, one row per line: the lot parses as one JSON array
            parts.append("jobs: [\n  ")
            rows = encode_jobs(record.jobs.values())
            chunks: list[bytes | memoryview] = [
                "".join(parts).encode("utf-8"),
                memoryview(rows)[1:-1],
                b"\n  ]\n",
            ]
        else:
            parts.append("jobs: []\n")
            chunks = ["".join(parts).encode("utf-8")]
        if self._stream is not None:
            self._stream.flush()
            os.fsync(self._stream.fileno())  # the snapshot never claims more than the log has
        atomic_write(self.status_path, chunks, dir_fd=self.dir_fd)
        self._unsaved = False
        self._last_snapshot = time.monotonic()
        self._snapshot_cost = self._last_snapshot - started

    def close(self) -> None:
        if self._stream is None:
            return
        try:
            self.snapshot()
        finally:
            self._stream.close()
            self._stream = None
            if self.dir_fd is not None:
                os.close(self.dir_fd)
                self.dir_fd = None


def _after_last_newline(fd: int, size: int) -> int:
    """The offset just after the last newline of the file's first ``size`` bytes (0: none),
    read backwards: a torn line is short, the log may be long."""
    end = size
    while end > 0:
        start = max(0, end - (1 << 16))
        at = os.pread(fd, end - start, start).rfind(b"\n")
        if at >= 0:
            return start + at + 1
        end = start
    return 0


def read_snapshot(path: Path) -> tuple[TaskRecord | None, int]:
    """Parse ``status.yaml`` quickly (the job lines as one JSON array), falling back to a YAML
    parser for a file edited by hand. Returns (record, eventsOffset) or (None, 0): then the
    caller replays the whole log. :class:`UnsafePath` when it is not a regular file."""
    record, offset, _problem = _read_snapshot(path)
    return record, offset


def _unreadable(exc: OSError) -> str:
    if isinstance(exc, IsADirectoryError):
        return "a directory where orchestra keeps a file"
    return f"cannot be read: {exc.strerror or exc}"


class _BadSnapshot(Exception):
    """status.yaml parses but holds values of the wrong type: ignored, the log replayed."""


def _read_snapshot(path: Path) -> tuple[TaskRecord | None, int, str | None]:
    """:func:`read_snapshot`, and what is wrong with the snapshot when it is not used."""
    try:
        text = read_regular(path).decode("utf-8")
    except FileNotFoundError:
        return None, 0, None
    except UnicodeDecodeError:
        return None, 0, "not UTF-8 text"
    except OSError as exc:  # a directory, no permission: nor can it be replaced
        raise DamagedTaskError(path, None, _unreadable(exc)) from exc
    try:
        with paused_gc():
            return (*_fast_parse(text), None)
    except _BadSnapshot as exc:
        return None, 0, str(exc)
    except (ValueError, KeyError, IndexError, TypeError):
        pass
    except RecursionError:  # JSON nested beyond the parser's stack: not orchestra's
        return None, 0, "JSON nested too deeply"
    try:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (yaml.YAMLError, RecursionError) as exc:
        return None, 0, f"neither a snapshot nor YAML ({type(exc).__name__})"
    if not isinstance(data, dict) or "name" not in data:
        return None, 0, "not a snapshot (a mapping with a name)"
    try:
        record = _from_mapping(data)
        offset = _offset(data)
        _check_jobs(record)
    except _BadSnapshot as exc:
        return None, 0, str(exc)
    except (ValueError, TypeError, AttributeError) as exc:
        return None, 0, f"not a snapshot ({exc})"
    return record, offset, None


def _header_problem(header: dict[str, Any]) -> str | None:
    """What is wrong with the snapshot's own fields (those not of the task), or None."""
    counts = header.get("counts", dict.fromkeys(JOB_STATES, 0))
    if not isinstance(counts, dict) or set(counts) != set(JOB_STATES):
        return f"counts must map each of {', '.join(JOB_STATES)} to a number of jobs"
    if not all(type(n) is int and n >= 0 for n in counts.values()):
        return f"counts must map each of {', '.join(JOB_STATES)} to a number of jobs"
    if type(header.get("jobsDigest", "")) is not str:
        return "jobsDigest must be a string"
    return None


def _offset(header: dict[str, Any]) -> int:
    offset = header.get("eventsOffset", 0)
    if type(offset) is not int or offset < 0:
        raise _BadSnapshot(f"eventsOffset must be a byte count, not {offset!r:.40}")
    return offset


def _check_jobs(record: TaskRecord) -> None:
    """Check jobs read from a layout other than rows (the YAML fallback, old snapshots)."""
    problem = rows_problem([job.row() for job in record.jobs.values()])
    if problem:
        raise _BadSnapshot(problem)


_COLUMNS = list(JOB_COLUMNS)
_COLUMNS_WITH_LOG = [*JOB_COLUMNS, "log"]  # the rows of the first version of jobColumns
_first = operator.itemgetter(0)  # with starmap: 2.5x a comprehension building the jobs


def _header(lines: Iterable[str]) -> dict[str, Any]:
    """The snapshot's header fields, one ``key: <JSON>`` a line, up to ``jobs:``; ValueError
    at a line that is not one (then the caller reads the file another way)."""
    header: dict[str, Any] = {}
    for line in lines:
        if line.startswith("jobs:"):
            break
        if line.startswith("#") or not line.strip():
            continue
        key, _, value = line.partition(": ")
        if key not in ("apiVersion", "kind"):
            header[key] = json.loads(value)
    return header


def _fast_parse(text: str) -> tuple[TaskRecord, int]:
    if text.startswith("jobs:"):
        text = "\n" + text
    at = text.index("\njobs:")  # ValueError without it: the YAML parser will say
    header = _header(text[:at].split("\n"))
    columns = header.pop("jobColumns", None)
    record = _from_mapping(header)
    offset = _offset(header)
    body = text[at + len("\njobs:") :]
    if body.startswith(" ["):  # rows: the rest of the file is one JSON array
        rows = json.loads(body)  # faster than orjson's for these many short strings
    else:  # one mapping per line: the layout before jobColumns
        lines = body.strip("\n")
        parsed = json.loads("{" + lines.replace("\n", ",") + "}") if lines else {}
        if len(parsed) != (lines.count("\n") + 1 if lines else 0):
            raise ValueError("duplicate job lines")
        record.jobs = {str(name): _job(name, fields, None) for name, fields in parsed.items()}
        _check_jobs(record)
        return record, offset
    if columns == _COLUMNS and set(map(type, rows)) <= {list}:
        jobs = dict(zip(map(_first, rows), starmap(JobRecord, rows), strict=True))
        problem = snapshot_rows_problem(rows, jobs)  # a wrong length failed JobRecord(*row)
        if problem:
            raise _BadSnapshot(problem)
    elif columns == _COLUMNS_WITH_LOG and all(type(row) is list for row in rows):
        jobs = {row[0]: JobRecord(*row[:-1]) for row in rows}  # as written on 2026-11-30
    else:
        jobs = {}
        for row in rows:
            job = _job(None, row, columns)
            jobs[job.name] = job
    if len(jobs) != len(rows):
        raise ValueError("duplicate job lines")
    record.jobs = jobs
    if columns != _COLUMNS:
        _check_jobs(record)
    return record, offset


def _job(name: Any, fields: Any, columns: list[str] | None) -> JobRecord:
    """A job from a line in another layout than this version's rows: a mapping (snapshots
    before jobColumns, or edited by hand), or a row in the order of other columns."""
    if isinstance(fields, list) and isinstance(columns, list):
        fields = dict(zip(columns, fields, strict=False))
    if not isinstance(fields, dict):
        raise ValueError(f"job {name!r}: neither a mapping nor a row")
    name = fields.get("name", name)
    if not isinstance(name, str):
        raise ValueError("a job without a name")
    return JobRecord.from_json(name, fields)


def _from_mapping(data: dict[str, Any]) -> TaskRecord:
    record = TaskRecord(str(data["name"]))
    record.apply({"ev": "task", **{k: v for k, v in data.items() if k != "jobs"}})
    problem = task_problem(record) or _header_problem(data)
    if problem:
        raise _BadSnapshot(problem)
    columns = data.get("jobColumns")
    jobs = data.get("jobs") or {}
    items = jobs.items() if isinstance(jobs, dict) else ((None, row) for row in jobs)
    for name, fields in items:
        job = _job(None if name is None else str(name), fields, columns)
        record.jobs[job.name] = job
    return record
