"""The validator's corpus: tests/data/valid must pass, and each case of tests/data/invalid
must produce exactly the lines of its ``.expected`` file (file, line, column, path, message).

A case is a file (checked with --offline) or a directory (checked against its own storage,
which the directory carries). ``<DATA>`` in an expected line stands for tests/data/invalid.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestra.spec.checker import validate_paths
from tests.conftest import DATA, Run

INVALID = DATA / "invalid"
VALID = DATA / "valid"
INVALID_CASES = sorted(p for p in INVALID.iterdir() if p.suffix != ".expected")
VALID_CASES = sorted(VALID.iterdir())


def _expected(case: Path) -> list[str]:
    stem = case.name.removesuffix(".yaml")
    text = (INVALID / f"{stem}.expected").read_text(encoding="utf-8")
    return [line.replace("<DATA>", str(INVALID)) for line in text.splitlines()]


def test_corpus_is_large_enough() -> None:
    assert len(INVALID_CASES) >= 30
    for case in INVALID_CASES:
        assert _expected(case), f"{case.name} has no expected lines"


@pytest.mark.parametrize("case", INVALID_CASES, ids=lambda p: p.name)
def test_invalid_case_reports_exact_lines(case: Path) -> None:
    result = validate_paths([case.name], INVALID, offline=case.is_file())
    assert not result.valid
    assert [d.format() for d in result.diagnostics] == _expected(case)


@pytest.mark.parametrize("case", VALID_CASES, ids=lambda p: p.name)
def test_valid_case_has_no_diagnostics(case: Path) -> None:
    result = validate_paths([case.name], VALID, offline=case.is_file())
    assert [d.format() for d in result.diagnostics] == []
    assert result.valid


@pytest.mark.parametrize("case", INVALID_CASES, ids=lambda p: p.name)
def test_invalid_case_through_the_cli(case: Path, run: Run) -> None:
    offline = ["--offline"] if case.is_file() else []
    result = run("-C", str(INVALID), "validate", *offline, case.name)
    assert result.code == 1
    reported = [line for line in result.out.splitlines() if line.startswith(case.name)]
    assert reported == _expected(case)
    assert result.out.splitlines()[-1].startswith("invalid: ")


def test_valid_repository_reads_only_cluster_clusters_and_users() -> None:
    # repository/docs/broken.yaml and .github/ are not specs: they are never read
    result = validate_paths(["repository"], VALID)
    assert result.valid
    assert result.files == 3
    assert set(result.specs.tasks) == {"user.alice.task"}
    assert set(result.specs.datasets) == {"user.alice.data", "user.alice.configs", "user.bob.data"}
