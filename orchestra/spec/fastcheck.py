"""A fast first look at a document: the JSON Schema compiled to Python by ``fastjsonschema``.

``jsonschema`` gives the precise, located errors but costs ~100 ms to import, which is most of
``orchestra validate`` on one just-edited file (a pre-commit hook, an editor). So a document is
first checked by the schema compiled into plain Python code (an independent implementation of
the same JSON Schema, draft 7 semantics, which is all the schemas use); only a document it
rejects goes to ``jsonschema`` for the errors. The tests hold the two to the same answer on
every document of the test corpus and on randomly mutated ones.

The compiled code is kept in the cache directory (``schema-code-<digest>-<kind>.<tag>.marshal``,
keyed by orchestra's version, the schema file and the interpreter) as a code object, so that
later runs neither generate nor compile it nor import ``fastjsonschema``;
``ORCHESTRA_NO_CACHE=1`` makes it every time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import marshal
import os
import stat
import sys
import types
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from orchestra import __version__
from orchestra.resources import schema_path
from orchestra.spec.validcache import cache_dir

# The generated code's one import, replaced by these stand-ins: a cached check then runs
# without importing fastjsonschema.
_IMPORT = "from fastjsonschema import JsonSchemaValueException, JsonSchemaValuesException"
_STAND_INS = """
class JsonSchemaValueException(ValueError):
    def __init__(self, message, value=None, name=None, definition=None, rule=None):
        super().__init__(message)


class JsonSchemaValuesException(JsonSchemaValueException):
    def __init__(self, errors=None, *args, **kwargs):
        super().__init__("invalid")
"""
_DRAFT_7 = "http://json-schema.org/draft-07/schema#"


def accepts(kind: str, data: Any) -> bool:
    """Whether ``data`` satisfies the schema of ``kind``; False also when the compiled check
    is not available (then ``jsonschema`` decides)."""
    check = _compiled(kind)
    if check is None:
        return False
    try:
        check(data)
    except Exception:  # its own ValueError, or anything unexpected: jsonschema decides
        return False
    return True


@cache
def _compiled(kind: str) -> Callable[[Any], Any] | None:
    schema_file = schema_path(kind)
    raw = schema_file.read_bytes()
    digest = hashlib.sha256(__version__.encode() + b"\0" + raw).hexdigest()[:20]
    use_cache = not os.environ.get("ORCHESTRA_NO_CACHE")
    tag = sys.implementation.cache_tag or "python"  # marshal's format is the interpreter's
    path = cache_dir() / f"schema-code-{digest}-{kind.lower()}.{tag}.marshal"
    code = None
    if use_cache and _private(path):
        with contextlib.suppress(OSError, ValueError, EOFError, TypeError):
            code = marshal.loads(path.read_bytes())
    if not isinstance(code, types.CodeType):
        source = _generate(raw)
        if source is None:
            return None
        code = compile(source, f"<{kind} schema, compiled>", "exec")
        if use_cache:
            with contextlib.suppress(OSError):
                path.parent.mkdir(parents=True, exist_ok=True)
                temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
                temporary.write_bytes(marshal.dumps(code))
                os.replace(temporary, path)
    namespace: dict[str, Any] = {}
    try:
        exec(code, namespace)  # our own generated code, from our own cache
    except Exception:  # a damaged cache file: jsonschema decides
        return None
    check = namespace.get("validate")
    return check if callable(check) else None


def _private(path: Path) -> bool:
    """Whether the cached code is this user's own and writable by nobody else: code from a
    cache another user could write is never run."""
    try:
        st = path.stat()
        parent = path.parent.stat()
    except OSError:
        return False
    mine = st.st_uid == os.getuid() and parent.st_uid == os.getuid()
    return mine and not (st.st_mode | parent.st_mode) & (stat.S_IWGRP | stat.S_IWOTH)


def _generate(raw: bytes) -> str | None:
    """The Python source of a check of the schema ``raw``; None when it cannot be made."""
    try:
        import fastjsonschema
    except ImportError:
        return None
    schema = json.loads(raw)
    schema["$schema"] = _DRAFT_7
    schema.pop("$id", None)  # then the generated entry point is named `validate`
    # use_default=False: by default the generated code writes each schema default into the
    # data it checks, which would change the specs (and their digests)
    try:
        source = fastjsonschema.compile_to_code(schema, use_default=False)
    except Exception:  # a schema it cannot compile: jsonschema decides
        return None
    source = source.replace(_IMPORT, _STAND_INS)
    if _IMPORT in source or "import fastjsonschema" in source:
        return None  # a generator this module does not know: leave it to jsonschema
    return source
