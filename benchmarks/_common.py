"""Helpers shared by the benchmarks: timing subprocesses, peak memory, scratch repositories."""

from __future__ import annotations

import compileall
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
ORCHESTRA = str(BIN / "orchestra")
PACKAGE = Path(__file__).resolve().parent.parent / "orchestra"


def compile_orchestra() -> None:
    """Compile orchestra's modules to bytecode, as ``pip install`` does for an installed
    orchestra. An editable install compiles them at first import, or, when
    PYTHONDONTWRITEBYTECODE is set (it is on these machines), at every start: ~40 ms more
    on each command measured, which no user of an installed orchestra pays."""
    compileall.compile_dir(PACKAGE, quiet=1)


def machine() -> dict[str, Any]:
    compile_orchestra()  # every benchmark records the machine before it measures
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "bytecode": "compiled (as installed by pip)",
    }


def run_timed(
    argv: list[str],
    cwd: Path | None = None,
    ok: tuple[int, ...] = (0,),
    env: dict[str, str] | None = None,
) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, capture_output=True, check=False, env=env)
    elapsed = time.perf_counter() - start
    if done.returncode not in ok:
        raise SystemExit(
            f"{argv} failed ({done.returncode}):\n{done.stdout[-2000:]!r}\n{done.stderr[-2000:]!r}"
        )
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return elapsed, max(peak, before)  # ru_maxrss of children is the max over all of them


def write_repo(root: Path, tasks: int, configs: int, exec_line: str, max_parallel: int = 2) -> None:
    """``tasks`` Tasks sharing one data file and one directory of ``configs`` config files."""
    (root / "users" / "bench").mkdir(parents=True)
    files = root / "storage" / "bench" / "files"
    (files / "configs").mkdir(parents=True)
    (files / "data.txt").write_text("data\n")
    for index in range(configs):
        (files / "configs" / f"c{index:06d}.txt").write_text(f"{index}\n")
    (root / "cluster.yaml").write_text(
        "apiVersion: orchestra/v1\nkind: Cluster\nmetadata: {name: bench}\n"
        f"spec: {{backend: local, storage: storage, maxParallel: {max_parallel}}}\n"
    )
    docs = [
        "apiVersion: orchestra/v1\nkind: Dataset\nmetadata: {name: user.bench.data}\n"
        "spec: {path: data.txt}\n",
        "apiVersion: orchestra/v1\nkind: Dataset\nmetadata: {name: user.bench.configs}\n"
        "spec: {path: configs}\n",
    ]
    for index in range(tasks):
        docs.append(
            "apiVersion: orchestra/v1\nkind: Task\n"
            f"metadata: {{name: user.bench.task{index:04d}}}\n"
            "spec:\n  cluster: bench\n  image: bench:1\n  data: user.bench.data\n"
            f"  configs: user.bench.configs\n  output: out\n  exec: {exec_line!r}\n  bypass: true\n"
        )
    (root / "users" / "bench" / "specs.yaml").write_text("---\n".join(docs))


def write_json(path: Path | None, figures: dict[str, Any]) -> None:
    """The figures as JSON at ``path`` (the --json of every benchmark; None: not asked)."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(figures, indent=2) + "\n")


NOOP_EXEC = "true %DATA %IN %OUT"


def timed_noop_apply(root: Path, jobs: int, env: dict[str, str] | None = None) -> float:
    """Wall seconds of ``orchestra apply`` of one task of ``jobs`` no-op jobs written into
    ``root`` (which must not exist yet); stops the benchmark unless every job ended done."""
    root.mkdir()
    write_repo(root, 1, jobs, NOOP_EXEC)
    seconds, _rss = run_timed([ORCHESTRA, "apply"], root, env=env)
    status = json.loads(
        subprocess.run(
            [ORCHESTRA, "status", "user.bench.task0000", "--format", "json"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            env=env,
        ).stdout
    )
    done = status["counts"].get("done", 0)
    if done != jobs:
        raise SystemExit(f"orchestra ran {done} jobs out of {jobs}: {status['counts']}")
    return seconds


GNU_TIME = "/usr/bin/time"


def measured(argv: list[str], cwd: Path, ok: tuple[int, ...] = (0,)) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of this one command. The peak comes from GNU time when
    it is there: a child's own ``ru_maxrss`` also counts the memory of the parent it was forked
    from, so small commands would all show the benchmark's own size."""
    timed = os.path.exists(GNU_TIME)
    wrapped = [GNU_TIME, "-f", "%M", *argv] if timed else argv
    start = time.perf_counter()
    process = subprocess.Popen(
        wrapped, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    _out, stderr = process.communicate()
    elapsed = time.perf_counter() - start
    if process.returncode not in ok:
        raise SystemExit(f"{argv} in {cwd} failed ({process.returncode}): {stderr[-2000:]}")
    if timed:
        peak_kib = int(stderr.strip().splitlines()[-1])
    else:  # pragma: no cover (a machine without GNU time)
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return elapsed, peak_kib / 1024
