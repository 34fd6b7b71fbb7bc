"""Ctrl-C and SIGTERM (a CI job cancelled, ``kill``): both stop cleanly, at any moment.

SIGTERM raises :class:`Terminated`, a ``KeyboardInterrupt``, so that every clean-up that
serves Ctrl-C serves it too; only the exit code tells them apart: 130 for Ctrl-C (SIGINT),
143 for SIGTERM, the shells' 128 + signal number, each after a clean stop.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # typing costs an import this module, loaded first, does without
    from collections.abc import Iterator
    from typing import Any

EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived."""


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise Terminated


def catch_sigterm() -> Any:
    """From now on SIGTERM raises :class:`Terminated` in the main thread; returns the handler
    it replaced (for :func:`restore`)."""
    try:
        return signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread, which alone receives signals: nothing to do
        return None


def restore(previous: Any) -> None:
    if previous is not None:
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """SIGINT and SIGTERM held back (blocked) while modules load, delivered as soon as they
    have: an interrupt inside the initialisation of some compiled extensions crashes the
    interpreter (seen: orjson, a SIGSEGV instead of exit 130)."""
    held = {signal.SIGINT, signal.SIGTERM}
    try:
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    except (AttributeError, OSError):  # pragma: no cover (not POSIX)
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def stopped(exc: KeyboardInterrupt) -> int:
    """Say why the program stopped, in one line; return its exit code."""
    if isinstance(exc, Terminated):
        print("orchestra: terminated (SIGTERM)", file=sys.stderr)
        return EXIT_TERMINATED
    print("orchestra: interrupted", file=sys.stderr)
    return EXIT_INTERRUPTED
