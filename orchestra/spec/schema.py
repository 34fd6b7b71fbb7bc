"""JSON Schema (2020-12) checks of one document, with errors mapped back to YAML marks.

Validators are built once per kind and per process: building one costs far more than using it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

from orchestra.resources import schema_path
from orchestra.spec import fastcheck
from orchestra.spec.diagnostics import Diagnostic, json_path
from orchestra.spec.loader import Document

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError

API_VERSION = "orchestra/v1"
KINDS = ("Cluster", "Dataset", "Task")

_TYPE_NAMES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


@cache
def validator(kind: str) -> Draft202012Validator:
    """The (cached) validator for ``kind``; its schema ships with the package."""
    from jsonschema import Draft202012Validator

    with open(schema_path(kind), encoding="utf-8") as stream:
        return Draft202012Validator(json.load(stream))


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'image'?)`` when a close choice exists, else an empty string."""
    import difflib  # only on the error path: it costs start-up time

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_document(doc: Document) -> list[Diagnostic]:
    """Every schema problem of one document (empty when it is valid)."""
    data = doc.data
    if not isinstance(data, dict):
        return [
            _diag(
                doc,
                [],
                "a spec document is a mapping with apiVersion, kind, metadata and spec; "
                f"got {_describe(data)}",
            )
        ]
    kind = data.get("kind")
    if kind not in KINDS:
        if kind is None:
            message = f"missing field 'kind' (one of: {', '.join(KINDS)})"
            return [_diag(doc, [], message)]
        if not isinstance(kind, str):
            return [
                _diag(doc, ["kind"], f"expected one of {', '.join(KINDS)}; got {_describe(kind)}")
            ]
        message = f"unknown kind {kind!r}: expected one of {', '.join(KINDS)}"
        return [_diag(doc, ["kind"], message + did_you_mean(kind, KINDS))]
    if fastcheck.accepts(kind, data):  # valid: no need to import jsonschema
        return []
    errors = validator(kind).iter_errors(data)
    diagnostics = [d for error in errors for d in _convert(doc, error)]
    return sorted(set(diagnostics))


def _diag(
    doc: Document, path: Sequence[str | int], message: str, *, at_key: bool = False
) -> Diagnostic:
    line, column = doc.locate(path, at_key=at_key)
    return Diagnostic(doc.file, line, column, json_path(path), message, "schema")


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{str(value).lower()}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"the string {shown!r}"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    return type(value).__name__


def _convert(doc: Document, error: ValidationError) -> list[Diagnostic]:
    path = list(error.absolute_path)
    schema: dict[str, Any] = error.schema if isinstance(error.schema, dict) else {}
    kind = error.validator
    instance: Any = error.instance
    value: Any = error.validator_value
    if kind == "additionalProperties" and isinstance(instance, dict):
        known = list(schema.get("properties", {}))
        extras = [key for key in instance if key not in known]
        return [
            _diag(
                doc,
                [*path, key],
                f"unknown field {key!r}" + (did_you_mean(str(key), known) or _known(known)),
                at_key=True,
            )
            for key in extras
        ]
    if kind == "required":
        missing = str(value)
        for name in value:
            if isinstance(instance, dict) and name not in instance:
                missing = name
                break
        return [_diag(doc, path, f"missing required field {missing!r}")]
    if kind == "type":
        names = [value] if isinstance(value, str) else list(value)
        wanted = " or ".join(_TYPE_NAMES.get(n, n) for n in names)
        message = f"expected {wanted}; got {_describe(instance)}"
        if (
            "string" in names
            and isinstance(instance, (int, float))
            and not isinstance(instance, bool)
        ):
            message += f" (quote it: '{instance}')"
        return [_diag(doc, path, message)]
    if kind == "enum":
        choices = [str(c) for c in value]
        message = f"must be one of: {', '.join(choices)}; got {_describe(instance)}"
        if isinstance(instance, str):
            message += did_you_mean(instance, choices)
        return [_diag(doc, path, message)]
    if kind == "const":
        return [_diag(doc, path, f"must be {value!r}; got {_describe(instance)}")]
    if kind == "pattern":
        custom = schema.get("x-message")
        message = f"{custom}; got {_describe(instance)}" if custom else error.message
        foreign = next((c for c in str(instance) if not c.isascii()), None)
        if foreign is not None:  # a look-alike: say which character is not what it seems
            message += f" (it holds {foreign!r}, U+{ord(foreign):04X}, which is not ASCII)"
        if "propertyNames" in error.schema_path:
            # the error is about a key of the mapping at ``path``: point at that key
            return [
                _diag(doc, [*path, instance], f"invalid key {instance!r}: {custom}", at_key=True)
            ]
        return [_diag(doc, path, message)]
    if kind in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        bound = value
        words = {
            "minimum": f"at least {bound}",
            "exclusiveMinimum": f"greater than {bound}",
            "maximum": f"at most {bound}",
            "exclusiveMaximum": f"less than {bound}",
        }
        custom = schema.get("x-range-message")  # why the bound is what it is
        message = f"{custom}" if custom else f"must be {words[kind]}"
        return [_diag(doc, path, f"{message}; got {instance}")]
    if kind == "minLength" and value == 1:
        return [_diag(doc, path, "must not be empty")]
    if kind == "maxLength":
        return [_diag(doc, path, f"is longer than {value} characters")]
    return [_diag(doc, path, error.message)]


def _known(known: Sequence[str]) -> str:
    return f" (known fields: {', '.join(known)})" if known else ""
