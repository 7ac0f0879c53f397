"""The code passes the linter, the formatter check and the type checker configured in pyproject.toml.

Each check fails with the tool's own report. mypy cannot find ``regretflow.*``
from the source tree (engine/, learners/ and connectors/ are mapped onto
``regretflow.*`` by setuptools), so it reads them through a symlink tree.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
PACKAGE_FOLDERS = ("engine", "learners", "connectors")
LINTED_FOLDERS = (*PACKAGE_FOLDERS, "tests")


def run_tool(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env, capture_output=True, text=True, check=False)


def test_ruff_check_passes() -> None:
    result = run_tool(["ruff", "check", "--no-cache", *LINTED_FOLDERS])
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_leaves_files_unchanged() -> None:
    result = run_tool(["ruff", "format", "--check", "--no-cache", *LINTED_FOLDERS, "docs"])  # docs: the doctested examples
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_passes(tmp_path: Path) -> None:
    package_root = tmp_path / "regretflow"
    package_root.mkdir()
    for folder in PACKAGE_FOLDERS:
        (package_root / folder).symlink_to(REPO / folder, target_is_directory=True)
    env = {**os.environ, "MYPYPATH": str(tmp_path)}
    packages = [arg for folder in PACKAGE_FOLDERS for arg in ("-p", f"regretflow.{folder}")]
    result = run_tool(
        ["mypy", "--config-file", str(REPO / "pyproject.toml"), "--cache-dir", str(tmp_path / "mypy-cache"), *packages],
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
