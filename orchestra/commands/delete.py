"""``orchestra delete TASK [--purge]``: stop a task and forget it."""

from __future__ import annotations

import argparse

from orchestra.commands._common import check_owner, find_task, load_clusters
from orchestra.engine.stop import kill_task, purge_task


def run(args: argparse.Namespace) -> int:
    check_owner(args.task, "delete")
    specs = load_clusters(args.directory)
    found = find_task(specs, args.task)
    if found.record is None:
        if args.purge and found.task_dir.exists():
            purge_task(found.task_dir)
            print(f"{args.task}: purged {found.task_dir}")
            return 0
        print(f"{args.task}: never applied, nothing to delete")
        return 0
    record = kill_task(found.task_dir, found.cluster, reason="deleted by orchestra delete")
    print(f"{args.task}: killed")
    if args.purge:
        purge_task(found.task_dir)
        print(f"{args.task}: purged {found.task_dir}; the next apply launches it afresh")
    elif record.name in specs.tasks:
        print(
            "Its spec is still there: apply leaves a killed task alone while its spec is "
            "unchanged. --purge removes its directory so that the next apply relaunches it."
        )
    return 0
