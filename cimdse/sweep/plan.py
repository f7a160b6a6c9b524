"""Sweep planning: a config becomes units of work, each a list of points (CSV rows).

Work is grouped in *units*: one (model, input, arch, grid point) compiled once and
evaluated for all its bits/policies in one vectorized call. A point's id is a hash of
its definition in the config's own spellings, so it does not change when the sweep is
run from another folder or machine.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from collections.abc import Iterable
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
    """The expanded sweep: units in config order and the CSV columns."""

    units: list[Unit]
    grid_keys: list[str]
    has_search: bool

    @property
    def points(self) -> list[Point]:
        return [p for u in self.units for p in u.points]

    @property
    def columns(self) -> list[str]:
        extra = list(SEARCH_METRICS) if self.has_search else []
        return ["point_id", "model", "input", "arch", *self.grid_keys, "bits", "policy", *METRICS, *extra, "status"]


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


def plan(cfg: SweepConfig, base: str | Path = ".", where: str = "sweep config") -> Plan:
    """Expand the config into units and points, checking models, archs and policy files
    up front so that bad input stops the sweep before anything is written."""
    from cimdse.models import ZOO, load_model

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
    keys = list(cfg.grid)
    combos = list(itertools.product(*(cfg.grid[k] for k in keys)))
    units = []
    for (m, mref, shape), (a, aref), combo in itertools.product(models, archs, combos):
        grid = tuple(zip(keys, combo, strict=True))
        pts = [Point(m, shape, a, grid, bits=b) for b in cfg.bits]
        pts += [Point(m, shape, a, grid, policy=p) for p in cfg.policies]
        if search:
            pts.append(Point(m, shape, a, grid, policy="search", search=search))
        units.append(Unit(mref, shape, aref, grid, tuple(pts), policy_refs))
    return Plan(units, keys, bool(search))
