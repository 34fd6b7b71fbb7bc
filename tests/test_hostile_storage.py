"""Hostile storage (issue 14, items 7 and 8): a job runs with its user's rights and may replace
any file of its task directory, or of the user's files, with a symlink, a FIFO or a device.
Orchestra never follows a symlink out of ``<storage>/<owner>/``, never blocks on a file that is
not a regular one, and an unsafe task is refused by name while the other tasks go on.

Commands that used to hang run in a subprocess with a generous deadline: a regression fails
the test instead of hanging the suite."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers import Repo

# seconds a command may take on a loaded machine before it counts as hung (lower it to see
# the tests fail quickly on code that hangs)
DEADLINE = float(os.environ.get("ORCHESTRA_TEST_HANG_DEADLINE", "120"))


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return Repo(tmp_path)


def run(repo: Repo, *argv: str) -> tuple[int, str, str]:
    """A real orchestra process; a hang fails the test at the deadline."""
    proc = repo.spawn(*argv)
    try:
        out, err = proc.communicate(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"orchestra {' '.join(argv)} hung (still running after {DEADLINE:.0f} s)")
    return proc.returncode, out, err


def add_bob(repo: Repo, exec_line: str = "cat %IN > %OUT  # %DATA") -> str:
    """A second user, bob, with one task of one job, in the same repository and storage."""
    files = repo.storage / "bob" / "files"
    (files / "configs").mkdir(parents=True)
    (files / "configs" / "b1.txt").write_text("bob's config\n")
    (files / "data.txt").write_text("bob's data\n")
    (repo.root / "users" / "bob").mkdir()
    docs = [
        _doc("Dataset", "user.bob.data", {"path": "data.txt"}),
        _doc("Dataset", "user.bob.configs", {"path": "configs"}),
        _doc(
            "Task",
            "user.bob.b",
            {
                "cluster": "here",
                "image": "bob/img:1",
                "data": "user.bob.data",
                "configs": "user.bob.configs",
                "output": "output",
                "exec": exec_line,
                "maxRetries": 0,
                "bypass": True,
            },
        ),
    ]
    (repo.root / "users" / "bob" / "specs.yaml").write_text(yaml.safe_dump_all(docs))
    return "user.bob.b"


def _doc(kind: str, name: str, spec: dict[str, object]) -> dict[str, object]:
    return {"apiVersion": "orchestra/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}


def bob_dir(repo: Repo) -> Path:
    return repo.storage / "bob" / "user.bob.b"


def contents(root: Path) -> dict[str, object]:
    """Every file and link under ``root``, byte for byte."""
    found: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            relative = str(path.relative_to(root))
            if path.is_symlink():
                found[relative] = ("link", os.readlink(path))
            elif path.is_file():
                found[relative] = path.read_bytes()
            else:
                found[relative] = "directory"
    return found


def wait_for(condition: object, what: str) -> None:
    assert callable(condition)
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.1)


def link_alice_task_to_bobs(repo: Repo, short: str = "t") -> Path:
    link = repo.task_dir(f"user.alice.{short}")
    link.symlink_to(Path("..") / "bob" / "user.bob.b")
    return link


# --- item 7: symlinks ---------------------------------------------------------------------


def test_alice_delete_through_a_symlinked_task_dir_does_not_kill_bobs_running_task(
    repo: Repo,
) -> None:
    add_bob(repo, exec_line="sleep 600 # %IN %OUT %DATA")
    repo.configs({"c1.txt": "one\n"})
    task = repo.task()
    bobs_apply = repo.spawn("apply", "users/bob")
    try:
        events = bob_dir(repo) / "events.jsonl"
        wait_for(
            lambda: events.exists() and '"state":"running"' in events.read_text(),
            "bob's job to run",
        )
        link_alice_task_to_bobs(repo)
        code, _out, err = run(repo, "delete", task)
        assert code == 1
        assert f"{repo.task_dir(task)} is a symlink" in err
        assert "Traceback" not in err
        assert not (bob_dir(repo) / ".orchestra-kill").exists()
        assert '"phase":"killed"' not in events.read_text()
        assert bobs_apply.poll() is None  # bob's apply still drives his running job
    finally:
        bobs_apply.terminate()
        bobs_apply.communicate(timeout=DEADLINE)


def test_alice_apply_through_a_symlinked_task_dir_writes_nothing_in_bobs(repo: Repo) -> None:
    add_bob(repo)
    assert repo.orchestra("apply", "users/bob") == 0
    before = contents(bob_dir(repo))
    repo.configs({"c1.txt": "one\n"})
    task = repo.task()
    other = repo.task("u")
    link_alice_task_to_bobs(repo)
    code, out, err = run(repo, "apply")
    assert code == 1
    assert f"{task} refused: {repo.task_dir(task)} is a symlink (to '../bob/user.bob.b')" in err
    assert "Traceback" not in err
    assert contents(bob_dir(repo)) == before
    assert repo.status(other)["phase"] == "done"  # the other task of the same apply ran
    assert f"x {task}  refused" in out


def test_a_symlinked_task_dir_without_a_spec_is_never_pruned(repo: Repo) -> None:
    add_bob(repo)
    assert repo.orchestra("apply", "users/bob") == 0
    before = contents(bob_dir(repo))
    repo.configs({"c1.txt": "one\n"})
    repo.task()
    repo.task_dir("user.alice.gone").symlink_to(Path("..") / "bob" / "user.bob.b")
    code, _out, err = run(repo, "apply", "--prune")
    assert code == 1
    assert f"{repo.task_dir('user.alice.gone')} is a symlink" in err
    assert contents(bob_dir(repo)) == before  # not killed through the link


def test_delete_purge_of_a_symlinked_task_dir_leaves_bobs_alone(repo: Repo) -> None:
    add_bob(repo)
    assert repo.orchestra("apply", "users/bob") == 0
    before = contents(bob_dir(repo))
    repo.configs({"c1.txt": "one\n"})
    task = repo.task()
    link = link_alice_task_to_bobs(repo)
    code, _out, err = run(repo, "delete", "--purge", task)
    assert code == 1
    assert f"{link} is a symlink" in err and "Traceback" not in err
    assert contents(bob_dir(repo)) == before
    assert link.is_symlink()


def test_status_names_a_symlinked_task_dir_and_lists_the_others(repo: Repo) -> None:
    add_bob(repo)
    assert repo.orchestra("apply", "users/bob") == 0
    link_alice_task_to_bobs(repo)
    code, out, err = run(repo, "status")
    assert code == 1
    assert f"{repo.task_dir('user.alice.t')} is a symlink" in err
    assert out.count("user.bob.b") == 1  # bob's task, once: not again through alice's link


def test_an_events_log_symlinked_elsewhere_is_neither_truncated_nor_appended(
    repo: Repo,
) -> None:
    repo.configs({"c1.txt": "one\n"})
    task = repo.task()
    other = repo.task("u")
    assert repo.orchestra("apply") == 0
    target = repo.root / "precious.txt"
    target.write_bytes(b"line one\nno newline at the end")
    events = repo.task_dir(task) / "events.jsonl"
    events.unlink()
    events.symlink_to(target)
    repo.configs({"c2.txt": "two\n"})  # work for both tasks
    code, _out, err = run(repo, "apply")
    assert code == 1
    assert f"{events} is a symlink" in err
    assert target.read_bytes() == b"line one\nno newline at the end"
    assert repo.status(other)["counts"]["done"] == 2


def test_a_jobs_dir_symlinked_to_bobs_is_not_written_through(repo: Repo) -> None:
    add_bob(repo)
    assert repo.orchestra("apply", "users/bob") == 0
    before = contents(bob_dir(repo))
    repo.configs({"c1.txt": "one\n"})
    task = repo.task(bypass=True)
    assert repo.orchestra("apply", "users/alice") == 0
    jobs = repo.task_dir(task) / "jobs"
    os.rename(jobs, repo.root / "old-jobs")
    jobs.symlink_to(bob_dir(repo) / "jobs")
    repo.configs({"c1.txt": "changed\n"})  # the job reruns
    code, _out, _err = run(repo, "apply", "users/alice")
    assert code == 3  # the job failed, naming why
    assert contents(bob_dir(repo)) == before
    job = repo.status(task)["jobs"]["c1"]
    assert job["state"] == "failed" and f"{jobs} is a symlink" in job["reason"]


def test_a_files_dir_symlinked_to_bobs_files_is_refused_at_validate(repo: Repo) -> None:
    add_bob(repo)
    bobs_files = repo.storage / "bob" / "files"
    (bobs_files / "configs" / "c1.txt").write_text("bob's\n")
    repo.task()
    for path in sorted(repo.files.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    repo.files.rmdir()
    repo.files.symlink_to(Path("..") / "bob" / "files")
    for command in ("validate", "plan", "apply"):
        code, out, err = run(repo, command)
        assert code == 1, command
        assert f"'{repo.files}' resolves to '{bobs_files}'" in out + err, command
        assert "Traceback" not in err
    assert not repo.task_dir("user.alice.t").exists()


# --- item 8: FIFOs and devices --------------------------------------------------------------


def test_a_fifo_as_the_kill_request_does_not_stall_the_engine(repo: Repo) -> None:
    repo.configs({"c1.txt": "one\n"})
    task = repo.task()
    other = repo.task("u")
    repo.task_dir(task).mkdir(parents=True)
    os.mkfifo(repo.task_dir(task) / ".orchestra-kill")
    code, _out, err = run(repo, "apply")
    assert code == 0, err
    assert repo.status(task)["phase"] == "done"
    assert repo.status(other)["phase"] == "done"


@pytest.mark.parametrize("name", ["status.yaml", "events.jsonl", ".orchestra-lock"])
def test_a_fifo_in_the_sidecar_is_named_and_the_other_tasks_go_on(repo: Repo, name: str) -> None:
    repo.configs({"c1.txt": "one\n"})
    task = repo.task()
    assert repo.orchestra("apply") == 0
    fifo = repo.task_dir(task) / name
    fifo.unlink()
    os.mkfifo(fifo)
    repo.configs({"c1.txt": "changed\n"})  # work for the task: its lock is taken
    other = repo.task("u")  # new: the same apply runs it
    # the lock is taken by apply only; the sidecar is read by every command
    commands = ["apply"] if name == ".orchestra-lock" else ["status", f"status {task}", "plan"]
    for command in [*commands, "apply"]:
        code, _out, err = run(repo, *command.split())
        assert code == 1, (command, err)
        assert f"{fifo} is a FIFO" in err, command
        assert "Traceback" not in err
    assert repo.status(other)["phase"] == "done"


@pytest.mark.parametrize("name", ["hash-cache.json", "jobs-cache.json"])
def test_a_fifo_as_a_storage_cache_is_ignored_and_replaced(repo: Repo, name: str) -> None:
    repo.configs({"c1.txt": "one\n"})
    task = repo.task()
    cache = repo.storage / ".orchestra" / name
    cache.parent.mkdir(parents=True)
    os.mkfifo(cache)
    code, _out, err = run(repo, "plan")
    assert code == 0, err
    code, _out, err = run(repo, "apply")
    assert code == 0, err
    assert repo.status(task)["phase"] == "done"
    assert cache.is_file()  # a cache again, rewritten by renaming a new file over the FIFO


def _data_dir_task(repo: Repo) -> tuple[str, Path]:
    """Task t reads the data directory ``datadir``; task u reads data.txt, as usual."""
    data = repo.files / "datadir"
    (data / "sub").mkdir(parents=True)
    (data / "a.txt").write_text("a\n")
    (data / "sub" / "b.txt").write_text("b\n")
    repo.configs({"c1.txt": "one\n"})
    task = repo.task(data="user.alice.datadir")
    repo.task("u")
    docs = list(yaml.safe_load_all((repo.root / "users" / "alice" / "specs.yaml").read_text()))
    docs.append(_doc("Dataset", "user.alice.datadir", {"path": "datadir"}))
    (repo.root / "users" / "alice" / "specs.yaml").write_text(yaml.safe_dump_all(docs))
    return task, data


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (os.mkfifo, "is a FIFO"),
        (lambda path: path.symlink_to("/dev/zero"), "is a symlink to '/dev/zero', outside"),
        (lambda path: path.symlink_to("/etc/passwd"), "is a symlink to '/etc/passwd', outside"),
    ],
    ids=["fifo", "dev-zero", "etc-passwd"],
)
def test_a_data_directory_holding_a_special_file_or_an_escaping_link_is_refused(
    repo: Repo, make: object, problem: str
) -> None:
    task, data = _data_dir_task(repo)
    assert callable(make)
    make(data / "sub" / "bad")
    for command in ("plan", "apply"):
        code, _out, err = run(repo, command)
        assert code == 1, (command, err)
        assert f"{task} refused: {data / 'sub' / 'bad'} {problem}" in err, command
        assert "Traceback" not in err
    assert repo.status("user.alice.u")["phase"] == "done"  # the other task of the apply ran
    assert not repo.task_dir(task).exists()


def test_a_symlinked_directory_out_of_the_files_in_a_data_directory_is_refused(
    repo: Repo,
) -> None:
    _task, data = _data_dir_task(repo)
    (data / "etc").symlink_to("/etc")
    code, _out, err = run(repo, "plan")
    assert code == 1
    assert f"{data / 'etc'} is a symlink to '/etc', outside" in err


def test_a_data_directory_of_regular_files_and_links_inside_hashes_as_before(
    repo: Repo,
) -> None:
    """The digest of a data directory is the one it always was (an upgrade reruns nothing):
    ``os.walk`` order, links to files inside the files directory followed."""
    from orchestra.plan.hashing import HashCache

    task, data = _data_dir_task(repo)
    (repo.files / "shared.txt").write_text("shared\n")
    (data / "sub" / "link.txt").symlink_to(repo.files / "shared.txt")
    (data / ".hidden").write_text("h\n")
    (data / "linked-dir").symlink_to(data / "sub")  # not entered, as os.walk does not
    expected = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(data):
        dirnames.sort()
        for name in sorted(filenames):
            full = Path(dirpath) / name
            content = hashlib.sha256(full.read_bytes()).hexdigest()
            expected.update(f"{full.relative_to(data).as_posix()}\0{content}\n".encode())
    cache = HashCache(repo.storage)
    assert cache.digest(data, str(repo.files)) == expected.hexdigest()
    code, _out, err = run(repo, "apply")
    assert code == 0, err
    assert repo.status(task)["phase"] == "done"


def _processes_working_in(directory: Path) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/cwd") == str(directory):
                    found.append(int(entry))
            except OSError:
                continue
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stream:
            return stream.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


def test_recovery_through_a_job_dir_symlinked_to_bobs_does_not_kill_bobs_job(
    repo: Repo,
) -> None:
    """Recovery finds a running job by its working directory: through a job directory that
    is a symlink to bob's, bob's job (one that cleared its environment) would pass for
    alice's, and alice's delete would stop it."""
    add_bob(repo, exec_line="exec env -i sleep 600 # %IN %OUT %DATA")
    bobs_apply = repo.spawn("apply", "users/bob")
    try:
        bobs_job = bob_dir(repo) / "jobs" / "b1"
        wait_for(lambda: _processes_working_in(bobs_job), "bob's job to run")
        (pid,) = _processes_working_in(bobs_job)
        repo.configs({"c1.txt": "one\n"})
        task = repo.task()
        jobs = repo.task_dir(task) / "jobs"
        jobs.mkdir(parents=True)
        (jobs / "c1").symlink_to(bobs_job)
        events = [  # alice's orchestra died while her job ran
            {"ev": "task", "task": task, "phase": "running", "owner": "alice", "cluster": "here"},
            {
                "ev": "job",
                "job": "c1",
                "config": "c1.txt",
                "state": "running",
                "attempts": 1,
                "run": "0123456789abcdef00000001",
            },
        ]
        lines = "".join(json.dumps(event) + "\n" for event in events)
        (repo.task_dir(task) / "events.jsonl").write_text(lines)
        code, _out, err = run(repo, "delete", task)
        assert code == 0, err
        assert _alive(pid)  # bob's job runs on
        assert bobs_apply.poll() is None
    finally:
        bobs_apply.terminate()
        bobs_apply.communicate(timeout=DEADLINE)


def test_a_job_that_swaps_its_task_dir_for_a_symlink_to_bobs_writes_nothing_there(
    repo: Repo,
) -> None:
    """While its task runs, a job renames the task directory and puts a symlink to bob's in
    its place: the engine goes on writing the log and snapshots into the directory it opened,
    and launches no job through the link."""
    add_bob(repo)
    assert repo.orchestra("apply", "users/bob") == 0
    before = contents(bob_dir(repo))
    repo.configs({"c1.txt": "swap\n", "c2.txt": "two\n", "c3.txt": "three\n"})
    here = repo.task_dir("user.alice.t")
    swap = f"mv {here} {here}.moved && ln -s ../bob/user.bob.b {here}"
    task = repo.task(exec=f"if grep -q swap %IN; then {swap}; fi; cat %IN > %OUT # %DATA")
    code, _out, err = run(repo, "apply", "users/alice")
    assert code in (0, 3), err  # jobs launched after the swap may fail, naming the link
    assert "Traceback" not in err
    assert contents(bob_dir(repo)) == before
    moved = repo.storage / "alice" / f"{task}.moved"
    events = (moved / "events.jsonl").read_text()  # the outcomes, in alice's own log
    assert '"job":"c1"' in events and '"exitCode"' in events
    assert repo.status(f"{task}.moved")["phase"] in ("done", "broken", "finalized")


def test_a_fifo_as_the_exit_marker_does_not_hang_recovery(repo: Repo) -> None:
    repo.configs({"c1.txt": "one\n"})
    task = repo.task()
    job = repo.job_dir(task, "c1")
    job.mkdir(parents=True)
    os.mkfifo(job / ".orchestra-exit")
    events = [  # an orchestra died while the job ran; the job has ended since
        {"ev": "task", "task": task, "phase": "running", "owner": "alice", "cluster": "here"},
        {
            "ev": "job",
            "job": "c1",
            "state": "running",
            "attempts": 1,
            "run": "00000000000000000001",
        },
    ]
    lines = "".join(json.dumps(event) + "\n" for event in events)
    (repo.task_dir(task) / "events.jsonl").write_text(lines)
    code, _out, err = run(repo, "delete", task)
    assert code == 0, err
    assert repo.status(task)["phase"] == "killed"


def test_apply_json_lists_the_refused_tasks(repo: Repo) -> None:
    repo.configs({"c1.txt": "one\n"})
    task = repo.task()
    repo.task_dir(task).mkdir(parents=True)
    os.mkfifo(repo.task_dir(task) / "status.yaml")
    code, out, _err = run(repo, "apply", "--format", "json")
    assert code == 1
    refused = json.loads(out)["refused"]
    assert refused == {task: f"{repo.task_dir(task) / 'status.yaml'} is a FIFO, not a regular file"}
