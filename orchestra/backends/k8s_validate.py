"""Rendered manifests checked against the real Kubernetes OpenAPI schema, offline.

``kubernetes-validate`` (an optional dependency: the extra ``validate-k8s`` of the
``orchestra-gitops`` distribution) ships the schema of every Kubernetes version; its
``validate()`` rebuilds a validator per call (~13 ms). Here one validator per (apiVersion,
kind) is built and reused (~0.3 ms per manifest). Strict mode: unknown fields are errors.
Rules only the API server knows (a Job's ``restartPolicy``, DNS-1123 names) are checked by
orchestra's own tests.

Rendered manifests of one task differ only in the values orchestra puts in them (names,
commands, digests), and each value leaves the template through ``tojson`` as a whole
double-quoted YAML scalar. :meth:`ManifestValidator.errors_of_rendered` uses that: it cuts
those values out of the text, and manifests with the same remaining text (the *shape*)
share one verdict. The first manifest of a shape is parsed, every cut must be a whole
double-quoted scalar in a value position (else each manifest of that shape is checked in
full), and the shape is validated with a probe string in every cut. The Kubernetes schema
constrains strings only by type and ``enum`` (checked when the validator is built; any
other string constraint turns the shortcut off), so if the probe passes, every string does:
each further manifest of the shape costs a few string replacements, not a parse and a
validation.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from typing import Any

import yaml

from orchestra.backends.k8s_manifest import yaml_string
from orchestra.errors import FatalError

_HOLE = "\0"
_PROBE = "orchestra-probe-\u2603 not in any enum"
_STRING_CONSTRAINTS = ("pattern", "maxLength", "minLength", "const", "format")
_NAME_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_FULL = "full"  # a shape whose manifests are each validated in full


class ManifestValidator:
    def __init__(self, version: str | None = None, *, strict: bool = True) -> None:
        try:
            import kubernetes_validate.utils as kv
        except ImportError as exc:
            raise FatalError(
                "--validate needs kubernetes-validate: pip install kubernetes-validate"
            ) from exc
        self._kv = kv
        wanted = version or kv.latest_version()
        self.version = [
            v for v in kv.all_versions() if kv.major_minor(v) <= kv.major_minor(wanted)
        ][-1]
        self.schema_dir = f"v{self.version}-local" + ("-strict" if strict else "")
        self._validators: dict[tuple[str, str], Any] = {}
        self._shortcut: dict[tuple[str, str], bool] = {}
        self._shapes: dict[str, list[str] | str] = {}  # shape -> its errors, or _FULL
        self.full_checks = 0  # manifests parsed and validated in full (the rest by shape)

    def _validator(self, api_version: str, kind: str) -> Any:
        key = (api_version, kind)
        validator = self._validators.get(key)
        if validator is None:
            from jsonschema import Draft202012Validator
            from referencing import Registry, Resource

            group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
            try:
                schema = self._kv.schema_contents(
                    f"kubernetes-json-schema/{self.schema_dir}/{kind.lower()}-{group}.json",
                    self.version,
                )
            except FileNotFoundError as exc:
                raise FatalError(f"no Kubernetes schema for {api_version} {kind}") from exc
            definitions = self._kv.schema_contents(
                f"kubernetes-json-schema/{self.schema_dir}/_definitions.json", self.version
            )
            registry: Registry[Any] = Resource.from_contents(schema) @ Registry()
            registry = Resource.from_contents(definitions) @ registry
            validator = self._validators[key] = Draft202012Validator(schema, registry=registry)
            self._shortcut[key] = not _constrains_strings(schema) and not _constrains_strings(
                definitions
            )
        return validator

    def errors(self, manifest: dict[str, Any]) -> list[str]:
        """Every schema error of one manifest, as ``path: message``."""
        key = (str(manifest.get("apiVersion")), str(manifest.get("kind")))
        return _errors(self._validator(*key), manifest)

    def errors_of_rendered(self, text: str, values: Iterable[str]) -> list[str]:
        """Every schema error of one rendered manifest whose variable parts are ``values``
        (the strings the template was given); see the module's docstring."""
        shape = text
        if _HOLE not in text:
            for encoded in sorted({yaml_string(v) for v in values}, key=len)[::-1]:
                shape = shape.replace(encoded, _HOLE)
        verdict = self._shapes.get(shape)
        if verdict is None:
            verdict = self._shapes[shape] = self._judge_shape(text, shape)
        if verdict == _FULL:
            self.full_checks += 1
            manifest = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
            return self.errors(manifest) if isinstance(manifest, dict) else ["(root): not a map"]
        assert isinstance(verdict, list)
        return verdict

    def _judge_shape(self, text: str, shape: str) -> list[str] | str:
        """The errors every manifest of this shape has (when the probe shows that the values
        cut out cannot matter), else _FULL."""
        self.full_checks += 1
        cuts = _cut_spans(text, shape)
        if cuts is None:
            return _FULL
        try:
            root = yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
            manifest = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except yaml.YAMLError:
            return _FULL
        if not isinstance(manifest, dict):
            return _FULL
        errors = self.errors(manifest)
        key = (str(manifest.get("apiVersion")), str(manifest.get("kind")))
        if not cuts or not self._shortcut.get(key):
            return errors if not cuts else _FULL
        paths = _value_scalar_paths(root)
        probe = copy.deepcopy(manifest)
        for span in cuts:
            path = paths.get(span)
            if path is None:
                return _FULL  # a cut that is not a whole double-quoted value
            _set(probe, path, _PROBE)
        if _errors(self._validator(*key), probe) != errors:
            return _FULL  # a cut lands where a string's value matters (an enum)
        return errors


def _errors(validator: Any, manifest: Any) -> list[str]:
    found = []
    for error in validator.iter_errors(manifest):
        path = ".".join(str(p) for p in error.absolute_path) or "(root)"
        found.append(f"{path}: {error.message}")
    return sorted(found)


def _constrains_strings(schema: Any) -> bool:
    """Whether a JSON Schema holds a string constraint other than type and enum."""
    stack: list[tuple[Any, bool]] = [(schema, False)]
    while stack:
        item, names = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if not names and key in _STRING_CONSTRAINTS and key != "format":
                    return True
                stack.append((value, not names and key in _NAME_MAPS))
        elif isinstance(item, list):
            stack.extend((value, False) for value in item)
    return False


def _quoted_end(text: str, start: int) -> int | None:
    """The end of the double-quoted scalar opening at ``start``: after the first '"' not
    escaped by an odd run of backslashes."""
    position = start + 1
    while True:
        quote = text.find('"', position)
        if quote < 0:
            return None
        backslashes = len(text[position:quote]) - len(text[position:quote].rstrip("\\"))
        if backslashes % 2 == 0:
            return quote + 1
        position = quote + 1


def _cut_spans(text: str, shape: str) -> list[tuple[int, int]] | None:
    """Where, in ``text``, the holes of ``shape`` are: each a double-quoted scalar."""
    segments = shape.split(_HOLE)
    if not text.startswith(segments[0]):
        return None
    position = len(segments[0])
    spans = []
    for segment in segments[1:]:
        end = _quoted_end(text, position) if text[position : position + 1] == '"' else None
        if end is None or not text.startswith(segment, end):
            return None
        spans.append((position, end))
        position = end + len(segment)
    return spans if position == len(text) else None


def _value_scalar_paths(root: Any) -> dict[tuple[int, int], list[Any]]:
    """(start, end) of each double-quoted scalar in a value position -> its path."""
    found: dict[tuple[int, int], list[Any]] = {}
    stack: list[tuple[Any, list[Any]]] = [(root, [])]
    while stack:
        node, path = stack.pop()
        if isinstance(node, yaml.ScalarNode):
            if node.style == '"':
                found[(node.start_mark.index, node.end_mark.index)] = path
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, [*path, i]) for i, item in enumerate(node.value))
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    stack.append((value, [*path, key.value]))
    return found


def _set(document: Any, path: list[Any], value: str) -> None:
    for step in path[:-1]:
        document = document[step]
    document[path[-1]] = value
