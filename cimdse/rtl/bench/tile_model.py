"""The Python model beside the tile's HDL: what the testbench expects of it.

Weights go into cells with :func:`cimdse.crossbar.program` (the same cells the RTL
is programmed with), expected outputs come from :func:`cimdse.crossbar.mvm`, and the
cycle count from :func:`cimdse.costs.tile_cycles_per_mvm`. Random stimulus is made
here too, so that a run is reproducible from its seed; a run may instead be handed
the weights and inputs of a real layer (an ``.npz`` file with ``w`` [K, N] and ``x``
[M, K]), whose outputs the testbench then writes back (``y`` [M, N]).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cimdse.arch import CrossbarSpec
from cimdse.crossbar import ProgrammedCrossbar, adc_code_range, adc_shift, mvm, program
from cimdse.rtl.generate import TileParams, tile_params

CONFIG_ENV = "CIMDSE_TB_CONFIG"


@dataclass
class TbConfig:
    """One testbench run: the tile, the stimulus size and seed, and where to report."""

    params: TileParams
    vectors: int  # checked cycle by cycle, with random back-pressure
    stream: int  # streamed back to back, handshakes only (the throughput figure)
    seed: int
    result_path: Path | None
    jobs: list[tuple[Path, Path]] = field(default_factory=list)  # (.npz in, .npy out); empty: random

    def stimulus(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per job: (weights [K, N], checked inputs [v, K], streamed inputs [s, K]).
        Random: one job of ``vectors`` checked and ``stream`` streamed vectors. A real
        layer's job: its first ``vectors`` inputs checked, then all of them streamed."""
        if not self.jobs:
            rng = np.random.default_rng(self.seed)
            w = random_weights(self.params, rng)
            x = random_inputs(self.params, self.vectors + self.stream, rng)
            return [(w, x[: self.vectors], x[self.vectors :])]
        out = []
        for data_path, _ in self.jobs:
            with np.load(data_path) as data:
                w, x = data["w"].astype(np.int64), data["x"].astype(np.int64)
            out.append((w, x[: self.vectors], x))
        return out

    @classmethod
    def from_env(cls) -> TbConfig:
        return cls.load(Path(os.environ[CONFIG_ENV]))

    @classmethod
    def load(cls, path: Path) -> TbConfig:
        data: dict[str, Any] = json.loads(path.read_text())
        spec = CrossbarSpec.model_validate(data["spec"])
        p = tile_params(spec, data["w_bits"], data["a_bits"], data["k"], data["n"])
        result = Path(data["result"]) if data.get("result") else None
        jobs = [(Path(i), Path(o)) for i, o in data.get("jobs", [])]
        return cls(p, int(data["vectors"]), int(data["stream"]), int(data["seed"]), result, jobs)


def write_config(
    path: Path,
    p: TileParams,
    vectors: int,
    stream: int,
    seed: int,
    result_path: Path | None,
    jobs: list[tuple[Path, Path]] | None = None,
) -> Path:
    data = {
        "spec": p.spec.model_dump(mode="json"),
        "w_bits": p.w_bits,
        "a_bits": p.a_bits,
        "k": p.k,
        "n": p.n,
        "vectors": vectors,
        "stream": stream,
        "seed": seed,
        "result": str(result_path) if result_path else None,
        "jobs": [[str(i), str(o)] for i, o in jobs or []],
    }
    path.write_text(json.dumps(data, indent=2))
    return path


def random_weights(p: TileParams, rng: np.random.Generator) -> np.ndarray:
    """Signed weights [K, N]: uniform, with a third of the outputs at full magnitude
    (so that all-max inputs drive the ADC into saturation where it can saturate)."""
    wmax = 2 ** (p.w_bits - 1) - 1
    w = rng.integers(-wmax, wmax + 1, size=(p.k, p.n))
    big = rng.random(p.n) < 1 / 3
    w[:, big] = wmax * rng.choice([-1, 1], size=(p.k, int(big.sum())))
    if p.n >= 2:  # one output all +max, one all -max
        w[:, 0], w[:, -1] = wmax, -wmax
    return w


def random_inputs(p: TileParams, count: int, rng: np.random.Generator) -> np.ndarray:
    """Unsigned inputs [count, K]: all-zero, all-max, then random (some sparse)."""
    xmax = 2**p.a_bits - 1
    x = rng.integers(0, xmax + 1, size=(count, p.k))
    if count > 0:
        x[0] = 0
    if count > 1:
        x[1] = xmax
    for i in range(2, count, 3):  # sparse vectors: partial sums near zero, rounding matters
        x[i] *= rng.random(p.k) < 0.2
    return x


class TileModel:
    """Expected results of the tile for a programmed weight matrix."""

    def __init__(self, p: TileParams, w: np.ndarray) -> None:
        self.p = p
        self.w = w
        self.xb: ProgrammedCrossbar = program(w, p.spec, p.w_bits)

    def cell_writes(self) -> list[tuple[int, int, int]]:
        """(row, physical column, value) for every used cell as stored (flipped columns
        flipped), as the port takes them."""
        m = self.xb.physical_matrix(stored=True)
        return [(r, c, int(m[r, c])) for r in range(m.shape[0]) for c in range(m.shape[1])]

    def flip_writes(self) -> list[tuple[int, int, int]]:
        """(row group, physical column, flip bit) for every used column of every group,
        as the port takes them with ``prog_flip`` high; none without the flip encoding."""
        if not self.p.flip:
            return []
        f = self.xb.physical_flips()
        return [(g, c, int(f[g, c])) for g in range(f.shape[0]) for c in range(f.shape[1])]

    def expected(self, x: np.ndarray) -> np.ndarray:
        if len(x) == 0:
            return np.zeros((0, self.p.n), dtype=np.int64)
        return mvm(x, self.xb, a_bits=self.p.a_bits, fast_path=False)

    def saturated_conversions(self, x: np.ndarray) -> int:
        """How many ADC conversions of these inputs hit the top or bottom code."""
        s = adc_shift(self.p.spec)
        if s is None:
            return 0
        lo, hi = adc_code_range(self.p.spec)
        spec, p = self.p.spec, self.p
        d = spec.dac_bits
        m = self.xb.physical_matrix(stored=True).astype(np.int64) * self.xb.row_sign[:, None]  # [rows, cols]
        if p.flip:  # the unit column is converted too
            m = np.concatenate([m, np.ones((m.shape[0], 1), dtype=np.int64)], axis=1)
        rows = np.repeat(x, 2, axis=1) if p.signed else x  # inputs on physical rows
        a = spec.active_rows_or_all
        count = 0
        for i in range(p.slices):
            xs = (rows >> (i * d)) & (2**d - 1)
            for g0 in range(0, p.rows_used, a):
                psum = xs[:, g0 : g0 + a] @ m[g0 : g0 + a]
                code = (psum + (2 ** (s - 1) if s else 0)) >> s
                count += int(((code > hi) | (code < lo)).sum())
        return count


def to_signed(value: int, width: int) -> int:
    return value - (1 << width) if value >> (width - 1) & 1 else value


def pack(values: np.ndarray, width: int) -> int:
    """Element i at bits [i*width +: width] (unsigned values)."""
    out = 0
    for i, v in enumerate(values.tolist()):
        out |= int(v) << (i * width)
    return out


def unpack_signed(word: int, count: int, width: int) -> list[int]:
    mask = (1 << width) - 1
    return [to_signed((word >> (i * width)) & mask, width) for i in range(count)]
