"""Damaged state is one task's problem (issue 14, items 10-12): a damaged sidecar is reported
(file, line, what is wrong) and its task skipped while every other task works; a cache of the
wrong shape is rebuilt; ``plan -o`` never replaces what is not a regular file; the schema
cache tells ``!!binary`` from the string of its repr."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from orchestra.status import store
from orchestra.status.store import TaskStore, read_snapshot
from tests.helpers import Repo


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Repo:
    """Two applied tasks of alice, a and b, two jobs each."""
    monkeypatch.setenv("ORCHESTRA_USER", "alice")
    repo = Repo(tmp_path)
    repo.configs({"c1.txt": "1\n", "c2.txt": "2\n"})
    repo.task("a")
    repo.task("b")
    assert repo.orchestra("apply") == 0
    return repo


A, B = "user.alice.a", "user.alice.b"


def _run(repo: Repo, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = repo.orchestra(*argv)
    out, err = capsys.readouterr()
    assert "internal error" not in err and "Traceback" not in err
    return code, out, err


def _append_line(repo: Repo, line: str) -> int:
    """Append a line to a's events.jsonl; its line number."""
    events = repo.task_dir(A) / "events.jsonl"
    number = len(events.read_bytes().splitlines()) + 1
    with open(events, "a", encoding="utf-8") as stream:
        stream.write(line + "\n")
    return number


def _b_gets_work(repo: Repo) -> None:
    """A new config: both tasks would gain a job (b's shows that b was applied)."""
    repo.configs({"c3.txt": "3\n"})


NOT_EVENTS = [
    "null",
    "5",
    "[]",
    '"text"',
    "{}",
    '{"ev": 5}',
    '{"ev": "job"}',
    '{"ev": "job", "job": ["a"]}',
    '{"ev": "job", "job": "../../bob/x", "state": "running"}',
    '{"ev": "job", "job": "c1", "attempts": "x"}',
    '{"ev": "job", "job": "c1", "state": "exploded"}',
    '{"ev": "job", "job": "c1", "reason": 5}',
    '{"ev": "jobs", "set": 5}',
    '{"ev": "jobs", "set": [5]}',
    '{"ev": "jobs", "set": [{"state": "done"}]}',
    '{"ev": "task", "phase": 7}',
    '{"ev": "task", "started": 5}',
    "not json at all",
]


@pytest.mark.parametrize("line", NOT_EVENTS)
def test_a_log_line_that_is_not_an_event_damages_only_its_task(
    repo: Repo, capsys: pytest.CaptureFixture[str], line: str
) -> None:
    number = _append_line(repo, line)
    if line == "not json at all":  # in the middle of the log, not a torn last line
        _append_line(repo, '{"ev": "task", "message": "later"}')
    where = f"{repo.task_dir(A)}/events.jsonl:{number}: "
    before = (repo.task_dir(A) / "events.jsonl").read_bytes()

    code, out, err = _run(repo, capsys, "status")
    assert code == 1 and where in err and "skipped" in err
    assert B in out and A in out and "damaged" in out  # listed, flagged
    code, out, _err = _run(repo, capsys, "status", "--format", "json")
    entries = {entry["name"]: entry for entry in json.loads(out)}
    assert code == 1 and entries[B]["counts"]["done"] == 2
    assert entries[A]["error"]["line"] == number
    assert entries[A]["error"]["file"].endswith("events.jsonl")

    _b_gets_work(repo)
    code, out, err = _run(repo, capsys, "plan")
    assert code == 1 and where in err and B in out and A not in out
    code, out, err = _run(repo, capsys, "plan", "--format", "json")
    data = json.loads(out)
    assert code == 1 and [t["name"] for t in data["tasks"]] == [B]
    assert data["errors"][0]["error"]["line"] == number

    code, out, err = _run(repo, capsys, "apply")
    assert code == 1 and where in err
    assert (repo.job_dir(B, "c3") / "output").read_text() == "3\n"  # b was applied
    assert (repo.task_dir(A) / "events.jsonl").read_bytes() == before  # a untouched

    for command in (("retry", A), ("delete", A), ("status", A)):
        code, _out, err = _run(repo, capsys, *command)
        assert code == 1 and where in err, command
    assert (repo.task_dir(A) / "events.jsonl").read_bytes() == before


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("counts", "7"),
        ("counts", '{"done": "x"}'),
        ("eventsOffset", "-5"),
        ("eventsOffset", '"x"'),
        ("eventsOffset", "13"),  # not at the end of a line
        ("phase", "7"),
        ("started", "[1]"),
        ("jobsDigest", "5"),
    ],
)
def test_a_snapshot_of_the_wrong_shape_is_ignored_and_rewritten(
    repo: Repo, capsys: pytest.CaptureFixture[str], key: str, value: str
) -> None:
    status = repo.task_dir(A) / "status.yaml"
    lines = status.read_text().splitlines(keepends=True)
    status.write_text("".join(f"{key}: {value}\n" if s.startswith(f"{key}:") else s for s in lines))
    for command in (("status",), ("status", A), ("plan",)):
        code, out, err = _run(repo, capsys, *command)
        assert code == 0 and f"{status}: " in err and "read events.jsonl" in err, command
    code, out, _err = _run(repo, capsys, "status", "--format", "json")
    assert [entry["counts"]["done"] for entry in json.loads(out)] == [2, 2]
    _b_gets_work(repo)
    code, _out, err = _run(repo, capsys, "apply")
    assert code == 0
    assert (repo.job_dir(A, "c3") / "output").read_text() == "3\n"
    record, _offset = read_snapshot(status)  # rewritten whole
    assert record is not None and record.counts()["done"] == 3
    assert TaskStore(repo.task_dir(A)).load_summary() is not None


def _edit_first_row(repo: Repo, changes: dict[str, object]) -> Path:
    status = repo.task_dir(A) / "status.yaml"
    text = status.read_text()
    columns = json.loads(text.split("jobColumns: ", 1)[1].split("\n", 1)[0])
    head, rows = text.split("jobs: [\n", 1)
    first, rest = rows.split("\n", 1)
    row = json.loads(first.strip().rstrip(","))
    for column, value in changes.items():
        row[columns.index(column)] = value
    status.write_text(f"{head}jobs: [\n  {json.dumps(row)},\n{rest}")
    return status


@pytest.mark.parametrize(
    "changes",
    [
        {"name": 5},
        {"name": "../x"},
        {"state": "exploded"},
        {"state": [1]},
        {"test": []},
        {"state": "failed", "attempts": "x"},
        {"state": "failed", "reason": 5},
        {"state": "running", "pid": "1"},
        {"state": "running", "run": ["r"]},
    ],
)
def test_a_snapshot_row_of_wrong_types_is_ignored(
    repo: Repo, capsys: pytest.CaptureFixture[str], changes: dict[str, object]
) -> None:
    status = _edit_first_row(repo, changes)
    code, out, err = _run(repo, capsys, "status", A)
    assert code == 0 and f"{status}: job " in err
    assert "c1 (test)  done" in out  # as the log says
    code, out, err = _run(repo, capsys, "apply")
    assert code == 0
    assert TaskStore(repo.task_dir(A)).load_summary() is not None  # rewritten


def test_a_done_jobs_shown_values_of_other_types_crash_nothing(
    repo: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only shown or compared, they are not checked on the hot path: any JSON value reads."""
    _edit_first_row(
        repo, {"started": [1], "finished": {}, "exitCode": "x", "reason": 5, "node": 1.5}
    )
    for command in (("status",), ("status", A), ("status", A, "--format", "json"), ("plan",)):
        code, _out, _err = _run(repo, capsys, *command)
        assert code == 0, command
    _b_gets_work(repo)
    code, _out, _err = _run(repo, capsys, "apply")
    assert code == 0 and (repo.job_dir(A, "c3") / "output").read_text() == "3\n"


def test_a_directory_for_status_yaml_damages_only_its_task(
    repo: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    status = repo.task_dir(A) / "status.yaml"
    status.unlink()
    status.mkdir()
    where = f"{status} is a directory"  # refused as an unsafe file: never opened as one
    code, out, err = _run(repo, capsys, "status")
    assert code == 1 and where in err and B in out
    _b_gets_work(repo)
    code, out, err = _run(repo, capsys, "apply")
    assert code == 1 and where in err
    assert (repo.job_dir(B, "c3") / "output").read_text() == "3\n"
    assert not (repo.job_dir(A, "c3")).exists()
    for command in (("retry", A), ("delete", A)):
        code, _out, err = _run(repo, capsys, *command)
        assert code == 1 and where in err, command
    assert status.is_dir()


def test_a_damaged_orphan_is_reported_and_never_pruned(
    repo: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    number = _append_line(repo, "null")
    repo.remove_task(A)
    code, _out, err = _run(repo, capsys, "apply", "--prune")
    assert code == 1 and f"events.jsonl:{number}: " in err
    assert "killed" not in (repo.task_dir(A) / "events.jsonl").read_text()


def _entries(path: Path) -> dict[str, list[object]]:
    data = json.loads(path.read_text())
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize(
    "damage",
    ["list", "number", "entry-number", "entry-short", "entry-digest-number", "entry-string"],
)
def test_a_hash_cache_of_the_wrong_shape_is_rebuilt(
    repo: Repo, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    cache = repo.storage / ".orchestra" / "hash-cache.json"
    (repo.storage / ".orchestra" / "jobs-cache.json").unlink()  # so that every file is hashed
    entries = _entries(cache)
    if damage == "list":
        cache.write_text(json.dumps(list(entries)))
    elif damage == "number":
        cache.write_text("5")
    else:
        bad = {
            "entry-number": lambda e: 5,
            "entry-short": lambda e: e[:3],
            "entry-digest-number": lambda e: [*e[:3], 5],
            "entry-string": lambda e: "abc",
        }[damage]
        cache.write_text(json.dumps({key: bad(entry) for key, entry in entries.items()}))
    code, out, _err = _run(repo, capsys, "plan", "--detailed-exitcode")
    assert code == 0 and "No changes" in out  # no wrong digest was used
    assert _entries(cache) == entries  # rebuilt, the same


@pytest.mark.parametrize("damage", ["[]", "5", '"x"', '{"k": 5}', '{"k": [1]}', "{"])
def test_a_jobs_cache_of_the_wrong_shape_is_rebuilt(
    repo: Repo, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    cache = repo.storage / ".orchestra" / "jobs-cache.json"
    good = _entries(cache)
    cache.write_text(damage)
    code, out, _err = _run(repo, capsys, "plan", "--detailed-exitcode")
    assert code == 0 and "No changes" in out
    assert _entries(cache) == good


# plan -o ------------------------------------------------------------------------------------
def test_plan_out_refuses_a_symlink_and_leaves_its_target(
    repo: Repo, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    target = tmp_path / "precious.txt"
    target.write_text("keep\n")
    (repo.root / "plan.json").symlink_to(target)
    code, _out, err = _run(repo, capsys, "plan", "-o", "plan.json")
    assert code == 1 and "symbolic link" in err
    assert (repo.root / "plan.json").is_symlink() and target.read_text() == "keep\n"
    assert not [p for p in repo.root.iterdir() if p.name.endswith(".tmp")]


def test_plan_out_refuses_a_directory(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    (repo.root / "plan.json").mkdir()
    code, _out, err = _run(repo, capsys, "plan", "-o", "plan.json")
    assert code == 1 and "a directory" in err


def test_plan_out_refuses_a_fifo_without_hanging(repo: Repo) -> None:
    fifo = repo.root / "plan.json"
    os.mkfifo(fifo)
    process = repo.spawn("plan", "-o", "plan.json")
    try:
        _out, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 1 and "a FIFO" in err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod of a device needs root")
def test_plan_out_refuses_a_device(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    device = repo.root / "plan.json"
    os.mknod(device, stat.S_IFCHR | 0o600, os.makedev(1, 3))  # what /dev/null is
    code, _out, err = _run(repo, capsys, "plan", "-o", "plan.json")
    assert code == 1 and "a device" in err
    assert stat.S_ISCHR(os.lstat(device).st_mode)


def test_plan_out_dash_writes_the_plan_to_stdout_for_apply_dash(
    repo: Repo, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _b_gets_work(repo)
    code, out, err = _run(repo, capsys, "plan", "-o", "-")
    saved = json.loads(out)
    assert code == 0 and saved["hasChanges"] and "desired_digest" in saved
    assert "Plan: 2 to update" in err  # the plan for the eye goes to stderr
    assert not (repo.root / "-").exists()
    monkeypatch.setattr(sys, "stdin", io.StringIO(out))
    code, out, err = _run(repo, capsys, "apply", "-")
    assert code == 0 and (repo.job_dir(A, "c3") / "output").read_text() == "3\n"


# the schema cache ---------------------------------------------------------------------------
DATASET = "apiVersion: orchestra/v1\nkind: Dataset\nmetadata: {name: user.alice.extra}\n"


def test_binary_bytes_and_the_string_of_their_repr_get_their_own_verdicts(
    repo: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = repo.root / "users" / "alice" / "extra.yaml"
    extra.write_text(DATASET + "spec: {path: \"b'x'\"}\n")
    code, _out, err = _run(repo, capsys, "validate", "--offline")
    assert code == 0, err
    extra.write_text(DATASET + "spec: {path: !!binary eA==}\n")  # b"x"
    code, out, err = _run(repo, capsys, "validate", "--offline")
    assert code == 1 and "extra.yaml:4" in out + err and "$.spec.path" in out + err
    code, _out, err = _run(repo, capsys, "apply")
    assert code == 1 and "$.spec.path" in err


def test_keys_of_other_types_are_told_apart() -> None:
    from orchestra.spec.validcache import ValidCache

    cache = ValidCache()
    forms = [{1: "a"}, {"1": "a"}, {True: "a"}, {None: "a"}, [1], [1.0], ["1"], [b"1"], ["b'1'"]]
    assert len({cache.key("Task", {"spec": form}) for form in forms}) == len(forms)


def test_no_crash_in_a_fresh_interpreter(repo: Repo) -> None:
    """The same as an installed orchestra: a damaged task, a status call in a subprocess."""
    _append_line(repo, '{"ev": "job"}')
    done = subprocess.run(
        [sys.executable, "-m", "orchestra", "-C", str(repo.root), "status"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1 and B in done.stdout and "events.jsonl:" in done.stderr


def test_a_directory_for_events_jsonl_damages_only_its_task(
    repo: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    events = repo.task_dir(A) / "events.jsonl"
    events.unlink()
    events.mkdir()
    (repo.task_dir(A) / "status.yaml").unlink()
    code, out, err = _run(repo, capsys, "status")
    assert code == 1 and f"{events} is a directory" in err and B in out
    _b_gets_work(repo)
    code, _out, err = _run(repo, capsys, "apply")
    assert code == 1 and f"{events} is a directory" in err
    assert (repo.job_dir(B, "c3") / "output").read_text() == "3\n"


def test_a_task_damaged_after_the_plan_is_skipped_by_the_engine(repo: Repo) -> None:
    """Damage that appears between plan and launch: the engine skips that task alone."""
    from orchestra.commands._common import load_specs, make_full_plan
    from orchestra.commands._run import run_engine
    from orchestra.errors import DamagedTaskError

    _b_gets_work(repo)
    planned = make_full_plan(load_specs([], str(repo.root)))
    assert not planned.damaged and len(planned.desired) == 2
    number = _append_line(repo, '{"ev": "job"}')
    damaged: list[DamagedTaskError] = []
    runs = run_engine(planned.desired, damaged=damaged)
    assert [run.name for run in runs or []] == [B]
    assert [(e.path.name, e.line) for e in damaged] == [("events.jsonl", number)]
    assert (repo.job_dir(B, "c3") / "output").read_text() == "3\n"
    with pytest.raises(DamagedTaskError):  # alone (retry TASK): its error
        run_engine([t for t in planned.desired if t.name == A])


DEEP = "[" * 100_000 + "]" * 100_000


def test_json_nested_too_deeply_is_damage_not_a_crash(
    repo: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    number = _append_line(repo, DEEP)
    code, out, err = _run(repo, capsys, "status")
    assert code == 1 and f"events.jsonl:{number}: " in err and B in out
    cache = repo.storage / ".orchestra" / "hash-cache.json"
    cache.write_text(DEEP)
    code, _out, err = _run(repo, capsys, "plan")
    assert code == 1 and f"events.jsonl:{number}: " in err


def test_a_snapshot_nested_too_deeply_is_ignored(
    repo: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    status = repo.task_dir(A) / "status.yaml"
    lines = status.read_text().splitlines(keepends=True)
    status.write_text("".join(f"image: {DEEP}\n" if s.startswith("image:") else s for s in lines))
    code, out, err = _run(repo, capsys, "status", A)
    assert code == 0 and f"{status}: " in err and "c1 (test)  done" in out


def test_reconcile_reconciles_the_others_and_reports_the_damaged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.test_reconcile import GitRepo

    monkeypatch.setenv("ORCHESTRA_USER", "alice")
    repo = GitRepo(tmp_path / "specs")
    repo.configs({"c1.txt": "1\n"})
    repo.task("a")
    repo.task("b")
    repo.commit("two tasks")
    assert repo.orchestra("reconcile") == 0
    number = _append_line(repo, "[]")
    _b_gets_work(repo)
    code, out, err = _run(repo, capsys, "reconcile", "--format", "json")
    data = json.loads(out)
    assert code == 1 and data["exitCode"] == 1 and f"events.jsonl:{number}: " in err
    assert [t["name"] for t in data["tasks"]] == [B]
    assert data["errors"][0]["error"]["line"] == number
    assert (repo.job_dir(B, "c3") / "output").read_text() == "3\n"


def test_an_unreadable_status_yaml_damages_its_task(
    repo: Repo, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """EACCES (this suite may run as root, whom chmod does not stop: the error is made)."""
    status = repo.task_dir(A) / "status.yaml"
    read_regular = store.read_regular

    def refuse(path: Path, **kwargs: Any) -> bytes:
        if Path(path) == status:
            raise PermissionError(13, "Permission denied", str(path))
        return read_regular(path, **kwargs)

    monkeypatch.setattr(store, "read_regular", refuse)
    code, _out, err = _run(repo, capsys, "status", A)
    assert code == 1 and f"{status}: cannot be read: Permission denied" in err


@pytest.mark.parametrize(
    "line",
    [
        "null",
        '{"ev": "job"}',
        '{"ev": "job", "job": "../x"}',
        '{"ev": "job", "job": "c1", "state": "failed", "attempts": "x"}',
        '{"ev": "job", "job": "c1", "state": "exploded"}',
        '{"ev": "job", "job": "c1", "test": [1]}',
        '{"ev": "task", "phase": 7}',
    ],
)
def test_the_whole_log_replayed_finds_the_line_too(
    repo: Repo, capsys: pytest.CaptureFixture[str], line: str
) -> None:
    """Without a snapshot (the whole log replayed) the same damage is found and located."""
    number = _append_line(repo, line)
    (repo.task_dir(A) / "status.yaml").unlink()
    code, out, err = _run(repo, capsys, "status")
    assert code == 1 and f"events.jsonl:{number}: " in err and B in out
