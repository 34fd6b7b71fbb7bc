"""Live progress of ``apply`` / ``retry``: a bar per task on a terminal (rich), plain lines
otherwise (CI logs): one at every phase change and one per task every few seconds."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from orchestra.engine.runner import Progress, TaskRun


def describe(run: TaskRun) -> str:
    done, failed, running = run.count("done"), run.count("failed"), run.count("running")
    queued = run.count("submitted")  # handed to the backend, waiting for a slot
    total = done + failed + running + queued + run.count("pending")
    text = f"{done}/{total} done, {running} running, {failed} failed"
    return text + (f", {queued} queued" if queued else "")


class PlainProgress:
    def __init__(self, out: TextIO, interval: float = 10.0) -> None:
        self.out = out
        self.interval = interval
        self._phases: dict[str, str] = {}
        self._last = time.monotonic()
        self._checked = 0.0

    def __call__(self, runs: list[TaskRun], final: bool) -> None:
        now = time.monotonic()
        if not final and now - self._checked < 0.1:
            return
        self._checked = now
        due = now - self._last >= self.interval
        for run in runs:
            if self._phases.get(run.name) != run.phase or due or final:
                self._phases[run.name] = run.phase
                self.out.write(f"{run.name}: {run.phase}, {describe(run)}\n")
        self.out.flush()
        if due:
            self._last = now


class RichProgress:
    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            transient=False,
        )
        self._bars: dict[str, Any] = {}
        self._checked = 0.0
        self._progress.start()

    def __call__(self, runs: list[TaskRun], final: bool) -> None:
        now = time.monotonic()
        if not final and now - self._checked < 0.1:
            return
        self._checked = now
        for run in runs:
            total = sum(run.count(s) for s in ("pending", "submitted", "running", "done", "failed"))
            finished = run.count("done") + run.count("failed")
            detail = f"{run.phase}: {run.count('running')} running, {run.count('failed')} failed"
            bar = self._bars.get(run.name)
            if bar is None:
                bar = self._bars[run.name] = self._progress.add_task(
                    run.name, total=total, detail=detail
                )
            self._progress.update(bar, total=total, completed=finished, detail=detail)
        if final:
            self._progress.stop()


def make_progress(out: TextIO = sys.stderr) -> Progress:
    if out.isatty():
        return RichProgress()
    return PlainProgress(out)
