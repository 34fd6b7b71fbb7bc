"""Issue 14, items 1, 5, 16, 20: invalid specs are never "no spec", job names unique by
construction, apply without --wait returns while testing, the distribution's name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import Repo


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
