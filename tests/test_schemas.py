"""The JSON Schemas themselves: valid draft 2020-12, and usable by editors from the examples."""

from __future__ import annotations

import json
import re

import pytest
from jsonschema import Draft202012Validator

from orchestra.resources import data_dir, schema_path
from orchestra.spec.schema import KINDS
from tests.conftest import EXAMPLES, ROOT


@pytest.mark.parametrize("kind", KINDS)
def test_schema_is_valid_2020_12(kind: str) -> None:
    schema = json.loads(schema_path(kind).read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)
    assert schema["properties"]["kind"] == {"const": kind}


def test_schemas_are_found_in_the_source_tree() -> None:
    assert data_dir("schemas") == ROOT / "schemas"


def test_example_modelines_point_at_the_right_schema() -> None:
    modeline = re.compile(r"^# yaml-language-server: \$schema=(\S+)$", re.M)
    checked = 0
    for path in sorted(EXAMPLES.rglob("*.yaml")):
        text = path.read_text()
        kinds = set(re.findall(r"^kind: (\w+)$", text, re.M))
        for target in modeline.findall(text):
            schema = (path.parent / target).resolve()
            assert schema.is_file(), f"{path}: {target} does not exist"
            assert kinds == {json.loads(schema.read_text())["properties"]["kind"]["const"]}
            checked += 1
    assert checked >= 3
