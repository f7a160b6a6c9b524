"""Evaluating one unit with the real compiler (runs in worker processes).

A unit's model is traced once per worker and compiled on its arch at its grid point
once; all its uniform-bits and policy-file points are costed in one vectorized call.
Bad input found here (the spec invalid at this grid point, a layer that cannot be
mapped, a policy that does not fit the network) becomes the points' ``invalid: ...``
status; anything else is a bug and propagates (the point is retried by a rerun).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cimdse import arch as arch_mod
from cimdse.errors import CimdseError
from cimdse.sweep.plan import METRICS, SEARCH_METRICS, Point, Unit

#: A unit's results: point id -> {"status": "ok" | message, metric: value, ...}.
UnitResult = dict[str, dict[str, Any]]
Evaluator = Callable[[Unit], UnitResult]


_NETS: dict[tuple[str, tuple[int, ...]], Any] = {}
_NETS_LOCK = threading.Lock()


def _network(model_ref: str, shape: tuple[int, ...]) -> Any:
    """Trace each model once per worker; threaded Dask workers share the cache."""
    from cimdse.compiler import trace_spec

    with _NETS_LOCK:
        key = (model_ref, shape)
        if key not in _NETS:
            _NETS[key] = trace_spec(model_ref, shape)
        return _NETS[key]


def one_line(err: BaseException) -> str:
    """A status cell stays on one physical line: the CSV's crash safety relies on it."""
    return " | ".join(line.strip() for line in str(err).splitlines() if line.strip()) or type(err).__name__


def _search_entry(name: str) -> Callable[..., Any]:
    """``cimdse.search.<name>``, imported through ``sys.modules`` (so tests can stand in),
    or one message saying what the build lacks."""
    try:
        search_mod = importlib.import_module("cimdse.search")
    except ModuleNotFoundError as err:
        if err.name in ("cimdse.search", "cimdse"):
            raise CimdseError("search sweeps need the search module (cimdse.search), which this build lacks") from None
        raise CimdseError(f"search sweeps need the search module, which failed to import: {err}") from None
    entry = getattr(search_mod, name, None)
    if not callable(entry):
        raise CimdseError(f"search sweeps need cimdse.search.{name}, which this build lacks")
    return entry


def search_hook() -> Callable[..., Mapping[str, Any]]:
    """The search module's per-point entry point.

    Contract: ``cimdse.search.sweep_point(model_ref, input_shape, arch, options, out_dir)``
    runs the search for one compiled point (``options`` is the config's ``search:``
    mapping, ``out_dir`` a folder of its own) and returns a mapping with the keys of
    ``METRICS`` and ``SEARCH_METRICS`` and ``policy`` (the best policy file).
    """
    return _search_entry("sweep_point")


def check_search_options(models: list[str], options: Mapping[str, Any]) -> None:
    """Every key and value of a ``search:`` section, checked for each model before any
    point runs (a bad option would otherwise fail at every point, after the others'
    hours of work). Contract: ``cimdse.search.sweep_options(model_ref, options)`` raises
    :class:`CimdseError` naming the first problem."""
    check = _search_entry("sweep_options")
    for model in models:
        check(model, dict(options))


def _metrics_row(ev: Any, speedup: Any, i: int) -> dict[str, Any]:
    import numpy as np

    def pick(value: Any) -> Any:
        arr = np.asarray(value)
        v = arr.reshape(-1)[i] if arr.ndim else arr
        return int(v) if np.issubdtype(arr.dtype, np.integer) else float(v)

    row = {k: pick(getattr(ev, k)) for k in METRICS if k != "speedup_vs_w8a8"}
    row["speedup_vs_w8a8"] = pick(speedup)
    row["status"] = "ok"
    return row


def evaluate_unit(unit: Unit) -> UnitResult:
    """Compile the unit's model on its arch once and evaluate all its points with the
    real compiler. Bad input at this point (spec invalid at this grid point, a layer
    that cannot be mapped, a policy that does not fit the network) becomes the points'
    status; anything else is a bug and propagates."""
    import numpy as np

    from cimdse.compiler import compile_network
    from cimdse.policy import load_policy, parse_bits, uniform_policy

    try:
        arch = arch_mod.load(unit.arch_ref, unit.overrides())
        net = _network(unit.model_ref, unit.input)
        cn = compile_network(net, arch)
    except CimdseError as err:
        return {p.id: {"status": f"invalid: {one_line(err)}"} for p in unit.points}

    out: UnitResult = {}
    refs = dict(unit.policy_refs)
    n_layers = len(net.layers)
    fixed: list[tuple[Point, Any]] = []
    for p in unit.points:
        if p.search:
            continue
        try:
            if p.bits:
                pol = uniform_policy(*parse_bits(p.bits), n_layers)
            else:
                pol = load_policy(refs.get(p.policy, p.policy), net.layers)
            fixed.append((p, np.asarray(pol, dtype=np.int64)))
        except (CimdseError, ValueError) as err:
            out[p.id] = {"status": f"invalid: {one_line(err)}"}

    def run(batch: list[tuple[Point, Any]]) -> None:
        pols = np.stack([pol for _, pol in batch])
        ev = cn.evaluate(pols)
        sp = cn.speedup_vs_w8a8(pols)
        for i, (p, _) in enumerate(batch):
            out[p.id] = _metrics_row(ev, sp, i)

    if fixed:
        try:
            run(fixed)
        except CimdseError:  # one bad policy spoils the batch: find which, point by point
            for item in fixed:
                try:
                    run([item])
                except CimdseError as err:
                    out[item[0].id] = {"status": f"invalid: {one_line(err)}"}

    for p in unit.points:
        if not p.search:
            continue
        hook = search_hook()
        try:
            res = dict(hook(unit.model_ref, unit.input, arch, dict(p.search), Path(unit.search_out) / p.id))
        except CimdseError as err:
            out[p.id] = {"status": f"invalid: {one_line(err)}"}
            continue
        row = {k: res.get(k) for k in (*METRICS, *SEARCH_METRICS)}
        row["policy"] = str(res.get("policy", "search"))
        row["status"] = "ok"
        out[p.id] = row
    return out
