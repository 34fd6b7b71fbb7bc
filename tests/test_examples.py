"""The tutorial example: valid against its committed storage, reproducible, and its job runs."""

from __future__ import annotations

import filecmp
import json
import subprocess
import sys
from pathlib import Path

import yaml

from orchestra.spec.checker import validate_paths
from tests.conftest import EXAMPLES

TUTORIAL = EXAMPLES / "tasks" / "tutorial"
FILES = TUTORIAL / "storage" / "alice" / "files"


def test_examples_validate_with_their_storage() -> None:
    result = validate_paths(["examples/tasks"], EXAMPLES.parent)
    assert [d.format() for d in result.diagnostics] == []
    task = result.specs.tasks["user.alice.my_task_tutorial"]
    assert task.cluster == "local"
    assert result.specs.clusters["local"].storage == TUTORIAL / "storage"


def test_generators_reproduce_the_committed_inputs(tmp_path: Path) -> None:
    data = tmp_path / "my_data_file.json"
    configs = tmp_path / "my_config_files"
    python = sys.executable
    subprocess.run([python, str(TUTORIAL / "create_data.py"), "-o", str(data)], check=True)
    subprocess.run([python, str(TUTORIAL / "create_configs.py"), "-o", str(configs)], check=True)
    assert data.read_bytes() == (FILES / "my_data_file.json").read_bytes()
    names = sorted(p.name for p in configs.iterdir())
    assert len(names) == 100  # 10 sorts x 10 inits
    assert names == sorted(p.name for p in (FILES / "my_config_files").iterdir())
    match, mismatch, errors = filecmp.cmpfiles(
        configs, FILES / "my_config_files", names, shallow=False
    )
    assert (len(match), mismatch, errors) == (100, [], [])


def test_job_script_takes_the_original_flags_and_learns(tmp_path: Path) -> None:
    out = tmp_path / "output"
    for flags in (("-d", "-c", "-o"), ("--dataFile", "--configFile", "--output")):
        done = subprocess.run(
            [
                sys.executable,
                str(TUTORIAL / "job_tuning.py"),
                flags[0],
                str(FILES / "my_data_file.json"),
                flags[1],
                str(FILES / "my_config_files" / "config_sort_3_init_7.json"),
                flags[2],
                str(out),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        assert "sort 3 init 7" in done.stdout
        result = json.loads(out.read_text())
        assert result["config"]["sort"] == 3 and result["config"]["init"] == 7
        assert result["test_samples"] == 100 and result["train_samples"] == 900
        assert result["test_accuracy"] > 0.75  # two well separated classes


def test_job_script_fails_on_a_missing_config(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(TUTORIAL / "job_tuning.py"),
            "-d",
            str(FILES / "my_data_file.json"),
            "-c",
            str(tmp_path / "missing.json"),
            "-o",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        check=False,
    )
    assert done.returncode != 0
    assert not (tmp_path / "out").exists()


def test_the_ci_and_pre_commit_examples_run_the_documented_commands() -> None:
    root = EXAMPLES.parent
    github = yaml.safe_load((EXAMPLES / "ci" / "github-actions.yml").read_text())
    steps = [s.get("run", "") for job in github["jobs"].values() for s in job["steps"]]
    assert any("orchestra plan --detailed-exitcode --format markdown" in s for s in steps)
    assert any(s.startswith("orchestra reconcile") for s in steps)
    gitlab = yaml.safe_load((EXAMPLES / "ci" / "gitlab-ci.yml").read_text())
    assert any("orchestra reconcile" in line for line in gitlab["reconcile"]["script"])
    (hook,) = yaml.safe_load((root / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "orchestra-validate" and hook["entry"].startswith("orchestra validate")
    assert "/users/alice/" in (EXAMPLES / "CODEOWNERS").read_text()
