"""`pip install .` into a fresh venv, then run from another directory: the wheel carries its
JSON Schemas and templates, and validates the examples."""

from __future__ import annotations

import subprocess
import venv
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, ROOT


@pytest.mark.slow
def test_pip_install_into_a_fresh_venv_validates_the_examples(tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(ROOT)],
        check=True,
        capture_output=True,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run(
        [str(python), "-c", "import orchestra.resources as r; print(r.data_dir('schemas'))"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert where.startswith(str(env_dir)), where  # the installed copy, not the source tree
    assert Path(where, "task.schema.json").is_file()
    templates = Path(where).parent / "templates"
    assert templates.is_dir()
    done = subprocess.run(
        [str(env_dir / "bin" / "orchestra"), "validate", str(EXAMPLES / "tasks")],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok: 4 documents in 3 files valid" in done.stdout
