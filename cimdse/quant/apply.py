"""Turning a float model into a quantized one at a per-layer policy.

Steps, in order: fold BatchNorm into the conv before it (folding happens once,
before QAT: the folded conv is what is quantized, trained and exported, so the
exported integers include the BN affine); find the crossbar layers (Conv1d, Conv2d,
Linear) in forward execution order, named by their qualified module names; swap
each for its quantized class at its (w_bits, a_bits); calibrate: weight scales per
channel and activation scales by an MSE search, and an input is quantized signed
when the calibration saw a negative value (the first layer's input when data are
centred, a residual add without ReLU).

:class:`PreparedModel` caches the folding, the calibration activations and the
scales per bit width, so quantizing one float model at many policies is cheap.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from cimdse.errors import CimdseError
from cimdse.quant.qlayers import QuantLayer, quant_class, to_quant
from cimdse.quant.quantizers import act_range, check_bits, mse_scale, weight_range

__all__ = [
    "PreparedModel",
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


def _call_order(model: nn.Module, example: torch.Tensor, kinds: tuple[type[nn.Module], ...]) -> list[str]:
    """Qualified names of the modules of ``kinds`` in the order a forward pass calls them."""
    names = {id(m): n for n, m in model.named_modules()}
    order: list[str] = []
    hooks = [
        m.register_forward_pre_hook(lambda mod, _inp: order.append(names[id(mod)]))
        for m in model.modules()
        if isinstance(m, kinds)
    ]
    try:
        with torch.no_grad():
            model(_example(model, example))
    except Exception as err:
        raise CimdseError(f"the model fails on input {tuple(example.shape[1:])}: {type(err).__name__}: {err}") from None
    finally:
        for h in hooks:
            h.remove()
    return list(dict.fromkeys(order))


def crossbar_layers(model: nn.Module, input_shape: Sequence[int]) -> list[str]:
    """Names of the crossbar layers (Conv1d, Conv2d, Linear) in execution order; the
    compiler's ``trace(model, input_shape).layers`` order."""
    was_training = model.training
    model.eval()
    try:
        return _call_order(model, torch.zeros(1, *input_shape), (nn.Conv1d, nn.Conv2d, nn.Linear))
    finally:
        model.train(was_training)


def quant_layers(qmodel: nn.Module) -> dict[str, QuantLayer]:
    """The quantized layers of ``qmodel`` keyed by layer name, in module order."""
    return {m.qname: m for m in qmodel.modules() if isinstance(m, QuantLayer)}


def _set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


# ---------------------------------------------------------------- BN folding
@torch.no_grad()
def fold_batchnorm(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """Fold every BatchNorm whose input is exactly the output of a Conv (found on a
    forward pass of ``example``) into that conv, in place; the BN becomes Identity.
    Uses the BN running statistics (eval-mode semantics)."""
    convs = (nn.Conv1d, nn.Conv2d)
    names = {id(m): n for n, m in model.named_modules()}
    produced: dict[int, tuple[str, torch.Tensor]] = {}
    pairs: list[tuple[str, str]] = []

    def conv_hook(mod: nn.Module, _inp: Any, out: torch.Tensor) -> None:
        produced[id(out)] = (names[id(mod)], out)  # the tensor is kept alive: ids stay unique

    def bn_hook(mod: nn.Module, inp: tuple[torch.Tensor, ...]) -> None:
        hit = produced.get(id(inp[0]))
        if hit is not None and hit[1] is inp[0]:
            pairs.append((hit[0], names[id(mod)]))

    hooks = [m.register_forward_hook(conv_hook) for m in model.modules() if isinstance(m, convs)]
    hooks += [m.register_forward_pre_hook(bn_hook) for m in model.modules() if isinstance(m, _BN)]
    was_training = model.training
    model.eval()
    try:
        model(_example(model, example))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    for conv_name, bn_name in dict.fromkeys(pairs):
        conv, bn = model.get_submodule(conv_name), model.get_submodule(bn_name)
        if bn.running_mean is None or bn.num_features != conv.out_channels:
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
        _set_module(model, bn_name, nn.Identity())
    return model


# ---------------------------------------------------------------- policy
def resolve_policy(policy: Policy, names: Sequence[str]) -> dict[str, tuple[int, int]]:
    """A policy as ``{layer name: (w_bits, a_bits)}`` for exactly the layers ``names``:
    accepts a mapping keyed by layer name, or a list / [L, 2] array in layer order."""
    if isinstance(policy, Mapping):
        unknown = [k for k in policy if k not in names]
        if unknown:
            raise CimdseError(f"policy names unknown layer(s) {unknown}; layers: {', '.join(names)}")
        missing = [n for n in names if n not in policy]
        if missing:
            raise CimdseError(f"policy lacks layer(s) {missing}")
        rows = [policy[n] for n in names]
    else:
        rows = [list(r) for r in np.asarray(policy).reshape(-1, 2).tolist()] if len(policy) else []
        if len(rows) != len(names):
            raise CimdseError(f"policy has {len(rows)} entries for {len(names)} crossbar layers")
    out: dict[str, tuple[int, int]] = {}
    for name, row in zip(names, rows, strict=True):
        try:
            w, a = (int(v) for v in row)
            if any(float(v) != int(v) for v in row):
                raise ValueError
        except (TypeError, ValueError):
            raise CimdseError(f"policy entry for {name}: expected [w_bits, a_bits], got {row!r}") from None
        check_bits(w, a, f"policy entry for {name}")
        out[name] = (w, a)
    return out


# ---------------------------------------------------------------- calibration
class PreparedModel:
    """A float model folded and calibrated once, quantized at any policy cheaply.

    ``calib`` is a batch of training inputs; the activation ranges and the
    signedness of every crossbar layer's input are taken from the float model on it.
    """

    def __init__(self, model: nn.Module, calib: torch.Tensor, *, fold_bn: bool = True) -> None:
        self.float_model = copy.deepcopy(model).eval()
        if fold_bn:
            fold_batchnorm(self.float_model, calib[:2])
        kinds = (nn.Conv1d, nn.Conv2d, nn.Linear)
        self.names = _call_order(self.float_model, calib[:1], kinds)
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


def quantized_structure(model: nn.Module, policy: Mapping[str, Sequence[int]], example: torch.Tensor) -> nn.Module:
    """The quantized model's structure (folded, swapped, uncalibrated): what a
    checkpoint's state dict is loaded into."""
    qmodel = fold_batchnorm(copy.deepcopy(model).eval(), example)
    names = _call_order(qmodel, example[:1], (nn.Conv1d, nn.Conv2d, nn.Linear))
    for name, (w, a) in resolve_policy(policy, names).items():
        _set_module(qmodel, name, to_quant(qmodel.get_submodule(name), w, a, name))
    return qmodel
