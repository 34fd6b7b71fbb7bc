"""A cache of documents already known to satisfy their JSON Schema.

Checking a document against JSON Schema costs ~0.5 ms and importing ``jsonschema`` ~100 ms;
the same documents are checked again and again (every plan, every push, pre-commit). A document
that passed is remembered by the SHA-256 of (its schema file, its type-exact canonical form:
:func:`canonical`), so the
next run skips the schema check for it, and skips importing ``jsonschema`` altogether when
every document is known. Only documents that passed are remembered: an invalid one is always
checked, and editing a schema changes every key. The cache lives in ``$ORCHESTRA_CACHE_DIR``,
else ``$XDG_CACHE_HOME/orchestra``, else ``~/.cache/orchestra``; ``ORCHESTRA_NO_CACHE=1``
turns it off. A cache that cannot be read or written is simply not used.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from functools import cache
from pathlib import Path
from typing import Any

from orchestra import __version__
from orchestra.resources import schema_path

CACHE_FILE = "schema-valid-v2.txt"  # v1 keyed bytes and the string of their repr alike
MAX_ENTRIES = 200_000


_SCALARS = (str, int, float, bool, type(None))  # JSON tells these apart: "1", 1, 1.0, true


def canonical(data: Any) -> Any:
    """A JSON form of a YAML document in which two documents are equal only when they are of
    the same types all through: every mapping and sequence is tagged, and a value JSON has no
    type for (``!!binary`` bytes, a timestamp, a set) keeps its type's name. Plain JSON with
    ``default=repr`` would give ``b'x'`` and the string ``"b'x'"``, or the keys ``1`` and
    ``"1"``, one key: an invalid document then passed as the valid one did."""
    kind = type(data)
    if kind in _SCALARS:
        return data
    if kind is dict:
        pairs = [[canonical(k), canonical(v)] for k, v in data.items()]
        pairs.sort(key=lambda pair: json.dumps(pair[0]))
        return {"m": pairs}
    if kind is list or kind is tuple:
        return {"l": [canonical(item) for item in data]}
    if kind is bytes:
        return {"b": data.hex()}
    return {"t": f"{kind.__module__}.{kind.__qualname__}", "r": repr(data)}


def cache_dir() -> Path:
    explicit = os.environ.get("ORCHESTRA_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "orchestra"


@cache
def _schema_fingerprint(kind: str) -> bytes:
    return hashlib.sha256(__version__.encode() + schema_path(kind).read_bytes()).digest()


class ValidCache:
    def __init__(self) -> None:
        self.enabled = not os.environ.get("ORCHESTRA_NO_CACHE")
        self.path = cache_dir() / CACHE_FILE
        self._known: set[str] | None = None
        self._new: list[str] = []

    def key(self, kind: str, data: Any) -> str:
        text = json.dumps(canonical(data), separators=(",", ":"))
        return hashlib.sha256(_schema_fingerprint(kind) + text.encode()).hexdigest()

    def _load(self) -> set[str]:
        if self._known is None:
            self._known = set()
            if self.enabled:
                with contextlib.suppress(OSError, ValueError):
                    self._known = set(self.path.read_text(encoding="ascii").split())
        return self._known

    def known_valid(self, key: str) -> bool:
        return self.enabled and key in self._load()

    def add(self, key: str) -> None:
        if self.enabled and key not in self._load():
            self._load().add(key)
            self._new.append(key)

    def save(self) -> None:
        if not self._new:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            known = self._load()
            if len(known) > MAX_ENTRIES:  # start afresh rather than grow without bound
                self.path.write_text("".join(f"{k}\n" for k in self._new), encoding="ascii")
            else:
                with open(self.path, "a", encoding="ascii") as stream:
                    stream.write("".join(f"{k}\n" for k in self._new))
        except OSError:
            pass
        self._new = []
