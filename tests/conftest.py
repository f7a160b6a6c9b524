"""Shared fixtures."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.fixture
def run_cli():
    """Run ``python -m cimdse ARGS`` in a subprocess; returns CompletedProcess."""

    def run(*args: str, check: bool | None = None, cwd=None, timeout: float = 600) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [sys.executable, "-m", "cimdse", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout
        )
        if check is True:
            assert proc.returncode == 0, proc.stderr
        return proc

    return run
