"""The command line as users meet it: help, version, exit codes, the error handler."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import orchestra
from orchestra.commands import validate as validate_command
from tests.conftest import EXAMPLES, VENV_BIN, Run


def test_help_text(capsys: pytest.CaptureFixture[str]) -> None:
    from orchestra.cli import main

    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "validate" in out
    assert "examples:" in out
    assert "orchestra validate --offline" in out


def test_validate_help_explains_output_format(capsys: pytest.CaptureFixture[str]) -> None:
    from orchestra.cli import main

    with pytest.raises(SystemExit):
        main(["validate", "--help"])
    out = capsys.readouterr().out
    assert "file:line:col: $.json.path: message" in out
    assert "--offline" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from orchestra.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"orchestra {orchestra.__version__}"


def test_no_command_prints_help_and_exits_1(run: Run) -> None:
    result = run()
    assert result.code == 1
    assert "usage: orchestra" in result.err


def test_usage_error_exits_1_not_2(run: Run) -> None:
    result = run("validate", "--format", "xml")
    assert result.code == 1
    assert "invalid choice: 'xml'" in result.err
    assert "hint: run 'orchestra validate --help'" in result.err


def test_unknown_command_exits_1(run: Run) -> None:
    result = run("frobnicate")
    assert result.code == 1
    assert "invalid choice: 'frobnicate'" in result.err


def test_dash_C_runs_as_if_started_there(run: Run, tmp_path: Path) -> None:
    result = run("-C", str(EXAMPLES / "tasks"), "validate")
    assert result.code == 0, result.out
    assert "ok: 4 documents in 3 files valid" in result.out
    assert run("-C", str(tmp_path / "missing"), "validate").code == 1


def test_missing_path_is_reported_not_raised(run: Run, tmp_path: Path) -> None:
    result = run("-C", str(tmp_path), "validate", "nowhere.yaml")
    assert result.code == 1
    assert result.out.splitlines()[1] == "nowhere.yaml: no such file or directory"


def test_no_spec_files_is_said(run: Run, tmp_path: Path) -> None:
    result = run("-C", str(tmp_path), "validate")
    assert result.code == 0
    assert "no spec files found" in result.err


def test_json_format(run: Run) -> None:
    result = run("-C", str(EXAMPLES / "tasks"), "validate", "--format", "json")
    assert result.code == 0
    report = json.loads(result.out)
    assert report == {"valid": True, "files": 3, "documents": 4, "syntaxErrors": [], "errors": []}


def test_json_format_errors(run: Run, tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("a: [\n---\nkind: Tsk\n", encoding="utf-8")
    (tmp_path / "worse.yaml").write_text("apiVersion: orchestra/v1\nkind: Tsk\n", encoding="utf-8")
    result = run("-C", str(tmp_path), "validate", "--format", "json")
    assert result.code == 1
    report = json.loads(result.out)
    assert report["valid"] is False
    assert [(e["file"], e["line"], e["column"]) for e in report["syntaxErrors"]] == [
        ("bad.yaml", 2, 1)
    ]
    assert report["errors"] == [
        {
            "file": "worse.yaml",
            "line": 2,
            "column": 7,
            "path": "$.kind",
            "message": "unknown kind 'Tsk': expected one of Cluster, Dataset, Task "
            "(did you mean 'Task'?)",
            "category": "schema",
        }
    ]


def test_ctrl_c_exits_130(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(validate_command, "run", interrupted)
    result = run("validate")
    assert result.code == 130
    assert "interrupted" in result.err


def test_a_bug_says_so_without_a_traceback(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(args: object) -> int:
        raise ZeroDivisionError("division by zero")

    monkeypatch.delenv("ORCHESTRA_DEBUG", raising=False)
    monkeypatch.setattr(validate_command, "run", broken)
    result = run("validate")
    assert result.code == 1
    assert "internal error: ZeroDivisionError: division by zero" in result.err
    assert "This is a bug" in result.err
    assert "Traceback" not in result.err


def test_python_dash_m_is_the_same_program(tmp_path: Path) -> None:
    python = VENV_BIN / "python"
    for argv in ([str(python), "-m", "orchestra"], [str(VENV_BIN / "orchestra")]):
        done = subprocess.run(
            [*argv, "validate", str(EXAMPLES / "tasks")],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "ok: 4 documents in 3 files valid" in done.stdout
    version = subprocess.run(
        [str(python), "-m", "orchestra", "--version"], capture_output=True, text=True, check=True
    )
    assert version.stdout.strip() == f"orchestra {orchestra.__version__}"


def test_real_ctrl_c_on_a_running_process_exits_130(tmp_path: Path) -> None:
    """SIGINT delivered to a real orchestra process: exit 130, no traceback."""
    script = (
        "import time, orchestra.commands.validate as v\n"
        "def slow(args):\n"
        "    print('started', flush=True)\n"
        "    time.sleep(30)\n"
        "    return 0\n"
        "v.run = slow\n"
        "from orchestra.cli import main\n"
        "raise SystemExit(main(['validate']))\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "started"
    process.send_signal(signal.SIGINT)
    _out, err = process.communicate(timeout=10)
    assert process.returncode == 130
    assert "Traceback" not in err
