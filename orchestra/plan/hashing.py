"""Content digests of data and config files, cached by file stat.

A file whose (size, mtime, inode) did not change since it was hashed is not read again. The
cache lives in ``<storage>/.orchestra/hash-cache.json``; losing it costs only re-reading.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from orchestra.fsutil import atomic_write

CACHE_DIR = ".orchestra"
CACHE_FILE = "hash-cache.json"
_CHUNK = 1 << 20


class HashCache:
    def __init__(self, storage: Path) -> None:
        self.path = storage / CACHE_DIR / CACHE_FILE
        self._entries: dict[str, list[object]] = {}
        self._changed = False
        self._this_run: dict[str, str] = {}  # path -> digest, each file stat'ed once per run
        try:
            loaded = json.loads(self.path.read_text(encoding="utf-8"))
            if isinstance(loaded, dict):
                self._entries = loaded
        except (OSError, ValueError):
            pass

    def file_digest(self, path: Path) -> str:
        """sha256 of a regular file's content (symlinks followed)."""
        return self.path_digest(str(path))

    def path_digest(self, key: str) -> str:
        """:meth:`file_digest` of a path given as a string."""
        return self.path_digests([key])[0]

    def path_digests(self, keys: list[str]) -> list[str]:
        """:meth:`path_digest` of many paths (one call for a task's configs)."""
        this_run, entries, stat = self._this_run, self._entries, os.stat
        out = []
        for key in keys:
            known = this_run.get(key)
            if known is None:
                st = stat(key)
                entry = entries.get(key)
                if entry is not None and entry[:3] == [st.st_size, st.st_mtime_ns, st.st_ino]:
                    known = this_run[key] = str(entry[3])
                else:
                    known = self._hash(key, [st.st_size, st.st_mtime_ns, st.st_ino])
            out.append(known)
        return out

    def _hash(self, key: str, signature: list[object]) -> str:
        """Read and hash a file whose stat signature is not in the cache."""
        digest = hashlib.sha256()
        with open(key, "rb") as stream:
            while chunk := stream.read(_CHUNK):
                digest.update(chunk)
        value = digest.hexdigest()
        self._entries[key] = [*signature, value]
        self._changed = True
        self._this_run[key] = value
        return value

    def digest(self, path: Path) -> str:
        """Digest of a file, or of a directory tree (names and contents, hidden files too)."""
        if not path.is_dir():
            return self.file_digest(path)
        digest = hashlib.sha256()
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames.sort()
            for name in sorted(filenames):
                full = Path(dirpath) / name
                relative = full.relative_to(path).as_posix()
                digest.update(f"{relative}\0{self.file_digest(full)}\n".encode())
        return digest.hexdigest()

    def save(self) -> None:
        if not self._changed:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path, json.dumps(self._entries, separators=(",", ":")), fsync=False)
        except OSError:
            pass  # a cache that cannot be written only costs re-reading next time
        self._changed = False
