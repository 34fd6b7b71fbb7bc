"""Content digests of data and config files, cached by file stat.

A file whose (size, mtime, inode) did not change since it was hashed is not read again. The
cache lives in ``<storage>/.orchestra/hash-cache.json``; losing it costs only re-reading.

Beside it, ``jobs-cache.json`` remembers the digest of each task's jobs (their names and input
digests, as status.yaml's ``jobsDigest``) by a key of everything those are computed from, so
that a plan of a task whose inputs did not change need not render and hash each of its jobs.
Losing it costs only that work.

Both are read only when they are regular files (a FIFO there would block every plan) and are
written by renaming a new file over whatever is there.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from orchestra.errors import UnsafePath
from orchestra.fsutil import (
    atomic_write,
    check_directory,
    kind_of,
    open_regular,
    read_regular,
    resolved_outside,
)

CACHE_DIR = ".orchestra"
CACHE_FILE = "hash-cache.json"
JOBS_CACHE_FILE = "jobs-cache.json"
JOBS_CACHE_SIZE = 20_000  # tasks remembered; the oldest are forgotten first
_CHUNK = 1 << 20


class HashCache:
    def __init__(self, storage: Path) -> None:
        self.path = storage / CACHE_DIR / CACHE_FILE
        self._entries: dict[str, list[object]] = {}
        self._changed = False
        self._this_run: dict[str, str] = {}  # path -> digest, each file stat'ed once per run
        try:
            loaded = json.loads(read_regular(self.path))
            if isinstance(loaded, dict):
                self._entries = loaded
        except (OSError, ValueError, RecursionError, UnsafePath):  # Recursion: too deep
            pass
        self.jobs_path = self.path.parent / JOBS_CACHE_FILE
        self._jobs: dict[str, str] | None = None  # inputs key -> jobs digest, read when asked
        self._jobs_changed = False

    def _jobs_cache(self) -> dict[str, str]:
        if self._jobs is None:
            self._jobs = {}
            try:
                loaded = json.loads(read_regular(self.jobs_path))
                if isinstance(loaded, dict):
                    self._jobs = {k: v for k, v in loaded.items() if isinstance(v, str)}
            except (
                OSError,
                ValueError,
                RecursionError,
                UnsafePath,
            ):  # Recursion: too deeply nested
                pass
        return self._jobs

    def known_jobs_digest(self, key: str) -> str | None:
        """The jobs digest remembered for a task whose inputs have this key."""
        return self._jobs_cache().get(key)

    def remember_jobs_digest(self, key: str, digest: str) -> None:
        jobs = self._jobs_cache()
        if jobs.get(key) != digest:
            jobs.pop(key, None)
            jobs[key] = digest
            self._jobs_changed = True

    def file_digest(self, path: Path) -> str:
        """sha256 of a regular file's content (symlinks followed; anything but a regular file
        at the end of them raises :class:`UnsafePath`)."""
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
                # an entry of another shape (the file is the user's to damage) is rehashed
                if (
                    type(entry) is list
                    and len(entry) == 4
                    and entry[:3] == [st.st_size, st.st_mtime_ns, st.st_ino]
                    and type(entry[3]) is str
                    and len(entry[3]) == 64
                ):
                    known = this_run[key] = entry[3]
                else:
                    known = self._hash(key, [st.st_size, st.st_mtime_ns, st.st_ino])
            out.append(known)
        return out

    def _hash(self, key: str, signature: list[object]) -> str:
        """Read and hash a file whose stat signature is not in the cache."""
        digest = hashlib.sha256()
        with open(open_regular(key, follow=True), "rb") as stream:  # a FIFO: refused, not read
            while chunk := stream.read(_CHUNK):
                digest.update(chunk)
        value = digest.hexdigest()
        self._entries[key] = [*signature, value]
        self._changed = True
        self._this_run[key] = value
        return value

    def digest(self, path: Path, within: str | None = None) -> str:
        """Digest of a file, or of a directory tree (names and contents, hidden files too).
        With ``within`` (the owner's files directory), every file of the tree must be a regular
        file, or a symlink to one inside ``within``: anything else (a FIFO, a device, a link to
        /etc/shadow or to another user's files) raises :class:`UnsafePath` naming it. A
        symlink to a directory is not entered (as ever), but may not leave ``within`` either."""
        if not path.is_dir():
            return self.file_digest(path)
        digest = hashlib.sha256()
        for relative, full in _tree_files(str(path), "", within):
            # fsencode: a name that is not UTF-8 is hashed as its bytes (.encode() raised)
            digest.update(os.fsencode(f"{relative}\0{self.path_digest(full)}\n"))
        return digest.hexdigest()

    def save(self) -> None:
        if not self._changed and not self._jobs_changed:
            return
        try:
            check_directory(self.path.parent, create=True)
            if self._changed:
                text = json.dumps(self._entries, separators=(",", ":"))
                atomic_write(self.path, text, fsync=False)
            if self._jobs_changed and self._jobs is not None:
                kept = dict(list(self._jobs.items())[-JOBS_CACHE_SIZE:])
                text = json.dumps(kept, separators=(",", ":"))
                atomic_write(self.jobs_path, text, fsync=False)
        except (OSError, UnsafePath):
            pass  # a cache that cannot be written only costs re-reading next time
        self._changed = self._jobs_changed = False


def _tree_files(top: str, prefix: str, within: str | None) -> list[tuple[str, str]]:
    """(relative path, path) of the files of a tree, in the order of ``os.walk`` (a
    directory's files sorted, then its subdirectories sorted, symlinked ones not entered):
    the digests of trees hashed before stay the same. The type of each entry comes from the
    directory listing, without a system call per file."""
    try:
        entries = list(os.scandir(top))
    except OSError:
        return []  # as os.walk: a directory that cannot be listed is left out
    files: list[os.DirEntry[str]] = []
    directories: list[os.DirEntry[str]] = []
    for entry in entries:
        (directories if entry.is_dir() else files).append(entry)
    found = []
    for entry in sorted(files, key=lambda e: e.name):
        if entry.is_symlink():
            _check_link(entry.path, within)
        elif within is not None and not entry.is_file(follow_symlinks=False):
            kind = kind_of(entry.stat(follow_symlinks=False).st_mode)
            raise UnsafePath(entry.path, f"is {kind}: a dataset may hold only regular files")
        found.append((prefix + entry.name, entry.path))
    for entry in sorted(directories, key=lambda e: e.name):
        if entry.is_symlink():
            _check_link(entry.path, within)
            continue
        found += _tree_files(entry.path, f"{prefix}{entry.name}/", within)
    return found


def _check_link(path: str, within: str | None) -> None:
    if within is None:
        return
    outside = resolved_outside(path, within)
    if outside is not None:
        raise UnsafePath(
            path,
            f"is a symlink to {outside!r}, outside {within!r}",
            hint="a job may only read its owner's files: copy the file instead",
        )
    if not os.path.exists(path):
        raise UnsafePath(path, "is a symlink to nothing (broken)")
