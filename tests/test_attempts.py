"""Attempts (design.md, "Day 2"): before a job's new attempt starts, the previous attempt's log
and output move into ``jobs/<job>/attempts/<n>/``; a Cluster's ``keepAttempts`` bounds them."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from orchestra.backends import kubernetes as kube_backend
from orchestra.backends import slurm as slurm_backend
from orchestra.backends.attempts import (
    STAGING_DIR,
    UnsafeJobDirectory,
    archive_previous_attempt,
    output_written,
)
from tests.fakes.kube_apiserver import FakeKubeAPIServer
from tests.helpers import Repo
from tests.slurm_cluster import SlurmCluster

pytest_plugins = ["tests.fakes.slurm_plugin"]

NOTHING = "echo wrote nothing  # %IN %OUT %DATA"
WARNING = "exited 0 but wrote no output"


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Repo:
    monkeypatch.setenv("ORCHESTRA_USER", "alice")
    return Repo(tmp_path)


def set_cluster(repo: Repo, **fields: object) -> None:
    path = repo.root / "cluster.yaml"
    cluster = yaml.safe_load(path.read_text())
    cluster["spec"].update(fields)
    path.write_text(yaml.safe_dump(cluster))


def listing(directory: Path) -> list[str]:
    return sorted(os.listdir(directory)) if directory.exists() else []


def test_a_rerun_that_writes_nothing_leaves_no_old_output_and_is_flagged_each_time(
    repo: Repo,
) -> None:
    """The issue's scenario: a done task whose exec changes to write nothing."""
    repo.configs({"c0.txt": "ok 0\n", "c1.txt": "ok 1\n"})
    task = repo.task()
    assert repo.orchestra("apply") == 0
    assert (repo.job_dir(task, "c0") / "output").read_text() == "ok 0\n"

    repo.task(exec=NOTHING)
    assert repo.orchestra("apply") == 0
    status = repo.status(task)
    for job in ("c0", "c1"):
        row = status["jobs"][job]
        assert row["state"] == "done" and row["warning"] == WARNING, row
        job_dir = repo.job_dir(task, job)
        assert not (job_dir / "output").exists()  # the old result is not shown as the new
        assert listing(job_dir / "attempts") == ["1"]
        assert listing(job_dir / "attempts" / "1") == ["log", "output"]
        assert (job_dir / "attempts" / "1" / "output").read_text() == f"ok {job[1]}\n"
        assert (job_dir / "log").read_text() == "wrote nothing\n"

    # a second rerun that writes nothing is flagged too, not only the first; the number
    # grows though the attempt count started again at 1
    repo.task(exec="echo still nothing  # %IN %OUT %DATA")
    assert repo.orchestra("apply") == 0
    row = repo.status(task)["jobs"]["c0"]
    assert row["attempts"] == 1 and row["warning"] == WARNING
    job_dir = repo.job_dir(task, "c0")
    assert listing(job_dir / "attempts") == ["1", "2"]
    assert (job_dir / "attempts" / "2" / "log").read_text() == "wrote nothing\n"
    assert not (job_dir / "attempts" / "2" / "output").exists()

    # and an attempt that writes its output again is not flagged
    repo.task(exec="cat %IN > %OUT; echo wrote it  # %DATA")
    assert repo.orchestra("apply") == 0
    row = repo.status(task)["jobs"]["c0"]
    assert row["state"] == "done" and row["warning"] is None
    assert (job_dir / "output").read_text() == "ok 0\n"
    assert (job_dir / "log").read_text() == "wrote it\n"


def test_every_attempt_of_a_retried_job_has_a_log_of_its_own(repo: Repo) -> None:
    repo.configs({"c0.txt": "ok\n"})
    task = repo.task(
        exec='echo "attempt $ORCHESTRA_ATTEMPT"; exit 3  # %IN %OUT %DATA', maxRetries=3
    )
    assert repo.orchestra("apply") == 3
    row = repo.status(task)["jobs"]["c0"]
    assert row["state"] == "failed" and row["attempts"] == 4
    job_dir = repo.job_dir(task, "c0")
    assert listing(job_dir / "attempts") == ["1", "2", "3"]
    for n in (1, 2, 3):
        assert (job_dir / "attempts" / str(n) / "log").read_text() == f"attempt {n}\n"
    assert (job_dir / "log").read_text() == "attempt 4\n"  # the current attempt's, alone


def test_keep_attempts_bounds_what_is_kept(repo: Repo) -> None:
    repo.configs({"c0.txt": "ok\n"})
    set_cluster(repo, keepAttempts=2)
    failing = 'echo "attempt $ORCHESTRA_ATTEMPT" | tee %OUT; exit 1  # %IN %DATA'
    task = repo.task(exec=failing, maxRetries=4)
    assert repo.orchestra("apply") == 3
    job_dir = repo.job_dir(task, "c0")
    assert listing(job_dir / "attempts") == ["3", "4"]  # the newest two earlier attempts
    assert (job_dir / "attempts" / "4" / "output").read_text() == "attempt 4\n"
    assert (job_dir / "output").read_text() == "attempt 5\n"

    set_cluster(repo, keepAttempts=0)
    assert repo.orchestra("retry", task) == 3
    assert listing(job_dir / "attempts") == []
    assert (job_dir / "log").read_text() == "attempt 5\n"


def test_keep_attempts_defaults_to_three(repo: Repo) -> None:
    repo.configs({"c0.txt": "ok\n"})
    task = repo.task(exec="echo x; exit 1  # %IN %OUT %DATA", maxRetries=5)
    assert repo.orchestra("apply") == 3
    assert listing(repo.job_dir(task, "c0") / "attempts") == ["3", "4", "5"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-1, "$.spec.keepAttempts: must be at least 0; got -1"),
        ("3", "$.spec.keepAttempts: expected an integer; got"),
        (True, "$.spec.keepAttempts: expected an integer; got"),
        (1.5, "$.spec.keepAttempts: expected an integer; got"),
    ],
)
def test_an_invalid_keep_attempts_is_refused_with_its_place(
    repo: Repo, capsys: pytest.CaptureFixture[str], value: object, message: str
) -> None:
    repo.configs({"c0.txt": "ok\n"})
    task = repo.task()
    set_cluster(repo, keepAttempts=value)
    assert repo.orchestra("apply") == 1
    err = capsys.readouterr().err
    assert "cluster.yaml:" in err and message in err, err
    assert not repo.task_dir(task).exists()


def test_files_named_out_plus_a_suffix_are_the_output_and_move_with_the_attempt(
    repo: Repo,
) -> None:
    """The tutorial's job_tuning.py writes ``%OUT + "_s%d_i%d.pic"``, never %OUT itself."""
    repo.configs({"c0.txt": "ok\n"})
    # as the tutorial's "python job_tuning.py -c %IN -o %OUT" does it
    tuning = 'for i in 2 3; do cat "$1" > "$2_s1_i$i.pic"; done'
    task = repo.task(exec=f"sh -c '{tuning}' job %IN %OUT  # %DATA")
    assert repo.orchestra("apply") == 0
    row = repo.status(task)["jobs"]["c0"]
    assert row["state"] == "done" and row["warning"] is None
    job_dir = repo.job_dir(task, "c0")
    assert listing(job_dir) == [".orchestra-exit", "log", "output_s1_i2.pic", "output_s1_i3.pic"]

    repo.task(exec='o=%OUT; echo other > "$o"_s9.pic  # %IN %DATA')
    assert repo.orchestra("apply") == 0
    assert repo.status(task)["jobs"]["c0"]["warning"] is None
    assert listing(job_dir / "attempts" / "1") == ["log", "output_s1_i2.pic", "output_s1_i3.pic"]
    assert "output_s1_i2.pic" not in listing(job_dir)
    assert (job_dir / "output_s9.pic").read_text() == "other\n"

    # what does not start with %OUT is the job's own business: it stays where it is
    repo.task(exec="echo scratch > notes.txt  # %IN %OUT %DATA")
    assert repo.orchestra("apply") == 0
    assert repo.status(task)["jobs"]["c0"]["warning"] == WARNING
    repo.task(exec="true  # %IN %OUT %DATA")
    assert repo.orchestra("apply") == 0
    assert (job_dir / "notes.txt").read_text() == "scratch\n"
    assert listing(job_dir / "attempts" / "3") == ["log"]


def test_a_symlinked_attempts_directory_is_not_followed(repo: Repo, tmp_path: Path) -> None:
    repo.configs({"c0.txt": "ok\n"})
    task = repo.task()
    assert repo.orchestra("apply") == 0
    elsewhere = tmp_path / "bob"
    elsewhere.mkdir()
    (elsewhere / "1").mkdir()
    (elsewhere / "1" / "precious").write_text("bob's\n")
    job_dir = repo.job_dir(task, "c0")
    (job_dir / "attempts").symlink_to(elsewhere)

    repo.task(exec="echo ran > ran; cat %IN > %OUT  # %DATA")
    assert repo.orchestra("apply") == 3
    row = repo.status(task)["jobs"]["c0"]
    assert row["state"] == "failed"
    assert f"{job_dir}/attempts is a symlink or not a directory" in row["reason"]
    assert listing(elsewhere) == ["1"] and listing(elsewhere / "1") == ["precious"]
    assert (elsewhere / "1" / "precious").read_text() == "bob's\n"
    assert not (job_dir / "ran").exists()  # refused: the job did not run
    assert (job_dir / "output").read_text() == "ok\n"  # nothing moved, nothing lost

    (job_dir / "attempts").unlink()
    assert repo.orchestra("retry", task) == 0
    assert (job_dir / "ran").exists() and listing(job_dir / "attempts") == ["1"]


@pytest.mark.parametrize("link", ["job", "jobs"])
def test_a_symlinked_job_directory_is_not_followed(repo: Repo, tmp_path: Path, link: str) -> None:
    repo.configs({"c0.txt": "ok\n"})
    task = repo.task()
    assert repo.orchestra("apply") == 0
    job_dir = repo.job_dir(task, "c0")
    planted = job_dir if link == "job" else job_dir.parent
    elsewhere = tmp_path / "bob"
    (elsewhere / "c0").mkdir(parents=True)
    for victim in (elsewhere, elsewhere / "c0"):
        (victim / "output").write_text("bob's\n")
        (victim / "log").write_text("bob's log\n")
    os.rename(planted, tmp_path / "moved-away")
    planted.symlink_to(elsewhere / "c0" if link == "job" else elsewhere)

    repo.task(exec="echo ran > ran; cat %IN > %OUT  # %DATA")
    assert repo.orchestra("apply") == 3
    row = repo.status(task)["jobs"]["c0"]
    assert row["state"] == "failed"
    assert f"{planted} is a symlink or not a directory" in row["reason"]
    for victim in (elsewhere, elsewhere / "c0"):
        assert (victim / "output").read_text() == "bob's\n"
        assert (victim / "log").read_text() == "bob's log\n"
        assert not (victim / "attempts").exists() and not (victim / "ran").exists()


def test_a_fifo_or_a_symlink_left_as_output_moves_as_itself(repo: Repo, tmp_path: Path) -> None:
    repo.configs({"c0.txt": "ok\n"})
    outside = tmp_path / "outside"
    outside.write_text("not mine\n")
    task = repo.task(exec=f'o=%OUT; mkfifo "$o"; ln -s {outside} "$o"_link  # %IN %DATA')
    assert repo.orchestra("apply") == 0
    assert repo.status(task)["jobs"]["c0"]["warning"] is None
    repo.task(exec=NOTHING)
    assert repo.orchestra("apply") == 0  # would hang if the FIFO were opened
    kept = repo.job_dir(task, "c0") / "attempts" / "1"
    assert listing(kept) == ["log", "output", "output_link"]
    assert (kept / "output_link").is_symlink() and outside.read_text() == "not mine\n"


def test_an_archive_cut_short_is_finished_by_the_next(tmp_path: Path) -> None:
    """Orchestra killed in the middle of a move: the files are in the job directory or the
    staging directory; the next archive puts them all in one ``attempts/<n>``."""
    job_dir = tmp_path / "task" / "jobs" / "c0"
    (job_dir / "attempts" / "4").mkdir(parents=True)
    (job_dir / STAGING_DIR).mkdir()
    (job_dir / STAGING_DIR / "log").write_text("log of 5\n")  # moved before the kill
    (job_dir / "output").write_text("output of 5\n")  # not yet
    (job_dir / "runs").write_text("the job's own\n")
    assert archive_previous_attempt(job_dir, "output", 3) == 5
    assert listing(job_dir) == ["attempts", "runs"]
    assert listing(job_dir / "attempts" / "5") == ["log", "output"]

    # killed after the staging directory was made, before anything moved: no empty attempt
    (job_dir / STAGING_DIR).mkdir()
    assert archive_previous_attempt(job_dir, "output", 3) is None
    assert listing(job_dir) == ["attempts", "runs"]
    assert listing(job_dir / "attempts") == ["4", "5"]

    # killed while pruning: the half-removed one is out of the kept names, removed next time
    (job_dir / "attempts" / ".pruning-1" / "deep").mkdir(parents=True)
    (job_dir / "log").write_text("log of 6\n")
    assert archive_previous_attempt(job_dir, "output", 1) == 6
    assert listing(job_dir / "attempts") == ["6"]


def test_nothing_to_archive_costs_nothing_and_needs_no_directory(tmp_path: Path) -> None:
    assert archive_previous_attempt(tmp_path / "task" / "jobs" / "c0", "out", 3) is None
    (tmp_path / "task" / "jobs" / "c0").mkdir(parents=True)
    assert archive_previous_attempt(tmp_path / "task" / "jobs" / "c0", "out", 3) is None
    assert listing(tmp_path / "task" / "jobs" / "c0") == []


def test_output_written_counts_only_the_output_and_its_suffixes(tmp_path: Path) -> None:
    job_dir = tmp_path / "c0"
    job_dir.mkdir()
    for own in ("log", "attempts", ".orchestra-exit", "outpu", "other"):
        (job_dir / own).write_text("")
    assert not output_written(job_dir, "output")
    assert not output_written(job_dir, "l")  # "log" is orchestra's, whatever %OUT is
    assert not output_written(tmp_path / "missing", "output")
    (job_dir / "output.part1").write_text("")
    assert output_written(job_dir, "output")
    (job_dir / "dangling").symlink_to(tmp_path / "nowhere")
    assert output_written(job_dir, "dangling")  # written, even if it leads nowhere


def test_a_planted_staging_symlink_is_refused(tmp_path: Path) -> None:
    job_dir = tmp_path / "task" / "jobs" / "c0"
    job_dir.mkdir(parents=True)
    (job_dir / "log").write_text("")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (job_dir / STAGING_DIR).symlink_to(elsewhere)
    with pytest.raises(UnsafeJobDirectory, match="is a symlink or not a directory"):
        archive_previous_attempt(job_dir, "output", 3)
    assert listing(elsewhere) == [] and (job_dir / "log").exists()


class _Kubelet(threading.Thread):
    """Ends every Job of the fake cluster with exit 0, writing the job's output (as the pod
    would, on the shared storage) while ``write`` is set."""

    def __init__(self, server: FakeKubeAPIServer, repo: Repo) -> None:
        super().__init__(daemon=True)
        self.server, self.repo = server, repo
        self.stopped = threading.Event()
        self.write = True

    def run(self) -> None:
        while not self.stopped.wait(0.02):
            for job in self.server.jobs():
                if job.get("status"):
                    continue
                annotations = job["metadata"]["annotations"]
                task = annotations["orchestra.io/task-name"]
                name = annotations["orchestra.io/job-name"]
                if self.write:
                    (self.repo.job_dir(task, name) / "output").write_text("from the pod\n")
                self.server.finish_job(job["metadata"]["namespace"], job["metadata"]["name"], 0)


@pytest.fixture(params=["local", "kubernetes", "slurm"])
def any_backend(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Repo, _Kubelet | None]]:
    monkeypatch.setenv("ORCHESTRA_USER", "alice")
    repo = Repo(tmp_path / "repo")
    if request.param == "local":
        yield repo, None
    elif request.param == "slurm":
        cluster: SlurmCluster = request.getfixturevalue("slurm_cluster")
        monkeypatch.setenv("SLURM_CONF", str(cluster.conf))
        monkeypatch.setattr(slurm_backend.SlurmBackend, "poll_interval", 0.1)
        monkeypatch.setattr(slurm_backend.SlurmBackend, "marker_grace", 5.0)
        set_cluster(repo, backend="slurm")
        yield repo, None
    else:
        with FakeKubeAPIServer() as server:
            kubeconfig = tmp_path / "kubeconfig"
            server.write_kubeconfig(kubeconfig)
            monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
            monkeypatch.setattr(kube_backend.KubernetesBackend, "poll_interval", 0.05)
            set_cluster(
                repo,
                backend="kubernetes",
                kubernetes={"volumeClaim": "shared", "mountPath": "/mnt/shared"},
            )
            kubelet = _Kubelet(server, repo)
            kubelet.start()
            try:
                yield repo, kubelet
            finally:
                kubelet.stopped.set()
                kubelet.join()


def test_on_every_backend_a_rerun_moves_the_previous_attempt_aside(
    any_backend: tuple[Repo, _Kubelet | None],
) -> None:
    repo, kubelet = any_backend
    repo.configs({"c0.txt": "from the pod\n", "c1.txt": "from the pod\n"})
    task = repo.task(exec="cat %IN > %OUT  # %DATA", bypass=True)
    assert repo.orchestra("apply", "--wait") == 0
    job_dir = repo.job_dir(task, "c0")
    assert (job_dir / "output").read_text() == "from the pod\n"

    repo.task(exec=NOTHING, bypass=True)
    if kubelet is not None:
        kubelet.write = False
    assert repo.orchestra("apply", "--wait") == 0
    for job in ("c0", "c1"):
        row = repo.status(task)["jobs"][job]
        assert row["state"] == "done" and row["warning"] == WARNING, row
        assert not (repo.job_dir(task, job) / "output").exists()
        kept = repo.job_dir(task, job) / "attempts" / "1"
        assert (kept / "output").read_text() == "from the pod\n"
    if kubelet is None:  # the script's log (a pod's log is not in the job directory yet)
        assert (job_dir / "log").read_text() == "wrote nothing\n"
        assert (job_dir / "attempts" / "1" / "log").read_text() == ""


class _Killed(KeyboardInterrupt):
    """Stands for orchestra killed at that instant (the engine stops as on Ctrl-C)."""


@pytest.mark.parametrize("moment", range(3))
def test_orchestra_stopped_while_moving_an_attempt_loses_nothing(
    repo: Repo, monkeypatch: pytest.MonkeyPatch, moment: int
) -> None:
    """Stopped before the move's first rename (0), between the log and the output (1), or
    before the staging directory's final rename (2): the next apply finds the attempt lost,
    runs the job once, and ``attempts/1`` holds all of the old files."""
    repo.configs({"c0.txt": "ok\n"})
    task = repo.task(exec="cat %IN > %OUT; echo first  # %DATA")
    assert repo.orchestra("apply") == 0
    rename = os.rename
    calls = []

    def dying_rename(*args: object, **kwargs: object) -> None:
        if "src_dir_fd" in kwargs:  # the archive's, not the status store's
            calls.append(args)
            if len(calls) > moment:
                raise _Killed
        rename(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "rename", dying_rename)
    repo.task(exec="echo second > %OUT; echo second  # %IN %DATA")
    assert repo.orchestra("apply") == 130
    monkeypatch.setattr(os, "rename", rename)
    assert repo.orchestra("apply") == 0
    row = repo.status(task)["jobs"]["c0"]
    assert row["state"] == "done" and row["attempts"] == 1
    job_dir = repo.job_dir(task, "c0")
    assert listing(job_dir) == [".orchestra-exit", "attempts", "log", "output"]
    assert listing(job_dir / "attempts") == ["1"]
    assert (job_dir / "attempts" / "1" / "output").read_text() == "ok\n"
    assert (job_dir / "attempts" / "1" / "log").read_text() == "first\n"
    assert (job_dir / "output").read_text() == "second\n"
    assert (job_dir / "log").read_text() == "second\n"


def test_orchestra_stopped_after_the_move_before_the_submission_loses_nothing(
    repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestra.backends.local import LocalBackend

    repo.configs({"c0.txt": "ok\n"})
    task = repo.task(exec="cat %IN > %OUT; echo first  # %DATA")
    assert repo.orchestra("apply") == 0

    def killed(self: LocalBackend, run: object) -> None:
        raise _Killed

    with monkeypatch.context() as patch:
        patch.setattr(LocalBackend, "submit", killed)
        repo.task(exec="echo second > %OUT; echo second  # %IN %DATA")
        assert repo.orchestra("apply") == 130
    assert repo.status(task)["jobs"]["c0"]["state"] == "submitted"
    assert repo.orchestra("apply") == 0
    row = repo.status(task)["jobs"]["c0"]
    assert row["state"] == "done" and row["attempts"] == 1
    job_dir = repo.job_dir(task, "c0")
    assert listing(job_dir / "attempts") == ["1"]
    assert (job_dir / "attempts" / "1" / "output").read_text() == "ok\n"
    assert (job_dir / "output").read_text() == "second\n"


def test_pruning_removes_links_and_fifos_as_themselves(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "sub" / "file").write_text("not orchestra's\n")
    job_dir = tmp_path / "task" / "jobs" / "c0"
    old = job_dir / "attempts" / "007"
    (old / "deep" / "er").mkdir(parents=True)
    (old / "deep" / "er" / "output").write_text("")
    (old / "link").symlink_to(outside)
    (old / "deep" / "link").symlink_to(outside / "sub")
    os.mkfifo(old / "fifo")
    (job_dir / "attempts" / "8").symlink_to(outside)  # planted as a whole
    (job_dir / "log").write_text("log of 9\n")
    assert archive_previous_attempt(job_dir, "output", 1) == 9
    assert listing(job_dir / "attempts") == ["9"]
    assert listing(outside) == ["sub"] and listing(outside / "sub") == ["file"]
    assert (outside / "sub" / "file").read_text() == "not orchestra's\n"


@pytest.mark.parametrize("planted", ["job", "attempts"])
def test_a_fifo_or_file_in_place_of_a_directory_is_refused_without_blocking(
    tmp_path: Path, planted: str
) -> None:
    job_dir = tmp_path / "task" / "jobs" / "c0"
    if planted == "job":
        job_dir.parent.mkdir(parents=True)
        os.mkfifo(job_dir)
    else:
        job_dir.mkdir(parents=True)
        (job_dir / "log").write_text("")
        os.mkfifo(job_dir / "attempts")
    with pytest.raises(UnsafeJobDirectory, match="is a symlink or not a directory"):
        archive_previous_attempt(job_dir, "output", 3)
    (job_dir if planted == "job" else job_dir / "attempts").unlink()
    if planted == "attempts":
        (job_dir / "attempts").write_text("a file")
        with pytest.raises(UnsafeJobDirectory, match=f"{job_dir}/attempts is a symlink"):
            archive_previous_attempt(job_dir, "output", 3)
        assert (job_dir / "log").exists()


def test_orchestras_own_file_names_never_count_as_output(tmp_path: Path) -> None:
    (tmp_path / "log").write_text("")
    (tmp_path / ".orchestra-exit").write_text("0 r\n")
    assert not output_written(tmp_path, "log")
    assert not output_written(tmp_path, ".orchestra-exit")


def test_a_staged_move_and_newer_files_of_the_same_names_are_kept_apart(tmp_path: Path) -> None:
    job_dir = tmp_path / "task" / "jobs" / "c0"
    (job_dir / STAGING_DIR).mkdir(parents=True)
    (job_dir / STAGING_DIR / "log").write_text("older\n")
    (job_dir / "log").write_text("newer\n")
    assert archive_previous_attempt(job_dir, "output", 3) == 2
    assert (job_dir / "attempts" / "1" / "log").read_text() == "older\n"
    assert (job_dir / "attempts" / "2" / "log").read_text() == "newer\n"
    assert listing(job_dir) == ["attempts"]


def test_apply_says_when_jobs_of_a_done_task_wrote_no_output(
    repo: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    """ "done" alone would hide it: the outcome names how many jobs wrote nothing."""
    repo.configs({"c0.txt": "ok 0\n", "c1.txt": "ok 1\n", "c2.txt": "ok 2\n"})
    task = repo.task(exec="grep -q 0 %IN && cat %IN > %OUT; true  # %DATA")
    assert repo.orchestra("apply") == 0
    out = capsys.readouterr().out
    assert f"{task}: done" in out
    assert f"warning: {task}: 2 job(s) exited 0 but wrote no output" in out
    assert f"'orchestra status {task}' names them" in out
