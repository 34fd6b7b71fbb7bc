"""Is what a sidecar holds of the shape the code relies on? Storage is hostile (a job may write
anything into its task directory), so an event or a snapshot is checked before it is used:
one of the wrong shape makes the task damaged (events.jsonl) or is ignored (status.yaml).

Rows are checked column by column in C (``map``, ``set``, ``sum``, ``str.join``): a Python
loop over the rows would cost a quarter of the read of a 100,000-job snapshot.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Sequence
from functools import partial
from itertools import chain, compress
from operator import attrgetter, is_not, itemgetter
from typing import Any

from orchestra.status.model import (
    _JOB_FIELDS,
    JOB_COLUMNS,
    JOB_STATES,
    TASK_PHASES,
    JobRecord,
    TaskRecord,
    _row_values,
)

_STATES = frozenset(JOB_STATES)
_PHASES = frozenset(TASK_PHASES)
_BOOLS = frozenset((True, False))
_NONE = type(None)
_not_none = partial(is_not, None)
_STR_OR_NONE = frozenset((str, _NONE))
# a job's name is a directory under jobs/: never empty, ".", "..", nor holding "/" or NUL
_BAD_NAMES = frozenset(("", ".", ".."))

# column -> what its values must be (JOB_COLUMNS' order)
_KIND = {
    "name": "name",
    "state": "state",
    "attempts": "int",
    "exitCode": "int?",
    "started": "str?",
    "finished": "str?",
    "config": "str",
    "test": "bool",
    "digest": "str",
    "run": "str?",
    "pid": "int?",
    "node": "str?",
    "reason": "str?",
    "warning": "str?",
    "orphan": "bool",
}
# a column or event field not named in _KIND is not checked (add it there when adding one)
_GROUPS: dict[str, tuple[int, ...]] = {}
for _i, _column in enumerate(JOB_COLUMNS):
    if _column in _KIND:
        _GROUPS[_KIND[_column]] = (*_GROUPS.get(_KIND[_column], ()), _i)
_DESCRIBE = {
    "name": "a job name (a non-empty string without '/')",
    "state": f"a job state ({', '.join(JOB_STATES)})",
    "int": "an integer",
    "int?": "an integer or null",
    "str": "a string",
    "str?": "a string or null",
    "bool": "true or false",
}


def _values(rows: Sequence[Sequence[Any]], columns: tuple[int, ...]) -> Iterable[Any]:
    if len(columns) == 1:
        return map(itemgetter(columns[0]), rows)
    return chain.from_iterable(map(itemgetter(*columns), rows))


def _fits(kind: str, values: Iterable[Any]) -> bool:
    """Whether every value is of ``kind`` (each test in C; TypeError means no)."""
    try:
        if kind == "name":
            names = list(values)
            joined = "\n".join(names)  # TypeError unless all are str
            return "/" not in joined and "\0" not in joined and _BAD_NAMES.isdisjoint(names)
        if kind == "state":
            return set(values) <= _STATES
        if kind == "bool":
            return set(values) <= _BOOLS
        if kind == "str":
            return set(map(type, values)) <= {str}
        if kind == "str?":
            return set(map(type, values)) <= _STR_OR_NONE
        if kind in ("int", "int?"):
            kept = values if kind == "int" else filter(_not_none, values)
            return type(sum(kept)) is int  # str, None, list: TypeError; a float: a float
    except TypeError:
        return False
    raise AssertionError(kind)


def rows_problem(rows: Sequence[Sequence[Any]]) -> str | None:
    """What is wrong with job rows in the order of JOB_COLUMNS, or None: each value must be
    of its column's type. The caller checks that each row has as many values as columns."""
    if not rows:
        return None
    for kind, columns in _GROUPS.items():
        if not _fits(kind, _values(rows, columns)):
            return _find(rows, kind, columns)
    return None


_NAME, _STATE, _TEST = (JOB_COLUMNS.index(c) for c in ("name", "state", "test"))
_not_done = "done".__ne__


def snapshot_rows_problem(rows: Sequence[Sequence[Any]], names: Collection[Any]) -> str | None:
    """`rows_problem` at the cost of four passes over a 100,000-job snapshot (each
    costs ~3% of reading it): every row's name, state and test flag, which every reader uses as
    a path, prints or counts; all the columns of the jobs not done, which the engine computes with.
    A done job's other values are only shown or compared, and their readers take any JSON
    value there. ``names`` are the rows' names (a dict's keys)."""
    try:
        joined = "\n".join(names)  # TypeError unless every name is a string
    except TypeError:
        return _find(rows, "name", (_NAME,))
    if "/" in joined or "\0" in joined or not _BAD_NAMES.isdisjoint(names):
        return _find(rows, "name", (_NAME,))
    states = list(map(itemgetter(_STATE), rows))
    try:
        distinct = set(states)
    except TypeError:
        distinct = {None}
    if not distinct <= _STATES:
        return _find(rows, "state", (_STATE,))
    if not _fits("bool", map(itemgetter(_TEST), rows)):  # counted with the state
        return _find(rows, "bool", (_TEST,))
    if distinct == {"done"}:
        return None
    return rows_problem(list(compress(rows, map(_not_done, states))))


def replayed_jobs_problem(
    jobs: dict[str, JobRecord], touched: Collection[str] | None
) -> str | None:
    """What is wrong with jobs built by replaying events: with ``touched`` (the jobs a tail
    after a snapshot changed, few) in every column; without (the whole log replayed) in the
    columns :func:`snapshot_rows_problem` checks, at the same cost."""
    if touched is not None:
        return rows_problem(list(map(_row_values, map(jobs.__getitem__, touched))))
    records = list(jobs.values())
    try:
        joined = "\n".join(jobs)
    except TypeError:
        joined = "/"
    states = list(map(attrgetter("state"), records))
    if (
        "/" in joined
        or "\0" in joined
        or not _BAD_NAMES.isdisjoint(jobs)
        or not _fits("state", states)
        or not _fits("bool", map(attrgetter("test"), records))
    ):
        return rows_problem(list(map(_row_values, records)))  # to name it
    return rows_problem(list(map(_row_values, compress(records, map(_not_done, states)))))


def _find(rows: Sequence[Sequence[Any]], kind: str, columns: tuple[int, ...]) -> str:
    """The first bad value, named (only once something is known wrong: a Python loop)."""
    for row in rows:
        for column in columns:
            if not _fits(kind, [row[column]]):
                return (
                    f"job {row[0]!r}: {JOB_COLUMNS[column]} must be {_DESCRIBE[kind]}, "
                    f"not {_show(row[column])}"
                )
    return f"a job's {JOB_COLUMNS[columns[0]]} is not {_DESCRIBE[kind]}"


def _show(value: Any) -> str:
    try:
        text = json.dumps(value, default=repr)
    except (RecursionError, ValueError):  # nested too deeply to print
        text = f"a {type(value).__name__} nested too deeply"
    return text if len(text) <= 40 else text[:37] + "..."


_TASK_STR = ("name", "owner", "cluster", "backend", "image", "spec_digest")
_TASK_STR_OR_NONE = ("commit", "created", "started", "finished", "message")


def task_problem(record: TaskRecord) -> str | None:
    """What is wrong with a TaskRecord's own fields (not its jobs), or None."""
    if not isinstance(record.phase, str) or record.phase not in _PHASES:
        return f"phase must be one of {', '.join(TASK_PHASES)}, not {_show(record.phase)}"
    for attr in _TASK_STR:
        if type(getattr(record, attr)) is not str:
            return f"{attr} must be a string, not {_show(getattr(record, attr))}"
    for attr in _TASK_STR_OR_NONE:
        value = getattr(record, attr)
        if value is not None and type(value) is not str:
            return f"{attr} must be a string or null, not {_show(value)}"
    return None


def event_problem(event: Any) -> str | None:
    """What makes ``event`` not an event of events.jsonl, or None. Only called to name the
    line at fault once a replay failed: replay itself relies on :func:`rows_problem` and
    :func:`task_problem` over the result."""
    if not isinstance(event, dict):
        return f"an event must be a JSON object, not {_show(event)}"
    kind = event.get("ev")
    if not isinstance(kind, str):
        return f'an event needs "ev" (a string), not {_show(kind)}'
    if kind == "task":
        return _fields_problem(event, _TASK_EVENT)
    if kind == "job":
        if not _fits("name", [event.get("job")]):
            return f'"job" must be {_DESCRIBE["name"]}, not {_show(event.get("job"))}'
        return _fields_problem(event, _JOB_EVENT)
    if kind == "jobs":
        items = event.get("set")
        if not isinstance(items, list):
            return f'"set" must be a list of jobs, not {_show(items)}'
        for item in items:
            if not isinstance(item, dict):
                return f'each job of "set" must be an object, not {_show(item)}'
            if not _fits("name", [item.get("name")]):
                return f'"name" must be {_DESCRIBE["name"]}, not {_show(item.get("name"))}'
            problem = _fields_problem(item, _JOB_EVENT)
            if problem:
                return problem
    return None  # an event of a kind this version does not know changes nothing


_JOB_EVENT = {key: _KIND[key] for key in _JOB_FIELDS if key in _KIND}
_TASK_EVENT = {
    "task": "str",
    "phase": "phase",
    **dict.fromkeys(("owner", "cluster", "backend", "image", "specDigest"), "str"),
    **dict.fromkeys(("commit", "created", "started", "finished", "message"), "str?"),
}


def _fields_problem(event: dict[str, Any], kinds: dict[str, str]) -> str | None:
    for key, kind in kinds.items():
        if key not in event:
            continue
        value = event[key]
        fits = (
            isinstance(value, str) and value in _PHASES if kind == "phase" else _fits(kind, [value])
        )
        if not fits:
            wanted = f"one of {', '.join(TASK_PHASES)}" if kind == "phase" else _DESCRIBE[kind]
            return f'"{key}" must be {wanted}, not {_show(value)}'
    return None
