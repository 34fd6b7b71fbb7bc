"""``orchestra dataset add`` and ``orchestra task new``: the original tool's flags write
specs into the repository, validated, or nothing at all."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import Run
from tests.helpers import Repo


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    repo = Repo(tmp_path / "specs")
    repo.configs({"c0.txt": "0\n", "c1.txt": "1\n"})
    repo.write()  # the data and configs Datasets, no Task
    return repo


def test_the_original_tutorial_steps_write_valid_specs_that_run(repo: Repo, run: Run) -> None:
    (repo.files / "more").mkdir()
    (repo.files / "more" / "x.txt").write_text("x\n")
    result = run("-C", str(repo.root), "dataset", "add", "-d", "user.alice.more", "-p", "more/")
    assert result.code == 0, result.err
    assert "wrote users/alice/datasets/more.yaml" in result.out
    written = (repo.root / "users" / "alice" / "datasets" / "more.yaml").read_text()
    assert "# Was: orchestra_registry.py -d user.alice.more -p more/" in written
    assert yaml.safe_load(written)["spec"] == {"path": "more"}
    result = run(
        "-C", str(repo.root), "task", "new",
        "-c", "user.alice.configs", "-d", "user.alice.data", "-o", "output",
        "-t", "user.alice.my_task", "--containerImage", "alice/img:1",
        "--exec", "cat %IN > %OUT # %DATA", "--cluster", "here", "--bypass",
    )  # fmt: skip
    assert result.code == 0, result.err
    task = yaml.safe_load((repo.root / "users" / "alice" / "tasks" / "my_task.yaml").read_text())
    assert task["spec"]["bypass"] is True and task["spec"]["image"] == "alice/img:1"
    assert run("-C", str(repo.root), "apply").code == 0
    status = repo.status("user.alice.my_task")
    assert status["phase"] == "done" and status["counts"]["done"] == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-d", "alice.data2", "-p", "data.txt"], "must be user.<owner>.<name>"),
        (["-d", "user.alice.nothing", "-p", "no-such-file"], "no-such-file"),
        (["-d", "user.alice.data", "-p", "data.txt"], "exists already"),
    ],
)
def test_a_bad_dataset_leaves_nothing_behind(
    repo: Repo, run: Run, argv: list[str], message: str
) -> None:
    before = sorted(p for p in repo.root.rglob("*") if "storage" not in p.parts)
    if argv[1] == "user.alice.data":  # a file of that name is there already
        (repo.root / "users" / "alice" / "datasets").mkdir()
        (repo.root / "users" / "alice" / "datasets" / "data.yaml").write_text("# mine\n")
        before = sorted(p for p in repo.root.rglob("*") if "storage" not in p.parts)
    result = run("-C", str(repo.root), "dataset", "add", *argv)
    assert result.code == 1
    assert message in result.err
    assert sorted(p for p in repo.root.rglob("*") if "storage" not in p.parts) == before


def test_a_task_naming_a_missing_dataset_is_refused_with_a_suggestion(repo: Repo, run: Run) -> None:
    result = run(
        "-C", str(repo.root), "task", "new",
        "-c", "user.alice.config", "-d", "user.alice.data", "-o", "output",
        "-t", "user.alice.t2", "--containerImage", "img", "--exec", "x %DATA %IN %OUT",
        "--cluster", "here",
    )  # fmt: skip
    assert result.code == 1
    assert "users/alice/tasks/t2.yaml" in result.err and "user.alice.configs" in result.err
    assert not (repo.root / "users" / "alice" / "tasks").exists()
