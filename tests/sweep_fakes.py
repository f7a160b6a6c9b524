"""Stand-in point evaluators for testing the sweep machinery on its own (the real one
compiles; these only read the arch spec). Module-level so spawned workers can import them."""

from __future__ import annotations

import os
import time
from pathlib import Path

from cimdse import arch as arch_mod
from cimdse.errors import CimdseError
from cimdse.policy import parse_bits
from cimdse.sweep import Unit, UnitResult, one_line


def fake_evaluator(unit: Unit) -> UnitResult:
    """Deterministic metrics from the spec; an invalid grid point becomes a status.
    ``CIMDSE_FAKE_SLEEP`` seconds per unit slow it down; ``CIMDSE_FAKE_CALLS`` names a
    file that gets one line per point evaluated (to prove nothing runs twice)."""
    delay = float(os.environ.get("CIMDSE_FAKE_SLEEP", "0"))
    if delay:
        time.sleep(delay)
    calls = os.environ.get("CIMDSE_FAKE_CALLS")
    if calls:
        with open(calls, "a") as f:
            f.write("".join(f"{p.id}\n" for p in unit.points))
    try:
        spec = arch_mod.load(unit.arch_ref, unit.overrides())
    except CimdseError as err:
        return {p.id: {"status": f"invalid: {one_line(err)}"} for p in unit.points}
    out: UnitResult = {}
    for p in unit.points:
        w, a = parse_bits(p.bits) if p.bits else (len(Path(p.policy).name), 8)
        lat = 1e-6 * w * a * 4096 / spec.crossbar.rows / spec.crossbar.cell_bits
        area = spec.crossbar.rows * spec.crossbar.cols * 1e-6
        out[p.id] = {
            "latency_s": lat,
            "interval_s": lat / 2,
            "energy_j": lat * 1e-3,
            "area_mm2": area,
            "occupied_area_mm2": area * w / 16,  # fewer weight bits, fewer tiles
            "resident_area_mm2": area * w / 16,
            "crossbars": 4,
            "speedup_vs_w8a8": 64 / (w * a),
            "status": "ok",
        }
    return out


def broken_evaluator(unit: Unit) -> UnitResult:
    raise RuntimeError("simulated bug")
