"""Validation speed and start-up cost, each against a baseline measured in the same run.

1. 1,000 task files (plus a cluster and their datasets, with a reachable storage so the disk
   checks run): `orchestra validate DIR` as a whole process, against the floor of merely
   parsing the same files with PyYAML's C loader in one process. Goal: under 2 s in all.
   Cold (``ORCHESTRA_NO_CACHE=1``) and warm (the schema-validity cache filled by a first run).
2. Start-up: `orchestra --version` and `orchestra validate ONE_FILE` against `python -c pass`
   with the same interpreter, interleaved, median of repeated runs; validate in three states
   of the caches: the first run on a machine (nothing cached), a new or edited file (the
   compiled schemas cached, the document not yet known valid: a pre-commit hook, an editor),
   a file known valid. Goals: --version within 60 ms of `python -c pass`; validate of one
   new file within 150 ms.

Run: make bench   (or .venv/bin/python benchmarks/bench_validate.py [--tasks N] [--repeat R])
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from orchestra.spec.validcache import CACHE_FILE as VALID_FILE

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ORCHESTRA, machine, write_json

CLUSTER = """\
apiVersion: orchestra/v1
kind: Cluster
metadata: {name: bench}
spec: {backend: local, storage: storage}
"""

DATASETS = """\
apiVersion: orchestra/v1
kind: Dataset
metadata: {name: user.bench.data}
spec: {path: data.json}
---
apiVersion: orchestra/v1
kind: Dataset
metadata: {name: user.bench.configs}
spec: {path: configs}
"""

TASK = """\
apiVersion: orchestra/v1
kind: Task
metadata:
  name: user.bench.task_{index:04d}
spec:
  cluster: bench
  image: bench/tutorial:1.0
  data: user.bench.data
  configs: user.bench.configs
  output: output
  exec: "python3 /job_tuning.py -d %DATA -c %IN -o %OUT --seed {index}"
  testJobs: 10
  maxRetries: 2
  resources: {{cpu: 1, memory: 2Gi, gpu: 0}}
  env: {{RUN: "{index}"}}
"""


def make_repository(root: Path, tasks: int) -> None:
    (root / "users" / "bench" / "tasks").mkdir(parents=True)
    (root / "cluster.yaml").write_text(CLUSTER)
    (root / "users" / "bench" / "datasets.yaml").write_text(DATASETS)
    for index in range(tasks):
        path = root / "users" / "bench" / "tasks" / f"task_{index:04d}.yaml"
        path.write_text(TASK.format(index=index))
    files = root / "storage" / "bench" / "files"
    (files / "configs").mkdir(parents=True)
    (files / "data.json").write_text("{}")
    (files / "configs" / "c.json").write_text("{}")


def timed(
    argv: list[str],
    cwd: Path | None = None,
    ok: tuple[int, ...] = (0,),
    env: dict[str, str] | None = None,
) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, capture_output=True, check=False, env=env)
    elapsed = time.perf_counter() - start
    if done.returncode not in ok:
        raise SystemExit(f"{argv} failed ({done.returncode}): {done.stdout!r} {done.stderr!r}")
    return elapsed


def medians(
    commands: dict[str, list[str]],
    repeat: int,
    cwd: Path,
    envs: dict[str, dict[str, str]] | None = None,
    before: dict[str, Callable[[], None]] | None = None,
) -> dict[str, float]:
    """Median wall time of each command; ``before[name]`` runs before each of its samples."""
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeat):  # interleaved, so a noisy moment hurts every command alike
        for name, argv in commands.items():
            if before and name in before:
                before[name]()
            samples[name].append(timed(argv, cwd, env=(envs or {}).get(name)))
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    machine_figures = machine()  # compiles orchestra to bytecode first

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_repository(root, args.tasks)
        parse_floor = (
            "import glob, yaml\n"
            "for f in sorted(glob.glob('users/**/*.yaml', recursive=True)):\n"
            "    list(yaml.load_all(open(f), Loader=yaml.CSafeLoader))\n"
        )
        # cold: no schema-validity cache (every document checked by jsonschema); warm: the
        # cache of documents already known valid, as on a second run (see validcache.py)
        cold_env = {**os.environ, "ORCHESTRA_NO_CACHE": "1"}
        warm_env = {**os.environ, "ORCHESTRA_CACHE_DIR": str(root / ".cache")}
        many = medians(
            {
                "validate": [ORCHESTRA, "validate"],
                "validate_warm": [ORCHESTRA, "validate"],
                "parse_only": [sys.executable, "-c", parse_floor],
            },
            max(3, args.repeat // 5),
            root,
            envs={"validate": cold_env, "validate_warm": warm_env},
        )
        one_file = "single/task.yaml"  # outside the repository: no context to read
        (root / "single").mkdir()
        (root / "single" / "task.yaml").write_text(
            CLUSTER + "---\n" + DATASETS + "---\n" + TASK.format(index=0)
        )
        # three states of the caches: the first run on a machine (none: the schemas are
        # compiled, jsonschema is imported); a new or edited document (the compiled schemas
        # cached, the document not yet known valid: what a pre-commit hook or an editor sees);
        # a document already known valid
        first_cache, new_cache = root / ".cache-first", root / ".cache-new"
        first_env = {**os.environ, "ORCHESTRA_CACHE_DIR": str(first_cache)}
        new_env = {**os.environ, "ORCHESTRA_CACHE_DIR": str(new_cache)}
        one = [ORCHESTRA, "validate", "--offline", one_file]
        startup = medians(
            {
                "python -c pass": [sys.executable, "-c", "pass"],
                "orchestra --version": [ORCHESTRA, "--version"],
                "orchestra validate ONE_FILE": one,
                "new validate ONE_FILE": one,
                "warm validate ONE_FILE": one,
            },
            args.repeat,
            root,
            envs={
                "orchestra validate ONE_FILE": first_env,
                "new validate ONE_FILE": new_env,
                "warm validate ONE_FILE": warm_env,
            },
            before={
                "orchestra validate ONE_FILE": lambda: shutil.rmtree(first_cache, True),
                "new validate ONE_FILE": lambda: (new_cache / VALID_FILE).unlink(True),
            },
        )

    base = startup["python -c pass"]
    figures = {
        "machine": machine_figures,
        "tasks": args.tasks,
        "validate_seconds": round(many["validate"], 3),
        "validate_warm_seconds": round(many["validate_warm"], 3),
        "parse_only_seconds": round(many["parse_only"], 3),
        "validate_over_parse_only": round(many["validate"] / many["parse_only"], 2),
        "python_pass_ms": round(base * 1000, 1),
        "version_minus_pass_ms": round((startup["orchestra --version"] - base) * 1000, 1),
        "validate_one_minus_pass_ms": round(
            (startup["orchestra validate ONE_FILE"] - base) * 1000, 1
        ),
        "new_validate_one_minus_pass_ms": round(
            (startup["new validate ONE_FILE"] - base) * 1000, 1
        ),
        "warm_validate_one_minus_pass_ms": round(
            (startup["warm validate ONE_FILE"] - base) * 1000, 1
        ),
    }
    goals = {
        f"validate {args.tasks} task files under 2 s": figures["validate_seconds"] < 2.0,
        "--version within 60 ms of python -c pass": figures["version_minus_pass_ms"] < 60,
        "validate one new file within 150 ms of python -c pass": figures[
            "new_validate_one_minus_pass_ms"
        ]
        < 150,
    }
    print(f"machine: {figures['machine']['cores']} cores, Python {figures['machine']['python']}")
    print(
        f"validate {args.tasks} task files: {figures['validate_seconds']:.3f} s "
        f"(warm cache {figures['validate_warm_seconds']:.3f} s; "
        f"parsing alone: {figures['parse_only_seconds']:.3f} s, "
        f"ratio {figures['validate_over_parse_only']}x)"
    )
    print(f"python -c pass: {figures['python_pass_ms']} ms")
    print(f"orchestra --version: +{figures['version_minus_pass_ms']} ms over python -c pass")
    print(
        f"orchestra validate ONE_FILE: first run on the machine "
        f"+{figures['validate_one_minus_pass_ms']} ms; a new or edited file "
        f"+{figures['new_validate_one_minus_pass_ms']} ms; a file known valid "
        f"+{figures['warm_validate_one_minus_pass_ms']} ms"
    )
    for goal, met in goals.items():
        print(f"goal {'met' if met else 'MISSED'}: {goal}")
    write_json(args.json, {**figures, "goals": goals})
    return 0


if __name__ == "__main__":
    sys.exit(main())
