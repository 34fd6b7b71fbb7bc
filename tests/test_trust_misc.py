"""Issue 14, items 1, 5, 16, 20: invalid specs are never "no spec", job names unique by
construction, apply without --wait returns while testing, the distribution's name."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestra.plan.desired import job_name, job_names
from tests.helpers import Repo

pytest_plugins = ["tests.fakes.slurm_plugin"]


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Repo:
    monkeypatch.setenv("ORCHESTRA_USER", "alice")
    return Repo(tmp_path / "specs")


def _task_doc(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "orchestra/v1",
        "kind": "Task",
        "metadata": {"name": name},
        "spec": {
            "cluster": "here",
            "image": "alice/img:1",
            "data": "user.alice.data",
            "configs": "user.alice.configs",
            "output": "output",
            "exec": "cat %IN > %OUT  # %DATA",
            "bypass": True,
            **spec,
        },
    }


def _two_task_files(repo: Repo) -> tuple[Path, Path]:
    """users/alice/specs.yaml (datasets and task a) and users/alice/b.yaml (task b), applied."""
    repo.configs({"c0.txt": "ok\n"})
    repo.task("a", bypass=True)
    b_file = repo.root / "users" / "alice" / "b.yaml"
    b_file.write_text(yaml.safe_dump(_task_doc("user.alice.b")))
    assert repo.orchestra("apply") == 0
    assert repo.status("user.alice.b")["phase"] == "done"
    return repo.root / "users" / "alice" / "specs.yaml", b_file


def test_a_typo_in_another_tasks_file_does_not_make_it_an_orphan(
    repo: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file, b_file = _two_task_files(repo)
    b_file.write_text(b_file.read_text().replace("image:", "imagee:"))
    capsys.readouterr()
    assert repo.orchestra("apply", "--prune", str(a_file)) == 1
    captured = capsys.readouterr()
    assert "users/alice/b.yaml" in captured.err and "--prune" in captured.err
    assert "Traceback" not in captured.err
    assert repo.status("user.alice.b")["phase"] == "done"  # not killed
    assert repo.orchestra("plan", str(a_file)) == 0
    captured = capsys.readouterr()
    assert "orphan" not in captured.out
    assert "user.alice.b" in captured.out and "invalid spec" in captured.out
    assert "users/alice/b.yaml" in captured.out + captured.err
    # without --prune, the valid task asked for is applied as before
    assert repo.orchestra("apply", str(a_file)) == 0
    assert repo.status("user.alice.b")["phase"] == "done"


def test_a_watcher_prunes_nothing_while_the_head_commit_is_invalid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The watcher carries on the last valid commit when the head is invalid; a task the
    head defines (with a typo) is no orphan of the old commit: nothing is pruned."""
    from orchestra.gitops.source import Source
    from tests.test_reconcile import GitRepo

    monkeypatch.setenv("ORCHESTRA_USER", "alice")
    repo = GitRepo(tmp_path / "specs")
    repo.configs({"c0.txt": "ok\n"})
    repo.task("a", bypass=True)
    repo.commit("a only")
    b_file = repo.root / "users" / "alice" / "b.yaml"
    real_resolve = Source.resolve
    calls = []

    def resolve(self: Source, ref: str) -> Any:
        calls.append(ref)
        if len(calls) == 2:  # between the passes: b is applied by hand, then committed broken
            b_file.write_text(yaml.safe_dump(_task_doc("user.alice.b")))
            assert repo.orchestra("apply", str(b_file)) == 0
            b_file.write_text(b_file.read_text().replace("image:", "imagee:"))
            repo.commit("b, with a typo")
        return real_resolve(self, ref)

    monkeypatch.setattr(Source, "resolve", resolve)
    args = ("reconcile", "--watch", "--prune", "--interval", "0", "--passes", "2")
    assert repo.orchestra(*args) == 0
    assert len(calls) == 2
    assert repo.status("user.alice.b")["phase"] == "done"  # not pruned
    assert "users/alice/b.yaml" in capsys.readouterr().err  # the refused head, named


@pytest.mark.parametrize(
    "broken",
    ["kind: Task\nmetadata: {name: [\n", "kind: Task\nmetadata: {nam: user.alice.b}\n"],
    ids=["syntax-error", "no-name"],
)
def test_a_spec_whose_name_cannot_be_read_makes_no_task_of_its_owner_an_orphan(
    repo: Repo, capsys: pytest.CaptureFixture[str], broken: str
) -> None:
    a_file, b_file = _two_task_files(repo)
    b_file.write_text(broken)
    capsys.readouterr()
    assert repo.orchestra("plan", str(a_file)) == 0
    out = capsys.readouterr().out
    assert "? user.alice.b  invalid" in out and "orphan" not in out
    assert repo.orchestra("apply", "--prune", str(a_file)) == 1
    assert "--prune refused" in capsys.readouterr().err
    assert repo.status("user.alice.b")["phase"] == "done"


def test_a_task_using_a_dataset_whose_document_is_invalid_is_a_located_error(
    repo: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    repo.configs({"c0.txt": "ok\n"})
    repo.write()  # users/alice/specs.yaml: the two Datasets
    specs = repo.root / "users" / "alice" / "specs.yaml"
    specs.write_text(specs.read_text().replace("path: data.txt", "pathh: data.txt"))
    task_file = repo.root / "users" / "alice" / "t.yaml"
    task_file.write_text(yaml.safe_dump(_task_doc("user.alice.t")))
    assert repo.orchestra("plan", str(task_file)) == 1
    err = capsys.readouterr().err
    expected = (
        "$.spec.data: Dataset 'user.alice.data' is defined in users/alice/specs.yaml, "
        "which is invalid"
    )
    assert "users/alice/t.yaml:" in err and expected in err
    assert "internal error" not in err


def test_a_task_using_a_cluster_whose_document_is_invalid_is_a_located_error(
    repo: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    """cluster.yaml, read as context only, fails the schema: the task asked for names it
    (today: an internal error, KeyError)."""
    repo.configs({"c0.txt": "ok\n"})
    repo.task("a", bypass=True)
    cluster = repo.root / "cluster.yaml"
    cluster.write_text(cluster.read_text().replace("backend:", "backnd:"))
    for command in ("validate", "plan", "apply"):
        assert repo.orchestra(command, "users/alice/specs.yaml") == 1
        captured = capsys.readouterr()
        said = captured.out + captured.err
        assert "$.spec.cluster: Cluster 'here' is defined in cluster.yaml, which is invalid" in said
        assert "internal error" not in said
    assert not repo.task_dir("user.alice.a").exists()


# --- item 5: job names unique by construction -------------------------------------------

SAFE_FILE_NAME = re.compile(r"[A-Za-z0-9._-]+")


def _check_names(files: list[str]) -> dict[str, str]:
    names = job_names(files)
    assert set(names) == set(files)
    assert len(set(names.values())) == len(names), names  # unique
    for name in names.values():
        assert SAFE_FILE_NAME.fullmatch(name) and name not in (".", ".."), name
        assert len(os.fsencode(name)) <= 255
    assert job_names(list(reversed(files))) == names  # the order given does not matter
    return names


def test_a_rehashed_name_never_collides_with_another_files_name() -> None:
    """The issue's case: ``a x``, ``a_x-<hash>``, ``a_x-<hash>-<hash>`` gave two jobs one
    name (the first two collided, were rehashed, and the rehash was the third's stem)."""
    digest = hashlib.sha256(b"a x").hexdigest()[:8]
    second = f"a_x-{digest}"  # a safe stem equal to the hashed name of "a x"
    third = f"{second}-{digest}"  # what the old code rehashed "a x" to
    files = ["a x", second, third, f"{second}-2", f"{second}-3.txt"]
    names = _check_names(files)
    assert names[second] == second  # a safe, unshared stem is its own name
    assert names[third] == third
    assert names["a x"] == f"{second}-4"  # its hashed name, -2 and -3 taken


def test_common_names_are_unchanged() -> None:
    """No existing job is renamed (a rename means a rerun)."""
    files = [f"config_sort_{s}_init_{i}.json" for s in range(3) for i in range(3)]
    assert job_names(files) == {f: f.rsplit(".", 1)[0] for f in files}
    odd = job_names(["my config (1).json", "plain.txt"])
    assert odd["my config (1).json"] == job_name("my config (1).json")
    assert odd["my config (1).json"].startswith("my_config_1-") and odd["plain.txt"] == "plain"
    both = job_names(["a.json", "a.yaml"])
    assert both == {"a.json": "a-" + both["a.json"][2:], "a.yaml": "a-" + both["a.yaml"][2:]}
    assert both["a.json"] != both["a.yaml"]


def test_a_stem_with_a_newline_is_never_a_job_name() -> None:
    for files in (["a\nb.txt"], ["abc\n.txt"], ["abc\n"], ["x.txt", "a\nb.txt"]):
        _check_names(files)


def test_a_name_that_is_not_utf8_is_hashed_as_its_bytes() -> None:
    name = os.fsdecode(b"caf\xe9.txt")
    names = _check_names([name, "plain.txt"])
    assert names[name] == "caf-" + hashlib.sha256(b"caf\xe9.txt").hexdigest()[:8]


_ANY_CHAR = st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",))
_FILE_NAME = st.one_of(
    st.text(_ANY_CHAR, min_size=1, max_size=12),
    st.text("ab x._-", min_size=1, max_size=6),  # few characters: many collisions
    st.binary(min_size=1, max_size=12)
    .filter(lambda b: b"/" not in b and b"\x00" not in b)
    .map(os.fsdecode),
).filter(lambda f: f not in (".", ".."))


@st.composite
def _file_sets(draw: st.DrawFn) -> list[str]:
    """File names, plus names made to collide: another's job name (with an extension, a -2)."""
    files = draw(st.lists(_FILE_NAME, min_size=1, max_size=12, unique=True))
    for _round in range(draw(st.integers(0, 3))):
        names = job_names(files)
        victim = names[draw(st.sampled_from(sorted(files)))]
        crafted = victim + draw(st.sampled_from(["", "-2", "-3", ".txt", ".json"]))
        if crafted not in files:
            files.append(crafted)
    return files


@settings(max_examples=400, deadline=None)
@given(_file_sets())
def test_job_names_are_unique_and_safe_for_any_set_of_file_names(files: list[str]) -> None:
    names = _check_names(files)
    for file, name in names.items():  # a safe stem no other file shares is its own name
        stem = file.rsplit(".", 1)[0] if "." in file[1:] else file
        others = [f for f in files if f != file]
        unshared = all((o.rsplit(".", 1)[0] if "." in o[1:] else o) != stem for o in others)
        if SAFE_FILE_NAME.fullmatch(stem) and stem not in (".", "..") and unshared:
            assert name == stem


def test_a_config_file_name_that_is_not_utf8_runs_end_to_end(
    repo: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    """One such file made plan fail with an internal error for the whole repository."""
    configs = os.fsencode(repo.files / "configs")
    with open(configs + b"/caf\xe9.txt", "wb") as stream:
        stream.write(b"latin-1\n")
    repo.configs({"plain.txt": "plain\n"})
    task = repo.task("t", bypass=True)
    assert repo.orchestra("plan") == 0
    out = capsys.readouterr().out
    assert "internal error" not in out and "1 task to create (2 jobs)" in out
    assert repo.orchestra("apply") == 0
    job = "caf-" + hashlib.sha256(b"caf\xe9.txt").hexdigest()[:8]
    assert (repo.job_dir(task, job) / "output").read_bytes() == b"latin-1\n"
    status = repo.status(task)
    assert status["phase"] == "done" and status["counts"]["done"] == 2
    assert status["jobs"][job]["config"] == "caf\\xe9.txt"  # status.yaml is valid YAML
    capsys.readouterr()
    assert repo.orchestra("plan", "--detailed-exitcode") == 0  # settled: nothing to do
    assert repo.orchestra("status", task) == 0
    assert job in capsys.readouterr().out


def test_a_data_directory_holding_a_name_that_is_not_utf8_is_hashed(repo: Repo) -> None:
    (repo.files / "data").mkdir()
    with open(os.fsencode(repo.files / "data") + b"/r\xe9sum\xe9", "wb") as stream:
        stream.write(b"x\n")
    repo.configs({"c0.txt": "ok\n"})
    task = repo.task("t", bypass=True)
    docs = list(yaml.safe_load_all((repo.root / "users/alice/specs.yaml").read_text()))
    docs[0]["spec"]["path"] = "data"
    (repo.root / "users/alice/specs.yaml").write_text(yaml.safe_dump_all(docs))
    assert repo.orchestra("apply") == 0
    assert repo.status(task)["phase"] == "done"


def test_shell_quote_gives_the_job_the_bytes_of_a_name_that_is_not_utf8(
    tmp_path: Path,
) -> None:
    import subprocess

    from orchestra.plan.desired import shell_quote

    raw = os.fsencode(tmp_path) + b"/x\xe9 \xff\xfe'y\xc3\xa9.txt"
    with open(raw, "wb") as stream:
        stream.write(b"hello")
    quoted = shell_quote(os.fsdecode(raw))
    quoted.encode("utf-8")  # valid text: JSON, YAML and the Kubernetes API carry it
    for shell in ("/bin/sh", "/bin/bash"):
        done = subprocess.run([shell, "-c", f"cat {quoted}"], capture_output=True, check=True)
        assert done.stdout == b"hello"
    assert shell_quote("/a b/c'd") == "'/a b/c'\"'\"'d'"  # as shlex.quote otherwise


# --- item 16: apply without --wait returns while a task is testing ----------------------


def test_apply_without_wait_returns_while_the_test_jobs_run_on_kubernetes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No kubelet: the test Jobs never complete, so apply must return with them submitted
    and the rest pending (it waited for the tests, for ever)."""
    from orchestra.backends import kubernetes as kube_backend
    from tests.fakes.kube_apiserver import FakeKubeAPIServer
    from tests.fakes.kubelet import Kubelet

    monkeypatch.setenv("ORCHESTRA_USER", "alice")
    monkeypatch.setattr(kube_backend.KubernetesBackend, "poll_interval", 0.05)
    with FakeKubeAPIServer() as server:
        server.write_kubeconfig(tmp_path / "kubeconfig")
        monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
        repo = Repo(tmp_path / "specs")
        cluster = yaml.safe_load((repo.root / "cluster.yaml").read_text())
        cluster["spec"].update(
            backend="kubernetes", kubernetes={"volumeClaim": "shared", "mountPath": "/mnt/s"}
        )
        (repo.root / "cluster.yaml").write_text(yaml.safe_dump(cluster))
        repo.configs({f"c{i}.txt": f"{i}\n" for i in range(5)})
        task = repo.task(testJobs=2)
        apply = repo.spawn("apply")  # a process: if it hangs, the deadline ends it
        try:
            _out, err = apply.communicate(timeout=120)
        finally:
            apply.kill()
        assert apply.returncode == 0, err
        status = repo.status(task)
        assert status["phase"] == "testing"
        assert status["counts"] == {
            "pending": 3,
            "submitted": 2,
            "running": 0,
            "done": 0,
            "failed": 0,
        }
        assert server.requests["PATCH Job"] == 2  # the test Jobs only
        # a later apply follows the tests and, once they passed, launches the rest
        with Kubelet(server):
            assert repo.orchestra("apply", "--wait") == 0
        assert repo.status(task)["phase"] == "done"
        assert server.requests["PATCH Job"] == 5


def test_apply_without_wait_returns_while_the_test_jobs_run_on_slurm(
    slurm_cluster: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The test job waits for a file the test makes only after apply has returned."""
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.conf))
    monkeypatch.setenv("ORCHESTRA_USER", "alice")
    repo = Repo(tmp_path / "specs")
    cluster = yaml.safe_load((repo.root / "cluster.yaml").read_text())
    cluster["spec"].update(backend="slurm", slurm={})
    (repo.root / "cluster.yaml").write_text(yaml.safe_dump(cluster))
    go = tmp_path / "go"
    repo.configs({f"c{i}.txt": f"{i}\n" for i in range(3)})
    task = repo.task(
        testJobs=1, exec=f"while [ ! -e {go} ]; do sleep 0.1; done; cat %IN > %OUT  # %DATA"
    )
    apply = repo.spawn("apply")  # a process: if it hangs, the deadline ends it
    try:
        _out, err = apply.communicate(timeout=120)
    finally:
        apply.kill()
        go.touch()  # the test job may end now
    assert apply.returncode == 0, err
    status = repo.status(task)
    assert status["phase"] == "testing" and status["counts"]["pending"] == 2
    assert repo.orchestra("apply", "--wait") == 0
    assert repo.status(task)["phase"] == "done"


# --- item 20: the distribution's name -------------------------------------------------

# `pip install [options] orchestra` or `orchestra[extra]`: PyPI's orchestra, someone else's code
_PYPI_ORCHESTRA = re.compile(r"pip3?\s+install\s+(?:-\S+\s+)*[\"']?orchestra(?![-\w])")


def test_nothing_tells_users_to_install_the_pypi_project_named_orchestra() -> None:
    from tests.conftest import ROOT

    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == "orchestra-gitops"
    assert project["scripts"] == {"orchestra": "orchestra.__main__:main"}
    told = [ROOT / "README.md", ROOT / "Dockerfile", ROOT / ".pre-commit-hooks.yaml"]
    for pattern in ("docs/**/*.md", "examples/**/*", "orchestra/**/*.py", "templates/**/*"):
        told += [p for p in ROOT.glob(pattern) if p.is_file()]
    wrong = [
        f"{path.relative_to(ROOT)}: {match.group(0)}"
        for path in told
        for match in _PYPI_ORCHESTRA.finditer(path.read_text(errors="replace"))
    ]
    assert not wrong
    assert _PYPI_ORCHESTRA.search("pip install --user orchestra")  # the test sees the old text
    assert _PYPI_ORCHESTRA.search("pip install 'orchestra[validate-k8s]'")
    assert not _PYPI_ORCHESTRA.search('pip install "orchestra-gitops @ git+https://x/o"')
    for name in ("github-actions.yml", "gitlab-ci.yml"):  # the CI examples: from git
        text = (ROOT / "examples" / "ci" / name).read_text()
        assert 'ORCHESTRA_PIP: "orchestra-gitops @ git+https://' in text
        assert 'pip install --user "$ORCHESTRA_PIP"' in text


def test_a_config_name_that_is_not_utf8_renders_as_a_valid_kubernetes_manifest(
    repo: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster = yaml.safe_load((repo.root / "cluster.yaml").read_text())
    cluster["spec"].update(
        backend="kubernetes", kubernetes={"volumeClaim": "shared", "mountPath": "/mnt/s"}
    )
    (repo.root / "cluster.yaml").write_text(yaml.safe_dump(cluster))
    with open(os.fsencode(repo.files / "configs") + b"/caf\xe9.txt", "wb") as stream:
        stream.write(b"x\n")
    task = repo.task("t", bypass=True)
    capsys.readouterr()
    assert repo.orchestra("render", task) == 0
    (job,) = yaml.safe_load_all(capsys.readouterr().out)
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert "/mnt/s/alice/files/configs/caf\"$(printf '\\351')\".txt" in container["command"][2]
