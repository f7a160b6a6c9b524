"""Integer export: each crossbar layer as integers plus scales, in the semantics the
compiler and the crossbar model share (design.md sections 3 and 6):

    y[., n] = s_x * s_w[n] * (x_int @ w_int)[., n] + bias[n]

with ``x_int = clamp(round(x / s_x))`` unsigned in [0, 2^a - 1] (or signed in
[-2^(a-1), 2^(a-1) - 1]) and ``w_int`` in [-(2^(b-1) - 1), 2^(b-1) - 1].
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cimdse.quant.quantizers import act_range

__all__ = [
    "Backend",
    "IntLayer",
    "FLOAT32_EXACT",
    "act_integers",
    "exact_product",
    "export_model",
    "int_product",
    "layers_from_dicts",
    "layers_to_dicts",
    "product_bound",
    "unfold_inputs",
]

Backend = Callable[["IntLayer", torch.Tensor], torch.Tensor]


@dataclass
class IntLayer:
    """One crossbar layer in integers, the compiler's and the crossbar's semantics.

    ``w_int`` is [K, N] in im2col order (row ``c * kh * kw + i * kw + j`` for input
    channel c and kernel tap (i, j), as ``torch.nn.functional.unfold`` orders it);
    for a grouped conv K is the rows of one group (C_in / groups * kh * kw) and
    column n belongs to group ``n // (N / groups)``.
    """

    name: str
    kind: str  # "conv1d", "conv2d" or "linear"
    w_int: torch.Tensor  # int64 [K, N]
    w_bits: int
    a_bits: int
    signed: bool  # inputs signed (offset-encoded on the crossbar)
    s_x: float
    s_w: torch.Tensor  # float64 [N]
    bias: torch.Tensor  # float64 [N]
    kernel_size: tuple[int, ...] = ()
    stride: tuple[int, ...] = ()
    padding: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()
    groups: int = 1

    @property
    def k(self) -> int:
        return int(self.w_int.shape[0])

    @property
    def n(self) -> int:
        return int(self.w_int.shape[1])

    def weight_tensor(self) -> torch.Tensor:
        """``w_int`` back in torch's layout ([N, C_in/groups, *kernel] or [N, K]), float64."""
        w = self.w_int.t().double()
        return w if self.kind == "linear" else w.reshape(self.n, -1, *self.kernel_size)

    def to(self, device: str | torch.device) -> IntLayer:
        """This layer with its tensors on ``device``."""
        moved = {key: getattr(self, key).to(device) for key in ("w_int", "s_w", "bias")}
        return dataclasses.replace(self, **moved)

    def out_scale(self) -> torch.Tensor:
        return self.s_x * self.s_w

    def dequantize(self, acc: torch.Tensor) -> torch.Tensor:
        """The layer's output from its integer product ``acc`` (layer-shaped, float32 or
        float64): ``s_x * s_w[n] * acc + bias[n]`` in float64. A float64 ``acc`` is
        overwritten (it is the product's own buffer; a float32 one is converted, which is
        faster than a mixed-type multiply)."""
        shape = (1, -1) + (1,) * (acc.dim() - 2) if self.kind != "linear" else (-1,)
        return acc.double().mul_(self.out_scale().view(shape)).add_(self.bias.view(shape))

    @functools.cached_property
    def _column_l1(self) -> int:
        """The largest column sum of ``|w_int|`` (cached: the export is not changed)."""
        return int(self.w_int.abs().sum(dim=0).max()) if self.w_int.numel() else 0

    def to_dict(self) -> dict:
        d = {key: getattr(self, key) for key in (f.name for f in dataclasses.fields(self))}
        d["w_int"] = self.w_int.to(torch.int8)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> IntLayer:
        d = dict(d)
        d["w_int"] = d["w_int"].long()
        for key in ("kernel_size", "stride", "padding", "dilation"):
            d[key] = tuple(d.get(key, ()))
        return cls(**d)


#: float32 holds every integer of magnitude <= 2^24 exactly
FLOAT32_EXACT = 2**24
#: the activation digit of the two-slice float32 product: x_int = 16 * high + low
_SLICE = 16


def product_bound(layer: IntLayer, sliced: bool = False) -> int:
    """The largest magnitude any partial sum of the layer's integer product can reach:
    the largest column sum of ``|w_int|`` times the largest input magnitude (``sliced``:
    that of one base-16 digit of the input, ``x_int = 16 * high + low``)."""
    lo, hi = act_range(layer.a_bits, layer.signed)
    x_max = max(-lo, hi)
    if sliced:
        x_max = max(_SLICE - 1, -(-x_max // _SLICE))
    return layer._column_l1 * x_max


def _product(layer: IntLayer, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    if layer.kind == "linear":
        return F.linear(x, w)
    op = F.conv1d if layer.kind == "conv1d" else F.conv2d
    return op(x, w, None, layer.stride, layer.padding, layer.dilation, layer.groups)


def exact_product(layer: IntLayer, x_int: torch.Tensor) -> torch.Tensor:
    """The integer product ``x_int @ w_int`` (a convolution for a conv), exact, as an
    integer-valued float32 or float64 tensor, by the cheapest exact arithmetic on the
    device.

    On the CPU the product runs in float32 when :func:`product_bound` proves every
    partial sum an integer of magnitude <= 2^24 (then any summation order, FMA or
    blocking gives the exact integer); else in two float32 products over the
    activation's base-16 digits (``x_int = 16 * high + low``, recombined in float64)
    when their bound proves them exact; else in float64 (exact below 2^53). Operands are
    integers of magnitude <= 255, exact in bf16 and tf32 too, so a reduced-precision
    float32 matmul setting changes nothing. NNPACK (Winograd / FFT convolutions, not
    sums of products) is switched off for the float32 convolutions; elsewhere (CUDA,
    whose cuDNN may choose Winograd or FFT) the product is float64 and rounded."""
    if x_int.device.type != "cpu":
        return torch.round(_product(layer, x_int.double(), layer.weight_tensor()))
    w = layer.weight_tensor()
    with torch.backends.nnpack.flags(enabled=False):
        if product_bound(layer) <= FLOAT32_EXACT:
            return _product(layer, x_int.float(), w.float())
        if product_bound(layer, sliced=True) <= FLOAT32_EXACT:
            high = torch.floor(x_int / _SLICE)
            low = x_int - _SLICE * high
            w32 = w.float()
            acc = _product(layer, high.float(), w32).double().mul_(_SLICE)
            return acc.add_(_product(layer, low.float(), w32))
    return _product(layer, x_int.double(), w)


def int_product(layer: IntLayer, x_int: torch.Tensor) -> torch.Tensor:
    """The exact integer product (:func:`exact_product`) as an integer-valued float64
    tensor."""
    return exact_product(layer, x_int).double()


def unfold_inputs(layer: IntLayer, x_int: torch.Tensor) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """The layer's input vectors as rows [M, groups * K] (im2col order for a conv, as
    ``torch.nn.functional.unfold`` orders it: rows (b, output position), columns
    (channel, kernel position)) and the function that folds products [M, N] back into
    the layer's output shape (``fold(acc, dtype)``: converted on the way). Any dtype
    (integer inputs stay integers: less memory to pass over than float64): the unfold is
    one strided copy of the zero-padded input."""
    if layer.kind == "linear":
        lead = x_int.shape[:-1]

        def unflatten(acc: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
            return acc.reshape(*lead, acc.shape[-1]).to(dtype or acc.dtype)

        return x_int.reshape(-1, x_int.shape[-1]), unflatten
    if layer.kind == "conv1d":
        x4 = x_int.unsqueeze(2)
        kernel, stride = (1, *layer.kernel_size), (1, *layer.stride)
        padding, dilation = (0, *layer.padding), (1, *layer.dilation)
    else:
        x4, kernel, stride = x_int, layer.kernel_size, layer.stride
        padding, dilation = layer.padding, layer.dilation
    b, c, h, w = x4.shape
    out_hw = [
        (size + 2 * p - d * (k - 1) - 1) // s + 1
        for size, p, d, k, s in zip((h, w), padding, dilation, kernel, stride, strict=True)
    ]
    xp = F.pad(x4, (padding[1], padding[1], padding[0], padding[0])) if any(padding) else x4
    s0, s1, s2, s3 = xp.stride()
    view = xp.as_strided(
        (b, *out_hw, c, *kernel),
        (s0, stride[0] * s2, stride[1] * s3, s1, dilation[0] * s2, dilation[1] * s3),
        xp.storage_offset(),
    )
    cols = view.reshape(b * out_hw[0] * out_hw[1], c * kernel[0] * kernel[1])  # [B*L, C*kh*kw]

    def fold(acc: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        n = acc.shape[-1]
        shape = (b, n, *out_hw) if layer.kind == "conv2d" else (b, n, out_hw[1])
        out = torch.empty(shape, dtype=dtype or acc.dtype, device=acc.device)  # transposed and converted in one copy
        out.view(b, n, -1).copy_(acc.reshape(b, -1, n).transpose(1, 2))
        return out

    return cols, fold


def act_integers(layer: IntLayer, x: torch.Tensor) -> torch.Tensor:
    """``clamp(round(x / s_x))`` in float64: the exact integer inputs of the layer."""
    lo, hi = act_range(layer.a_bits, layer.signed)
    return torch.div(x.double(), layer.s_x).round_().clamp_(lo, hi)  # a new tensor, rounded in place


def export_model(qmodel: nn.Module) -> dict[str, IntLayer]:
    """Every quantized layer of ``qmodel`` in integers, keyed by layer name, in
    module order."""
    return {m.qname: m.export() for m in qmodel.modules() if hasattr(m, "weight_q") and hasattr(m, "export")}


def layers_to_dicts(layers: dict[str, IntLayer]) -> dict[str, dict]:
    """Plain dicts of tensors and numbers (what a checkpoint stores)."""
    return {name: layer.to_dict() for name, layer in layers.items()}


def layers_from_dicts(data: dict[str, dict]) -> dict[str, IntLayer]:
    return {name: IntLayer.from_dict(d) for name, d in data.items()}
