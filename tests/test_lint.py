"""The code stays ruff clean (configuration in pyproject.toml), as the style guide asks."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import REPO


def test_ruff_reports_nothing():
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (the dev extra installs it)")
    result = subprocess.run([ruff, "check", "--output-format", "concise", "."], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-1000:]
