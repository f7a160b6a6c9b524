"""Parameter sweeps: a YAML config becomes a grid of points, evaluated in parallel, one CSV row each.

A config names ``models``, ``archs``, a ``grid`` of dotted arch keys with value lists
(the cross product is taken), and uniform ``bits`` ("W,A") and/or per-layer
``policies`` files; an optional ``search:`` section runs the mixed-precision search
per point through :func:`search_hook`. Relative paths are relative to the config file.

Work is grouped in *units*: one (model, input, arch, grid point) compiled once and
evaluated for all its bits/policies in one vectorized call. Units run in this process,
in a local process pool, or on a Dask cluster; the evaluation is a callable so the
machinery can be tested on its own.

Crash safety: only the parent appends to ``sweep.csv``, one complete line per point in
a single ``write`` followed by ``fsync``. A rerun of the same command trims a partial
last line, skips the ids already present and computes the rest, so a sweep killed at
any moment ends with every point in the file exactly once.
"""

from __future__ import annotations

import concurrent.futures as cf
import csv
import dataclasses
import fcntl
import hashlib
import importlib
import io
import itertools
import json
import multiprocessing
import os
import re
import signal
import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cimdse import arch as arch_mod
from cimdse.errors import CimdseError
from cimdse.files import write_text

CSV_NAME = "sweep.csv"
CONFIG_COPY = "sweep.yaml"
LOCK_NAME = ".sweep.lock"
METRICS = ("latency_s", "energy_j", "area_mm2", "crossbars", "speedup_vs_w8a8")
SEARCH_METRICS = ("val_acc",)
MAX_BITS = 8  # the compiler's range (cimdse.compiler.policy)
_BITS_RE = re.compile(r"^\s*(\d+)\s*,\s*(\d+)\s*$")

Scalar = str | int | float | bool | None
#: A unit's results: point id -> {"status": "ok" | message, metric: value, ...}.
UnitResult = dict[str, dict[str, Any]]
Evaluator = Callable[["Unit"], UnitResult]


# ---------------------------------------------------------------- config
class SearchOptions(BaseModel):
    """``search:`` section. Only ``episodes`` is checked here; the other keys belong to
    the search module, which validates them itself."""

    model_config = ConfigDict(extra="allow", frozen=True)
    episodes: int = Field(gt=0)


class SweepConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    models: list[str] = Field(min_length=1, description="zoo names or path/to/file.py:factory")
    input: str | dict[str, str] | None = Field(
        None, description="one shape for all models, or a mapping model -> shape; default: the zoo's"
    )
    archs: list[str] = Field(min_length=1, description="presets or YAML files")
    grid: dict[str, list[Scalar]] = Field(default_factory=dict, description="dotted arch key -> values")
    bits: list[str] = Field(default_factory=list, description='uniform "W,A" pairs')
    policies: list[str] = Field(default_factory=list, description="per-layer policy files")
    search: SearchOptions | None = None

    @field_validator("input", mode="before")
    @classmethod
    def _input(cls, v: Any) -> Any:
        """Shapes may be written 1x8x8, [1, 8, 8] or 40; they are kept as text."""

        def text(shape: Any) -> str:
            if isinstance(shape, int) and not isinstance(shape, bool):
                return str(shape)
            if isinstance(shape, list) and shape and all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
                return "x".join(map(str, shape))
            if isinstance(shape, str):
                return shape
            raise ValueError(f"{shape!r}: expected a shape like 1x8x8, [1, 8, 8] or 40")

        if v is None:
            return v
        if isinstance(v, dict):
            return {str(k): text(s) for k, s in v.items()}
        return text(v)

    @field_validator("models", "archs", "bits", "policies")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        seen = set()
        for item in v:
            if item in seen:
                raise ValueError(f"{item!r} is listed twice")
            seen.add(item)
        return v

    @field_validator("bits")
    @classmethod
    def _bits(cls, v: list[str]) -> list[str]:
        for item in v:
            parse_bits(item)
        return v

    @field_validator("grid")
    @classmethod
    def _grid(cls, v: dict[str, list[Scalar]]) -> dict[str, list[Scalar]]:
        for key, values in v.items():
            check_grid_key(key)
            if not values:
                raise ValueError(f"grid key {key!r} has an empty value list")
            if len(set(map(json.dumps, values))) != len(values):
                raise ValueError(f"grid key {key!r} lists a value twice")
        return v

    @model_validator(mode="after")
    def _something_to_evaluate(self) -> SweepConfig:
        if not self.bits and not self.policies and self.search is None:
            raise ValueError("give at least one of 'bits', 'policies' or 'search'")
        return self


def parse_bits(text: str) -> tuple[int, int]:
    """``"4,8"`` -> (4, 8): weight bits, activation bits."""
    m = _BITS_RE.match(str(text))
    if not m:
        raise ValueError(f'bits {text!r}: expected "W,A" with integers, e.g. "4,8"')
    w, a = int(m.group(1)), int(m.group(2))
    if not (1 <= w <= MAX_BITS and 1 <= a <= MAX_BITS):
        raise ValueError(f"bits {text!r}: each width must be between 1 and {MAX_BITS}")
    return w, a


def check_grid_key(key: str) -> None:
    """A grid key must name a field of the arch spec (``crossbar.rows``), so a typo is
    caught before any point runs rather than reported at every point."""
    model: type[BaseModel] = arch_mod.ArchSpec
    parts = key.split(".")
    for i, part in enumerate(parts):
        where = ".".join(parts[:i]) or "the spec"
        fields = model.model_fields
        if part not in fields:
            raise ValueError(f"grid key {key!r}: {where} has no field {part!r} (fields: {', '.join(fields)})")
        ann = fields[part].annotation
        is_section = isinstance(ann, type) and issubclass(ann, BaseModel)
        if i == len(parts) - 1:
            if is_section:
                raise ValueError(f"grid key {key!r} is a section; name a field inside it")
            return
        if is_section:
            model = ann
        elif get_origin(ann) is dict:  # free-form mapping, e.g. crossbar.costs.<constant>
            return
        else:
            raise ValueError(f"grid key {key!r}: {'.'.join(parts[: i + 1])} is a value, not a section")


def load_config(path: str | Path) -> SweepConfig:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise CimdseError(f"{path}: cannot read sweep config ({err.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
        raise CimdseError(f"{path}:{where} malformed YAML: {getattr(err, 'problem', None) or err}") from None
    if not isinstance(data, dict):
        raise CimdseError(f"{path}: expected a mapping with 'models', 'archs' and 'bits' or 'policies'")
    try:
        return SweepConfig.model_validate(data)
    except ValidationError as err:
        raise CimdseError(arch_mod.format_validation(err, str(path), list(SweepConfig.model_fields))) from None


def save_config(cfg: SweepConfig, out_dir: str | Path, source: str | Path | None = None) -> Path:
    """Keep the config beside its results (``sweep.yaml``), for the record and the report."""
    path = Path(out_dir) / CONFIG_COPY
    head = f"# copy of {Path(source).resolve()}; relative paths are relative to that file\n" if source else ""
    text = head + yaml.safe_dump(cfg.model_dump(mode="json", exclude_none=True), sort_keys=False)
    write_text(text, path, durable=True)
    return path


# ---------------------------------------------------------------- points
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


# ---------------------------------------------------------------- evaluation (runs in workers)
_NETS: dict[tuple[str, tuple[int, ...]], Any] = {}
_NETS_LOCK = threading.Lock()


def _traced(model_ref: str, shape: tuple[int, ...]) -> Any:
    """Trace each model once per worker; threaded Dask workers share the cache."""
    from cimdse.compiler import trace
    from cimdse.models import load_model

    with _NETS_LOCK:
        key = (model_ref, shape)
        if key not in _NETS:
            _NETS[key] = trace(load_model(model_ref), shape)
        return _NETS[key]


def one_line(err: BaseException) -> str:
    """A status cell stays on one physical line: the CSV's crash safety relies on it."""
    return " | ".join(line.strip() for line in str(err).splitlines() if line.strip()) or type(err).__name__


def search_hook() -> Callable[..., Mapping[str, Any]]:
    """The search module's per-point entry point.

    Contract: ``cimdse.search.sweep_point(model_ref, input_shape, arch, options, out_dir)``
    runs the search for one compiled point (``options`` is the config's ``search:``
    mapping, ``out_dir`` a folder of its own) and returns a mapping with the keys of
    ``METRICS`` and ``SEARCH_METRICS`` and ``policy`` (the best policy file).
    """
    try:
        search_mod = importlib.import_module("cimdse.search")  # through sys.modules, so tests can stand in
    except ModuleNotFoundError as err:
        if err.name in ("cimdse.search", "cimdse"):
            raise CimdseError("search sweeps need the search module (cimdse.search), which this build lacks") from None
        raise CimdseError(f"search sweeps need the search module, which failed to import: {err}") from None
    hook = getattr(search_mod, "sweep_point", None)
    if not callable(hook):
        raise CimdseError("search sweeps need cimdse.search.sweep_point, which this build lacks")
    return hook


def _metrics_row(ev: Any, speedup: Any, i: int) -> dict[str, Any]:
    import numpy as np

    def pick(value: Any) -> Any:
        arr = np.asarray(value)
        v = arr.reshape(-1)[i] if arr.ndim else arr
        return int(v) if np.issubdtype(arr.dtype, np.integer) else float(v)

    row = {k: pick(getattr(ev, k)) for k in ("latency_s", "energy_j", "area_mm2", "crossbars")}
    row["speedup_vs_w8a8"] = pick(speedup)
    row["status"] = "ok"
    return row


def evaluate_unit(unit: Unit) -> UnitResult:
    """Compile the unit's model on its arch once and evaluate all its points with the
    real compiler. Bad input at this point (spec invalid at this grid point, a layer
    that cannot be mapped, a policy that does not fit the network) becomes the points'
    status; anything else is a bug and propagates."""
    import numpy as np

    from cimdse.compiler import compile_network, load_policy, uniform_policy

    try:
        arch = arch_mod.load(unit.arch_ref, unit.overrides())
        net = _traced(unit.model_ref, unit.input)
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


# ---------------------------------------------------------------- the CSV log
class ResultLog:
    """``sweep.csv``: a header, then one complete line per finished point.

    Only the process holding the folder's lock appends; each line goes out in one
    ``write`` and is fsynced, so after a kill the file is a valid CSV plus at most one
    partial last line, which :meth:`open` trims.
    """

    def __init__(self, out_dir: Path, columns: list[str]) -> None:
        self.path = out_dir / CSV_NAME
        self.columns = columns
        self._lock_path = out_dir / LOCK_NAME
        self._lock_fd: int | None = None
        self._fd: int | None = None

    def open(self) -> set[str]:
        """Lock the folder, repair the file if a kill cut a line, return the ids done."""
        self._lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise CimdseError(f"{self.path.parent}: another sweep is writing to this folder") from None
        header = self._line(self.columns)
        data = self.path.read_bytes() if self.path.exists() else b""
        if b"\n" not in data:  # new, or killed while the header was being made
            write_text(header, self.path, durable=True)
            data = header.encode()
        elif not data.endswith(b"\n"):
            cut = data.rindex(b"\n") + 1
            os.truncate(self.path, cut)
            data = data[:cut]
        rows = list(csv.reader(io.StringIO(data.decode())))
        if rows[0] != self.columns:
            raise CimdseError(
                f"{self.path}: written by a different sweep (columns {', '.join(rows[0])}); "
                "use another --out folder or remove the file"
            )
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        return {r[0] for r in rows[1:] if len(r) == len(self.columns)}

    @staticmethod
    def _line(values: list[Any]) -> str:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(values)
        return buf.getvalue()

    def append(self, row: Mapping[str, Any]) -> None:
        assert self._fd is not None, "open() first"
        cells = ["" if row.get(c) is None else row[c] for c in self.columns]
        data = self._line(cells).encode()
        assert data.count(b"\n") == 1, "a row must be one line"
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        os.fsync(self._fd)

    def close(self) -> None:
        for fd in (self._fd, self._lock_fd):
            if fd is not None:
                os.close(fd)
        self._fd = self._lock_fd = None


# ---------------------------------------------------------------- execution
def _serial(units: list[Unit], evaluator: Evaluator) -> Iterator[tuple[Unit, UnitResult | BaseException]]:
    for u in units:
        try:
            yield u, evaluator(u)
        except Exception as err:
            yield u, err


def _quiet_worker() -> None:
    """Ctrl-C reaches the whole process group: the parent stops the sweep, workers
    should not print a traceback each."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _pool(units: list[Unit], evaluator: Evaluator, jobs: int) -> Iterator[tuple[Unit, UnitResult | BaseException]]:
    """Local processes. Spawned, not forked: torch's thread pools do not survive a fork.
    A bounded window of units in flight keeps memory flat on big sweeps."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")  # one thread per worker (torch, BLAS): the pool is the parallelism
    ctx = multiprocessing.get_context("spawn")
    todo = iter(units)
    window = 2 * jobs
    with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_quiet_worker) as ex:
        running: dict[cf.Future, Unit] = {}
        try:
            for u in itertools.islice(todo, window):
                running[ex.submit(evaluator, u)] = u
            while running:
                done, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    u = running.pop(fut)
                    try:
                        yield u, fut.result()
                    except Exception as err:
                        yield u, err
                    for nxt in itertools.islice(todo, 1):
                        running[ex.submit(evaluator, nxt)] = nxt
        finally:
            ex.shutdown(wait=True, cancel_futures=True)


def _dask_client(address: str) -> Any:
    """Connect before anything is written, so a wrong address leaves no files behind."""
    try:
        from distributed import Client
    except ImportError:  # pragma: no cover
        raise CimdseError("--scheduler needs dask[distributed] installed") from None
    m = re.fullmatch(r"tcp://\[?([^\]]+?)\]?:(\d+)", address)
    if m:  # a refused port fails now, not after Dask's connect timeout
        try:
            socket.create_connection((m.group(1), int(m.group(2))), timeout=10).close()
        except OSError as err:
            raise CimdseError(f"cannot reach the Dask scheduler at {address}: {err.strerror or err}") from None
    try:
        return Client(address, timeout="10s", set_as_default=False)
    except (OSError, TimeoutError, ValueError) as err:
        raise CimdseError(f"cannot reach the Dask scheduler at {address}: {one_line(err)}") from None


def _dask(units: list[Unit], evaluator: Evaluator, client: Any) -> Iterator[tuple[Unit, UnitResult | BaseException]]:
    """A Dask cluster: the workers need cimdse installed (and user files on a shared path)."""
    from distributed import as_completed

    try:
        futures = {client.submit(evaluator, u, pure=False): u for u in units}
        for fut in as_completed(futures, loop=client.loop):
            u = futures[fut]
            try:
                yield u, fut.result()
            except Exception as err:
                yield u, err
    finally:
        client.close()


@dataclass
class SweepSummary:
    total: int
    already_done: int = 0
    ok: int = 0
    invalid: int = 0
    failed: list[str] = field(default_factory=list)  # "point_id: message" not written, retried by a rerun
    csv_path: Path | None = None

    @property
    def written(self) -> int:
        return self.ok + self.invalid


def _row(p: Point, res: Mapping[str, Any], grid_keys: list[str]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "point_id": p.id,
        "model": p.model,
        "input": "x".join(map(str, p.input)),
        "arch": p.arch,
        "bits": p.bits,
        "policy": p.policy,
    }
    row.update(dict(p.grid))
    row.update({k: v for k, v in res.items() if k != "policy" or p.search})
    return row


def _log_unit(
    unit: Any,
    result: dict[str, Any],
    grid_keys: Any,
    log: ResultLog,
    summary: SweepSummary,
    on_row: Callable[[dict[str, Any]], None] | None,
) -> None:
    """Append one finished unit's rows to the log and count them."""
    for p in unit.points:
        res = result.get(p.id)
        if res is None:
            summary.failed.append(f"{p.id}: the evaluator returned no result")
            continue
        row = _row(p, res, grid_keys)
        log.append(row)
        if row.get("status") == "ok":
            summary.ok += 1
        else:
            summary.invalid += 1
        if on_row is not None:
            on_row(row)


def run_sweep(
    sweep_plan: Plan,
    out_dir: str | Path,
    *,
    jobs: int = 1,
    scheduler: str | None = None,
    evaluator: Evaluator = evaluate_unit,
    progress: Callable[[int, int], None] | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    config: SweepConfig | None = None,
    config_path: str | Path | None = None,
) -> SweepSummary:
    """Evaluate every point of the plan not yet in ``out_dir/sweep.csv`` and append it.

    ``jobs`` 1 runs in this process; more uses a local process pool; ``scheduler`` (a
    Dask address) sends units to that cluster instead. ``progress(done, total)`` is
    called as points finish (the CLI draws a bar with it). ``config``, when given, is
    saved as ``out_dir/sweep.yaml``.
    """
    if jobs < 1:
        raise CimdseError(f"--jobs {jobs}: must be at least 1")
    out = Path(out_dir)
    if sweep_plan.has_search:
        search_hook()  # fail now, before any point runs
    client = _dask_client(scheduler) if scheduler else None
    log = ResultLog(out, sweep_plan.columns)
    try:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise CimdseError(f"{out}: cannot create output folder ({err.strerror})") from None
        done = log.open()
    except BaseException:
        if client is not None:
            client.close()
        raise
    if config is not None:
        save_config(config, out, config_path)
    summary = SweepSummary(total=len(sweep_plan.points), csv_path=log.path)
    try:
        todo = []
        for u in sweep_plan.units:
            rest = [p for p in u.points if p.id not in done]
            summary.already_done += len(u.points) - len(rest)
            if rest:
                todo.append(u.with_points(rest, str(out / "search")))
        if client is not None:
            stream = _dask(todo, evaluator, client)
        elif jobs > 1 and len(todo) > 1:
            stream = _pool(todo, evaluator, min(jobs, len(todo)))
        else:
            stream = _serial(todo, evaluator)
        total, finished = sum(len(u.points) for u in todo), 0
        for unit, result in stream:
            finished += len(unit.points)
            if isinstance(result, BaseException):
                summary.failed += [f"{p.id}: {type(result).__name__}: {one_line(result)}" for p in unit.points]
            else:
                _log_unit(unit, result, sweep_plan.grid_keys, log, summary, on_row)
            if progress:
                progress(finished, total)
    finally:
        log.close()
    return summary
