"""YAML loading: marks, limits, and never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestra.spec import loader
from orchestra.spec.checker import validate_paths
from orchestra.spec.loader import load_file, load_text


def test_marks_point_at_values_and_keys() -> None:
    doc = load_text("a:\n  b: [1, {c: 2}]\n", "f.yaml").documents[0]
    assert doc.locate(["a", "b", 1, "c"]) == (2, 14)
    assert doc.locate(["a", "b"], at_key=True) == (2, 3)
    # a missing path points at its deepest existing parent
    assert doc.locate(["a", "missing", "x"]) == (2, 3)


def test_merge_keys_are_located_in_the_merged_mapping() -> None:
    doc = load_text("base: &b {x: 1}\nuse:\n  <<: *b\n  y: 2\n", "f.yaml").documents[0]
    assert doc.data["use"] == {"x": 1, "y": 2}
    assert doc.locate(["use", "x"]) == (1, 14)


def test_timestamps_stay_strings() -> None:
    doc = load_text("when: 2024-01-01\n", "f.yaml").documents[0]
    assert doc.data == {"when": "2024-01-01"}


def test_empty_documents_are_skipped_and_counted() -> None:
    result = load_text("---\n---\na: 1\n---\n", "f.yaml")
    assert [d.data for d in result.documents] == [{"a": 1}]
    assert [d.index for d in result.documents] == [1]
    assert result.diagnostics == []


def test_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbfa: 1\n")
    assert load_file(path, "bom.yaml").documents[0].data == {"a": 1}


def test_aliases_below_the_limit_are_fine() -> None:
    text = "a: &a [1, 2, 3]\nb: [*a, *a, *a]\n"
    result = load_text(text, "f.yaml")
    assert result.diagnostics == []
    assert result.documents[0].data["b"] == [[1, 2, 3]] * 3


def test_file_over_10_mib_is_refused_without_parsing(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"a: " + b"x" * (loader.MAX_FILE_BYTES) + b"\n")
    result = load_file(path, "big.yaml")
    assert [d.format() for d in result.diagnostics] == [
        "big.yaml:1:1: file is larger than 10 MiB: refused"
    ]


def test_unreadable_file_is_reported(tmp_path: Path) -> None:
    result = load_file(tmp_path, "dir.yaml")  # a directory cannot be read as a file
    assert [d.format() for d in result.diagnostics] == [
        "dir.yaml:1:1: cannot read file: Is a directory"
    ]


def test_unknown_tag_is_a_located_error() -> None:
    result = load_text("a: !python/object:os.system ls\n", "f.yaml")
    assert result.documents == []
    (diagnostic,) = result.diagnostics
    assert diagnostic.format().startswith("f.yaml:1:4: YAML syntax error: could not determine")


def test_unhashable_key_is_a_located_error() -> None:
    result = load_text("? [a, b]\n: c\n", "f.yaml")
    assert result.documents == []
    assert result.diagnostics[0].category == "syntax"


def test_binary_garbage_never_raises(tmp_path: Path) -> None:
    path = tmp_path / "garbage.yaml"
    path.write_bytes(bytes(range(256)) * 10)
    result = validate_paths([str(path)], tmp_path)
    assert not result.valid
    assert result.diagnostics[0].category == "syntax"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_raise(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "f.yaml"
    path.write_bytes(data)
    validate_paths([str(path)], path.parent, offline=True)  # must not raise


YAML_ATOMS = st.sampled_from(
    [
        "apiVersion: orchestra/v1",
        "kind: Task",
        "kind: Dataset",
        "kind: Cluster",
        "metadata:",
        "  name: user.alice.x",
        "spec:",
        "  path: x",
        "  exec: '%DATA %IN %OUT'",
        "- a",
        "&a [1]",
        "*a",
        "---",
        "  cluster: c",
        "  env: {A: 1}",
        "{",
        "]",
        ": :",
        "\t",
        "<<: *a",
        "? x",
        "  testJobs: 99999999999999999999",
        "!!binary aGk=",
        "'",
        '"\\x00"',
        "~",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(YAML_ATOMS, max_size=20))
def test_random_yaml_like_text_never_raises(lines: list[str]) -> None:
    result = load_text("\n".join(lines), "f.yaml")
    for diagnostic in result.diagnostics:
        assert diagnostic.line >= 1 and diagnostic.column >= 1
