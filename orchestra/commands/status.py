"""``orchestra status [TASK]``: the table of tasks, or one task's jobs."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from orchestra.commands._common import (
    all_records,
    find_task,
    load_clusters,
    report_damaged,
    report_refused,
    warn_replayed,
)
from orchestra.errors import DamagedTaskError, FatalError
from orchestra.fsutil import parse_iso
from orchestra.spec.model import SpecSet
from orchestra.status.model import JOB_STATES, TaskRecord, compact_json


def run(args: argparse.Namespace) -> int:
    specs = load_clusters(args.directory)
    if args.task:
        return _one_task(specs, args)
    damaged: list[DamagedTaskError] = []
    refused: dict[str, str] = {}
    records = [
        record
        for _dir, record in all_records(specs, summary=True, refused=refused, damaged=damaged)
    ]
    if args.user:
        records = [
            r for r in records if r.owner == args.user or r.name.startswith(f"user.{args.user}.")
        ]
        damaged = [e for e in damaged if e.task_dir.name.startswith(f"user.{args.user}.")]
        refused = {d: why for d, why in refused.items() if Path(d).parent.name == args.user}
    warn_replayed(records)
    report_damaged(damaged)
    # the others are listed; the damaged and refused ones flagged, exit 1
    code = report_refused(refused) or (1 if damaged else 0)
    if args.format == "json":
        entries = [_task_json(r) for r in records] + [e.to_json() for e in damaged]
        json.dump(entries, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return code
    if not records and not damaged:
        print("No tasks yet." + (f" (user {args.user})" if args.user else ""))
        return code
    rows = [("TASK", "PHASE", "DONE", "RUNNING", "FAILED", "PENDING", "STARTED", "DURATION")]
    for record in records:
        counts = record.counts()
        rows.append(
            (
                record.name,
                record.phase,
                str(counts["done"]),
                str(counts["running"]),
                str(counts["failed"]),
                str(counts["pending"] + counts["submitted"]),  # submitted: waiting for a slot
                _age(record.started or record.created),
                _duration(record.started, record.finished),
            )
        )
    rows += [(e.task_dir.name, "damaged", "-", "-", "-", "-", "-", "-") for e in damaged]
    _table(rows)
    return code


def _one_task(specs: SpecSet, args: argparse.Namespace) -> int:
    found = find_task(specs, args.task)
    record = found.record
    warn_replayed([record])
    if record is None:
        raise FatalError(f"{args.task} has not been applied yet: no status in {found.task_dir}")
    jobs = [j for j in record.jobs.values() if not j.orphan]
    if args.state:
        jobs = [j for j in jobs if j.state == args.state]
    if args.format == "json":
        data = _task_json(record)
        data["directory"] = str(found.task_dir)
        # indented as json.dump(..., indent=2) would, but each job on one line through the C
        # encoder: the indenting encoder is pure Python, 10x slower at 100,000 jobs
        head = json.dumps(data, indent=2)[: -len("\n}")]
        logs = f"{found.task_dir}/jobs/"
        lines = [
            f"    {compact_json(j.name)}: "
            + compact_json({**j.to_json(), "log": f"{logs}{j.name}/log"})
            for j in jobs
        ]
        body = "{\n" + ",\n".join(lines) + "\n  }" if lines else "{}"
        sys.stdout.write(f'{head},\n  "jobs": {body}\n}}\n')
        return 0
    counts = record.counts()
    print(f"Task:      {record.name}")
    print(f"Phase:     {record.phase}" + (f" ({record.message})" if record.message else ""))
    print(f"Cluster:   {record.cluster} ({record.backend}), image {record.image}")
    print(f"Directory: {found.task_dir}")
    print("Jobs:      " + ", ".join(f"{counts[s]} {s}" for s in JOB_STATES))
    if record.commit:
        print(f"Commit:    {record.commit}")
    print()
    rows = [("JOB", "STATE", "ATTEMPTS", "EXIT", "STARTED", "DURATION", "NOTE")]
    for job in jobs:
        note = str(job.warning or job.reason or "")  # a done job's, from status.yaml: any
        rows.append(
            (
                job.name + (" (test)" if job.test else ""),
                job.state,
                str(job.attempts),
                "" if job.exit_code is None else str(job.exit_code),
                _age(job.started),
                _duration(job.started, job.finished),
                note,
            )
        )
    _table(rows)
    if args.state == "failed" and jobs:
        print(f"\nLogs: {found.task_dir}/jobs/<job>/log")
    return 0


def _task_json(record: TaskRecord) -> dict[str, Any]:
    return {**record.header_json(), "counts": record.counts()}


def _table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def _age(stamp: str | None) -> str:
    if not stamp:
        return "-"
    try:
        seconds = time.time() - parse_iso(stamp)
    except (ValueError, TypeError):  # not a time orchestra wrote (status.yaml is the user's)
        return str(stamp)
    return _human(seconds) + " ago"


def _duration(start: str | None, end: str | None) -> str:
    if not start:
        return "-"
    try:
        finish = parse_iso(end) if end else time.time()
        return _human(finish - parse_iso(start))
    except (ValueError, TypeError):
        return "-"


def _human(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"
    return f"{int(seconds // 86400)}d{int(seconds % 86400 // 3600):02d}h"
