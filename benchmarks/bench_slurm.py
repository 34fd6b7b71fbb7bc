"""No-op jobs through Slurm job arrays against Orchestra's local backend, on this machine.

A private single-node Slurm (tests/slurm_cluster.py: 2 CPUs, the scheduler's loop every
second, no accounting) is started in a temporary directory; ``orchestra apply --wait`` runs one
task of N no-op jobs (bypass) on it, and the same task on the local backend with 2 slots.
Reported: jobs per second (wall time of the apply), and the Slurm commands orchestra ran per
job (sbatch, squeue, scancel, scontrol), counted by wrappers put first on PATH.
``--overcommit C`` adds a run where the node claims C CPUs, to see what the scheduler's
one-start-per-CPU-per-second costs.

Run: .venv/bin/python benchmarks/bench_slurm.py [--jobs 1000] [--quick] [--json PATH]
     [--overcommit 16]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ORCHESTRA, machine, run_timed, write_json, write_repo  # noqa: E402

from tests.slurm_cluster import SlurmCluster, unavailable_reason  # noqa: E402

COMMANDS = ("sbatch", "squeue", "scancel", "scontrol", "sacct")


def _wrappers(directory: Path, log: Path) -> None:
    """``<command>`` scripts that note their name in ``log``, then run the real one."""
    directory.mkdir(parents=True)
    for name in COMMANDS:
        real = shutil.which(name)
        if real is None:
            continue
        script = directory / name
        script.write_text(f'#!/bin/sh\necho {name} >> "{log}"\nexec "{real}" "$@"\n')
        script.chmod(0o755)


def bench(jobs: int, backend: str, cluster: SlurmCluster | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_repo(root, 1, jobs, "true %DATA %IN %OUT", max_parallel=2)
        env = {**os.environ, "ORCHESTRA_USER": "bench"}
        log = root / "calls.log"
        if cluster is not None:
            spec = yaml.safe_load((root / "cluster.yaml").read_text())
            spec["spec"].update(backend="slurm", slurm={"arrayLimit": 10000})
            (root / "cluster.yaml").write_text(yaml.safe_dump(spec))
            _wrappers(root / "bin", log)
            env.update(cluster.env, PATH=f"{root / 'bin'}:{os.environ['PATH']}")
            env["ORCHESTRA_USER"] = "bench"
        elapsed, rss = run_timed([ORCHESTRA, "apply", "--wait"], root, env=env)
        calls = Counter(log.read_text().split()) if log.exists() else Counter()
        sidecar = root / "storage" / "bench" / "user.bench.task0000" / "status.yaml"
        status = yaml.safe_load(sidecar.read_text())
    result: dict[str, Any] = {
        "backend": backend,
        "jobs": jobs,
        "seconds": round(elapsed, 2),
        "jobs_per_second": round(jobs / elapsed, 2),
        "phase": status["phase"],
        "peak_rss_mb": round(rss / 1024, 1),
    }
    if cluster is not None:
        result["calls"] = dict(calls)
        result["calls_per_job"] = {name: round(calls[name] / jobs, 4) for name in COMMANDS}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="100 jobs")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--overcommit", type=int, default=None)
    args = parser.parse_args()
    jobs = 100 if args.quick else args.jobs
    reason = unavailable_reason()
    if reason:
        raise SystemExit(f"bench_slurm: {reason}")
    results = [bench(jobs, "local (maxParallel 2)")]
    print(json.dumps(results[-1]), flush=True)
    variants = [("slurm (2 CPUs)", None)]
    if args.overcommit:
        variants.append((f"slurm (node claims {args.overcommit} CPUs)", args.overcommit))
    for label, overcommit in variants:
        with (
            tempfile.TemporaryDirectory(prefix="orchestra-slurm-") as tmp,
            SlurmCluster(Path(tmp), overcommit=overcommit, min_job_age=300) as cluster,
        ):
            results.append(bench(jobs, label, cluster))
        print(json.dumps(results[-1]), flush=True)
    report = {"machine": machine(), "results": results}
    write_json(args.json, report)


if __name__ == "__main__":
    main()
