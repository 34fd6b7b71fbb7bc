"""The ``orchestra`` command line: one parser, one error handler, ``main(argv) -> int``.

Sub-command modules are imported only when their command runs, so ``orchestra --version`` and
``orchestra validate`` never pay for Kubernetes, git or Jinja.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from orchestra import __version__
from orchestra.errors import FatalError

EXIT_INTERRUPTED = 130

DESCRIPTION = """\
Orchestra runs one container command per configuration file, declared in YAML specs
committed to git (Clusters, Datasets, Tasks), on the local machine, Kubernetes or Slurm.
"""

EPILOG = """\
examples:
  orchestra validate                     check every spec of the repository here
  orchestra validate users/alice         check alice's specs (references resolve repo-wide)
  orchestra validate --offline task.yaml check without looking at the storage
  orchestra -C ~/specs validate --format json

exit codes: 0 ok, 1 error or invalid input, 130 interrupted (Ctrl-C).
Run 'orchestra COMMAND --help' for a command's options.
"""

VALIDATE_EPILOG = """\
Every error of every file is reported in one run, sorted, as
  file:line:col: $.json.path: message
YAML syntax errors are listed apart, first.

Which files are read: in a repository root (a directory with users/) only cluster.yaml,
clusters/** and users/**; in any other directory every *.yaml and *.yml, recursively. When
a path lies inside a repository, the rest of it is read too so that references resolve,
but only the paths given are reported on.

examples:
  orchestra validate examples/tasks
  orchestra validate --offline users/alice/task.yaml
  orchestra validate --format json | jq '.errors[].message'

exit codes: 0 valid, 1 invalid.
"""


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on usage errors; here 2 means "changes present", so usage is 1."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        raise FatalError(message, hint=f"run '{self.prog} --help' for usage")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="orchestra",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"orchestra {__version__}")
    parser.add_argument(
        "-C",
        dest="directory",
        metavar="DIR",
        default=".",
        help="run as if orchestra was started in DIR (like git -C)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    validate = commands.add_parser(
        "validate",
        help="check specs against the JSON Schemas and the semantic rules",
        description="Check every Cluster, Dataset and Task document under PATH "
        "(default: the current directory).",
        epilog=VALIDATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    validate.add_argument("paths", nargs="*", metavar="PATH", help="spec files or directories")
    validate.add_argument(
        "--offline",
        action="store_true",
        help="skip every check that needs the storage (datasets on disk, storage reachable)",
    )
    _add_format(validate)
    return parser


def _add_format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format", choices=("text", "json"), default="text", help="output format (default: text)"
    )


def _dispatch(args: argparse.Namespace) -> int:
    module = importlib.import_module(f"orchestra.commands.{args.command}")
    exit_code: int = module.run(args)
    return exit_code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code instead of exiting."""
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help(sys.stderr)
            return 1
        directory = os.path.abspath(os.path.expanduser(args.directory))
        if not os.path.isdir(directory):
            raise FatalError(f"-C {args.directory}: no such directory")
        args.directory = directory
        return _dispatch(args)
    except FatalError as exc:
        print(f"orchestra: error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("orchestra: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader went away (e.g. `orchestra status | head`): not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except Exception as exc:
        if os.environ.get("ORCHESTRA_DEBUG"):
            raise
        print(
            f"orchestra: internal error: {type(exc).__name__}: {exc}\n"
            "This is a bug in orchestra. Run again with ORCHESTRA_DEBUG=1 to see the "
            "traceback, and please report it.",
            file=sys.stderr,
        )
        return 1
