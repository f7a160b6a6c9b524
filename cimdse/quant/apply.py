"""Turning a float model into a quantized one at a per-layer policy.

Steps, in order: trace the model with the compiler (``cimdse.compiler.trace``: its
layer order and names are the policy's); fold each BatchNorm the compiler folds into
its layer (once, before QAT: the folded conv is what is quantized, trained and
exported, so the exported integers include the BN affine); swap each crossbar layer
for its quantized class at its (w_bits, a_bits); calibrate: weight scales per
channel and activation scales by an MSE search, and an input is quantized signed
when the calibration saw a negative value (the first layer's input when data are
centred, a residual add without ReLU).

:class:`PreparedModel` caches the folding, the calibration activations and the
scales per bit width, so quantizing one float model at many policies is cheap.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from cimdse.compiler import Network, trace
from cimdse.errors import CimdseError
from cimdse.policy import QUANT, as_policy
from cimdse.quant.qlayers import QuantLayer, quant_class, to_quant
from cimdse.quant.quantizers import act_range, mse_scale, weight_range

__all__ = [
    "PreparedModel",
    "check_quantizable",
    "crossbar_layers",
    "fold_batchnorm",
    "quant_layers",
    "quantize",
    "resolve_policy",
]

Policy = Mapping[str, Sequence[int]] | Sequence[Sequence[int]] | np.ndarray
_CALIB_VALUES = 65536  # activation values kept per layer for the scale search
_BN = (nn.BatchNorm1d, nn.BatchNorm2d)


def _example(model: nn.Module, example: torch.Tensor) -> torch.Tensor:
    dev = next((p.device for p in model.parameters()), torch.device("cpu"))
    return example.to(dev)


def check_quantizable(network: Network) -> None:
    """Quantization-aware training and hardware evaluation swap Conv1d/Conv2d/Linear
    modules for quantized ones; weights held elsewhere (nn.LSTM/GRU/RNN and their cells,
    nn.MultiheadAttention's in-projection, functional F.linear/matmul with a parameter)
    are refused here with one message, before any work."""
    others = [layer for layer in network.layers if layer.origin]
    if others:
        first = others[0]
        raise CimdseError(
            f"{network.name}: layer '{first.name}' ({first.origin} weight) cannot be quantized: quantization-aware "
            "training and hardware evaluation support Conv1d/Conv2d/Linear modules (attention written with "
            "nn.Linear projections works, as in the zoo's vit); compile and layers handle it"
            + (f" ({len(others)} such layers)" if len(others) > 1 else "")
        )


def crossbar_layers(model: nn.Module, input_shape: Sequence[int]) -> list[str]:
    """Names of the crossbar layers (Conv1d, Conv2d, Linear) in execution order: the
    compiler's ``trace(model, input_shape).layers``, the order of policy rows; refuses
    a model with layers that cannot be quantized (:func:`check_quantizable`)."""
    network = trace(model, input_shape)
    check_quantizable(network)
    return network.names


def quant_layers(qmodel: nn.Module) -> dict[str, QuantLayer]:
    """The quantized layers of ``qmodel`` keyed by layer name, in module order."""
    return {m.qname: m for m in qmodel.modules() if isinstance(m, QuantLayer)}


def _set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


# ---------------------------------------------------------------- BN folding
@torch.no_grad()
def fold_batchnorm(model: nn.Module, input_shape: Sequence[int], network: Network | None = None) -> nn.Module:
    """Fold, in place, every BatchNorm the compiler folds (one that only consumes a
    crossbar layer's output: ``Layer.folded_bn``) into that layer, with eval-mode
    (running) statistics; the BN becomes Identity. Other BNs stay as digital ops."""
    network = network if network is not None else trace(model, input_shape)
    for layer in network.layers:
        if layer.folded_bn is None:
            continue
        conv, bn = model.get_submodule(layer.name), model.get_submodule(layer.folded_bn)
        if not isinstance(bn, _BN) or bn.running_mean is None or bn.num_features != conv.weight.shape[0]:
            continue
        std = torch.sqrt(bn.running_var + bn.eps)
        gamma = bn.weight if bn.affine else torch.ones_like(std)
        beta = bn.bias if bn.affine else torch.zeros_like(std)
        factor = gamma / std
        conv.weight.mul_(factor.view(-1, *([1] * (conv.weight.dim() - 1))))
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        new_bias = beta + (bias - bn.running_mean) * factor
        if conv.bias is None:
            conv.bias = nn.Parameter(new_bias)
        else:
            conv.bias.copy_(new_bias)
        _set_module(model, layer.folded_bn, nn.Identity())
    return model


# ---------------------------------------------------------------- policy
def resolve_policy(policy: Policy, names: Sequence[str]) -> dict[str, tuple[int, int]]:
    """A policy as ``{layer name: (w_bits, a_bits)}`` for exactly the layers ``names``:
    accepts a mapping keyed by layer name, or a list / [L, 2] array in layer order (what
    ``cimdse.policy.load_policy`` returns), within the quantizers' ranges
    (``cimdse.policy.QUANT``)."""
    names = list(names)
    arr = as_policy(policy, names, QUANT)
    return {name: (int(w), int(a)) for name, (w, a) in zip(names, arr, strict=True)}


# ---------------------------------------------------------------- calibration
class PreparedModel:
    """A float model folded and calibrated once, quantized at any policy cheaply.

    ``calib`` is a batch of training inputs; the activation ranges and the
    signedness of every crossbar layer's input are taken from the float model on it.
    """

    def __init__(self, model: nn.Module, calib: torch.Tensor, *, fold_bn: bool = True) -> None:
        self.float_model = copy.deepcopy(model).eval()
        self.input_shape = tuple(int(d) for d in calib.shape[1:])
        self.network = trace(self.float_model, self.input_shape)
        check_quantizable(self.network)
        if fold_bn:
            fold_batchnorm(self.float_model, self.input_shape, self.network)
        self.names = self.network.names
        for name in self.names:
            if quant_class(self.float_model.get_submodule(name)) is None:
                raise CimdseError(f"{name}: {type(self.float_model.get_submodule(name)).__name__} is not supported")
        self.samples, self.signed = self._collect(calib)
        self._w_scales: dict[tuple[str, int], torch.Tensor] = {}
        self._a_scales: dict[tuple[str, int], float] = {}

    @torch.no_grad()
    def _collect(self, calib: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, bool]]:
        stats: dict[str, list[torch.Tensor]] = {n: [] for n in self.names}
        index = {id(self.float_model.get_submodule(n)): n for n in self.names}
        hooks = [
            self.float_model.get_submodule(n).register_forward_pre_hook(
                lambda mod, inp: stats[index[id(mod)]].append(inp[0].detach().flatten())
            )
            for n in self.names
        ]
        try:
            self.float_model(_example(self.float_model, calib))
        finally:
            for h in hooks:
                h.remove()
        gen = torch.Generator().manual_seed(0)
        samples, signed = {}, {}
        for name, parts in stats.items():
            flat = torch.cat(parts).float().cpu()
            signed[name] = bool(flat.numel() and flat.min() < 0)
            if flat.numel() > _CALIB_VALUES:
                flat = flat[torch.randperm(flat.numel(), generator=gen)[:_CALIB_VALUES]]
            samples[name] = flat
        return samples, signed

    def weight_scale(self, name: str, w_bits: int) -> torch.Tensor:
        key = (name, w_bits)
        if key not in self._w_scales:
            lo, hi = weight_range(w_bits)
            self._w_scales[key] = mse_scale(self.float_model.get_submodule(name).weight, lo, hi, dim=0)
        return self._w_scales[key]

    def act_scale(self, name: str, a_bits: int) -> float:
        key = (name, a_bits)
        if key not in self._a_scales:
            lo, hi = act_range(a_bits, self.signed[name])
            self._a_scales[key] = float(mse_scale(self.samples[name], lo, hi))
        return self._a_scales[key]

    def quantize(self, policy: Policy) -> nn.Module:
        """A new quantized model at ``policy``, calibrated, in eval mode."""
        bits = resolve_policy(policy, self.names)
        qmodel = copy.deepcopy(self.float_model)
        for name, (w, a) in bits.items():
            q = to_quant(qmodel.get_submodule(name), w, a, name)
            q.act_q.signed = self.signed[name]
            with torch.no_grad():
                q.weight_q.scale.copy_(self.weight_scale(name, w))
                q.act_q.scale.fill_(self.act_scale(name, a))
            _set_module(qmodel, name, q)
        return qmodel.eval()


def quantize(model: nn.Module, policy: Policy, calib: torch.Tensor, *, fold_bn: bool = True) -> nn.Module:
    """``model`` folded, quantized at ``policy`` (keyed by layer name, or a list in
    layer order) and calibrated on the inputs ``calib``; ``model`` is left as is."""
    return PreparedModel(model, calib, fold_bn=fold_bn).quantize(policy)


def quantized_structure(model: nn.Module, policy: Policy, input_shape: Sequence[int]) -> nn.Module:
    """The quantized model's structure (folded, swapped, uncalibrated): what a
    checkpoint's state dict is loaded into."""
    network = trace(model, input_shape)
    check_quantizable(network)
    qmodel = fold_batchnorm(copy.deepcopy(model).eval(), input_shape, network)
    for name, (w, a) in resolve_policy(policy, network.names).items():
        _set_module(qmodel, name, to_quant(qmodel.get_submodule(name), w, a, name))
    return qmodel
