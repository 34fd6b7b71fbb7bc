"""Scale curves: how plan, apply and status grow with the number of jobs and of tasks.

Two series of no-op jobs (``true %DATA %IN %OUT``) on 2 slots, storage in memory (/dev/shm,
where it exists, so that the disk's inode pathology does not hide orchestra's own cost):

- one task of 1,000 / 10,000 / 100,000 jobs;
- 10 / 100 / 1,000 tasks of 100 jobs each.

At each size: ``orchestra apply`` (every job run), then ``orchestra plan`` with nothing to
do, ``orchestra status`` (the table of tasks) and ``orchestra status TASK --format json``
(every job of the largest task): wall time and peak RSS of each process, and the cost per job.
The cost must grow linearly (the per-job cost at the largest size over that at the smallest
stays near 1) and memory must stay bounded (no per-job thread, no whole-task copy per event:
peak RSS grows with the records kept, not with the events).

Run: make bench   (or .venv/bin/python benchmarks/bench_scale.py [--quick] [--json PATH])
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ORCHESTRA, machine, measured, write_json, write_repo

EXEC = "true %DATA %IN %OUT"


def one_size(tasks: int, jobs: int, where: str | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(dir=where) as tmp:
        root = Path(tmp)
        write_repo(root, tasks, jobs, EXEC)
        total = tasks * jobs
        apply_s, apply_mb = measured([ORCHESTRA, "apply"], root)
        measured([ORCHESTRA, "plan"], root)  # warm the page cache, as a user's second plan
        plan_s, plan_mb = measured([ORCHESTRA, "plan", "--detailed-exitcode"], root)
        status_s, status_mb = measured([ORCHESTRA, "status"], root)
        task = "user.bench.task0000"
        jobs_s, jobs_mb = measured([ORCHESTRA, "status", task, "--format", "json"], root)
    return {
        "tasks": tasks,
        "jobs_per_task": jobs,
        "jobs": total,
        "apply": {"seconds": round(apply_s, 3), "peak_rss_mb": round(apply_mb, 1)},
        "plan": {"seconds": round(plan_s, 3), "peak_rss_mb": round(plan_mb, 1)},
        "status": {"seconds": round(status_s, 3), "peak_rss_mb": round(status_mb, 1)},
        "status_task": {
            "seconds": round(jobs_s, 3),
            "peak_rss_mb": round(jobs_mb, 1),
            "jobs": jobs,
        },
        "apply_ms_per_job": round(apply_s * 1000 / total, 3),
        "plan_us_per_job": round(plan_s * 1e6 / total, 2),
    }


def growth(points: list[dict[str, Any]], key: str) -> float:
    """Per-job cost at the largest size over that at the size before (1.0: linear; the
    smallest size is left out, where the ~0.15 s of starting Python dominates)."""
    before, last = points[-2], points[-1]
    return round(
        (last[key]["seconds"] / last["jobs"]) / (before[key]["seconds"] / before["jobs"]), 2
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    where = "/dev/shm" if os.path.isdir("/dev/shm") else None
    job_sizes = (100, 1_000) if args.quick else (1_000, 10_000, 100_000)
    task_sizes = (2, 10) if args.quick else (10, 100, 1_000)
    figures: dict[str, Any] = {"machine": machine(), "where": where or tempfile.gettempdir()}
    series: dict[str, list[dict[str, Any]]] = {"jobs": [], "tasks": []}
    for jobs in job_sizes:
        series["jobs"].append(point := one_size(1, jobs, where))
        _print(f"1 task x {jobs} jobs", point)
    for tasks in task_sizes:
        series["tasks"].append(point := one_size(tasks, 100, where))
        _print(f"{tasks} tasks x 100 jobs", point)
    figures["series"] = series
    figures["growth"] = {
        "jobs": {key: growth(series["jobs"], key) for key in ("apply", "plan", "status_task")},
        "tasks": {key: growth(series["tasks"], key) for key in ("apply", "plan", "status")},
    }
    for name, ratios in figures["growth"].items():
        print(
            f"growth of the per-job cost, last two sizes ({name}): "
            + ", ".join(f"{k} {v}x" for k, v in ratios.items())
            + " (1.0 = linear)"
        )
    write_json(args.json, figures)
    return 0


def _print(label: str, point: dict[str, Any]) -> None:
    print(
        f"{label}: apply {point['apply']['seconds']} s ({point['apply_ms_per_job']} ms/job, "
        f"peak {point['apply']['peak_rss_mb']} MB); no-op plan {point['plan']['seconds']} s "
        f"(peak {point['plan']['peak_rss_mb']} MB); status {point['status']['seconds']} s; "
        f"status TASK --format json {point['status_task']['seconds']} s "
        f"(peak {point['status_task']['peak_rss_mb']} MB)"
    )


if __name__ == "__main__":
    sys.exit(main())
