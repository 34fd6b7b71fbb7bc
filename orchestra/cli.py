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
from typing import Any, NoReturn

from orchestra import __version__
from orchestra.errors import FatalError
from orchestra.interrupts import catch_sigterm, deferred, restore, stopped

DESCRIPTION = """\
Orchestra runs one container command per configuration file, declared in YAML specs
committed to git (Clusters, Datasets, Tasks), on the local machine, Kubernetes or Slurm.
"""

EPILOG = """\
examples:
  orchestra validate                     check every spec of the repository here
  orchestra plan                         what apply would change
  orchestra apply                        run it (locally: to the end)
  orchestra status                       the tasks and their jobs
  orchestra validate users/alice         check alice's specs (references resolve repo-wide)
  orchestra validate --offline task.yaml check without looking at the storage
  orchestra -C ~/specs validate --format json

exit codes: 0 ok, 1 error or invalid input, 2 changes present (plan --detailed-exitcode),
3 a task ended broken or finalized (apply, retry), 130 interrupted (Ctrl-C), 143 terminated
(SIGTERM); both after a clean stop: running jobs stopped and left pending, outcomes kept.
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


PLAN_EPILOG = """\
examples:
  orchestra plan                          what would change, task by task
  orchestra plan --detailed-exitcode      exit 2 if anything would change (CI)
  orchestra plan -o plan.json             save it; 'orchestra apply plan.json' runs it
  orchestra plan -o - | orchestra apply -  the saved plan on stdout (the plan shown on stderr)
  orchestra plan --format json

A saved plan records digests of the specs and of the observed status: apply refuses it
when either changed since. -o replaces only a regular file (or creates one): a symlink,
FIFO, device or directory there is refused and left as it is.
A task whose status files are damaged is reported (file, line, problem) and left out of the
plan; the others are planned, and the exit code is 1.
"""

APPLY_EPILOG = """\
examples:
  orchestra apply                         plan and run everything here
  orchestra apply users/alice             alice's tasks only
  orchestra apply plan.json               exactly a saved plan (refused when stale)

Idempotent: a job that finished with the same inputs never runs again. Ctrl-C stops the
running jobs, leaves them pending and exits 130 (SIGTERM: the same, exit 143); a job that
had finished keeps its outcome. The next apply resumes.
exit codes: 0 done, 1 error (also: a task skipped, its status files damaged or unsafe; the
others are applied), 3 a task this run acted on ended broken or finalized.
"""

RECONCILE_EPILOG = """\
examples:
  orchestra reconcile                          HEAD of the repository here, once (CI on push)
  orchestra reconcile --ref origin/main --fetch
  orchestra reconcile --dry-run --format json  what the commit would change
  orchestra reconcile --watch --interval 30    a long-running reconciler (fetches each pass)

Two reconcilers of the same storage never act at once: the second waits --lock-timeout
seconds, then exits 1 naming the holder (pid, host, since, commit).
exit codes: 0 done, 1 error or invalid commit, 3 a task this pass acted on ended broken or
finalized.
"""

DATASET_EPILOG = """\
example (the original: orchestra_registry.py -d ... -p ... --cluster LPS):
  orchestra dataset add -d user.alice.my_data_file -p my_data_file.json
  orchestra dataset add -d user.alice.my_config_files -p my_config_files/
"""

TASK_EPILOG = """\
example (the original: orchestra_create.py with the same flags):
  orchestra task new -c user.alice.my_config_files -d user.alice.my_data_file -o output \\
      -t user.alice.my_task_tutorial --containerImage alice/orchestra_tutorial:1.0 \\
      --exec "python3 /job_tuning.py -d %DATA -c %IN -o %OUT" --cluster lps --bypass
"""

RENDER_EPILOG = """\
examples:
  orchestra render user.alice.my_task_tutorial | less
  orchestra render user.alice.my_task_tutorial -o manifests/ --validate
  orchestra render user.alice.my_task_tutorial | kubectl apply --dry-run=client -f -
"""

STATUS_EPILOG = """\
examples:
  orchestra status
  orchestra status --user alice
  orchestra status user.alice.my_task_tutorial --state failed
  orchestra status user.alice.my_task_tutorial --format json

A task whose status files are damaged (events.jsonl lines that are not events, an
unreadable status.yaml) is listed as "damaged", its file, line and problem on stderr (in
JSON: an entry with "error"), and the exit code is 1; the other tasks are shown as usual.
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

    plan = _command(
        commands,
        "plan",
        "show what apply would do",
        "Compare the specs (desired) with the status sidecars in storage (observed) and show, per "
        "task, create / update / resume / unchanged / orphan, and per job create / rerun.",
        PLAN_EPILOG,
    )
    plan.add_argument("paths", nargs="*", metavar="PATH", help="spec files or directories")
    plan.add_argument(
        "-o", "--out", metavar="PLAN", help="save the plan (JSON) for 'apply PLAN'; '-' for stdout"
    )
    plan.add_argument(
        "--detailed-exitcode",
        action="store_true",
        help="exit 2 when there are changes, 0 when none (1 stays an error)",
    )
    plan.add_argument(
        "--detail", action="store_true", help="list every job change and unchanged task"
    )
    plan.add_argument(
        "--format",
        choices=("text", "json", "markdown"),
        default="text",
        help="output format (markdown: for a CI job summary)",
    )

    apply = _command(
        commands,
        "apply",
        "carry the plan out",
        "Plan, then launch: test jobs first, then the rest; retries, parallelism and status as "
        "the specs say. On the local backend apply returns when every task it touched is "
        "finished; on Kubernetes and Slurm it submits and returns unless --wait.",
        APPLY_EPILOG,
    )
    apply.add_argument(
        "paths", nargs="*", metavar="PATH", help="spec files or directories, or a saved PLAN"
    )
    _add_apply_options(apply)
    _add_format(apply)

    status = _command(
        commands,
        "status",
        "show tasks, or one task's jobs",
        "Without TASK: a table of every task in the storage of the Clusters defined here. "
        "With TASK: its jobs.",
        STATUS_EPILOG,
    )
    status.add_argument("task", nargs="?", metavar="TASK", help="a task name")
    status.add_argument("--user", metavar="USER", help="only this user's tasks")
    status.add_argument(
        "--state",
        choices=("pending", "submitted", "running", "done", "failed"),
        help="with TASK: only jobs in this state",
    )
    _add_format(status)

    render = _command(
        commands,
        "render",
        "show what the backend would submit for a task",
        "Render the Kubernetes Job manifests of TASK (or, on the local backend, the shell "
        "script of each job), without submitting anything.",
        RENDER_EPILOG,
    )
    render.add_argument("task", metavar="TASK")
    render.add_argument("-o", "--out", metavar="DIR", help="write one file per job into DIR")
    render.add_argument(
        "--validate",
        action="store_true",
        help="check each manifest against the Kubernetes OpenAPI schema (strict)",
    )

    _add_reconcile(commands)
    _add_scaffolding(commands)

    retry = _command(
        commands,
        "retry",
        "run a task's failed jobs again",
        "Reset the failed jobs of TASK (a fresh retry budget each) and run them; on a broken "
        "task the failed test jobs run first. Exit 3 when the task ends broken or finalized.",
        None,
    )
    retry.add_argument("task", metavar="TASK")

    delete = _command(
        commands,
        "delete",
        "stop a task (and with --purge remove its directory)",
        "Cancel the running jobs of TASK and mark it killed; apply leaves a killed task alone "
        "while its spec is unchanged. --purge also removes its directory (outputs included), "
        "so the next apply launches it afresh.",
        None,
    )
    delete.add_argument("task", metavar="TASK")
    delete.add_argument("--purge", action="store_true", help="also remove the task directory")
    return parser


def _add_reconcile(commands: Any) -> None:
    reconcile = _command(
        commands,
        "reconcile",
        "make a git commit true (CI on every push, or --watch)",
        "Read the specs from a commit of the git repository (its object database: uncommitted "
        "edits never reach a cluster), validate all of them (an invalid commit applies "
        "nothing), plan and apply under a per-storage lock, record the commit in each task's "
        "status and in <storage>/.orchestra/reconcile.json.",
        RECONCILE_EPILOG,
    )
    reconcile.add_argument(
        "--repo", default=".", metavar="DIR", help="the git repository of the specs (default: .)"
    )
    reconcile.add_argument(
        "--ref", default="HEAD", help="branch, tag or commit to reconcile (default: HEAD)"
    )
    reconcile.add_argument("--dry-run", action="store_true", help="plan only; change nothing")
    reconcile.add_argument(
        "--fetch", action="store_true", help="fetch the remotes first (always with --watch)"
    )
    reconcile.add_argument(
        "--watch", action="store_true", help="keep reconciling: poll the ref every --interval"
    )
    reconcile.add_argument(
        "--interval", type=float, default=60.0, metavar="S", help="seconds between passes (60)"
    )
    reconcile.add_argument(
        "--passes", type=int, default=0, metavar="N", help="with --watch: stop after N passes"
    )
    reconcile.add_argument(
        "--lock-timeout",
        type=float,
        default=600.0,
        metavar="S",
        help="how long to wait for another reconcile of the same storage (default 600 s)",
    )
    _add_apply_options(reconcile)
    reconcile.add_argument(
        "--offline", action="store_true", help="skip the checks that need the storage"
    )
    _add_format(reconcile)


def _add_scaffolding(commands: Any) -> None:
    dataset = _command(
        commands,
        "dataset",
        "write a Dataset spec (the original orchestra_registry.py)",
        "Scaffolding: writes users/<owner>/datasets/<name>.yaml and validates it with the "
        "rest of the repository; commit it to make it real.",
        DATASET_EPILOG,
    )
    dataset_actions = dataset.add_subparsers(dest="action", metavar="ACTION", required=True)
    dataset_add = dataset_actions.add_parser(
        "add",
        help="a new Dataset: a file or directory under <storage>/<owner>/files/",
        description="A new Dataset spec, from the original tool's flags.",
    )
    dataset_add.add_argument(
        "-d", "--dataset", required=True, metavar="NAME", help="user.<owner>.<name>"
    )
    dataset_add.add_argument(
        "-p", "--path", required=True, help="relative to <storage>/<owner>/files/"
    )
    dataset_add.add_argument(
        "--cluster", help="accepted for the original tool's sake: a Dataset is per storage"
    )
    dataset_add.add_argument("--description", help="a line saying what it holds")
    dataset_add.add_argument("--offline", action="store_true", help="skip storage checks")

    task = _command(
        commands,
        "task",
        "write a Task spec (the original orchestra_create.py)",
        "Scaffolding: writes users/<owner>/tasks/<name>.yaml and validates it with the rest "
        "of the repository; commit it (or 'orchestra apply') to run it.",
        TASK_EPILOG,
    )
    task_actions = task.add_subparsers(dest="action", metavar="ACTION", required=True)
    task_new = task_actions.add_parser(
        "new", help="a new Task", description="A new Task spec, from the original tool's flags."
    )
    task_new.add_argument("-t", "--task", required=True, metavar="NAME", help="user.<owner>.<name>")
    task_new.add_argument(
        "-c",
        "--configFile",
        dest="configs",
        required=True,
        metavar="DATASET",
        help="the configs Dataset (one job per file)",
    )
    task_new.add_argument(
        "-d", "--dataFile", dest="data", required=True, metavar="DATASET", help="the data Dataset"
    )
    task_new.add_argument("-o", "--output", required=True, help="the file each job writes (%%OUT)")
    task_new.add_argument(
        "--containerImage", "--image", dest="image", required=True, metavar="IMAGE"
    )
    task_new.add_argument(
        "--exec", required=True, metavar="COMMAND", help="with %%DATA, %%IN and %%OUT"
    )
    task_new.add_argument("--cluster", required=True, help="a Cluster name")
    task_new.add_argument("--bypass", action="store_true", help="skip the test jobs")
    task_new.add_argument("--testJobs", type=int, metavar="N")
    task_new.add_argument("--maxRetries", type=int, metavar="N")
    task_new.add_argument("--parallelism", type=int, metavar="N")
    task_new.add_argument("--offline", action="store_true", help="skip storage checks")


def _command(
    commands: Any, name: str, help_text: str, description: str, epilog: str | None
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=help_text,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def _add_apply_options(parser: argparse.ArgumentParser) -> None:
    """What apply and reconcile share: --wait, --prune, --force."""
    parser.add_argument(
        "--wait", action="store_true", help="follow the jobs to the end (remote backends)"
    )
    parser.add_argument(
        "--prune",
        action="store_true",
        help="stop orphaned tasks (no spec): running jobs cancelled; on Kubernetes also delete "
        "Jobs that no status knows as a current attempt",
    )
    parser.add_argument(
        "--force", action="store_true", help="with --prune: even when more than half would go"
    )


def _add_format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format", choices=("text", "json"), default="text", help="output format (default: text)"
    )


def _dispatch(args: argparse.Namespace) -> int:
    with deferred():  # a Ctrl-C while the command's modules load acts once they have
        module = importlib.import_module(f"orchestra.commands.{args.command}")
    exit_code: int = module.run(args)
    return exit_code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code instead of exiting."""
    previous = catch_sigterm()  # every command: SIGTERM is a clean stop, exit 143
    try:
        return _main(argv)
    except KeyboardInterrupt as exc:  # in the handlers of _main, or on its way out
        return stopped(exc)
    finally:
        restore(previous)


def _main(argv: Sequence[str] | None) -> int:
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
    except KeyboardInterrupt as exc:
        return stopped(exc)
    except BrokenPipeError:
        # the reader went away (e.g. `orchestra status | head`): not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except OSError as exc:
        # the file system said no (full disk, read-only storage, permissions): not a bug
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"orchestra: error: {where}{exc.strerror or exc}", file=sys.stderr)
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
