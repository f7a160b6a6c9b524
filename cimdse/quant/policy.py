"""Reading per-layer (w_bits, a_bits) policy files: YAML or JSON keyed by layer name
(``{features.0: [8, 8], ...}``, optionally under a top-level ``policy:`` key) or a
list in layer order, and HAQ / CIM-AQ ``.npy`` arrays [L, 2]."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from cimdse.errors import CimdseError

__all__ = ["read_policy", "uniform"]


def uniform(names: list[str], w_bits: int, a_bits: int) -> dict[str, tuple[int, int]]:
    """The same (w_bits, a_bits) for every layer."""
    return {n: (w_bits, a_bits) for n in names}


def read_policy(path: str | Path) -> Any:
    """The raw policy in ``path`` (a mapping or a list), checked to be one of those."""
    path = Path(path)
    if not path.is_file():
        raise CimdseError(f"{path}: no such policy file")
    try:
        if path.suffix == ".npy":
            data: Any = np.load(path, allow_pickle=False).tolist()
        elif path.suffix == ".json":
            data = json.loads(path.read_text())
        else:
            data = yaml.safe_load(path.read_text())
    except (OSError, ValueError, yaml.YAMLError) as err:
        raise CimdseError(f"{path}: cannot read policy ({type(err).__name__}: {str(err).splitlines()[0]})") from None
    if isinstance(data, dict) and set(data) == {"policy"}:
        data = data["policy"]
    if not isinstance(data, dict | list):
        raise CimdseError(f"{path}: a policy is a mapping {{layer: [w_bits, a_bits]}} or a list of pairs")
    return data
