"""Where the packaged data (JSON Schemas, Jinja templates) lives.

In a wheel, ``schemas/`` and ``templates/`` are shipped as ``orchestra/_data/``. In a source
checkout (or an editable install) they are the top-level directories of the repository.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


@cache
def data_dir(name: str) -> Path:
    """Return the directory of packaged data ``name`` (``"schemas"`` or ``"templates"``)."""
    for candidate in (_PACKAGE_DIR / "_data" / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise RuntimeError(f"orchestra is installed without its {name!r} data directory")


def schema_path(kind: str) -> Path:
    """Path of the JSON Schema for a document kind (``Cluster``, ``Dataset``, ``Task``)."""
    return data_dir("schemas") / f"{kind.lower()}.schema.json"
