"""The schema-validity cache never hides an error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from orchestra.spec import validcache
from orchestra.spec.checker import validate_paths
from tests.conftest import EXAMPLES

DATASET = "apiVersion: orchestra/v1\nkind: Dataset\nmetadata: {name: user.a.d}\nspec: {path: %s}\n"


def test_valid_documents_are_remembered_invalid_never(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text(DATASET % "x")
    (tmp_path / "bad.yaml").write_text(DATASET.replace("user.a.d", "user.a.e") % "[1]")
    first = validate_paths([], tmp_path, offline=True)
    assert len(first.diagnostics) == 1
    cached = validcache.ValidCache()
    assert len(cached._load()) == 1  # only the valid document
    second = validate_paths([], tmp_path, offline=True)
    assert [d.format() for d in second.diagnostics] == [d.format() for d in first.diagnostics]


def test_a_changed_schema_invalidates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = validcache.ValidCache()
    key = cache.key("Dataset", {"a": 1})
    validcache._schema_fingerprint.cache_clear()
    monkeypatch.setattr(validcache, "__version__", "other")
    assert cache.key("Dataset", {"a": 1}) != key
    validcache._schema_fingerprint.cache_clear()


def test_disabled_by_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRA_NO_CACHE", "1")
    (tmp_path / "good.yaml").write_text(DATASET % "x")
    assert validate_paths([], tmp_path, offline=True).valid
    assert not validcache.ValidCache().path.exists()


def test_valid_documents_never_import_jsonschema(tmp_path: Path) -> None:
    """The first run checks them with the compiled schemas (fastcheck), the second knows
    them valid: jsonschema, ~100 ms to import, is only for the errors of invalid ones."""
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from orchestra.spec.checker import validate_paths\n"
        f"assert validate_paths(['tasks'], Path({str(EXAMPLES)!r})).valid\n"
        "print('jsonschema' in sys.modules)\n"
    )
    outputs = [
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
        for _ in range(2)
    ]
    assert outputs == ["False\n", "False\n"]
