"""No credential orchestra is given ever lands in what it writes or prints.

A token is planted where credentials live (CI variables, cloud keys, a registry password in
the environment; the bearer token of the kubeconfig, which the fake API server demands), every
command runs, and everything orchestra wrote (storage, status, logs, job outputs, rendered
manifests, the repository) or printed is searched for it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import git
import pytest
import yaml

from orchestra.backends import kubernetes as kube_backend
from tests.fakes.kube_apiserver import FakeKubeAPIServer
from tests.fakes.kubelet import Kubelet
from tests.helpers import Repo

PLANTED = (
    "GITHUB_TOKEN",
    "CI_JOB_TOKEN",
    "CI_JOB_JWT",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "REGISTRY_PASSWORD",
    "WANDB_API_KEY",
    "GOOGLE_APPLICATION_CREDENTIALS",
)


@pytest.fixture
def token() -> str:
    return f"tok{uuid.uuid4().hex}"


@pytest.fixture
def server(token: str) -> Iterator[FakeKubeAPIServer]:
    with FakeKubeAPIServer(token=token) as fake:
        yield fake


def _everything_written(root: Path, skip: Path) -> Iterator[tuple[Path, bytes]]:
    for path in root.rglob("*"):
        if path.is_file() and path != skip and ".git" not in path.parts:
            yield path, path.read_bytes()


def _local_and_kubernetes_repo(root: Path) -> tuple[Repo, str, str]:
    """A git repository of specs with a local and a Kubernetes cluster, a task on each."""
    repo = Repo(root)
    lps = {
        "apiVersion": "orchestra/v1",
        "kind": "Cluster",
        "metadata": {"name": "lps"},
        "spec": {
            "backend": "kubernetes",
            "storage": "storage",
            "kubernetes": {"volumeClaim": "shared", "mountPath": "/mnt/shared"},
        },
    }
    with open(repo.root / "cluster.yaml", "a") as stream:
        stream.write("---\n" + yaml.safe_dump(lps))
    repo.configs({f"c{i}.txt": f"{i}\n" for i in range(3)})
    # the local job dumps its whole environment into its output and its log
    local = repo.task("local", exec="env > %OUT; env; cat %IN %DATA", bypass=True)
    kube = repo.task("kube", cluster="lps", bypass=True)
    (repo.root / ".gitignore").write_text("storage/\n")
    specs = git.Repo.init(repo.root)
    specs.git.add(A=True)
    specs.index.commit("specs")
    return repo, local, kube


def test_a_planted_token_is_never_written_or_printed(
    tmp_path: Path,
    token: str,
    server: FakeKubeAPIServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in PLANTED:
        monkeypatch.setenv(name, f"{token}-{name.lower()}")
    kubeconfig = tmp_path / "kubeconfig"
    server.write_kubeconfig(kubeconfig)
    assert token in kubeconfig.read_text()
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv("ORCHESTRA_USER", "alice")
    monkeypatch.setattr(kube_backend.KubernetesBackend, "poll_interval", 0.05)

    repo, local, kube = _local_and_kubernetes_repo(tmp_path / "specs")

    printed: list[str] = []

    def orchestra(*argv: str, code: int | None = 0) -> None:
        result = repo.orchestra(*argv)
        out, err = capsys.readouterr()
        printed.append(out + err)
        if code is not None:
            assert result == code, (argv, out, err)

    with Kubelet(server):
        orchestra("validate")
        orchestra("plan", "--detailed-exitcode", code=2)
        orchestra("plan", "--format", "json", code=None)
        orchestra("plan", "--format", "markdown", code=None)
        orchestra("apply", "--wait")
        assert b"PATH=" in (repo.job_dir(local, "c0") / "output").read_bytes()  # it dumped env
        orchestra("render", kube, "-o", str(tmp_path / "rendered"), "--validate")
        orchestra("status")
        orchestra("status", "--format", "json")
        orchestra("status", local, "--format", "json")
        orchestra("status", kube)
        orchestra("retry", local)
        orchestra("reconcile", "--format", "json")
        orchestra("delete", kube)
        orchestra("delete", "--purge", local)
        orchestra("dataset", "add", "-d", "user.alice.more", "-p", "data.txt")
        orchestra(
            "task", "new", "-c", "user.alice.configs", "-d", "user.alice.data", "-o", "out",
            "-t", "user.alice.new", "--containerImage", "alice/img:1",
            "--exec", "cat %IN > %OUT # %DATA", "--cluster", "here",
        )  # fmt: skip
        orchestra("apply")
        # failures print the server's words, never the request's credentials
        server.token = "another"
        repo.task("kube2", cluster="lps", bypass=True)
        orchestra("apply", code=1)

    assert server.authorized > 0  # the kubeconfig's token was really used
    written = list(_everything_written(tmp_path, kubeconfig))
    assert len(written) > 30  # sidecars, logs, outputs, manifests, specs
    leaks = [str(path) for path, data in written if token.encode() in data]
    leaks += [text for text in printed if token in text]
    assert leaks == []
    assert "Unauthorized" in printed[-1]


def test_a_jobs_environment_has_no_credentials_but_what_its_spec_sets(
    tmp_path: Path, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in PLANTED:
        monkeypatch.setenv(name, f"{token}-{name.lower()}")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
    monkeypatch.setenv("ORCHESTRA_USER", "alice")
    repo = Repo(tmp_path / "specs")
    repo.configs({"c0.txt": "0\n"})
    task = repo.task(
        exec="env > %OUT # %IN %DATA", bypass=True, env={"WANDB_API_KEY": "set-on-purpose"}
    )
    assert repo.orchestra("apply") == 0
    seen = dict(
        line.split("=", 1)
        for line in (repo.job_dir(task, "c0") / "output").read_text().splitlines()
        if "=" in line
    )
    assert seen["WANDB_API_KEY"] == "set-on-purpose"  # the spec's own value
    assert "PATH" in seen and seen["ORCHESTRA_TASK"] == task
    assert (set(PLANTED) - {"WANDB_API_KEY"}) & set(seen) == set()
    assert "KUBECONFIG" not in seen
