"""Checkpoints: one file with the weights, the policy, the integer export, the
architecture (if any), the dataset, the model spec and the metrics.

Saved atomically (a temporary file in the same folder, then a rename), loaded with
``torch.load(weights_only=True)``: a checkpoint holds tensors and plain values only.
"""

from __future__ import annotations

import io
import pickle
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cimdse import models
from cimdse.errors import CimdseError, first_line
from cimdse.files import atomic_write, input_file
from cimdse.quant.apply import quantized_structure
from cimdse.quant.export import IntLayer, layers_from_dicts

__all__ = ["FORMAT", "Checkpoint", "load_checkpoint", "save_checkpoint"]

FORMAT = "cimdse-checkpoint/1"


@dataclass
class Checkpoint:
    """What ``cimdse train`` writes; ``policy`` and ``export`` are None for a float model."""

    model: str  # zoo name or path/to/file.py:factory
    num_classes: int
    input_shape: tuple[int, ...]
    dataset: str
    data_dir: str | None
    seed: int
    layers: list[str]
    state_dict: dict[str, torch.Tensor]
    policy: dict[str, tuple[int, int]] | None = None
    export: dict[str, dict] | None = None
    arch: dict | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def quantized(self) -> bool:
        return self.policy is not None

    def int_layers(self) -> dict[str, IntLayer]:
        if self.export is None:
            raise CimdseError("this checkpoint holds a float model; train with --bits or --policy to quantize it")
        return layers_from_dicts(self.export)

    def build(self) -> nn.Module:
        """The model (quantized structure when there is a policy) with the weights loaded."""
        model = models.load_model(self.model, self.num_classes)
        if self.policy is not None:
            model = quantized_structure(model, self.policy, self.input_shape)
        try:
            model.load_state_dict(self.state_dict)
        except RuntimeError as err:
            raise CimdseError(f"checkpoint weights do not fit model {self.model!r}: {first_line(err)}") from None
        return model.eval()


def save_checkpoint(ckpt: Checkpoint, path: str | Path) -> Path:
    """Write ``ckpt`` to ``path`` atomically."""
    path = Path(path)
    data: dict[str, Any] = {"format": FORMAT, **asdict(ckpt)}
    data["input_shape"] = list(ckpt.input_shape)
    data["policy"] = None if ckpt.policy is None else {k: list(v) for k, v in ckpt.policy.items()}
    data["state_dict"] = {k: v.detach().cpu() for k, v in ckpt.state_dict.items()}
    buf = io.BytesIO()  # not the temporary file: torch names the archive after it, and the bytes would vary
    torch.save(data, buf)
    return atomic_write(path, lambda tmp: tmp.write_bytes(buf.getvalue()))


def load_checkpoint(path: str | Path) -> Checkpoint:
    """A checkpoint written by :func:`save_checkpoint`, with a clear error otherwise."""
    path = Path(path)
    if not path.exists():
        raise CimdseError(f"{path}: no such checkpoint")
    input_file(path, "checkpoint", None)
    try:
        with warnings.catch_warnings():  # torch warns about a foreign pickle before refusing it
            warnings.simplefilter("ignore")
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, not a torch file, a foreign pickle
        with open(path, "rb") as f:
            pickled = isinstance(err, pickle.UnpicklingError) and f.read(1) == b"\x80"  # pickle protocol >= 2
        why = "a pickle of Python objects, which cimdse does not unpickle" if pickled else type(err).__name__
        raise CimdseError(f"{path}: not a readable checkpoint ({why})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CimdseError(f"{path}: not a cimdse checkpoint (expected format {FORMAT})")
    data.pop("format")
    try:
        data["input_shape"] = tuple(data["input_shape"])
        if data.get("policy") is not None:
            data["policy"] = {k: (int(v[0]), int(v[1])) for k, v in data["policy"].items()}
        return Checkpoint(**data)
    except (KeyError, TypeError) as err:
        raise CimdseError(f"{path}: incomplete checkpoint ({err})") from None
