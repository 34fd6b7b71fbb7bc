"""One lifecycle suite, three backends: the local one (real processes), the Kubernetes one
(the real client against the fake API server, a thread playing the kubelet) and the Slurm one
(a real single-node Slurm started for the session, tests/slurm_cluster.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from orchestra.backends import kubernetes as kube_backend
from orchestra.backends import slurm as slurm_backend
from tests.fakes.kube_apiserver import FakeKubeAPIServer
from tests.helpers import Repo
from tests.slurm_cluster import SlurmCluster

pytest_plugins = ["tests.fakes.slurm_plugin"]

# a config whose content is "bad" makes its job fail; any other job copies it to its output
LOCAL_EXEC = "grep -q bad %IN && exit 3; cat %IN > %OUT  # %DATA"


class Kubelet(threading.Thread):
    """Runs the Jobs of the fake cluster the way LOCAL_EXEC would: reads the job's config from
    the storage, fails on "bad", else writes its output there."""

    def __init__(self, server: FakeKubeAPIServer, repo: Repo) -> None:
        super().__init__(daemon=True)
        self.server, self.repo = server, repo
        self.stopped = threading.Event()
        self.runs: dict[str, int] = {}

    def run(self) -> None:
        while not self.stopped.wait(0.02):
            for job in self.server.jobs():
                if job.get("status"):
                    continue
                annotations = job["metadata"]["annotations"]
                task, name = (
                    annotations["orchestra.io/task-name"],
                    annotations["orchestra.io/job-name"],
                )
                self.runs[name] = self.runs.get(name, 0) + 1
                config = (self.repo.files / "configs" / f"{name}.txt").read_text()
                code = 3 if "bad" in config else 0
                if code == 0:
                    (self.repo.job_dir(task, name) / "output").write_text(config)
                self.server.finish_job(job["metadata"]["namespace"], job["metadata"]["name"], code)


@pytest.fixture(params=["local", "kubernetes", "slurm"])
def backend(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, Repo]]:
    monkeypatch.setenv("ORCHESTRA_USER", "alice")
    repo = Repo(tmp_path / "repo")
    if request.param == "local":
        yield "local", repo
        return
    if request.param == "slurm":
        cluster: SlurmCluster = request.getfixturevalue("slurm_cluster")
        monkeypatch.setenv("SLURM_CONF", str(cluster.conf))
        monkeypatch.setattr(slurm_backend.SlurmBackend, "poll_interval", 0.1)
        monkeypatch.setattr(slurm_backend.SlurmBackend, "marker_grace", 5.0)
        spec = yaml.safe_load((repo.root / "cluster.yaml").read_text())
        spec["spec"].update(backend="slurm")
        (repo.root / "cluster.yaml").write_text(yaml.safe_dump(spec))
        yield "slurm", repo
        return
    with FakeKubeAPIServer() as server:
        kubeconfig = tmp_path / "kubeconfig"
        server.write_kubeconfig(kubeconfig)
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        monkeypatch.setattr(kube_backend.KubernetesBackend, "poll_interval", 0.05)
        cluster = yaml.safe_load((repo.root / "cluster.yaml").read_text())
        cluster["spec"].update(
            backend="kubernetes", kubernetes={"volumeClaim": "shared", "mountPath": "/mnt/shared"}
        )
        (repo.root / "cluster.yaml").write_text(yaml.safe_dump(cluster))
        kubelet = Kubelet(server, repo)
        kubelet.start()
        try:
            yield "kubernetes", repo
        finally:
            kubelet.stopped.set()
            kubelet.join()


def _apply(repo: Repo) -> int:
    return repo.orchestra("apply", "--wait")


def test_done_when_every_job_succeeds(backend: tuple[str, Repo]) -> None:
    _kind, repo = backend
    repo.configs({f"c{i}.txt": "ok\n" for i in range(5)})
    task = repo.task(exec=LOCAL_EXEC, testJobs=2)
    assert _apply(repo) == 0
    status = repo.status(task)
    assert status["phase"] == "done" and status["counts"]["done"] == 5
    assert all((repo.job_dir(task, f"c{i}") / "output").read_text() == "ok\n" for i in range(5))
    assert _apply(repo) == 0  # idempotent
    assert all(job["attempts"] == 1 for job in repo.status(task)["jobs"].values())


def test_broken_when_a_test_job_fails(backend: tuple[str, Repo]) -> None:
    _kind, repo = backend
    repo.configs({"c0.txt": "bad\n", **{f"c{i}.txt": "ok\n" for i in range(1, 5)}})
    task = repo.task(exec=LOCAL_EXEC, testJobs=2, maxRetries=1)
    assert _apply(repo) == 3
    status = repo.status(task)
    assert status["phase"] == "broken"
    assert status["jobs"]["c0"]["state"] == "failed" and status["jobs"]["c0"]["attempts"] == 2
    assert all(status["jobs"][f"c{i}"]["state"] == "pending" for i in range(2, 5))


def test_finalized_when_a_later_job_fails_and_retry_reruns_it(backend: tuple[str, Repo]) -> None:
    _kind, repo = backend
    repo.configs({"c0.txt": "ok\n", "c1.txt": "ok\n", "c2.txt": "bad\n"})
    task = repo.task(exec=LOCAL_EXEC, testJobs=1)
    assert _apply(repo) == 3
    assert repo.status(task)["phase"] == "finalized"
    repo.configs({"c2.txt": "ok now\n"})  # the digest changes: apply reruns it
    assert _apply(repo) == 0
    status = repo.status(task)
    assert status["phase"] == "done" and status["jobs"]["c2"]["attempts"] == 1


def test_bypass_runs_everything_at_once(backend: tuple[str, Repo]) -> None:
    _kind, repo = backend
    repo.configs({f"c{i}.txt": "ok\n" for i in range(4)})
    task = repo.task(exec=LOCAL_EXEC, bypass=True)
    assert _apply(repo) == 0
    events = [e for e in repo.events(task) if e["ev"] == "task" and "phase" in e]
    assert [e["phase"] for e in events] == ["registered", "running", "done"]
