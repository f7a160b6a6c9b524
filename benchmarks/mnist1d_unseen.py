"""A MNIST-1D network unlike the zoo's ``cnn1d``, for the search benchmark's "network it
was not tuned on": strided convolutions with wide kernels instead of pooled 3-tap
stages, and a two-layer classifier on the flattened features instead of a global
pool (6 crossbar layers, most weights in the first linear layer).

    cimdse search --dataset mnist1d --model benchmarks/mnist1d_unseen.py:build --out DIR
"""

from __future__ import annotations

from torch import nn


def build() -> nn.Module:
    def conv(c_in: int, c_out: int, k: int, stride: int) -> list[nn.Module]:
        return [nn.Conv1d(c_in, c_out, k, stride=stride, padding=k // 2, bias=False), nn.BatchNorm1d(c_out), nn.ReLU()]

    return nn.Sequential(
        *conv(1, 48, 7, 2),  # 40 -> 20
        *conv(48, 48, 5, 1),
        *conv(48, 96, 5, 2),  # 20 -> 10
        *conv(96, 96, 3, 1),
        nn.Flatten(),
        nn.Linear(96 * 10, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )
