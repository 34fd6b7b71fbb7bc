"""``orchestra reconcile`` against real git repositories made in temporary directories."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import git
import pytest
import yaml

from orchestra.gitops.lock import ReconcileLock
from orchestra.gitops.record import read_record
from tests.helpers import Repo

ALICE = git.Actor("Alice Example", "alice@example.org")
MALLORY = git.Actor("Mallory", "mallory@example.org")


class GitRepo(Repo):
    """A spec repository under git; the storage inside it is ignored by git."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        (root / ".gitignore").write_text("storage/\n")
        self.git = git.Repo.init(root)

    def commit(self, message: str = "specs", author: git.Actor = ALICE) -> str:
        self.git.git.add(A=True)
        return self.git.index.commit(message, author=author, committer=author).hexsha


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> GitRepo:
    monkeypatch.setenv("ORCHESTRA_USER", "alice")
    return GitRepo(tmp_path / "specs")


def _submits(repo: Repo, task: str) -> int:
    return sum(1 for e in repo.events(task) if e.get("state") == "submitted")


def test_a_commit_is_reconciled_and_a_second_pass_does_nothing(
    repo: GitRepo, capsys: pytest.CaptureFixture[str]
) -> None:
    repo.configs({f"c{i}.txt": f"{i}\n" for i in range(3)})
    task = repo.task(bypass=True)
    sha = repo.commit("add t")
    assert repo.orchestra("reconcile") == 0
    status = repo.status(task)
    assert status["phase"] == "done" and status["commit"] == sha
    record = read_record(repo.storage)
    assert record["commit"] == sha and record["author"] == "Alice Example <alice@example.org>"
    assert f"Reconciled {sha[:10]}: 1 task(s) acted on" in capsys.readouterr().out
    assert repo.orchestra("reconcile") == 0
    assert "0 task(s) acted on, 1 unchanged" in capsys.readouterr().out
    assert _submits(repo, task) == 3  # nothing ran twice


def test_uncommitted_edits_never_reach_the_cluster(repo: GitRepo) -> None:
    repo.configs({"c0.txt": "0\n"})
    task = repo.task(bypass=True, exec="echo committed > %OUT # %IN %DATA")
    repo.commit()
    repo.tasks[task]["exec"] = "echo uncommitted > %OUT # %IN %DATA"
    other = repo.task("new", bypass=True)  # written, not committed
    assert repo.orchestra("reconcile") == 0
    assert (repo.job_dir(task, "c0") / "output").read_text() == "committed\n"
    assert not repo.task_dir(other).exists()


def test_an_edited_task_reruns_its_jobs_only_and_a_revert_goes_back(repo: GitRepo) -> None:
    repo.configs({"c0.txt": "0\n", "c1.txt": "1\n"})
    first = repo.task("first", bypass=True, exec="echo one > %OUT # %IN %DATA")
    second = repo.task("second", bypass=True)
    repo.commit()
    assert repo.orchestra("reconcile") == 0
    repo.tasks[first]["exec"] = "echo two > %OUT # %IN %DATA"
    repo.write()
    edit = repo.commit("first says two")
    assert repo.orchestra("reconcile") == 0
    assert (repo.job_dir(first, "c0") / "output").read_text() == "two\n"
    assert _submits(repo, first) == 4 and _submits(repo, second) == 2  # second untouched
    assert repo.status(first)["commit"] == edit
    repo.git.git.revert("HEAD", no_edit=True)
    assert repo.orchestra("reconcile") == 0
    assert (repo.job_dir(first, "c0") / "output").read_text() == "one\n"
    assert _submits(repo, second) == 2


def test_a_removed_task_is_an_orphan_pruned_only_when_asked(
    repo: GitRepo, capsys: pytest.CaptureFixture[str]
) -> None:
    repo.configs({"c0.txt": "0\n"})
    task = repo.task(bypass=True)
    repo.commit()
    assert repo.orchestra("reconcile") == 0
    repo.remove_task(task)
    repo.commit("drop t")
    capsys.readouterr()
    assert repo.orchestra("reconcile") == 0
    assert "orphan" in capsys.readouterr().out
    assert repo.status(task)["phase"] == "done"  # listed, not touched
    assert repo.orchestra("reconcile", "--prune") == 0
    assert repo.status(task)["phase"] == "killed"
    assert (repo.job_dir(task, "c0") / "output").exists()  # outputs stay


def test_an_invalid_commit_applies_nothing_and_names_file_line_and_author(
    repo: GitRepo, capsys: pytest.CaptureFixture[str]
) -> None:
    repo.configs({"c0.txt": "0\n"})
    task = repo.task(bypass=True, maxRetries="many")
    sha = repo.commit("broken", author=MALLORY)
    assert repo.orchestra("reconcile") == 1
    err = capsys.readouterr().err
    assert "users/alice/specs.yaml:" in err and "maxRetries" in err
    assert f"commit {sha[:10]} by Mallory <mallory@example.org> is refused" in err
    assert not repo.task_dir(task).exists() and not read_record(repo.storage)


def test_ownership_is_enforced_per_commit(
    repo: GitRepo, capsys: pytest.CaptureFixture[str]
) -> None:
    repo.configs({"c0.txt": "0\n"})
    repo.task(bypass=True)
    doc = {
        "apiVersion": "orchestra/v1",
        "kind": "Dataset",
        "metadata": {"name": "user.bob.stolen"},
        "spec": {"path": "data.txt"},
    }
    (repo.root / "users" / "alice" / "bob.yaml").write_text(yaml.safe_dump(doc))
    repo.commit("alice writes as bob", author=MALLORY)
    assert repo.orchestra("reconcile") == 1
    err = capsys.readouterr().err
    assert "users/alice/bob.yaml:4" in err and "user.bob.stolen" in err
    assert "by Mallory <mallory@example.org> is refused" in err


def test_dry_run_plans_and_changes_nothing(
    repo: GitRepo, capsys: pytest.CaptureFixture[str]
) -> None:
    repo.configs({"c0.txt": "0\n"})
    task = repo.task(bypass=True)
    sha = repo.commit()
    assert repo.orchestra("reconcile", "--dry-run", "--format", "json") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["commit"] == sha and out["dryRun"] is True
    assert [t["action"] for t in out["plan"]["tasks"]] == ["create"]
    assert not repo.task_dir(task).exists()


def test_a_second_reconciler_waits_then_names_the_holder(
    repo: GitRepo, capsys: pytest.CaptureFixture[str]
) -> None:
    repo.configs({"c0.txt": "0\n"})
    task = repo.task(bypass=True)
    sha = repo.commit()
    holder = ReconcileLock(repo.storage)
    holder.acquire(1, commit=sha, user="ci")
    try:
        started = time.monotonic()
        assert repo.orchestra("reconcile", "--lock-timeout", "0.5") == 1
        assert time.monotonic() - started >= 0.5
        err = capsys.readouterr().err
        assert "another reconcile holds" in err and "user ci" in err and sha[:10] in err
        assert not repo.task_dir(task).exists()
    finally:
        holder.release()
    assert repo.orchestra("reconcile") == 0


def test_two_reconcilers_at_once_run_each_job_once(repo: GitRepo) -> None:
    repo.configs({f"c{i}.txt": f"{i}\n" for i in range(4)})
    task = repo.task(bypass=True, exec="sleep 0.3; cat %IN > %OUT # %DATA")
    repo.commit()
    first, second = repo.spawn("reconcile"), repo.spawn("reconcile")
    outputs = [p.communicate(timeout=120) for p in (first, second)]
    assert (first.returncode, second.returncode) == (0, 0), outputs
    assert repo.status(task)["phase"] == "done"
    assert _submits(repo, task) == 4


def test_the_watcher_reconciles_new_commits(repo: GitRepo) -> None:
    repo.configs({"c0.txt": "0\n"})
    first = repo.task("first", bypass=True)
    repo.commit()
    watcher = repo.spawn("reconcile", "--watch", "--interval", "0.1", "--passes", "300")
    try:
        deadline = time.monotonic() + 60
        while not (repo.task_dir(first) / "status.yaml").exists():
            assert time.monotonic() < deadline, watcher.stderr
            time.sleep(0.1)
        second = repo.task("second", bypass=True)
        sha = repo.commit("add second")
        while read_record(repo.storage).get("commit") != sha:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert repo.status(second)["phase"] == "done"
    finally:
        watcher.terminate()
        watcher.communicate(timeout=30)
    assert _submits(repo, first) == 1


def test_the_watcher_launches_the_rest_after_the_test_jobs_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On Kubernetes a pass submits and returns: the next passes, with no new commit, see the
    test jobs done and launch the rest."""
    from orchestra.backends import kubernetes as kube_backend
    from tests.fakes.kube_apiserver import FakeKubeAPIServer
    from tests.fakes.kubelet import Kubelet

    monkeypatch.setenv("ORCHESTRA_USER", "alice")
    monkeypatch.setattr(kube_backend.KubernetesBackend, "poll_interval", 0.05)
    with FakeKubeAPIServer() as server, Kubelet(server):
        repo = GitRepo(tmp_path / "specs")
        server.write_kubeconfig(tmp_path / "kubeconfig")
        monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
        cluster = yaml.safe_load((repo.root / "cluster.yaml").read_text())
        cluster["spec"].update(
            backend="kubernetes", kubernetes={"volumeClaim": "shared", "mountPath": "/mnt/s"}
        )
        (repo.root / "cluster.yaml").write_text(yaml.safe_dump(cluster))
        repo.configs({f"c{i}.txt": f"{i}\n" for i in range(5)})
        task = repo.task(testJobs=2)
        repo.commit()
        # no new commit: pass 1 submits the test jobs, a later pass sees them done and
        # launches the rest, a later one sees the task done
        assert repo.orchestra("reconcile", "--watch", "--interval", "0.2", "--passes", "15") == 0
        status = repo.status(task)
        assert status["phase"] == "done" and status["counts"]["done"] == 5
        assert server.requests["PATCH Job"] == 5


def test_a_lock_left_by_a_killed_reconciler_is_not_in_the_way(repo: GitRepo) -> None:
    """Stale locks free themselves: the kernel drops an flock when its holder dies."""
    repo.configs({"c0.txt": "0\n"})
    task = repo.task(bypass=True)
    repo.commit()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path\n"
            "from orchestra.gitops.lock import ReconcileLock\n"
            "ReconcileLock(Path(sys.argv[1])).acquire(5, commit='c0ffee', user='gone')\n"
            "print('held', flush=True); time.sleep(600)",
            str(repo.storage),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    holder.kill()  # SIGKILL: no chance to release anything
    holder.wait()
    assert "gone" in (repo.storage / ".orchestra" / "reconcile.lock").read_text()
    assert repo.orchestra("reconcile", "--lock-timeout", "0") == 0
    assert repo.status(task)["phase"] == "done"


def test_two_applies_and_a_reconcile_at_once_run_each_job_once(repo: GitRepo) -> None:
    repo.configs({f"c{i}.txt": f"{i}\n" for i in range(3)})
    tasks = [
        repo.task(short, bypass=True, exec="sleep 0.3; cat %IN > %OUT # %DATA")
        for short in ("one", "two")
    ]
    repo.commit()
    processes = [repo.spawn("apply"), repo.spawn("reconcile"), repo.spawn("apply")]
    outputs = [p.communicate(timeout=120) for p in processes]
    codes = [p.returncode for p in processes]
    assert 0 in codes, outputs
    for code, (_out, err) in zip(codes, outputs, strict=True):
        # the others waited their turn (0) or refused naming the one at work (1)
        assert code == 0 or (code == 1 and "being worked on by another orchestra" in err), err
    assert repo.orchestra("apply") == 0  # whatever was refused is finished now
    for task in tasks:
        assert repo.status(task)["phase"] == "done"
        assert _submits(repo, task) == 3  # no job ran twice
