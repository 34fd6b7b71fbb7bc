"""The sidecar: the event log is the truth, the snapshot a fast and always-valid view of it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from orchestra.status.model import JOB_COLUMNS, JobRecord, TaskRecord
from orchestra.status.store import TaskStore, read_snapshot


def _store_with_jobs(tmp_path: Path, jobs: int) -> TaskStore:
    store = TaskStore(tmp_path / "task")
    store.open(TaskRecord("user.a.t"))
    store.append({"ev": "task", "phase": "registered", "owner": "a"})
    store.append(
        {"ev": "jobs", "set": [{"name": f"j{i}", "config": f"j{i}.json"} for i in range(jobs)]}
    )
    return store


def test_snapshot_is_yaml_and_equals_the_replayed_log(tmp_path: Path) -> None:
    store = _store_with_jobs(tmp_path, 5)
    store.append({"ev": "job", "job": "j1", "state": "done", "exitCode": 0, "attempts": 1})
    store.append({"ev": "job", "job": 'we"ird: #name', "state": "failed", "reason": "a\nb"})
    store.close()
    data = yaml.safe_load((tmp_path / "task" / "status.yaml").read_text())
    assert data["kind"] == "TaskStatus" and data["phase"] == "registered"
    jobs = {row[0]: dict(zip(data["jobColumns"], row, strict=True)) for row in data["jobs"]}
    given = {k: v for k, v in jobs["j1"].items() if v is not None and v is not False and v != ""}
    assert given == {
        "name": "j1",
        "config": "j1.json",
        "state": "done",
        "attempts": 1,
        "exitCode": 0,
    }
    assert jobs['we"ird: #name']["reason"] == "a\nb"
    assert data["counts"]["pending"] == 4 and data["counts"]["failed"] == 1
    fast, _ = read_snapshot(tmp_path / "task" / "status.yaml")
    os.unlink(tmp_path / "task" / "status.yaml")
    replayed = TaskStore(tmp_path / "task").load()
    assert fast is not None and replayed is not None
    assert {n: j.to_json() for n, j in fast.jobs.items()} == {
        n: j.to_json() for n, j in replayed.jobs.items()
    }


def test_load_replays_the_events_after_the_snapshot(tmp_path: Path) -> None:
    store = _store_with_jobs(tmp_path, 3)
    store.snapshot()
    store.append({"ev": "job", "job": "j2", "state": "running"})  # debounced: not in the snapshot
    record = TaskStore(tmp_path / "task").load()
    assert record is not None and record.jobs["j2"].state == "running"
    store.close()


def test_a_torn_last_line_is_ignored_and_cut_by_the_next_writer(tmp_path: Path) -> None:
    store = _store_with_jobs(tmp_path, 2)
    store.close()
    events = tmp_path / "task" / "events.jsonl"
    with open(events, "ab") as stream:
        stream.write(b'{"ev":"job","job":"j0","sta')  # the writer died here
    record = TaskStore(tmp_path / "task").load()
    assert record is not None and record.jobs["j0"].state == "pending"
    again = TaskStore(tmp_path / "task")
    loaded = again.load()
    assert loaded is not None
    again.open(loaded)
    again.append({"ev": "job", "job": "j0", "state": "done"})
    again.close()
    assert events.read_bytes().endswith(b"\n")
    assert all(line.startswith(b"{") for line in events.read_bytes().splitlines())
    reloaded = TaskStore(tmp_path / "task").load()
    assert reloaded is not None and reloaded.jobs["j0"].state == "done"


def test_a_failed_snapshot_keeps_the_previous_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _store_with_jobs(tmp_path, 2)
    store.snapshot()
    before = (tmp_path / "task" / "status.yaml").read_text()
    from orchestra import fsutil

    def full(fd: int, data: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fsutil.os, "write", full)
    store.append({"ev": "job", "job": "j0", "state": "done"})
    with pytest.raises(OSError, match="No space left"):
        store.snapshot()
    monkeypatch.undo()
    assert (tmp_path / "task" / "status.yaml").read_text() == before
    assert not [p for p in (tmp_path / "task").iterdir() if p.name.endswith(".tmp")]
    assert store.unsaved  # still to be written: the next snapshot, once there is room, has it
    store.close()
    record, _ = read_snapshot(tmp_path / "task" / "status.yaml")
    assert record is not None and record.jobs["j0"].state == "done"


def test_a_snapshot_edited_by_hand_is_read_with_a_yaml_parser(tmp_path: Path) -> None:
    path = tmp_path / "status.yaml"
    path.write_text("name: user.a.t\nphase: done\njobs:\n  j0:\n    state: done\n    attempts: 1\n")
    record, offset = read_snapshot(path)
    assert record is not None and record.phase == "done" and record.jobs["j0"].state == "done"
    assert offset == 0


def test_snapshots_in_other_layouts_are_read_by_field_name(tmp_path: Path) -> None:
    path = tmp_path / "status.yaml"
    header = 'name: "user.a.t"\nphase: "running"\neventsOffset: 0\n'
    # one job line per mapping: the layout before jobColumns
    path.write_text(header + 'jobs:\n  "j0": {"state": "done", "attempts": 2, "exitCode": 0}\n')
    record, _ = read_snapshot(path)
    assert record is not None and record.jobs["j0"].attempts == 2
    assert record.jobs["j0"].exit_code == 0
    # rows in another version's column order
    path.write_text(
        header + 'jobColumns: ["attempts", "name", "state", "future"]\n'
        'jobs: [\n  [3, "j0", "failed", 1]\n  ]\n'
    )
    record, _ = read_snapshot(path)
    assert record is not None and (record.jobs["j0"].state, record.jobs["j0"].attempts) == (
        "failed",
        3,
    )
    # rows with the derived log column last, as the first version of jobColumns wrote them
    path.write_text(
        header + f"jobColumns: {json.dumps([*JOB_COLUMNS, 'log'])}\n"
        'jobs: [\n  ["j0", "done", 1, 0, null, null, "j0.json", false, "d", null, null, null, '
        'null, null, false, "jobs/j0/log"]\n  ]\n'
    )
    record, _ = read_snapshot(path)
    assert record is not None and record.jobs["j0"] == JobRecord(
        "j0", "done", 1, 0, config="j0.json", digest="d"
    )
    # a mapping where the current layout expects a row is not taken apart as a sequence
    path.write_text(
        header + f"jobColumns: {json.dumps(list(JOB_COLUMNS))}\n"
        'jobs:\n  - {"name": "j0", "state": "done", "attempts": 1}\n'
    )
    record, _ = read_snapshot(path)
    assert record is not None and record.jobs["j0"].state == "done"
    # rows without names: no snapshot (the caller replays the whole log)
    path.write_text(header + 'jobColumns: ["state"]\njobs:\n  - ["done"]\n')
    assert read_snapshot(path) == (None, 0)


def _tricky_jobs() -> list[JobRecord]:
    return [
        JobRecord(
            'we"ird: #name\\',
            config="a b'c\u00e9\n.json",
            test=True,
            digest="ab",
            state="failed",
            attempts=3,
            exit_code=-1,
            started="2026",
            finished="2027",
            run_id="r",
            pid=7,
            node="n\t",
            reason="line1\nline2 \u2028 \x85 del:\x7f],[",
            warning="w",
            orphan=True,
        ),
        JobRecord("plain"),
        JobRecord("row],[in a name", reason="],[", node="\ud800"),  # a lone surrogate
        JobRecord("huge", exit_code=2**70, pid=-(2**63) - 1),
        JobRecord("ascii", reason='ctl \x00\x01\x1f / \\ " ok'),
    ]


@pytest.mark.parametrize("with_orjson", [True, False], ids=["orjson", "json-module"])
def test_job_rows_are_json_and_yaml_on_one_line_each(
    monkeypatch: pytest.MonkeyPatch, with_orjson: bool
) -> None:
    from orchestra.status import model

    if not with_orjson:
        monkeypatch.setattr(model, "orjson", None)
    jobs = _tricky_jobs()
    # each alone, and all together: the values of any row may make the whole array unsafe to
    # cut at "],[", then the rows are encoded one by one
    for batch in [[job] for job in jobs] + [jobs, jobs[1:2] * 3 + jobs[4:]]:
        data = model.encode_jobs(batch)
        assert data.isascii() and b"\x7f" not in data  # YAML refuses DEL raw
        lines = data.split(b"\n")
        assert len(lines) == len(batch)  # one row per line
        expected = [list(job.row()) for job in batch]
        assert len(expected[0]) == len(JOB_COLUMNS) and expected[0][0] == batch[0].name
        assert json.loads(data) == expected
        text = "jobs: [\n  " + data[1:-1].decode() + "\n  ]\n"
        assert yaml.safe_load(text) == {"jobs": expected}
        assert [JobRecord(*row) for row in json.loads(data)] == batch


def test_rows_are_the_same_bytes_with_and_without_orjson(monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestra.status import model

    jobs = [_tricky_jobs()[i] for i in (1, 4)] * 50

    def one_by_one(row: object) -> bytes:
        raise AssertionError("plain rows are encoded all at once")

    with monkeypatch.context() as patched:
        patched.setattr(model, "_row_json", one_by_one)
        fast = model.encode_jobs(jobs)
    monkeypatch.setattr(model, "orjson", None)
    assert model.encode_jobs(jobs) == fast


def test_a_snapshot_behind_its_log_is_rewritten_by_the_next_apply(tmp_path: Path) -> None:
    from tests.helpers import Repo

    repo = Repo(tmp_path / "repo")
    repo.configs({"c0.txt": "ok\n"})
    task = repo.task()
    assert repo.orchestra("apply") == 0
    status_file = repo.task_dir(task) / "status.yaml"
    stale = status_file.read_text().replace('phase: "done"', 'phase: "running"')
    events = repo.task_dir(task) / "events.jsonl"
    # as if the writer died after logging the last phase change, before the snapshot
    offset = len(events.read_bytes())
    with open(events, "a") as log:
        log.write('{"ev":"task","phase":"done","ts":"2026-11-25T00:00:00.000Z"}\n')
    assert f"eventsOffset: {offset}\n" in stale
    status_file.write_text(stale)
    assert repo.status(task)["phase"] == "running"
    assert repo.orchestra("apply") == 0  # nothing to run, but the snapshot is repaired
    assert repo.status(task)["phase"] == "done"
