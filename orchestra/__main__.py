"""``python -m orchestra`` is the same program as the ``orchestra`` command."""

from orchestra.cli import main

raise SystemExit(main())
