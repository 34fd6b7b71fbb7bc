"""The compiled schema check (fastjsonschema) gives jsonschema's answer on every document."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestra.spec import fastcheck
from orchestra.spec.schema import KINDS, validator
from tests.conftest import DATA, EXAMPLES, ROOT
from tests.test_fuzz_specs import FIELDS, VALUES, _mutate


def _jsonschema_accepts(data: dict[str, Any]) -> bool:
    return not any(True for _ in validator(data["kind"]).iter_errors(data))


def _corpus() -> list[dict[str, Any]]:
    documents = []
    for path in sorted([*DATA.rglob("*.yaml"), *EXAMPLES.rglob("*.yaml")]):
        try:
            loaded = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        except (yaml.YAMLError, UnicodeDecodeError, ValueError):
            continue
        for document in loaded:
            if not isinstance(document, dict) or document.get("kind") not in KINDS:
                continue
            try:  # JSON-like data only, as the loader hands over (no recursive aliases,
                # no keys that are not strings: the loader reports those itself)
                json.dumps(document, default=str)
            except (ValueError, RecursionError, TypeError):
                continue
            documents.append(document)
    return documents


def test_the_compiled_check_agrees_with_jsonschema_on_the_corpus() -> None:
    documents = _corpus()
    assert len(documents) > 100
    before = copy.deepcopy(documents)
    fast_verdicts = [fastcheck.accepts(d["kind"], d) for d in documents]
    assert documents == before  # the check never writes into the data (no schema defaults)
    verdicts = list(zip(fast_verdicts, map(_jsonschema_accepts, documents), strict=True))
    assert all(fast == reference for fast, reference in verdicts)
    assert {fast for fast, _ in verdicts} == {True, False}  # both answers were exercised


BASE = [
    {
        "apiVersion": "orchestra/v1",
        "kind": "Dataset",
        "metadata": {"name": "user.alice.data"},
        "spec": {"path": "data.txt"},
    },
    {
        "apiVersion": "orchestra/v1",
        "kind": "Dataset",
        "metadata": {"name": "user.alice.configs"},
        "spec": {"path": "configs"},
    },
    {
        "apiVersion": "orchestra/v1",
        "kind": "Task",
        "metadata": {"name": "user.alice.t"},
        "spec": {
            "cluster": "here",
            "image": "alice/img:1",
            "data": "user.alice.data",
            "configs": "user.alice.configs",
            "output": "output",
            "exec": "cat %IN > %OUT # %DATA",
            "bypass": True,
            "testJobs": 3,
            "maxRetries": 1,
            "parallelism": 2,
            "timeout": "1h",
            "resources": {"cpu": 1, "memory": "1Gi"},
            "env": {"GREETING": "hello"},
        },
    },
]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mutation=st.tuples(
        st.sampled_from(FIELDS), st.sampled_from(["replace", "remove", "add"]), VALUES
    )
)
def test_the_compiled_check_agrees_with_jsonschema_on_mutated_documents(
    mutation: tuple[Any, str, Any],
) -> None:
    for document in _mutate(BASE, mutation):
        if not isinstance(document, dict) or document.get("kind") not in KINDS:
            continue
        json.dumps(document, default=repr)  # what reaches the checks is JSON-like data
        assert fastcheck.accepts(document["kind"], document) == _jsonschema_accepts(document)


def test_a_cached_check_imports_neither_fastjsonschema_nor_jsonschema(tmp_path: Path) -> None:
    env = {**os.environ, "ORCHESTRA_CACHE_DIR": str(tmp_path)}
    env.pop("ORCHESTRA_NO_CACHE", None)
    script = (
        "import json, sys\n"
        "from orchestra.spec import fastcheck\n"
        f"doc = json.loads({json.dumps(json.dumps(BASE[2]))})\n"
        "ok = fastcheck.accepts('Task', doc)\n"
        "print(json.dumps([ok, 'fastjsonschema' in sys.modules, 'jsonschema' in sys.modules]))\n"
    )
    runs = [
        json.loads(
            subprocess.run(
                [sys.executable, "-c", script],
                env=env,
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        for _ in range(2)
    ]
    assert runs[0] == [True, True, False]  # compiled once, with fastjsonschema
    assert runs[1] == [True, False, False]  # then from the cache: neither library imported
    assert len(list(tmp_path.glob("schema-code-*-task.*.marshal"))) == 1


@pytest.fixture
def cached_task_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private cache in ``tmp_path`` holding the compiled Task check (its path yielded);
    the process's compiled checks are forgotten before and after."""
    monkeypatch.setenv("ORCHESTRA_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("ORCHESTRA_NO_CACHE", raising=False)
    fastcheck._compiled.cache_clear()
    try:
        assert fastcheck.accepts("Task", BASE[2])
        (cached,) = tmp_path.glob("schema-code-*-task.*.marshal")
        yield cached
    finally:
        tmp_path.chmod(0o755)
        fastcheck._compiled.cache_clear()


def test_a_damaged_cache_is_made_again_and_without_a_check_jsonschema_decides(
    cached_task_check: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestra.spec.loader import load_text
    from orchestra.spec.schema import check_document

    cached = cached_task_check
    cached.write_bytes(b"this is not a code object")
    fastcheck._compiled.cache_clear()
    assert fastcheck.accepts("Task", BASE[2])  # made again
    assert cached.read_bytes() != b"this is not a code object"
    # no compiled check at all (fastjsonschema missing, say): jsonschema decides alone
    cached.unlink()
    monkeypatch.setattr(fastcheck, "_generate", lambda raw: None)
    fastcheck._compiled.cache_clear()
    assert not fastcheck.accepts("Task", BASE[2])
    (good,) = load_text(yaml.safe_dump(BASE[2]), "t.yaml").documents
    assert check_document(good) == []
    bad = {**BASE[2], "spec": {**BASE[2]["spec"], "testJobs": -1}}
    (document,) = load_text(yaml.safe_dump(bad), "t.yaml").documents
    assert [d.message for d in check_document(document)] == ["must be at least 1; got -1"]


def test_cached_code_others_can_write_is_never_run(cached_task_check: Path) -> None:
    import marshal

    cached = cached_task_check
    # planted code that would accept anything
    planted = compile("def validate(data, **kwargs):\n    return data\n", "x", "exec")
    cached.write_bytes(marshal.dumps(planted))
    cached.chmod(0o644)
    fastcheck._compiled.cache_clear()
    assert fastcheck.accepts("Task", {"kind": "Task"})  # control: a private cache is run
    cached.write_bytes(marshal.dumps(planted))
    cached.chmod(0o666)  # in a cache others may write
    fastcheck._compiled.cache_clear()
    assert not fastcheck.accepts("Task", {"kind": "Task"})  # not run: made afresh
    cached.write_bytes(marshal.dumps(planted))
    cached.chmod(0o644)
    cached.parent.chmod(0o777)  # in a directory others may write
    fastcheck._compiled.cache_clear()
    assert not fastcheck.accepts("Task", {"kind": "Task"})
