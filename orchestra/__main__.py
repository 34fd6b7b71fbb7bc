"""The program's entry: ``python -m orchestra`` and the ``orchestra`` command both start here.

SIGTERM is caught before anything else is imported, and Ctrl-C while the modules load is one
line and exit 130, as it is later (no traceback): see :mod:`orchestra.interrupts`.
"""

import contextlib
import os
import sys


def main() -> int:
    try:
        from orchestra import interrupts

        interrupts.catch_sigterm()
        with interrupts.deferred():
            from orchestra.cli import main as run
        code = run()
    except KeyboardInterrupt as exc:
        from orchestra.interrupts import stopped

        code = stopped(exc)
    if code in (130, 143):
        # Stopped cleanly, everything written. The interpreter's own exit would still turn
        # a Ctrl-C it once saw unhandled in some nested evaluation into death by SIGINT
        # (seen: -2 instead of 130), so it is skipped: the exit code is the one said.
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
