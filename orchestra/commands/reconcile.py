"""``orchestra reconcile``: make a git commit true (in CI on every push, or as a watcher)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from orchestra.commands._common import acting_user, make_full_plan, report_damaged, report_refused
from orchestra.commands._run import exit_code, print_outcome
from orchestra.commands.apply import execute
from orchestra.commands.plan import plan_json, print_plan
from orchestra.errors import FatalError
from orchestra.fsutil import now_iso
from orchestra.gitops.lock import ReconcileLock
from orchestra.gitops.record import write_record
from orchestra.gitops.source import Commit, Source
from orchestra.spec.checker import ValidationResult


def run(args: argparse.Namespace) -> int:
    source = Source(Path(args.directory) / args.repo)
    if not args.watch:
        if args.fetch:
            _warn_fetch(source.fetch())
        return _pass(source, source.resolve(args.ref), args)
    return _watch(source, args)


def _watch(source: Source, args: argparse.Namespace) -> int:
    """Poll the ref (fetching first when the repository has remotes); a new commit is
    validated and, when valid, reconciled; between commits each pass advances the tasks of
    the last valid one (test jobs passed: launch the rest; finished: final phase)."""
    good: Commit | None = None
    good_result: ValidationResult | None = None
    rejected: str | None = None
    passes = 0
    while True:
        _warn_fetch(source.fetch())
        try:
            commit = source.resolve(args.ref)
        except FatalError as exc:
            print(f"orchestra: {exc}", file=sys.stderr)
            commit = None
        if commit is not None and commit.sha != rejected and (good is None or commit != good):
            result = source.validate(commit, offline=args.offline)
            if result.valid:
                good, good_result = commit, result
            else:
                rejected = commit.sha
                _report_invalid(commit, result, args)
        if good is not None:
            # the head is invalid: the last valid commit is carried on, but nothing is pruned
            # while a document of the repository is invalid (design.md, "Day 2")
            head_invalid = commit is not None and commit.sha == rejected
            try:
                _pass(source, good, args, result=good_result, prune=not head_invalid)
            except FatalError as exc:  # e.g. the lock is busy: try again next time
                print(f"orchestra: {exc}", file=sys.stderr)
        passes += 1
        if args.passes and passes >= args.passes:
            return 0
        time.sleep(args.interval)


def _pass(
    source: Source,
    commit: Commit,
    args: argparse.Namespace,
    *,
    result: ValidationResult | None = None,
    prune: bool = True,
) -> int:
    """One reconcile of ``commit``: validate (unless ``result`` says already), plan, lock the
    storages, apply, record; ``prune=False`` prunes nothing even with ``--prune``."""
    text = args.format != "json"
    if result is None:
        result = source.validate(commit, offline=args.offline)
    if not result.valid:
        return _report_invalid(commit, result, args)
    specs = result.specs
    if not specs.tasks and not specs.clusters:
        raise FatalError(f"commit {commit.short} holds no spec files")
    if text:
        print(f"Reconciling {commit.describe()}")
    planned = make_full_plan(specs)
    if args.dry_run:
        if text:
            print_plan(planned.plan, sys.stdout)
        else:
            _print_json(commit, {"dryRun": True, "plan": plan_json(planned.plan)})
        report_damaged(planned.damaged)
        return report_refused(planned.refused) or (1 if planned.damaged else 0)
    storages = sorted({c.storage for c in specs.clusters.values() if c.storage.is_dir()})
    locks = [ReconcileLock(storage) for storage in storages]
    try:
        for lock in locks:
            lock.acquire(args.lock_timeout, commit=commit.sha, user=acting_user())
        planned = make_full_plan(specs)  # observed again, now that no one else acts
        if text:
            print_plan(planned.plan, sys.stdout)
        runs, pruned = execute(
            planned,
            wait=args.wait,
            prune=args.prune and prune,
            force=args.force,
            text=text,
            commit=commit.sha,
        )
        code = exit_code(runs) if runs else 0
        # the others were reconciled; a damaged or refused (unsafe) task is an error
        code = 1 if planned.damaged or planned.refused else code
        tasks = {r.name: {"phase": r.phase, "counts": r.record.counts()} for r in runs or []}
        for storage in storages:
            write_record(
                storage,
                {
                    "commit": commit.sha,
                    "ref": commit.ref,
                    "author": commit.author,
                    "summary": commit.summary,
                    "reconciledAt": now_iso(),
                    "by": acting_user(),
                    "tasks": tasks,
                    "pruned": pruned,
                    "exitCode": code,
                },
            )
    finally:
        for lock in reversed(locks):
            lock.release()
    report_damaged(planned.damaged)
    if text:
        if runs:
            print_outcome(runs)
        acted = len(runs or [])
        unchanged = sum(t.action == "unchanged" for t in planned.plan.tasks)
        print(
            f"Reconciled {commit.short}: {acted} task(s) acted on, {unchanged} unchanged"
            + (f", {len(pruned)} pruned" if pruned else "")
            + "."
        )
    else:
        _print_json(
            commit,
            {
                "plan": plan_json(planned.plan),
                "tasks": [
                    {"name": r.name, "phase": r.phase, "counts": r.record.counts()}
                    for r in runs or []
                ],
                "pruned": pruned,
                "errors": [exc.to_json() for exc in planned.damaged],
                "exitCode": code,
            },
        )
    report_refused(planned.refused)
    return code


def _report_invalid(commit: Commit, result: ValidationResult, args: argparse.Namespace) -> int:
    """An invalid commit applies nothing: every error, by file and line, and whose commit."""
    if args.format == "json":
        _print_json(commit, {"valid": False, "errors": [d.to_json() for d in result.diagnostics]})
    else:
        for diagnostic in result.diagnostics:
            print(diagnostic.format(), file=sys.stderr)
    count = len(result.diagnostics)
    message = (
        f"commit {commit.short} by {commit.author} is refused: {count} error"
        f"{'s' if count != 1 else ''} in its specs; nothing was applied"
    )
    if args.watch:
        print(f"orchestra: {message}", file=sys.stderr)
        return 1
    raise FatalError(
        message, hint="fix the specs in a new commit ('orchestra validate' shows them)"
    )


def _print_json(commit: Commit, fields: dict[str, Any]) -> None:
    out = {
        "commit": commit.sha,
        "ref": commit.ref,
        "author": commit.author,
        "summary": commit.summary,
        **fields,
    }
    json.dump(out, sys.stdout, indent=2)
    sys.stdout.write("\n")
    sys.stdout.flush()


def _warn_fetch(problems: list[str]) -> None:
    for problem in problems:
        print(f"orchestra: warning: {problem}; going on with what is here", file=sys.stderr)
