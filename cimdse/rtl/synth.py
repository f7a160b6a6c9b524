"""Yosys synthesis of a generated tile: a quick, technology-independent size figure."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from cimdse.errors import CimdseError


def synth_cells(path: str | Path, top: str, timeout_s: float = 600.0) -> dict[str, int]:
    """Run ``yosys synth`` on ``path`` and return its cell counts by type, plus
    ``total``. Memories are mapped to flip-flops (``memory_map``), so the array's
    cells count as registers."""
    if shutil.which("yosys") is None:
        raise CimdseError("yosys not found on PATH: install it with `apt-get install yosys`")
    with tempfile.TemporaryDirectory(prefix="cimdse-yosys-") as tmp:
        stat = Path(tmp) / "stat.txt"
        script = f"read_verilog {path}; synth -flatten -top {top}; tee -q -o {stat} stat"
        try:
            proc = subprocess.run(["yosys", "-q", "-p", script], capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise CimdseError(f"yosys did not finish within {timeout_s:.0f} s; synthesize a smaller tile") from None
        if proc.returncode != 0 or not stat.exists():
            raise CimdseError(f"yosys failed on {path}:\n{(proc.stderr or proc.stdout).strip()[-2000:]}")
        return parse_stat(stat.read_text())


def parse_stat(text: str) -> dict[str, int]:
    """Cell counts from the last ``stat`` report of a yosys log."""
    block = text[text.rfind("Number of cells:") :]
    if not block:
        raise CimdseError("yosys printed no cell statistics")
    cells: dict[str, int] = {}
    total = re.match(r"Number of cells:\s+(\d+)", block)
    for name, count in re.findall(r"^\s+(\$_?\w+_?)\s+(\d+)\s*$", block, flags=re.M):
        cells[name] = int(count)
    cells["total"] = int(total.group(1)) if total else sum(cells.values())
    return cells
