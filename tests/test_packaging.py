"""`pip install .` into a fresh venv, then run from another directory: the wheel carries its
JSON Schemas and templates, and validates the examples."""

from __future__ import annotations

import subprocess
import venv
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, ROOT


@pytest.mark.slow
def test_pip_install_into_a_fresh_venv_validates_the_examples(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PYTHONPATH", raising=False)  # the installed copy, not a source tree
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
    # the distribution is orchestra-gitops ("orchestra" on PyPI is an unrelated project);
    # the command and the import package stay orchestra
    probe = (
        "from importlib.metadata import distribution, packages_distributions\n"
        "d = distribution('orchestra-gitops')\n"
        "print(d.metadata['Name'], d.version)\n"
        "print(*[e.value for e in d.entry_points if e.group == 'console_scripts'])\n"
        "print(*packages_distributions()['orchestra'])\n"
    )
    shown = subprocess.run(
        [str(python), "-c", probe], cwd=elsewhere, capture_output=True, text=True, check=True
    ).stdout.split("\n")
    assert shown[:3] == ["orchestra-gitops 0.1.0", "orchestra.__main__:main", "orchestra-gitops"]
    version = subprocess.run(
        [str(env_dir / "bin" / "orchestra"), "--version"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        check=True,
    )
    assert version.stdout.strip() == "orchestra 0.1.0"
