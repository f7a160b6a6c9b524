"""Per-layer bit-width policies: an int array [L, 2], column 0 = w_bits, 1 = a_bits.

Sources: ``--bits W,A`` (uniform), or a file: YAML/JSON keyed by layer name
(``{name: [w, a]}`` or ``{name: {w_bits: w, a_bits: a}}``), a list of ``[w, a]`` in
layer order, or a HAQ / CIM-AQ ``.npy`` array of shape [L, 2]. Every problem is a
:class:`CimdseError` naming the file and what is wrong.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from cimdse.compiler.ir import Layer, Network
from cimdse.errors import CimdseError

MIN_BITS, MAX_BITS = 1, 8


def _names(layers: Network | Sequence[Layer] | Sequence[str]) -> list[str]:
    if isinstance(layers, Network):
        return layers.names
    return [x.name if isinstance(x, Layer) else str(x) for x in layers]


def uniform_policy(w_bits: int, a_bits: int, n_layers: int) -> np.ndarray:
    """Every layer at the same (w_bits, a_bits)."""
    policy = np.empty((n_layers, 2), dtype=np.int64)
    policy[:, 0], policy[:, 1] = w_bits, a_bits
    return check_policy(policy, n_layers, "uniform policy")


def parse_bits(text: str) -> tuple[int, int]:
    """``--bits 4,8`` -> (4, 8); ``--bits 4`` -> (4, 4)."""
    parts = [p.strip() for p in text.replace("/", ",").split(",")]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise CimdseError(f"--bits {text!r}: expected W,A such as 4,8") from None
    if len(values) == 1:
        values *= 2
    if len(values) != 2:
        raise CimdseError(f"--bits {text!r}: expected two numbers W,A such as 4,8")
    w, a = values
    for what, v in (("weight", w), ("activation", a)):
        if not MIN_BITS <= v <= MAX_BITS:
            raise CimdseError(f"--bits {text!r}: {what} bits {v} outside {MIN_BITS}..{MAX_BITS}")
    return w, a


def check_policy(policy: Any, n_layers: int, origin: str = "policy", names: Sequence[str] | None = None) -> np.ndarray:
    """Validate an [L, 2] or [P, L, 2] integer policy array and return it as int64."""
    arr = np.asarray(policy)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise CimdseError(f"{origin}: expected integer bit widths, got {arr.dtype}")
    if arr.ndim not in (2, 3) or arr.shape[-1] != 2:
        raise CimdseError(f"{origin}: expected shape [layers, 2] (w_bits, a_bits per layer), got {list(arr.shape)}")
    if arr.shape[-2] != n_layers:
        raise CimdseError(f"{origin}: has {arr.shape[-2]} layers, the network has {n_layers}")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr) & (arr == np.round(arr))):
        raise CimdseError(f"{origin}: bit widths must be whole numbers")
    arr = arr.astype(np.int64)
    bad = np.argwhere((arr < MIN_BITS) | (arr > MAX_BITS))
    if len(bad):
        idx = tuple(bad[0])
        layer = idx[-2]
        label = f"layer {layer}" + (f" ({names[layer]})" if names is not None else "")
        what = "w_bits" if idx[-1] == 0 else "a_bits"
        raise CimdseError(f"{origin}: {label}: {what} = {arr[idx]} outside {MIN_BITS}..{MAX_BITS}")
    return arr


def load_policy(source: str | Path, layers: Network | Sequence[Layer] | Sequence[str]) -> np.ndarray:
    """Read a policy file for ``layers`` (a Network, its layers, or their names)."""
    names = _names(layers)
    path = Path(source)
    if not path.is_file():
        raise CimdseError(f"{path}: no such policy file")
    if path.suffix == ".npy":
        try:
            data: Any = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise CimdseError(f"{path}: not a readable .npy array ({_first_line(err)})") from None
        return check_policy(data, len(names), str(path), names)
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError) as err:
        raise CimdseError(f"{path}: cannot read ({_first_line(err)})") from None
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        kind = "JSON" if path.suffix == ".json" else "YAML"
        raise CimdseError(f"{path}: malformed {kind}: {_first_line(err)}") from None
    if isinstance(data, dict):
        rows = _from_mapping(data, names, path)
    elif isinstance(data, list):
        rows = [_pair(item, f"{path}: entry {i}") for i, item in enumerate(data)]
    else:
        raise CimdseError(
            f"{path}: expected a mapping {{layer name: [w, a]}} or a list of [w, a] in layer order, "
            f"got {type(data).__name__}"
        )
    if not rows:
        raise CimdseError(f"{path}: the policy is empty; the network has {len(names)} layers")
    return check_policy(np.array(rows, dtype=np.int64), len(names), str(path), names)


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def _pair(item: Any, where: str) -> tuple[int, int]:
    if isinstance(item, dict):
        unknown = sorted(set(item) - {"w_bits", "a_bits"})
        if unknown or len(item) != 2:
            raise CimdseError(f"{where}: expected {{w_bits: W, a_bits: A}}, got keys {sorted(item)}")
        item = [item["w_bits"], item["a_bits"]]
    if not isinstance(item, (list, tuple)) or len(item) != 2:
        raise CimdseError(f"{where}: expected [w_bits, a_bits], got {item!r}")
    for v in item:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or float(v) != int(v):
            raise CimdseError(f"{where}: bit widths must be whole numbers, got {item!r}")
    w, a = int(item[0]), int(item[1])
    for what, v in (("w_bits", w), ("a_bits", a)):
        if not MIN_BITS <= v <= MAX_BITS:
            raise CimdseError(f"{where}: {what} = {v} outside {MIN_BITS}..{MAX_BITS}")
    return w, a


def _from_mapping(data: dict[Any, Any], names: list[str], path: Path) -> list[tuple[int, int]]:
    keys = [str(k) for k in data]
    unknown = [k for k in keys if k not in names]
    if unknown:
        raise CimdseError(
            f"{path}: unknown layer name(s) {unknown[:5]}{' ...' if len(unknown) > 5 else ''}; "
            f"layers are: {', '.join(names[:8])}{' ...' if len(names) > 8 else ''} (see `cimdse layers`)"
        )
    missing = [n for n in names if n not in keys]
    if missing:
        raise CimdseError(
            f"{path}: no bit widths for {len(missing)} layer(s): {missing[:5]}{' ...' if len(missing) > 5 else ''}"
        )
    by_name = {str(k): v for k, v in data.items()}
    return [_pair(by_name[n], f"{path}: layer {n}") for n in names]
