"""Sweep planning: a config becomes units of work, each a list of points (CSV rows).

Work is grouped in *units*: one (model, input, arch, grid point) compiled once and
evaluated for all its bits/policies in one vectorized call. A point's id is a hash of
its definition in the config's own spellings, so it does not change when the sweep is
run from another folder or machine.

The plan is counted before it is expanded, and a sweep of more than ``max_points``
points (:data:`MAX_POINTS` unless raised) is refused: a grid of ten keys with ten values
each is a typo far more often than a wish. Units and points are made as they are
read (a lazy sequence: length and indexing by arithmetic), never held all at once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cimdse import arch as arch_mod
from cimdse.errors import CimdseError
from cimdse.sweep.config import Scalar, SweepConfig

METRICS = (
    "latency_s", "interval_s", "energy_j", "area_mm2", "occupied_area_mm2", "resident_area_mm2", "crossbars",
    "speedup_vs_w8a8",
)  # fmt: skip
SEARCH_METRICS = ("val_acc",)
#: most points a sweep plans unless told otherwise (``cimdse sweep --max-points``)
MAX_POINTS = 100_000


@dataclass(frozen=True)
class Point:
    """One row of the sweep. Fields hold the config's own spellings, so the id does not
    change when the sweep is run from another folder or machine."""

    model: str
    input: tuple[int, ...]
    arch: str
    grid: tuple[tuple[str, Scalar], ...]
    bits: str = ""
    policy: str = ""
    search: tuple[tuple[str, Any], ...] = ()

    @property
    def definition(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "model": self.model,
            "input": list(self.input),
            "arch": self.arch,
            "grid": dict(self.grid),
            "bits": self.bits.replace(" ", ""),
            "policy": self.policy,
        }
        if self.search:
            d["search"] = dict(self.search)
        return d

    @property
    def id(self) -> str:
        blob = json.dumps(self.definition, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Unit:
    """What one worker does at once: compile (model, arch at a grid point) once, then
    evaluate every point that shares it. Paths are resolved; points keep spellings."""

    model_ref: str
    input: tuple[int, ...]
    arch_ref: str
    grid: tuple[tuple[str, Scalar], ...]
    points: tuple[Point, ...]
    policy_refs: tuple[tuple[str, str], ...] = ()  # config spelling -> resolved path
    search_out: str = ""  # folder for the search points' outputs, set by run_sweep

    def overrides(self) -> list[str]:
        return [f"{k}={json.dumps(v)}" for k, v in self.grid]

    def with_points(self, points: Iterable[Point], search_out: str) -> Unit:
        return dataclasses.replace(self, points=tuple(points), search_out=search_out)


@dataclass
class Plan:
    """The sweep to run: (model x arch x grid point) units in config order, each with the
    same points (bits, then policies, then the search), and the CSV columns. ``units``
    and ``points`` are lazy sequences: made one at a time, as they are read."""

    models: list[tuple[str, str, tuple[int, ...]]]  # (spelling, resolved ref, input shape)
    archs: list[tuple[str, str]]  # (spelling, resolved ref)
    grid_keys: list[str]
    grid_values: list[list[Scalar]]
    bits: list[str]
    policy_refs: tuple[tuple[str, str], ...]  # (spelling, resolved path)
    search: tuple[tuple[str, Any], ...]

    @property
    def has_search(self) -> bool:
        return bool(self.search)

    @property
    def points_per_unit(self) -> int:
        return len(self.bits) + len(self.policy_refs) + (1 if self.search else 0)

    @property
    def unit_count(self) -> int:
        return len(self.models) * len(self.archs) * math.prod(len(v) for v in self.grid_values)

    @property
    def point_count(self) -> int:
        return self.unit_count * self.points_per_unit

    @property
    def units(self) -> Sequence[Unit]:
        return _Lazy(self.unit_count, self._unit, self._iter_units)

    @property
    def points(self) -> Sequence[Point]:
        n = self.points_per_unit
        return _Lazy(
            self.point_count,
            lambda i: self._unit(i // n).points[i % n],
            lambda: (p for u in self._iter_units() for p in u.points),
        )

    @property
    def columns(self) -> list[str]:
        extra = list(SEARCH_METRICS) if self.has_search else []
        return ["point_id", "model", "input", "arch", *self.grid_keys, "bits", "policy", *METRICS, *extra, "status"]

    def _make(self, model: tuple[str, str, tuple[int, ...]], arch: tuple[str, str], combo: Sequence[Scalar]) -> Unit:
        (m, mref, shape), (a, aref) = model, arch
        grid = tuple(zip(self.grid_keys, combo, strict=True))
        pts = [Point(m, shape, a, grid, bits=b) for b in self.bits]
        pts += [Point(m, shape, a, grid, policy=p) for p, _ in self.policy_refs]
        if self.search:
            pts.append(Point(m, shape, a, grid, policy="search", search=self.search))
        return Unit(mref, shape, aref, grid, tuple(pts), self.policy_refs)

    def _iter_units(self) -> Iterator[Unit]:
        for model, arch, combo in itertools.product(self.models, self.archs, itertools.product(*self.grid_values)):
            yield self._make(model, arch, combo)

    def _unit(self, index: int) -> Unit:
        """The ``index``-th unit, by mixed-radix arithmetic on the product's order."""
        combo: list[Scalar] = []
        for values in reversed(self.grid_values):
            index, j = divmod(index, len(values))
            combo.append(values[j])
        index, a = divmod(index, len(self.archs))
        return self._make(self.models[index], self.archs[a], combo[::-1])


class _Lazy(Sequence):
    """A read-only sequence of ``length`` items made by ``get(i)`` (or, in order, by ``iterate()``)."""

    def __init__(self, length: int, get: Any, iterate: Any) -> None:
        self._length, self._get, self._iterate = length, get, iterate

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._length))]
        if index < 0:
            index += self._length
        if not 0 <= index < self._length:
            raise IndexError(index)
        return self._get(index)

    def __iter__(self) -> Iterator[Any]:
        return self._iterate()


def _resolve(base: Path, text: str) -> str:
    path = Path(text).expanduser()
    return str(path if path.is_absolute() else base / path)


def _model_ref(base: Path, spec: str) -> str:
    path_text, sep, factory = spec.rpartition(":")
    if sep and path_text.endswith(".py"):
        return f"{_resolve(base, path_text)}:{factory}"
    return spec


def _shape(value: str, where: str) -> tuple[int, ...]:
    from cimdse.models import parse_input_shape

    try:
        return parse_input_shape(value)
    except CimdseError as err:
        raise CimdseError(f"{where}: input: {str(err).removeprefix('--input ')}") from None


def _input_for(cfg: SweepConfig, model: str, where: str) -> tuple[int, ...]:
    from cimdse.models import default_input_shape

    given = cfg.input
    if isinstance(given, dict):
        unknown = sorted(set(given) - set(cfg.models))
        if unknown:
            raise CimdseError(f"{where}: input: {unknown[0]!r} is not one of the sweep's models")
        given = given.get(model)
    if given is not None:
        return _shape(given, where)
    shape = default_input_shape(model)
    if shape is None:
        raise CimdseError(f"{where}: model {model!r} is a user file: give its shape under 'input:', e.g. 1x8x8")
    return shape


def plan(cfg: SweepConfig, base: str | Path = ".", where: str = "sweep config", max_points: int = MAX_POINTS) -> Plan:
    """The config's plan, counted before anything is expanded (more than ``max_points``
    points is refused), with models, archs and policy files checked up front so that
    bad input stops the sweep before anything is written."""
    from cimdse.models import ZOO, load_model

    keys = list(cfg.grid)
    sizes = [len(cfg.models), len(cfg.archs), *(len(cfg.grid[k]) for k in keys)]
    per_unit = len(cfg.bits) + len(cfg.policies) + (1 if cfg.search else 0)
    count = math.prod(sizes) * per_unit
    if count > max_points:
        factors = " x ".join(map(str, [*sizes, per_unit]))
        raise CimdseError(
            f"{where}: {count:,} points ({factors}: models x archs x grid values x bits/policies/search) is more "
            f"than {max_points:,}; give --max-points {count} if the sweep is meant to be that large"
        )
    base = Path(base)
    models = []
    for m in cfg.models:
        ref = _model_ref(base, m)
        if ref not in ZOO:
            load_model(ref)  # unknown names, missing files, broken factories: one clear message now
        models.append((m, ref, _input_for(cfg, m, where)))
    archs = []
    for a in cfg.archs:
        ref = a if a in arch_mod.PRESET_NAMES else _resolve(base, a)
        arch_mod.load(ref)
        archs.append((a, ref))
    policy_refs = tuple((p, _resolve(base, p)) for p in cfg.policies)
    for spelling, ref in policy_refs:
        if not Path(ref).is_file():
            raise CimdseError(f"{where}: policies: {spelling}: no such policy file")
    search = tuple(sorted(cfg.search.model_dump().items())) if cfg.search else ()
    return Plan(models, archs, keys, [list(cfg.grid[k]) for k in keys], list(cfg.bits), policy_refs, search)
