"""Per-layer bit-width policies: the one owner of the concept (numpy and YAML only, no torch).

A policy is an int64 array [L, 2], one row per crossbar layer in policy order (the
order of ``cimdse layers``): column 0 is ``w_bits``, column 1 is ``a_bits``.

Bit ranges, one per use (the single source of truth; every other module asks here):

- ``COST`` (compiler, cost model, sweeps): weights and activations 1..``MAX_BITS``. The
  mapping can place any width: ``n_w = ceil(m / cell_bits)`` cells, ``ceil(a / dac_bits)``
  input slices.
- ``QUANT`` (quantizers, training, accuracy): weights 2..8, activations 1..8. A
  symmetric 1-bit weight grid is [-(2^0 - 1), 2^0 - 1] = {0}: it holds nothing.
- Searches choose one range ``min..max`` for both columns; it must lie inside ``QUANT``
  for both (2..8), since every searched policy is quantized and evaluated.

Sources: ``"W,A"`` or ``"W/A"`` (uniform) or ``"4"`` (W = A = 4); or a file: YAML/JSON
keyed by layer name (``{name: [w, a]}`` or ``{name: {w_bits: w, a_bits: a}}``), a list
of ``[w, a]`` in layer order, the same under a ``policy:`` key beside other keys (the
search's ``best_policy.yaml``), or a HAQ / CIM-AQ ``.npy`` array [L, 2]. Every problem
is a :class:`CimdseError` naming the source and what is wrong.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from cimdse.errors import CimdseError, first_line
from cimdse.files import parse_json, parse_yaml, read_bytes, read_text, write_text

__all__ = [
    "COST",
    "MAX_BITS",
    "PolicyKey",
    "QUANT",
    "BitRanges",
    "as_policy",
    "check_policy",
    "check_search_range",
    "load_policy",
    "parse_bits",
    "parse_policy_text",
    "policy_key",
    "policy_mapping",
    "policy_text",
    "read_policy",
    "save_policy",
    "uniform_policy",
]

MAX_BITS = 8
COLUMNS = ("w_bits", "a_bits")
PolicyKey = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class BitRanges:
    """Inclusive (lo, hi) widths per column, and who needs them (for messages)."""

    w_bits: tuple[int, int]
    a_bits: tuple[int, int]
    use: str

    def of(self, column: str) -> tuple[int, int]:
        return self.w_bits if column == "w_bits" else self.a_bits

    def check(self, w: int, a: int, where: str) -> None:
        for column, v in zip(COLUMNS, (w, a), strict=True):
            lo, hi = self.of(column)
            if not lo <= v <= hi:
                raise CimdseError(f"{where}: {column} = {v} outside {lo}..{hi} ({self.use})")


COST = BitRanges((1, MAX_BITS), (1, MAX_BITS), "the widths the compiler maps")
QUANT = BitRanges(
    (2, MAX_BITS), (1, MAX_BITS), "the widths quantization supports; a symmetric 1-bit weight holds only 0"
)


def check_search_range(min_bits: int, max_bits: int) -> None:
    """A search's ``min_bits..max_bits`` (both columns) must be quantizable in both."""
    lo = max(QUANT.w_bits[0], QUANT.a_bits[0])
    hi = min(QUANT.w_bits[1], QUANT.a_bits[1])
    if not lo <= min_bits <= max_bits <= hi:
        raise CimdseError(
            f"bit range {min_bits}..{max_bits}: need {lo} <= min <= max <= {hi} "
            "(weights need at least 2 bits: a symmetric 1-bit weight holds only 0)"
        )


# ---------------------------------------------------------------- text
def parse_bits(text: str, ranges: BitRanges = COST, where: str = "--bits") -> tuple[int, int]:
    """``"4,8"`` or ``"4/8"`` -> (4, 8); ``"4"`` -> (4, 4)."""
    parts = [p.strip() for p in str(text).replace("/", ",").split(",")]
    if not all(re.fullmatch(r"[+-]?\d+", p) for p in parts):
        raise CimdseError(f"{where} {text!r}: expected W,A with whole numbers, such as 4,8")
    values = [int(p) for p in parts]
    if len(values) == 1:
        values *= 2
    if len(values) != 2:
        raise CimdseError(f"{where} {text!r}: expected two numbers W,A such as 4,8")
    w, a = values
    ranges.check(w, a, f"{where} {text!r}")
    return w, a


def policy_key(policy: Any) -> PolicyKey:
    """A hashable form of a policy [L, 2]."""
    return tuple((int(w), int(a)) for w, a in np.asarray(policy).reshape(-1, 2))


def policy_text(policy: Any) -> str:
    """``8/8 4/3 ...``: compact, readable in a CSV cell, read back by :func:`parse_policy_text`."""
    return " ".join(f"{w}/{a}" for w, a in policy_key(policy))


def parse_policy_text(text: Any, ranges: BitRanges = COST, where: str = "policy") -> np.ndarray:
    """``"8/8 4/3"`` (what :func:`policy_text` writes) -> [[8, 8], [4, 3]], checked."""
    tokens = str(text).split() if isinstance(text, str) else []
    pairs = [re.fullmatch(r"(\d+)/(\d+)", t) for t in tokens]
    if not tokens or not all(pairs):
        raise CimdseError(f"{where}: {text!r} is not a policy written as w/a per layer, e.g. '8/8 4/3'")
    arr = np.array([[int(m.group(1)), int(m.group(2))] for m in pairs if m], dtype=np.int64)
    return check_policy(arr, len(arr), where, ranges=ranges)


# ---------------------------------------------------------------- arrays
def uniform_policy(w_bits: int, a_bits: int, n_layers: int, ranges: BitRanges = COST) -> np.ndarray:
    """Every layer at the same (w_bits, a_bits)."""
    policy = np.empty((n_layers, 2), dtype=np.int64)
    policy[:, 0], policy[:, 1] = w_bits, a_bits
    return check_policy(policy, n_layers, "uniform policy", ranges=ranges)


def check_policy(
    policy: Any,
    n_layers: int,
    origin: str = "policy",
    names: Sequence[str] | None = None,
    ranges: BitRanges = COST,
) -> np.ndarray:
    """Validate an [L, 2] or [P, L, 2] policy array of whole numbers and return it as int64."""
    try:
        arr = np.asarray(policy)
    except ValueError:  # ragged nested lists
        raise CimdseError(f"{origin}: expected [w_bits, a_bits] per layer") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise CimdseError(f"{origin}: expected integer bit widths, got {arr.dtype}")
    if arr.ndim not in (2, 3) or arr.shape[-1] != 2:
        raise CimdseError(f"{origin}: expected shape [layers, 2] (w_bits, a_bits per layer), got {list(arr.shape)}")
    if arr.shape[-2] != n_layers:
        raise CimdseError(f"{origin}: has {arr.shape[-2]} layers, the network has {n_layers}")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr) & (arr == np.round(arr))):
        raise CimdseError(f"{origin}: bit widths must be whole numbers")
    arr = arr.astype(np.int64)
    for col, column in enumerate(COLUMNS):
        lo, hi = ranges.of(column)
        bad = np.argwhere((arr[..., col] < lo) | (arr[..., col] > hi))
        if len(bad):
            idx = (*bad[0], col)
            layer = int(idx[-2])
            label = f"layer {layer}" + (f" ({names[layer]})" if names is not None else "")
            raise CimdseError(f"{origin}: {label}: {column} = {arr[idx]} outside {lo}..{hi} ({ranges.use})")
    return arr


def as_policy(policy: Any, names: Sequence[str], ranges: BitRanges = COST, origin: str = "policy") -> np.ndarray:
    """A policy given as a mapping ``{layer name: (w, a)}`` or as [L, 2] in layer order,
    checked against the layers ``names``, as an int64 array [L, 2]."""
    names = list(names)
    if isinstance(policy, Mapping):
        rows = _from_mapping(policy, names, origin)
        return check_policy(np.array(rows, dtype=np.int64), len(names), origin, names, ranges)
    return check_policy(policy, len(names), origin, names, ranges)


def policy_mapping(policy: Any, names: Sequence[str]) -> dict[str, list[int]]:
    """``{layer name: [w, a]}``: the file form, in layer order."""
    arr = check_policy(policy, len(names), names=names)
    return {name: [int(w), int(a)] for name, (w, a) in zip(names, arr, strict=True)}


# ---------------------------------------------------------------- files
def read_policy(source: str | Path, ranges: BitRanges = COST) -> tuple[list[str] | None, np.ndarray]:
    """A policy file read on its own, without a network: (layer names or None for a
    list / ``.npy``, bits [L, 2]). Bits are checked against ``ranges``."""
    names, arr = _read(Path(source), ranges)
    return names, check_policy(arr, len(arr), str(source), names, ranges)


def _read(path: Path, ranges: BitRanges) -> tuple[list[str] | None, np.ndarray]:
    """Names (None if positional) and bits; entries of text files are checked one by
    one (so a message names the entry), ``.npy`` arrays not yet (the caller does)."""
    if not path.exists():
        raise CimdseError(f"{path}: no such policy file")
    if path.suffix == ".npy":
        try:
            data: Any = np.load(io.BytesIO(read_bytes(path, "policy")), allow_pickle=False)
        except (OSError, ValueError, EOFError) as err:
            raise CimdseError(f"{path}: not a readable .npy array ({first_line(err)})") from None
        if data.ndim != 2 or data.shape[1] != 2:
            raise CimdseError(f"{path}: expected shape [layers, 2] (w_bits, a_bits per layer), got {list(data.shape)}")
        return None, data
    text = read_text(path, "policy")
    data = parse_json(text, str(path)) if path.suffix == ".json" else parse_yaml(text, str(path))
    if isinstance(data, dict) and "policy" in data and isinstance(data["policy"], (dict, list)):
        data = data["policy"]  # a document with metadata beside its policy
    if isinstance(data, dict):
        names = [str(k) for k in data]
        rows = [_pair(v, f"{path}: layer {k}", ranges) for k, v in data.items()]
    elif isinstance(data, list):
        names = None
        rows = [_pair(item, f"{path}: entry {i}", ranges) for i, item in enumerate(data)]
    else:
        raise CimdseError(
            f"{path}: expected a mapping {{layer name: [w, a]}} or a list of [w, a] in layer order, "
            f"got {type(data).__name__}"
        )
    if not rows:
        raise CimdseError(f"{path}: the policy is empty")
    return names, np.array(rows, dtype=np.int64)


def load_policy(source: str | Path, layers: Any, ranges: BitRanges = COST) -> np.ndarray:
    """Read a policy file for ``layers`` (a Network, its layers, or their names): a
    mapping must name exactly those layers, a list must have one entry per layer."""
    names = _names(layers)
    path = Path(source)
    file_names, arr = _read(path, ranges)
    if file_names is not None:
        arr = np.array(_from_mapping(dict(zip(file_names, arr.tolist(), strict=True)), names, str(path)))
    return check_policy(arr, len(names), str(path), names, ranges)


def save_policy(policy: Any, names: Sequence[str], path: str | Path) -> Path:
    """Write ``{layer name: [w, a]}`` as YAML (atomically): every reader here takes it."""
    return write_text(yaml.safe_dump(policy_mapping(policy, names), sort_keys=False), path)


# ---------------------------------------------------------------- helpers
def _names(layers: Any) -> list[str]:
    names = getattr(layers, "names", None)  # a Network
    if names is not None:
        return list(names)
    return [getattr(x, "name", None) or str(x) for x in layers]


def _pair(item: Any, where: str, ranges: BitRanges) -> tuple[int, int]:
    if isinstance(item, dict):
        unknown = sorted(set(item) - set(COLUMNS))
        if unknown or len(item) != 2:
            raise CimdseError(f"{where}: expected {{w_bits: W, a_bits: A}}, got keys {sorted(item)}")
        item = [item["w_bits"], item["a_bits"]]
    if not isinstance(item, (list, tuple)) or len(item) != 2:
        raise CimdseError(f"{where}: expected [w_bits, a_bits], got {item!r}")
    for v in item:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or float(v) != int(v):
            raise CimdseError(f"{where}: bit widths must be whole numbers, got {item!r}")
    w, a = int(item[0]), int(item[1])
    ranges.check(w, a, where)
    return w, a


def _from_mapping(data: Mapping[Any, Any], names: list[str], origin: str) -> list[tuple[int, int]]:
    keys = [str(k) for k in data]
    unknown = [k for k in keys if k not in names]
    if unknown:
        raise CimdseError(
            f"{origin}: unknown layer name(s) {unknown[:5]}{' ...' if len(unknown) > 5 else ''}; "
            f"layers are: {', '.join(names[:8])}{' ...' if len(names) > 8 else ''} (see `cimdse layers`)"
        )
    missing = [n for n in names if n not in keys]
    if missing:
        raise CimdseError(
            f"{origin}: no bit widths for {len(missing)} layer(s): {missing[:5]}{' ...' if len(missing) > 5 else ''}"
        )
    by_name = {str(k): v for k, v in data.items()}
    return [_pair(by_name[n], f"{origin}: layer {n}", COST) for n in names]
