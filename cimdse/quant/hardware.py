"""Hardware-accurate inference: a quantized model whose crossbar layers run on the
functional crossbar model (:mod:`cimdse.crossbar`).

Each crossbar layer is programmed once with its exported integer weights
(``crossbar.program(w_int, spec, w_bits)``, one programmed matrix per conv group);
at run time its input is re-quantized to ``x_int``, unfolded in int16 (im2col,
:func:`cimdse.quant.export.unfold_inputs`), multiplied by ``crossbar.mvm`` (ADC, slicing and
non-idealities included), then dequantized and biased. Everything between crossbar
layers (ReLU, pooling, residual adds, flatten, unfolded BN) is the model's own float
code, run in float64. The same model without a crossbar backend is the integer
model (:mod:`cimdse.quant.exact`, what every reported accuracy runs): with an ideal
ADC both give the same integers, hence the same logits, bit for bit.

Non-idealities are seeded per layer: the i-th quantized layer in module order uses
``nonideal.seed + i``, so the layers' variations are independent and reproducible.

Hardware-aware training (:func:`hardware_aware`) uses the same layer product in the
forward pass of QAT: each quantized layer's current integers are programmed into the
crossbar model at every step and its output replaces the fake-quant one, with the
fake-quant gradient (straight-through), so training sees the ADC's rounding and
saturation (and, optionally, conductance variation and read noise, re-drawn every
training step from ``nonideal.seed``; evaluation uses the seeded chip itself).

The crossbar model runs on the torch backend by default (``backend="torch"``,
:mod:`cimdse.crossbar_torch`: the measured fastest exact GEMM kernel, on ``device``,
CPU or CUDA); ``backend="numpy"`` runs the numpy reference.
Both give the same integers, hence the same predictions.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from cimdse import crossbar, crossbar_torch
from cimdse.arch import ArchSpec, CrossbarSpec
from cimdse.crossbar import Backend
from cimdse.errors import CimdseError
from cimdse.quant.apply import quant_layers
from cimdse.quant.export import IntLayer, act_integers, export_model, unfold_inputs

__all__ = [
    "CrossbarBackend",
    "HardwareAwareForward",
    "HardwareResult",
    "evaluate_hardware",
    "hardware_aware",
    "integer_model",
    "predict",
    "training_spec",
]


class CrossbarBackend:
    """The integer product of one layer on programmed crossbars."""

    def __init__(
        self,
        layer: IntLayer,
        spec: CrossbarSpec,
        index: int = 0,
        backend: Backend = "torch",
        device: str | torch.device = "cpu",
    ) -> None:
        ni = spec.nonideal
        self.spec = spec.model_copy(update={"nonideal": ni.model_copy(update={"seed": ni.seed + index})})
        self.index = index
        if backend not in ("numpy", "torch"):
            raise CimdseError(f"backend must be 'numpy' or 'torch', got {backend!r}")
        self.backend = backend
        self.calls = 0
        w = layer.w_int.cpu().numpy()
        ng = layer.n // layer.groups
        parts = [w[:, g * ng : (g + 1) * ng] for g in range(layer.groups)]
        if backend == "torch":
            self.programmed = [crossbar_torch.program(p, self.spec, layer.w_bits, device=device) for p in parts]
        else:
            self.programmed = [crossbar.program(p, self.spec, layer.w_bits) for p in parts]

    def _mvm(self, layer: IntLayer, cols: torch.Tensor, group: int) -> torch.Tensor:
        """``cols`` [M, K] integers -> [M, N/groups] int64."""
        self.calls += 1
        seed = None if not self.spec.nonideal.read_noise_sigma else self.spec.nonideal.seed * 7919 + self.calls
        kw = dict(a_bits=layer.a_bits, signed_inputs=layer.signed, read_seed=seed)
        if self.backend == "torch":
            y = crossbar_torch.mvm(cols, self.programmed[group], **kw)
        else:
            y = torch.from_numpy(crossbar.mvm(cols.long().cpu().numpy(), self.programmed[group], **kw))
        return y.to(cols.device)

    def __call__(self, layer: IntLayer, x_int: torch.Tensor) -> torch.Tensor:
        # integers of at most 16 bits: int16 is less to unfold and pass over than float64
        x_int = x_int.to(torch.int16) if layer.a_bits <= 15 else x_int.long()
        cols, fold = unfold_inputs(layer, x_int)
        kg = layer.k
        parts = [self._mvm(layer, cols[:, g * kg : (g + 1) * kg], g) for g in range(layer.groups)]
        return fold(parts[0] if len(parts) == 1 else torch.cat(parts, dim=1), torch.float64)


def training_spec(arch: ArchSpec | CrossbarSpec, nonideal: bool = True) -> CrossbarSpec:
    """The crossbar hardware-aware QAT trains against: ``arch``'s, without its
    non-idealities unless ``nonideal``."""
    spec = arch.crossbar if isinstance(arch, ArchSpec) else arch
    return spec if nonideal else spec.model_copy(update={"nonideal": type(spec.nonideal)()})


class HardwareAwareForward:
    """The crossbar model's output of one quantized layer at its current weights and
    scales, for the forward pass of hardware-aware QAT (no gradient of its own)."""

    def __init__(self, spec: CrossbarSpec, index: int, nonideal: bool = True) -> None:
        self.spec = training_spec(spec, nonideal)
        self.index = index
        self.steps = 0

    @torch.no_grad()
    def __call__(self, q: nn.Module, x: torch.Tensor) -> torch.Tensor:
        layer = q.export()
        spec = self.spec
        if q.training and spec.nonideal.any:  # a fresh device sample per training step
            self.steps += 1
            ni = spec.nonideal
            spec = spec.model_copy(update={"nonideal": ni.model_copy(update={"seed": ni.seed + 7919 * self.steps})})
        backend = CrossbarBackend(layer, spec, self.index, "torch", x.device)
        acc = backend(layer, act_integers(layer, x))
        shape = (1, -1) + (1,) * (acc.dim() - 2) if layer.kind != "linear" else (-1,)
        return (acc * layer.out_scale().view(shape) + layer.bias.view(shape)).to(x.dtype)


def hardware_aware(qmodel: nn.Module, arch: ArchSpec | CrossbarSpec | None, *, nonideal: bool = True) -> nn.Module:
    """Put the crossbar model of ``arch`` into the forward pass of every quantized
    layer of ``qmodel`` (in place; ``arch=None`` takes it out again). ``nonideal``:
    include the arch's conductance variation, stuck-at cells and read noise."""
    spec = arch.crossbar if isinstance(arch, ArchSpec) else arch
    for index, q in enumerate(quant_layers(qmodel).values()):
        q.hardware_forward = HardwareAwareForward(spec, index, nonideal) if spec is not None else None
    return qmodel


class _DoubleInput(nn.Module):
    """Feeds the wrapped model float64 inputs on its device (its digital ops run in
    float64)."""

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        super().__init__()
        self.model = model
        self.device = device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.to(self.device, torch.float64))


def integer_model(
    qmodel: nn.Module,
    layers: dict[str, IntLayer] | None = None,
    arch: ArchSpec | CrossbarSpec | None = None,
    *,
    backend: Backend = "torch",
    device: str | torch.device = "cpu",
    in_place: bool = False,
) -> nn.Module:
    """A copy of ``qmodel`` that runs its crossbar layers exactly from the integer
    export ``layers`` (default: exported from ``qmodel``): on the crossbar model of
    ``arch`` when given (its ``backend``), else with exact integer arithmetic (the
    integer model, :mod:`cimdse.quant.exact`); everything on ``device``. ``in_place``:
    turn ``qmodel`` itself into it (no copy; for a model used once)."""
    layers = layers if layers is not None else export_model(qmodel)
    dev = torch.device(device)
    model = (qmodel if in_place else copy.deepcopy(qmodel)).to(dev).double().eval()
    spec = arch.crossbar if isinstance(arch, ArchSpec) else arch
    qls = quant_layers(model)
    missing = sorted(set(qls) - set(layers))
    if missing:
        raise CimdseError(f"integer export lacks layer(s) {missing}")
    for index, (name, q) in enumerate(qls.items()):
        q.frozen, q.exact = layers[name].to(dev), True
        q.backend = CrossbarBackend(layers[name], spec, index, backend, dev) if spec is not None else None
    return _DoubleInput(model, dev)


@torch.no_grad()
def predict(
    model: nn.Module, dataset: TensorDataset, *, batch_size: int = 256, callback: Callable[[int], None] | None = None
) -> np.ndarray:
    """Predicted classes for every sample; ``callback(samples done)`` after each batch."""
    model.eval()
    x_all = dataset.tensors[0]
    preds = []
    for i in range(0, len(x_all), batch_size):
        preds.append(model(x_all[i : i + batch_size]).argmax(dim=1).cpu().numpy())
        if callback is not None:
            callback(min(i + batch_size, len(x_all)))
    return np.concatenate(preds) if preds else np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class HardwareResult:
    """Accuracies of the integer model (mode ``fake_quant``) and of the crossbar
    model, and how often their predictions agree."""

    fake_quant: float
    hardware: float | None
    agreement: float | None
    samples: int
    fake_pred: np.ndarray
    hardware_pred: np.ndarray | None


def evaluate_hardware(
    qmodel: nn.Module,
    dataset: TensorDataset,
    arch: ArchSpec | CrossbarSpec | None,
    layers: dict[str, IntLayer] | None = None,
    *,
    batch_size: int = 256,
    callback: Callable[[str, int], None] | None = None,
    backend: Backend = "torch",
    device: str | torch.device = "cpu",
) -> HardwareResult:
    """Run ``dataset`` through the integer model and, when ``arch`` is given,
    through the crossbar model (``backend``, on ``device``). ``callback(mode, samples
    done)`` reports progress."""
    labels = dataset.tensors[1].numpy()
    n = len(labels)

    def run(arch_: ArchSpec | CrossbarSpec | None, mode: str) -> np.ndarray:
        cb = (lambda done: callback(mode, done)) if callback is not None else None
        model = integer_model(qmodel, layers, arch_, backend=backend, device=device)
        return predict(model, dataset, batch_size=batch_size, callback=cb)

    def acc(pred: np.ndarray) -> float:
        return float((pred == labels).mean()) if n else float("nan")

    fake = run(None, "fake_quant")
    if arch is None:
        return HardwareResult(acc(fake), None, None, n, fake, None)
    hw = run(arch, "hardware")
    agree = float((hw == fake).mean()) if n else float("nan")
    return HardwareResult(acc(fake), acc(hw), agree, n, fake, hw)
