"""``<storage>/.orchestra/reconcile.json``: the last commit reconciled into this storage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from orchestra.errors import UnsafePath
from orchestra.fsutil import atomic_write, read_regular

RECORD_FILE = "reconcile.json"


def record_path(storage: Path) -> Path:
    return storage / ".orchestra" / RECORD_FILE


def read_record(storage: Path) -> dict[str, Any]:
    try:
        data = json.loads(read_regular(record_path(storage)))
    except (OSError, ValueError, UnsafePath):  # a FIFO there is no record: never read
        return {}
    return data if isinstance(data, dict) else {}


def write_record(storage: Path, fields: dict[str, Any]) -> None:
    """Merge ``fields`` into the record (atomically: readers never see half of it)."""
    data = {**read_record(storage), **fields}
    path = record_path(storage)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
