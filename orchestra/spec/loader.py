"""Safe YAML loading that keeps the line and column of every node.

Each file is read whole (refused above :data:`MAX_FILE_BYTES`), decoded as UTF-8, composed into
a node graph with the libyaml C loader when present, checked for duplicate keys, excessive
nesting and alias expansion, and only then constructed into plain Python data. Problems never
raise: they come back as :class:`Diagnostic` values of category ``syntax``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from orchestra.spec.diagnostics import Diagnostic, json_path

MAX_FILE_BYTES = 10 * 1024 * 1024
#: Nodes a document may expand to once aliases are followed (an alias bomb expands to billions).
MAX_EXPANDED_NODES = 100_000
MAX_DEPTH = 64
#: Python refuses to convert longer digit strings (sys.get_int_max_str_digits).
MAX_INT_DIGITS = 4000

_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _SpecLoader(_BaseLoader):  # type: ignore[valid-type,misc]
    """Safe loader that keeps timestamps as the strings the user wrote."""


_SpecLoader.add_constructor(
    "tag:yaml.org,2002:timestamp",
    lambda loader, node: loader.construct_scalar(node),
)

_TAG_MERGE = "tag:yaml.org,2002:merge"
#: Keys constructed as strings: timestamps stay the strings the user wrote (see above).
_STRING_KEY_TAGS = frozenset(("tag:yaml.org,2002:str", "tag:yaml.org,2002:timestamp", _TAG_MERGE))


@dataclass
class Document:
    """One YAML document of a spec file: its node graph (for marks) and its data."""

    file: str
    index: int
    node: yaml.Node
    data: Any
    #: a mapping key is not a string (``1:``, ``null:``, ``on:``, ``!!binary``): the loader
    #: reported it, and the document goes no further than that report
    bad_keys: bool = False

    def locate(self, path: Sequence[str | int], *, at_key: bool = False) -> tuple[int, int]:
        """Line and column (from 1) of the node at ``path``, or of its deepest existing parent.

        With ``at_key`` the mark of the mapping key itself is returned (for "unknown field").
        """
        node: yaml.Node = self.node
        key_node: yaml.Node | None = None
        for part in path:
            child, key_node = _child(node, part)
            if child is None:
                break
            node = child
        else:
            if at_key and key_node is not None:
                node = key_node
        return node.start_mark.line + 1, node.start_mark.column + 1


def _child(node: yaml.Node, part: str | int) -> tuple[yaml.Node | None, yaml.Node | None]:
    if isinstance(node, yaml.MappingNode):
        for key, value in reversed(node.value):  # the last duplicate wins, as in construction
            if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                return value, key
        for key, value in node.value:  # merged mappings (<<: *base)
            if key.tag == _TAG_MERGE:
                found, found_key = _child(value, part)
                if found is not None:
                    return found, found_key
    elif (
        isinstance(node, yaml.SequenceNode)
        and isinstance(part, int)
        and 0 <= part < len(node.value)
    ):
        return node.value[part], None
    return None, None


@dataclass
class LoadResult:
    documents: list[Document] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)


def _syntax(display: str, line: int, column: int, message: str) -> Diagnostic:
    return Diagnostic(display, line, column, "$", message, "syntax")


def load_file(path: str | os.PathLike[str], display: str) -> LoadResult:
    """Load every document of one file. Never raises for bad content or unreadable files."""
    try:
        with open(path, "rb") as stream:
            raw = stream.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        result = LoadResult()
        result.diagnostics.append(_syntax(display, 1, 1, f"cannot read file: {exc.strerror}"))
        return result
    return load_bytes(raw, display)


def load_bytes(raw: bytes, display: str) -> LoadResult:
    """Load every document of a file's content (e.g. a blob of a git commit)."""
    result = LoadResult()
    if len(raw) > MAX_FILE_BYTES:
        result.diagnostics.append(
            _syntax(display, 1, 1, f"file is larger than {MAX_FILE_BYTES // 2**20} MiB: refused")
        )
        return result
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        result.diagnostics.append(
            _syntax(display, line, column, f"not valid UTF-8 (byte 0x{raw[exc.start]:02x})")
        )
        return result
    return load_text(text, display, result)


def load_text(text: str, display: str, result: LoadResult | None = None) -> LoadResult:
    """Load every document of ``text``; ``display`` names the file in diagnostics."""
    result = result if result is not None else LoadResult()
    loader = _SpecLoader(text)
    index = 0
    try:
        while loader.check_node():
            node = loader.get_node()
            problem, bad_keys = _check_graph(node, display)
            if problem is not None:
                result.diagnostics.append(problem)
            elif _is_null(node):
                pass  # an empty document (e.g. a trailing '---') carries nothing
            else:
                data = loader.construct_document(node)
                result.documents.append(Document(display, index, node, data, bool(bad_keys)))
                result.diagnostics += _key_diagnostics(node, bad_keys, display)
            index += 1
    except yaml.MarkedYAMLError as exc:
        result.diagnostics.append(_marked_error(exc, text, display))
    except yaml.YAMLError as exc:  # ReaderError: forbidden characters
        position = getattr(exc, "position", 0)
        line = text.count("\n", 0, position) + 1
        column = position - (text.rfind("\n", 0, position) + 1) + 1
        reason = getattr(exc, "reason", str(exc))
        result.diagnostics.append(_syntax(display, line, column, f"YAML syntax error: {reason}"))
    except (ValueError, OverflowError, RecursionError) as exc:
        # e.g. an integer with more digits than Python converts
        result.diagnostics.append(_syntax(display, 1, 1, f"YAML value error: {exc}"))
    finally:
        loader.dispose()
    return result


def _marked_error(exc: yaml.MarkedYAMLError, text: str, display: str) -> Diagnostic:
    mark = exc.problem_mark or exc.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    message = exc.problem or exc.context or "invalid YAML"
    if exc.context and exc.problem:
        context = exc.context
        start = exc.context_mark
        if start is not None and (start.line + 1, start.column + 1) != (line, column):
            context += f" that started at {start.line + 1}:{start.column + 1}"
        message += f" ({context})"
    if mark is not None and 0 <= mark.index < len(text) and text[mark.index] == "\t":
        message += "; tabs cannot indent YAML, use spaces"
    return _syntax(display, line, column, f"YAML syntax error: {message}")


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _check_graph(
    root: yaml.Node, display: str
) -> tuple[Diagnostic | None, list[tuple[yaml.MappingNode, yaml.ScalarNode]]]:
    """Reject duplicate keys, nesting deeper than MAX_DEPTH, cycles and alias bombs; collect
    the (mapping, key) pairs whose key is a scalar but not a string."""
    sizes: dict[int, int] = {}
    bad_keys: list[tuple[yaml.MappingNode, yaml.ScalarNode]] = []
    on_path: set[int] = set()

    def fail(node: yaml.Node, message: str) -> Diagnostic:
        mark = node.start_mark
        return _syntax(display, mark.line + 1, mark.column + 1, message)

    class _Stop(Exception):
        def __init__(self, diagnostic: Diagnostic) -> None:
            self.diagnostic = diagnostic

    def size(node: yaml.Node, depth: int) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in on_path:
            raise _Stop(fail(node, "recursive alias: a node contains itself"))
        if depth > MAX_DEPTH:
            raise _Stop(fail(node, f"nesting deeper than {MAX_DEPTH} levels"))
        total = 1
        if (
            isinstance(node, yaml.ScalarNode)
            and node.tag == "tag:yaml.org,2002:int"
            and len(node.value) > MAX_INT_DIGITS
        ):
            raise _Stop(fail(node, f"integer with {len(node.value)} digits: too large"))
        if (
            isinstance(node, yaml.ScalarNode)
            and node.tag == "tag:yaml.org,2002:float"
            and not _finite(node.value)
        ):
            raise _Stop(fail(node, f"{node.value!r} is not a finite number"))
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
            on_path.add(key)
            if isinstance(node, yaml.MappingNode):
                _check_duplicate_keys(node, fail, _Stop)
                bad_keys.extend(
                    (node, key)
                    for key, _value in node.value
                    if isinstance(key, yaml.ScalarNode) and key.tag not in _STRING_KEY_TAGS
                )
                children = [part for pair in node.value for part in pair]
            else:
                children = node.value
            for child in children:
                total += size(child, depth + 1)
                if total > MAX_EXPANDED_NODES:
                    raise _Stop(
                        fail(
                            node,
                            f"document expands to more than {MAX_EXPANDED_NODES} nodes "
                            "through aliases: refused (alias bomb?)",
                        )
                    )
            on_path.discard(key)
        sizes[key] = total
        return total

    try:
        size(root, 0)
    except _Stop as stop:
        return stop.diagnostic, []
    return None, bad_keys


def _finite(text: str) -> bool:
    """Whether a YAML float is finite (``.inf``, ``.nan`` and ``1e400`` are not)."""
    value = text.replace("_", "").lower().lstrip("+-")
    if value in (".inf", ".nan"):
        return False
    try:
        return math.isfinite(float(value))
    except ValueError:  # a YAML 1.1 sexagesimal float, e.g. 1:30.5: finite
        return True


def _check_duplicate_keys(node: yaml.MappingNode, fail: Any, stop: type[Exception]) -> None:
    seen: set[tuple[str, str]] = set()
    for key, _value in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag == _TAG_MERGE:
            continue
        ident = (key.tag, key.value)
        if ident in seen:
            raise stop(fail(key, f"duplicate key {key.value!r}: each key may appear once"))
        seen.add(ident)


def _key_diagnostics(
    root: yaml.Node, bad_keys: list[tuple[yaml.MappingNode, yaml.ScalarNode]], display: str
) -> list[Diagnostic]:
    """``keys must be strings`` at each key that is not one: such a key would reach a job as
    a variable named ``None`` or ``1``, or crash code that expects names."""
    problems = []
    paths = _paths_to(root, {id(mapping) for mapping, _key in bad_keys}) if bad_keys else {}
    for mapping, key in bad_keys:
        kind = key.tag.rsplit(":", 1)[-1]
        written = key.value
        described = {
            "int": f"the number {written}",
            "float": f"the number {written}",
            "bool": f"the boolean {written}",
            "null": "null",
            "binary": "binary data (!!binary)",
        }.get(kind, f"a value tagged {key.tag}")
        hints = ["YAML reads yes, no, on and off as booleans"] if kind == "bool" else []
        if written and kind != "binary":
            hints.append(f"quote it: '{written}'")
        message = f"keys must be strings; got {described}"
        message += f" ({'; '.join(hints)})" if hints else ""
        mark = key.start_mark
        path = json_path(paths.get(id(mapping), []))
        problems.append(
            Diagnostic(display, mark.line + 1, mark.column + 1, path, message, "schema")
        )
    return problems


def _paths_to(root: yaml.Node, targets: set[int]) -> dict[int, list[str | int]]:
    """The data path of each node whose id is in ``targets``, in one walk of the graph under
    ``root`` (keys of a merged mapping belong to the mapping that merges it). Only called on
    the error path."""
    found: dict[int, list[str | int]] = {}
    stack: list[tuple[yaml.Node, list[str | int]]] = [(root, [])]
    seen: set[int] = set()
    while stack and len(found) < len(targets):
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if id(node) in targets:
            found[id(node)] = path
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.tag == _TAG_MERGE:
                    merged = value.value if isinstance(value, yaml.SequenceNode) else [value]
                    stack.extend((item, path) for item in merged)
                else:
                    stack.append((value, [*path, str(key.value)]))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, [*path, index]) for index, item in enumerate(node.value))
    return found
