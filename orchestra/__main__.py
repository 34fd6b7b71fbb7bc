"""The program's entry: ``python -m orchestra`` and the ``orchestra`` command both start here.

SIGTERM is caught before anything else is imported, and Ctrl-C while the modules load is one
line and exit 130, as it is later (no traceback): see :mod:`orchestra.interrupts`.
"""


def main() -> int:
    try:
        from orchestra import interrupts

        interrupts.catch_sigterm()
        from orchestra.cli import main as run

        return run()
    except KeyboardInterrupt as exc:
        from orchestra.interrupts import stopped

        return stopped(exc)


if __name__ == "__main__":
    raise SystemExit(main())
