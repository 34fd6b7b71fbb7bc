"""Hostile specs through the whole command line: a valid repository, one of its documents
mutated at random (a field replaced by a hostile or random value, removed, or an unknown field
added), then ``validate``, ``plan`` and ``apply`` run on it. Whatever the mutation: no
traceback; an invalid repository is reported file:line:col, exits 1 and writes nothing; a valid
one never runs a hostile value outside ``exec`` (a canary file stays absent)."""

from __future__ import annotations

import copy
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from orchestra.cli import main
from tests.helpers import Repo

# a hostile value that ran would create it
CANARY = f"{tempfile.gettempdir()}/orchestra-fuzz-canary-{os.getpid()}"

HOSTILE = [
    "../../bob/files/secret",
    "/etc/passwd",
    "~root/.ssh/id_rsa",
    "{{ 7*7 }}",
    "{% for x in range(10**9) %}{% endfor %}",
    "{{ ''.__class__.__mro__ }}",
    f"$(touch {CANARY})",
    f"`touch {CANARY}`",
    f"; touch {CANARY} #",
    f"' ; touch {CANARY} ; '",
    "a\x00b",
    "user.alice.x\n",
    "user.\u0430lice.x",  # Cyrillic a
    "user.bob.data",
    "user.alice.../../x",
    "",
    " ",
    "\t",
    "x" * 5000,
    "%DATA %IN %OUT",
    "\u202e\u2066",  # bidi controls
    "null",
    "*alias",
    "&anchor x",
    "- a",
    "{a: 1}",
    "10 minutes",
    "-1",
]

VALUES = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(max_size=40),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.lists(st.sampled_from(HOSTILE), max_size=3),
    st.dictionaries(st.sampled_from(HOSTILE), st.sampled_from(HOSTILE), max_size=3),
)

# (document index, path) of every field a mutation may touch; exec is left alone, as it is the
# one field that is run by design
FIELDS: list[tuple[int, tuple[str, ...]]] = [
    (0, ("metadata", "name")),
    (0, ("spec", "path")),
    (1, ("metadata", "name")),
    (1, ("spec", "path")),
    *[
        (2, path)
        for path in [
            ("apiVersion",),
            ("kind",),
            ("metadata",),
            ("metadata", "name"),
            ("spec",),
            ("spec", "cluster"),
            ("spec", "image"),
            ("spec", "data"),
            ("spec", "configs"),
            ("spec", "output"),
            ("spec", "bypass"),
            ("spec", "testJobs"),
            ("spec", "maxRetries"),
            ("spec", "parallelism"),
            ("spec", "timeout"),
            ("spec", "resources"),
            ("spec", "resources", "cpu"),
            ("spec", "resources", "memory"),
            ("spec", "env"),
            ("spec", "env", "GREETING"),
        ]
    ],
]

MUTATION = st.tuples(st.sampled_from(FIELDS), st.sampled_from(["replace", "remove", "add"]), VALUES)
LOCATED = re.compile(r"^[^\s:][^:]*:\d+:\d+: ")


def _base(root: Path) -> tuple[Repo, list[dict[str, Any]]]:
    repo = Repo(root)
    repo.configs({"c0.txt": "0\n", "c1.txt": "1\n"})
    repo.task(bypass=True, env={"GREETING": "hello"}, exec="cat %IN > %OUT # %DATA")
    docs = list(yaml.safe_load_all((root / "users" / "alice" / "specs.yaml").read_text()))
    return repo, docs


def _mutate(docs: list[dict[str, Any]], mutation: tuple[Any, str, Any]) -> list[Any]:
    (index, path), how, value = mutation
    docs = copy.deepcopy(docs)
    parent: Any = docs[index]
    for key in path[:-1]:
        if not isinstance(parent, dict) or key not in parent:
            return docs
        parent = parent[key]
    if not isinstance(parent, dict):
        return docs
    if how == "remove":
        parent.pop(path[-1], None)
    elif how == "add":
        parent[f"{path[-1]}Extra" if isinstance(value, str) else "unknownField"] = value
    else:
        parent[path[-1]] = value
    return docs


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file()
    }


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))  # an exception here is a traceback for the user: the test fails
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out + err


@settings(
    max_examples=int(os.environ.get("ORCHESTRA_FUZZ_EXAMPLES", "250")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(mutation=MUTATION)
def test_a_mutated_repository_is_refused_cleanly_or_runs_safely(
    tmp_path_factory: pytest.TempPathFactory,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    mutation: tuple[Any, str, Any],
) -> None:
    monkeypatch.setenv("ORCHESTRA_USER", "alice")
    root = tmp_path_factory.mktemp("fuzz")
    repo, docs = _base(root)
    mutated = _mutate(docs, mutation)
    try:
        text = yaml.safe_dump_all(mutated, allow_unicode=True)
    except yaml.YAMLError:
        return  # not representable as YAML: nothing to test
    (root / "users" / "alice" / "specs.yaml").write_text(text)
    storage_before = _tree(repo.storage)
    if os.path.exists(CANARY):
        os.unlink(CANARY)

    code, output = _run(capsys, "-C", str(root), "validate")
    assert code in (0, 1), output
    event(f"validate exit {code}")
    if code == 1:
        errors = [line for line in output.splitlines() if line and not line[0].isspace()]
        located = [line for line in errors if LOCATED.match(line)]
        assert located, output  # at least one error names file:line:col
        for command in (["plan"], ["apply"]):
            again, _ = _run(capsys, "-C", str(root), *command)
            assert again == 1
        assert _tree(repo.storage) == storage_before  # nothing written
    else:
        plan_code, plan_output = _run(capsys, "-C", str(root), "plan")
        assert plan_code in (0, 1), plan_output
        apply_code, apply_output = _run(capsys, "-C", str(root), "apply")
        assert apply_code in (0, 1, 3), apply_output
        event(f"valid: plan exit {plan_code}, apply exit {apply_code}")
        if plan_code == 1 or apply_code == 1:  # e.g. a dataset path that is not on disk
            assert "error" in plan_output + apply_output
    assert not os.path.exists(CANARY)  # no hostile value was ever run
