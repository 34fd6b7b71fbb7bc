"""Scratch spec repositories with a local cluster, for engine and command tests."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from orchestra.backends.local import _stat_fields
from orchestra.cli import main

DEFAULT_EXEC = "cat %IN > %OUT  # data: %DATA"


class Repo:
    """``<root>/cluster.yaml``, ``<root>/users/alice/specs.yaml``, ``<root>/storage``."""

    def __init__(self, root: Path, max_parallel: int = 2) -> None:
        self.root = root
        self.storage = root / "storage"
        self.files = self.storage / "alice" / "files"
        (self.files / "configs").mkdir(parents=True)
        (self.files / "data.txt").write_text("data\n")
        (root / "users" / "alice").mkdir(parents=True)
        cluster = {
            "apiVersion": "orchestra/v1",
            "kind": "Cluster",
            "metadata": {"name": "here"},
            "spec": {"backend": "local", "storage": "storage", "maxParallel": max_parallel},
        }
        (root / "cluster.yaml").write_text(yaml.safe_dump(cluster))
        self.tasks: dict[str, dict[str, Any]] = {}

    def configs(self, contents: dict[str, str]) -> None:
        for name, text in contents.items():
            (self.files / "configs" / name).write_text(text)

    def task(self, short: str = "t", **spec: Any) -> str:
        name = f"user.alice.{short}"
        self.tasks[name] = {
            "cluster": "here",
            "image": "alice/img:1",
            "data": "user.alice.data",
            "configs": "user.alice.configs",
            "output": "output",
            "exec": DEFAULT_EXEC,
            "maxRetries": 0,
            **spec,
        }
        self.write()
        return name

    def remove_task(self, name: str) -> None:
        del self.tasks[name]
        self.write()

    def write(self) -> None:
        docs: list[dict[str, Any]] = [
            _dataset("user.alice.data", "data.txt"),
            _dataset("user.alice.configs", "configs"),
        ]
        for name, spec in self.tasks.items():
            docs.append(
                {
                    "apiVersion": "orchestra/v1",
                    "kind": "Task",
                    "metadata": {"name": name},
                    "spec": spec,
                }
            )
        (self.root / "users" / "alice" / "specs.yaml").write_text(yaml.safe_dump_all(docs))

    def task_dir(self, name: str) -> Path:
        return self.storage / "alice" / name

    def job_dir(self, name: str, job: str) -> Path:
        return self.task_dir(name) / "jobs" / job

    def status(self, name: str) -> dict[str, Any]:
        """status.yaml as a YAML parser reads it, each job's row keyed by ``jobColumns``."""
        data = yaml.load((self.task_dir(name) / "status.yaml").read_text(), Loader=yaml.CSafeLoader)
        assert isinstance(data, dict)
        columns = data["jobColumns"]
        jobs = data["jobs"] or {}
        data["jobs"] = {row[0]: dict(zip(columns, row, strict=True)) for row in jobs}
        return data

    def events(self, name: str) -> list[dict[str, Any]]:
        lines = (self.task_dir(name) / "events.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines]

    def orchestra(self, *argv: str) -> int:
        """In this process (fast); output goes to pytest's capture."""
        return main(["-C", str(self.root), *argv])

    def spawn(self, *argv: str, **kwargs: Any) -> subprocess.Popen[str]:
        """A real orchestra process."""
        return subprocess.Popen(
            [sys.executable, "-m", "orchestra", "-C", str(self.root), *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "ORCHESTRA_USER": "alice"},
            **kwargs,
        )


def _dataset(name: str, path: str) -> dict[str, Any]:
    return {
        "apiVersion": "orchestra/v1",
        "kind": "Dataset",
        "metadata": {"name": name},
        "spec": {"path": path},
    }


def _alive_pid(pid: int) -> bool:
    try:
        return _stat_fields(pid)[0] != b"Z"
    except (OSError, IndexError):
        return False


def processes_by_run_id(job_dirs: dict[str, str] | None = None) -> dict[str, list[int]]:
    """Run id -> live pids of this user's processes carrying it in their environment, or
    (given ``job_dirs``, real path -> run id) working in that job's directory. Recovery does
    not use it (a job may clear its environment and leave its directory): the tests use it
    to see that no process of a job is left."""
    found: dict[str, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        value = None
        try:
            with open(f"/proc/{entry}/environ", "rb") as stream:
                environ = stream.read()
        except OSError:
            continue
        start = environ.find(b"ORCHESTRA_RUN_ID=")
        if start >= 0 and (start == 0 or environ[start - 1] == 0):
            end = environ.find(b"\0", start)
            value = environ[start + len(b"ORCHESTRA_RUN_ID=") : end if end >= 0 else None].decode(
                errors="replace"
            )
        elif job_dirs:
            with contextlib.suppress(OSError):
                value = job_dirs.get(os.readlink(f"/proc/{entry}/cwd"))
        if value is not None and _alive_pid(int(entry)):
            found.setdefault(value, []).append(int(entry))
    return found
