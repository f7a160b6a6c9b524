"""Yosys synthesis of a generated tile: a quick, technology-independent size figure.

``synth -flatten`` maps the tile onto yosys's generic gate library ($_AND_, $_XOR_,
$_MUX_, ... and flip-flops $_DFF*/$_SDFF*); memories are mapped to flip-flops
(``memory_map``), so the array's cells count as registers. A latch ($_DLATCH*, $_SR*)
would mean an incomplete assignment in combinational logic: the tile has none.
:func:`synth_digital_part` synthesizes the tile's digital part alone
(:func:`cimdse.rtl.generate.render_digital_part`), the figure set beside the cost
model's shift-and-add and register area.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cimdse.errors import CimdseError
from cimdse.files import write_text
from cimdse.rtl.generate import TileParams, render_digital_part

YOSYS_HINT = "install it with `apt-get install yosys`"


@dataclass(frozen=True)
class SynthStats:
    """Cell counts by yosys cell type."""

    cells: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.cells.values())

    @property
    def flip_flops(self) -> int:
        return sum(v for k, v in self.cells.items() if "DFF" in k)

    @property
    def latches(self) -> int:
        return sum(v for k, v in self.cells.items() if "DLATCH" in k or k.startswith("$_SR"))

    @property
    def logic(self) -> int:
        return self.total - self.flip_flops - self.latches


def require_yosys() -> None:
    if shutil.which("yosys") is None:
        raise CimdseError(f"yosys not found on PATH: {YOSYS_HINT}")


def synth_stats(path: str | Path, top: str, timeout_s: float = 600.0) -> SynthStats:
    """Run ``yosys synth -flatten`` on ``path`` and return its cell counts."""
    require_yosys()
    with tempfile.TemporaryDirectory(prefix="cimdse-yosys-") as tmp:
        stat = Path(tmp) / "stat.txt"
        script = f"read_verilog {path}; synth -flatten -top {top}; tee -q -o {stat} stat"
        try:
            proc = subprocess.run(["yosys", "-q", "-p", script], capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise CimdseError(f"yosys did not finish within {timeout_s:.0f} s; synthesize a smaller tile") from None
        if proc.returncode != 0 or not stat.exists():
            raise CimdseError(f"yosys failed on {path}:\n{(proc.stderr or proc.stdout).strip()[-2000:]}")
        return SynthStats(parse_stat(stat.read_text()))


def synth_digital_part(p: TileParams, timeout_s: float = 600.0) -> SynthStats:
    """Cell counts of the tile's digital part alone (input latch, flip restore,
    shift-and-add, output combination and register, control)."""
    module, text = render_digital_part(p)
    with tempfile.TemporaryDirectory(prefix="cimdse-yosys-") as tmp:
        path = Path(tmp) / f"{module}.v"
        write_text(text, path)
        return synth_stats(path, module, timeout_s)


def parse_stat(text: str) -> dict[str, int]:
    """Cell counts by type from the last ``stat`` report of a yosys log."""
    block = text[text.rfind("Number of cells:") :]
    if "Number of cells:" not in block:
        raise CimdseError("yosys printed no cell statistics")
    return {name: int(count) for name, count in re.findall(r"^\s+(\$_?\w+_?)\s+(\d+)\s*$", block, flags=re.M)}
