"""Fake quantizers with a straight-through estimator (LSQ, Esser et al., ICLR 2020).

Integer grids are those of the crossbar (design.md section 3):

- weights: signed, symmetric, per output channel, ``w_int`` in [-(2^(b-1)-1), 2^(b-1)-1];
- activations: unsigned ``x_int`` in [0, 2^a - 1], or signed in [-2^(a-1), 2^(a-1)-1]
  for layers whose input can be negative (offset encoding on the crossbar).

Both scales are learned (LSQ, with its gradient scaling) and initialized by a small
MSE search over clipping ratios, which is far better than max-scaling at 2..4 bits.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cimdse.errors import CimdseError
from cimdse.policy import QUANT

__all__ = [
    "ActQuantizer",
    "WeightQuantizer",
    "act_range",
    "check_bits",
    "fake_quant",
    "mse_scale",
    "weight_range",
]

MIN_SCALE = 1e-8
_RATIOS = torch.linspace(0.05, 1.0, 40)


def check_bits(w_bits: int, a_bits: int, where: str = "") -> None:
    """Bits the quantizers support: ``cimdse.policy.QUANT``."""
    for column, v in (("w_bits", w_bits), ("a_bits", a_bits)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise CimdseError(f"{where or 'bits'}: {column} must be an integer, got {v!r}")
    QUANT.check(w_bits, a_bits, where or "bits")


def weight_range(bits: int) -> tuple[int, int]:
    q = 2 ** (bits - 1) - 1
    return -q, q


def act_range(bits: int, signed: bool) -> tuple[int, int]:
    return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)


def _round_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


def _grad_scale(x: torch.Tensor, g: float) -> torch.Tensor:
    return (x - x * g).detach() + x * g


def fake_quant(x: torch.Tensor, scale: torch.Tensor, lo: int, hi: int, grad: float = 1.0) -> torch.Tensor:
    """``clamp(round(x / s), lo, hi) * s`` with the LSQ gradients for x and s."""
    s = _grad_scale(scale.clamp_min(MIN_SCALE), grad)
    return torch.clamp(_round_ste(x / s), lo, hi) * s


@torch.no_grad()
def mse_scale(x: torch.Tensor, lo: int, hi: int, dim: int | None = None) -> torch.Tensor:
    """The scale minimizing the quantization MSE of ``x`` over clipping ratios of its
    largest magnitude; per slice along ``dim`` (e.g. output channels) or global."""
    x = x.detach().float()
    x = x.reshape(1, -1) if dim is None else x.transpose(0, dim).reshape(x.shape[dim], -1)
    amax = x.abs().amax(dim=1).clamp_min(MIN_SCALE)  # [C]
    q = max(hi, -lo)
    best_err = torch.full_like(amax, math.inf)
    best = amax / q
    for r in _RATIOS.tolist():
        s = (amax * r / q)[:, None]
        err = ((torch.clamp(torch.round(x / s), lo, hi) * s - x) ** 2).sum(dim=1)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best = torch.where(better, s[:, 0], best)
    return best if dim is not None else best.reshape(())


class WeightQuantizer(nn.Module):
    """Symmetric per-output-channel weight quantizer with a learned scale per channel."""

    def __init__(self, bits: int, channels: int) -> None:
        super().__init__()
        self.bits = bits
        self.scale = nn.Parameter(torch.ones(channels))

    @property
    def qrange(self) -> tuple[int, int]:
        return weight_range(self.bits)

    def init_scale(self, weight: torch.Tensor) -> None:
        lo, hi = self.qrange
        self.scale.data.copy_(mse_scale(weight, lo, hi, dim=0))

    def _view(self, weight: torch.Tensor) -> torch.Tensor:
        return self.scale.view(-1, *([1] * (weight.dim() - 1)))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        lo, hi = self.qrange
        grad = 1.0 / math.sqrt(weight[0].numel() * hi)
        return fake_quant(weight, self._view(weight), lo, hi, grad)

    @torch.no_grad()
    def integers(self, weight: torch.Tensor) -> torch.Tensor:
        """The integer weights the crossbar holds (int64, same shape as ``weight``)."""
        lo, hi = self.qrange
        s = self._view(weight).clamp_min(MIN_SCALE)
        return torch.clamp(torch.round(weight / s), lo, hi).long()

    def extra_repr(self) -> str:
        return f"bits={self.bits}, channels={self.scale.numel()}"


class ActQuantizer(nn.Module):
    """Activation quantizer with one learned clipping scale (LSQ); unsigned unless the
    calibration saw negative inputs."""

    def __init__(self, bits: int, signed: bool = False) -> None:
        super().__init__()
        self.bits = bits
        self.register_buffer("signed_flag", torch.tensor(bool(signed)))
        self.scale = nn.Parameter(torch.tensor(1.0))

    @property
    def signed(self) -> bool:
        return bool(self.signed_flag)

    @signed.setter
    def signed(self, value: bool) -> None:
        self.signed_flag.fill_(bool(value))

    @property
    def qrange(self) -> tuple[int, int]:
        return act_range(self.bits, self.signed)

    def init_scale(self, samples: torch.Tensor) -> None:
        lo, hi = self.qrange
        self.scale.data.fill_(float(mse_scale(samples, lo, hi)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lo, hi = self.qrange
        grad = 1.0 / math.sqrt(max(1, x[0].numel()) * max(hi, 1))
        return fake_quant(x, self.scale, lo, hi, grad)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, signed={self.signed}"
