"""The sidecar: the event log is the truth, the snapshot a fast and always-valid view of it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from orchestra.status.model import JOB_COLUMNS, TaskRecord
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
        "log": "jobs/j1/log",
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


def test_snapshot_reserialises_only_changed_jobs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestra.status.model import JobRecord

    store = _store_with_jobs(tmp_path, 1000)
    store.snapshot()
    serialised: list[str] = []
    original = JobRecord.line

    def counting(job: JobRecord) -> str:
        serialised.append(job.name)
        return original(job)

    monkeypatch.setattr(JobRecord, "line", counting)
    store.append({"ev": "job", "job": "j7", "state": "done"})
    store.snapshot()
    assert serialised == ["j7"]  # not the 1000
    store.close()


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


def test_job_lines_are_exactly_json(tmp_path: Path) -> None:
    import json

    from orchestra.status.model import JOB_COLUMNS, JobRecord

    tricky = JobRecord(
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
        reason="line1\nline2 \u2028",
        warning="w",
        orphan=True,
    )
    for job in (tricky, JobRecord("plain")):
        line = job.line()
        expected = [*job.row()[:-1], f"jobs/{job.name}/log"]
        assert len(expected) == len(JOB_COLUMNS) and expected[0] == job.name
        assert json.loads(line) == expected
        assert yaml.safe_load("jobs: [\n  " + line + "\n  ]\n") == {"jobs": [expected]}
        assert JobRecord(*expected[:-1]) == job


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
