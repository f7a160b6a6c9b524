"""Quantized crossbar layers: Conv1d, Conv2d (groups included) and Linear.

Each is a subclass of its torch layer (so module names, parameter names and the
layer order stay those of the float model) with a weight and an input quantizer.
Two forward paths:

- training (``exact`` False): fake quantization in float32 with STE gradients; with
  a ``hardware_forward`` set (:func:`cimdse.quant.hardware.hardware_aware`), the
  forward value is the crossbar model's output instead (ADC, slicing, optional
  non-idealities) and the gradient stays the fake-quant one (straight-through):
  ``y = y_fq + (y_crossbar - y_fq).detach()``;
- exact (``exact`` True): the exported integer layer (:class:`IntLayer`) computes
  ``y = s_x * s_w[n] * (x_int @ w_int)[., n] + bias[n]`` in float64, where the
  integer product comes from ``backend`` (the crossbar model) or, by default, from
  :func:`cimdse.quant.export.exact_product` (exact integers: float32 where a bound
  proves it, else float64). Both give the same integers with an ideal ADC, so the
  same logits, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from cimdse.errors import CimdseError
from cimdse.quant.export import Backend, IntLayer, act_integers, exact_product
from cimdse.quant.quantizers import ActQuantizer, WeightQuantizer, check_bits

__all__ = ["QuantConv1d", "QuantConv2d", "QuantLayer", "QuantLinear", "quant_class", "to_quant"]


class QuantLayer:
    """Quantization state shared by the quantized layer classes."""

    kind: str
    w_bits: int
    a_bits: int
    weight_q: WeightQuantizer
    act_q: ActQuantizer
    exact: bool
    frozen: IntLayer | None
    backend: Backend | None
    hardware_forward: Callable[[QuantLayer, torch.Tensor], torch.Tensor] | None
    qname: str

    def _setup_quant(self, w_bits: int, a_bits: int, name: str) -> None:
        check_bits(w_bits, a_bits, name)
        self.w_bits, self.a_bits, self.qname = w_bits, a_bits, name
        self.weight_q = WeightQuantizer(w_bits, self.weight.shape[0])  # type: ignore[attr-defined]
        self.act_q = ActQuantizer(a_bits)
        self.exact, self.frozen, self.backend, self.hardware_forward = False, None, None, None

    def _float_op(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _geometry(self) -> dict:
        return {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.exact:
            return self.forward_exact(x)
        y = self._float_op(self.act_q(x), self.weight_q(self.weight))  # type: ignore[attr-defined]
        if self.hardware_forward is not None:
            y = y + (self.hardware_forward(self, x) - y).detach()  # crossbar value, fake-quant gradient
        return y

    def forward_exact(self, x: torch.Tensor) -> torch.Tensor:
        layer = self.frozen if self.frozen is not None else self.export()
        x_int = act_integers(layer, x)
        return layer.dequantize((self.backend or exact_product)(layer, x_int))

    @torch.no_grad()
    def export(self) -> IntLayer:
        """This layer in integers: im2col-ordered ``w_int`` [K, N], scales and bias."""
        w = self.weight.detach().float()  # type: ignore[attr-defined]
        w_int = self.weight_q.integers(w).reshape(w.shape[0], -1).t().contiguous()
        bias = self.bias  # type: ignore[attr-defined]
        n = w.shape[0]
        return IntLayer(
            name=self.qname,
            kind=self.kind,
            w_int=w_int,
            w_bits=self.w_bits,
            a_bits=self.a_bits,
            signed=self.act_q.signed,
            s_x=float(self.act_q.scale.detach().float().clamp_min(1e-8)),
            s_w=self.weight_q.scale.detach().float().clamp_min(1e-8).double(),
            bias=(bias.detach().double() if bias is not None else torch.zeros(n, dtype=torch.float64)),
            **self._geometry(),
        )


def _conv_padding(m: nn.Module) -> tuple[int, ...]:
    if getattr(m, "padding_mode", "zeros") != "zeros":
        raise CimdseError(f"padding_mode {m.padding_mode!r} is not supported on crossbars (zeros only)")
    pad = m.padding
    if pad == "valid":
        return (0,) * len(m.kernel_size)
    if pad == "same":
        total = [d * (k - 1) for d, k in zip(m.dilation, m.kernel_size, strict=True)]
        if any(t % 2 for t in total):
            raise CimdseError("padding='same' with an even kernel is not supported; pad explicitly")
        return tuple(t // 2 for t in total)
    return tuple(pad)


class _QuantConvMixin(QuantLayer):
    def _geometry(self) -> dict:
        return {
            "kernel_size": tuple(self.kernel_size),
            "stride": tuple(self.stride),
            "padding": _conv_padding(self),
            "dilation": tuple(self.dilation),
            "groups": int(self.groups),
        }

    def _float_op(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        op = F.conv1d if self.kind == "conv1d" else F.conv2d
        return op(x, w, self.bias, self.stride, _conv_padding(self), self.dilation, self.groups)


class QuantConv2d(_QuantConvMixin, nn.Conv2d):
    kind = "conv2d"
    forward = QuantLayer.forward


class QuantConv1d(_QuantConvMixin, nn.Conv1d):
    kind = "conv1d"
    forward = QuantLayer.forward


class QuantLinear(QuantLayer, nn.Linear):
    kind = "linear"
    forward = QuantLayer.forward

    def _float_op(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return F.linear(x, w, self.bias)


_CLASSES: dict[type[nn.Module], type[nn.Module]] = {
    nn.Conv2d: QuantConv2d,
    nn.Conv1d: QuantConv1d,
    nn.Linear: QuantLinear,
}


def quant_class(module: nn.Module) -> type[nn.Module] | None:
    """The quantized class for a crossbar layer (exact type match), or None."""
    return _CLASSES.get(type(module))


def to_quant(module: nn.Module, w_bits: int, a_bits: int, name: str) -> nn.Module:
    """A quantized copy of a Conv1d / Conv2d / Linear module, sharing no storage."""
    cls = quant_class(module)
    if cls is None:
        raise CimdseError(f"{name}: {type(module).__name__} is not a crossbar layer")
    has_bias = module.bias is not None
    if isinstance(module, nn.Linear):
        args: tuple = (module.in_features, module.out_features, has_bias)
    else:
        args = (
            module.in_channels,
            module.out_channels,
            module.kernel_size,
            module.stride,
            module.padding,
            module.dilation,
            module.groups,
            has_bias,
            module.padding_mode,
        )
    q = nn.utils.skip_init(cls, *args, device=module.weight.device, dtype=module.weight.dtype)
    with torch.no_grad():
        q.weight.copy_(module.weight)
        if has_bias:
            q.bias.copy_(module.bias)
    q.train(module.training)
    q._setup_quant(w_bits, a_bits, name)
    return q
