"""Lint and simulate a generated tile against the functional model.

Glue between the generator, Icarus Verilog and the cocotb testbench in ``sim/``:
every run gets its own build folder, so runs can go in parallel.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cimdse.arch import CrossbarSpec
from cimdse.errors import CimdseError
from cimdse.rtl.generate import TileParams, generate

REPO_ROOT = Path(__file__).resolve().parents[2]
SIM_DIR = REPO_ROOT / "sim"
TOPLEVEL = "cimdse_tile"
INSTALL_HINT = "Icarus Verilog (iverilog, vvp) is needed: install it with `apt-get install iverilog`"


def require_icarus() -> None:
    missing = [tool for tool in ("iverilog", "vvp") if shutil.which(tool) is None]
    if missing:
        raise CimdseError(f"{', '.join(missing)} not found on PATH. {INSTALL_HINT}")


def iverilog_lint(path: Path, workdir: Path) -> None:
    """``iverilog -g2001 -Wall``: any warning or error is a failure."""
    require_icarus()
    proc = subprocess.run(
        ["iverilog", "-g2001", "-Wall", "-o", str(workdir / "lint.vvp"), str(path)],
        capture_output=True,
        text=True,
    )
    out = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0 or out:
        raise CimdseError(f"{path}: iverilog -Wall is not clean:\n{out}")


@dataclass
class VerifyResult:
    """What one simulation found; ``ok`` only with no mismatch, loss or cycle error."""

    params: TileParams
    summary: dict[str, Any] = field(default_factory=dict)
    passed: bool = False
    seconds: float = 0.0
    log: Path | None = None

    @property
    def ok(self) -> bool:
        s = self.summary
        return (
            self.passed
            and bool(s)
            and s.get("mismatches") == 0
            and s.get("extra_outputs") == 0
            and not s.get("cycle_errors")
            and set(s.get("interval_measured", [])) <= {s.get("cycles_formula")}
        )


@contextlib.contextmanager
def _repo_on_path() -> Iterator[None]:
    """The cocotb runner hands ``sys.path`` to the simulator's Python: put this
    checkout first so the testbench imports this ``cimdse`` and ``sim``."""
    saved = list(sys.path)
    sys.path.insert(0, str(REPO_ROOT))
    try:
        yield
    finally:
        sys.path[:] = saved


def simulate(
    spec: CrossbarSpec,
    w_bits: int,
    a_bits: int,
    build_dir: str | Path,
    *,
    vectors: int = 20,
    seed: int = 0,
    k: int | None = None,
    n: int | None = None,
    _broken_rounding: bool = False,
) -> VerifyResult:
    """Generate, lint (pyverilog and ``iverilog -Wall``) and simulate the tile."""
    from cocotb_tools.runner import get_results, get_runner

    require_icarus()
    if not (SIM_DIR / "test_tile.py").exists():
        raise CimdseError(f"the testbench folder {SIM_DIR} is missing: verify runs from a source checkout")
    with _repo_on_path():  # whatever the working folder, the testbench is this checkout's
        from sim.tile_model import CONFIG_ENV, write_config
    build = Path(build_dir).resolve()
    build.mkdir(parents=True, exist_ok=True)
    src = build / f"{TOPLEVEL}.v"
    start = time.perf_counter()
    p = generate(spec, w_bits, a_bits, src, module=TOPLEVEL, k=k, n=n, _broken_rounding=_broken_rounding)
    iverilog_lint(src, build)
    result_path = build / "summary.json"
    result_path.unlink(missing_ok=True)
    config = write_config(build / "tb_config.json", p, vectors, seed, result_path)
    log = build / "sim.log"
    runner = get_runner("icarus")
    passed = False
    with _repo_on_path():
        runner.build(sources=[src], hdl_toplevel=TOPLEVEL, build_dir=build, always=True, log_file=build / "build.log")
        env = {CONFIG_ENV: str(config), "COCOTB_LOG_LEVEL": "WARNING"}
        # Under pytest the runner itself exits on a failed test; the results file
        # and the summary are read either way.
        with contextlib.suppress(SystemExit):
            xml = runner.test(
                test_module="sim.test_tile",
                hdl_toplevel=TOPLEVEL,
                build_dir=build,
                test_dir=build,
                extra_env=env,
                log_file=log,
                results_xml=str(build / "results.xml"),
            )
        xml = build / "results.xml"
        if xml.exists():
            with contextlib.suppress(RuntimeError):
                tests, failed = get_results(xml)
                passed = tests > 0 and failed == 0
    summary = json.loads(result_path.read_text()) if result_path.exists() else {}
    return VerifyResult(p, summary, passed, time.perf_counter() - start, log)


def failure_reason(res: VerifyResult) -> str:
    """One line on what went wrong, for the CLI."""
    s = res.summary
    if not s:
        return f"the simulation did not finish; see {res.log}"
    if s["mismatches"]:
        first = s["first_mismatches"][0] if s["first_mismatches"] else {}
        return f"{s['mismatches']} of {s['vectors']} vectors differ from the model (first: {first})"
    if s["extra_outputs"]:
        return f"{s['extra_outputs']} duplicated or phantom result(s)"
    if s["cycle_errors"]:
        return f"cycles differ from the formula: {s['cycle_errors'][0]}"
    if set(s["interval_measured"]) - {s["cycles_formula"]}:
        return f"back-to-back interval {s['interval_measured']} != formula {s['cycles_formula']}"
    return f"the testbench failed; see {res.log}"
