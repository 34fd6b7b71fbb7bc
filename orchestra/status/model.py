"""What orchestra knows about a task and its jobs, and how one event changes it."""

from __future__ import annotations

import hashlib
import json
import json.encoder
import operator
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

try:
    import orjson
except ImportError:  # pragma: no cover (a dependency; the json module does the same, slower)
    orjson = None  # type: ignore[assignment]

_quote = json.encoder.encode_basestring_ascii  # the C function json.dumps uses for str

JOB_STATES = ("pending", "submitted", "running", "done", "failed")
ACTIVE_JOB_STATES = ("submitted", "running")
TASK_PHASES = ("registered", "testing", "running", "done", "finalized", "broken", "killed")
TERMINAL_PHASES = ("done", "finalized", "broken", "killed")

# JSON field name -> JobRecord attribute, for the fields an event may set
_JOB_FIELDS = {
    "config": "config",
    "test": "test",
    "digest": "digest",
    "state": "state",
    "attempts": "attempts",
    "exitCode": "exit_code",
    "started": "started",
    "finished": "finished",
    "run": "run_id",
    "pid": "pid",
    "node": "node",
    "reason": "reason",
    "warning": "warning",
    "orphan": "orphan",
}
_TASK_FIELDS = {
    "phase": "phase",
    "owner": "owner",
    "cluster": "cluster",
    "backend": "backend",
    "image": "image",
    "specDigest": "spec_digest",
    "commit": "commit",
    "created": "created",
    "started": "started",
    "finished": "finished",
    "message": "message",
}


#: The fields of a job's row in status.yaml, in order (the snapshot's ``jobColumns``): JobRecord's
#: fields in the same order, so that a row is read back as ``JobRecord(*row)``. A job's log is
#: not a column: it is always ``jobs/<name>/log`` beside status.yaml.
JOB_COLUMNS = (
    "name",
    "state",
    "attempts",
    "exitCode",
    "started",
    "finished",
    "config",
    "test",
    "digest",
    "run",
    "pid",
    "node",
    "reason",
    "warning",
    "orphan",
)


def _not_serialisable(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


# The C encoder json.dumps uses, made once: json.dumps builds one per call (~3 us, which at
# 100,000 jobs is most of a snapshot). None where the C accelerator is missing.
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
_encode = (
    _c_make_encoder(None, _not_serialisable, _quote, None, ": ", ", ", False, False, False)
    if _c_make_encoder is not None
    else None
)
# the same without spaces, for status.yaml's rows where orjson cannot write them
_encode_tight = (
    _c_make_encoder(None, _not_serialisable, _quote, None, ":", ",", False, False, False)
    if _c_make_encoder is not None
    else None
)


def compact_json(value: Any) -> str:
    """``json.dumps(value)`` through a C encoder made once (json.dumps makes one per call)."""
    if _encode is None:  # pragma: no cover (CPython always has the C encoder)
        return json.dumps(value)
    return "".join(_encode(value, 0))


def _row_json(row: tuple[Any, ...]) -> bytes:
    """One row as tight ASCII JSON: ``json.dumps(row, separators=(",", ":"))`` with DEL
    escaped too, which YAML refuses raw (JSON allows it)."""
    if _encode_tight is None:  # pragma: no cover (CPython always has the C encoder)
        data = json.dumps(row, separators=(",", ":")).encode("ascii")
    else:
        data = "".join(_encode_tight(row, 0)).encode("ascii")
    return data.replace(b"\x7f", b"\\u007f") if b"\x7f" in data else data


def encode_jobs(jobs: Iterable[JobRecord]) -> bytes:
    """The jobs' rows as status.yaml holds them, in one JSON array: ``[[row],\\n  [row]]``.
    Each row is a job's values in the order of JOB_COLUMNS, tight JSON on a line of its own,
    and ASCII only, so that any YAML parser reads it.

    One call of orjson encodes all the rows (several times faster than the json module, and
    than a call per row); the line breaks then go in at the ``],[`` between rows, which is exact
    when there are n - 1 of them. Otherwise (a value holding ``],[``, non-ASCII text, an int
    orjson refuses) the rows are encoded one by one by the json module."""
    rows = list(map(_row_values, jobs))
    if orjson is not None:
        try:
            whole = orjson.dumps(rows)
        except TypeError:  # orjson.JSONEncodeError: an int beyond 64 bits, a lone surrogate
            pass
        else:
            if whole.isascii() and b"\x7f" not in whole:
                broken = whole.replace(b"],[", b"],\n  [")
                if len(broken) == len(whole) + 3 * (len(rows) - 1):
                    return broken
    return b"[" + b",\n  ".join([_row_json(row) for row in rows]) + b"]"


@dataclass(slots=True)
class JobRecord:
    # the order of the fields is JOB_COLUMNS' (see there)
    name: str
    state: str = "pending"
    attempts: int = 0
    exit_code: int | None = None
    started: str | None = None
    finished: str | None = None
    config: str = ""
    test: bool = False
    digest: str = ""
    run_id: str | None = None
    pid: int | None = None
    node: str | None = None
    reason: str | None = None
    warning: str | None = None
    orphan: bool = False

    # to_json and from_json are written out field by field: at 100,000 jobs a generic loop
    # over the fields costs more than the JSON encoding itself.
    def to_json(self) -> dict[str, Any]:
        """The job as one JSON object, without empty fields (``attempts`` always)."""
        out: dict[str, Any] = {}
        if self.config:
            out["config"] = self.config
        if self.test:
            out["test"] = True
        if self.digest:
            out["digest"] = self.digest
        out["state"] = self.state
        out["attempts"] = self.attempts
        if self.exit_code is not None:
            out["exitCode"] = self.exit_code
        if self.started is not None:
            out["started"] = self.started
        if self.finished is not None:
            out["finished"] = self.finished
        if self.run_id is not None:
            out["run"] = self.run_id
        if self.pid is not None:
            out["pid"] = self.pid
        if self.node is not None:
            out["node"] = self.node
        if self.reason is not None:
            out["reason"] = self.reason
        if self.warning is not None:
            out["warning"] = self.warning
        if self.orphan:
            out["orphan"] = True
        return out

    def row(self) -> tuple[Any, ...]:
        """The job's values in the order of JOB_COLUMNS."""
        return _row_values(self)

    def update(self, fields: dict[str, Any]) -> None:
        for key, value in fields.items():
            attr = _JOB_FIELDS.get(key)
            if attr is not None:
                setattr(self, attr, value)

    @classmethod
    def from_json(cls, name: str, fields: dict[str, Any]) -> JobRecord:
        """A job from its JSON form (as :meth:`to_json` writes it)."""
        get = fields.get
        return cls(
            name,
            get("state", "pending"),
            get("attempts", 0),
            get("exitCode"),
            get("started"),
            get("finished"),
            get("config", ""),
            get("test", False),
            get("digest", ""),
            get("run"),
            get("pid"),
            get("node"),
            get("reason"),
            get("warning"),
            get("orphan", False),
        )


# JobRecord's values in the order of JOB_COLUMNS, fetched in C
_row_values = operator.attrgetter("name", *[_JOB_FIELDS[column] for column in JOB_COLUMNS[1:]])


@dataclass
class TaskRecord:
    name: str
    phase: str = "registered"
    owner: str = ""
    cluster: str = ""
    backend: str = ""
    image: str = ""
    spec_digest: str = ""
    commit: str | None = None
    created: str | None = None
    started: str | None = None
    finished: str | None = None
    message: str | None = None
    jobs: dict[str, JobRecord] = field(default_factory=dict)
    #: False when only the snapshot's header was read (``TaskStore.load_summary``): then
    #: ``jobs`` is empty and ``summary_counts`` and ``jobs_digest`` stand for the jobs.
    jobs_loaded: bool = True
    summary_counts: dict[str, int] | None = None
    jobs_digest: str | None = None
    log_size: int = 0  # bytes of events.jsonl when loaded: any change of status grows it
    #: status.yaml is behind events.jsonl (its writer died before the snapshot): apply
    #: rewrites it, so that readers of the snapshot see what the log says
    snapshot_stale: bool = False
    #: why status.yaml was not used (its values of the wrong type...): read from the log
    snapshot_problem: str | None = None

    def header_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        for key, attr in _TASK_FIELDS.items():
            value = getattr(self, attr)
            if value is not None and value != "":
                out[key] = value
        return out

    def counts(self) -> dict[str, int]:
        if not self.jobs_loaded and self.summary_counts is not None:
            return dict(self.summary_counts)
        tally = Counter(job.state for job in self.jobs.values() if not job.orphan)
        return {state: tally.get(state, 0) for state in JOB_STATES}

    def apply(self, event: dict[str, Any]) -> list[str]:
        """Apply one event; return the names of the jobs it changed."""
        kind = event.get("ev")
        if kind == "task":
            for key, value in event.items():
                attr = _TASK_FIELDS.get(key)
                if attr is not None:
                    setattr(self, attr, value)
            return []
        if kind == "jobs":
            changed = []
            for item in event.get("set", ()):
                name = item["name"]
                job = self.jobs.get(name)
                if job is None:
                    job = self.jobs[name] = JobRecord(name)
                job.update(item)
                changed.append(name)
            return changed
        if kind == "job":
            name = event["job"]
            job = self.jobs.get(name)
            if job is None:
                job = self.jobs[name] = JobRecord(name)
            job.update(event)
            return [name]
        if not isinstance(kind, str):  # events of other kinds (a newer version's) change nothing
            raise TypeError(f"not an event: {kind!r:.40}")
        return []

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL_PHASES


def jobs_digest(pairs: Iterable[tuple[str, str]]) -> str:
    """Digest of a task's (job name, inputs digest) pairs, in any order: the snapshot records
    it, so that a plan whose jobs all match need not read the job lines."""
    # Sorting the joined strings orders them as sorting the pairs would (names hold no NUL,
    # the smallest character, and are unique), and strings sort faster than tuples.
    text = "\0".join(sorted([f"{n}\0{d}" for n, d in pairs]))
    return hashlib.sha256(text.encode()).hexdigest()
