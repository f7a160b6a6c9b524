"""Plain-torch copies of torchvision's EfficientNet-B0, ConvNeXt-Tiny, ViT-B/16 and
Swin-T (torchvision 0.20 model definitions, no weights), written as torchvision
writes them, so the compiler sees the same graph: its fx-wrapped helpers
(``stochastic_depth``, ``shifted_window_attention``, ``_get_relative_position_bias``,
``_patch_merging_pad``) stay leaf calls, ConvNeXt's ``LayerNorm2d`` calls
``F.layer_norm``, ViT uses ``nn.MultiheadAttention``. Plus the 2-layer LSTM language
model of Zaremba et al. (2014), "medium": 650 units, 10,000 words, 35 steps.

Published multiply-accumulates: torchvision's weights metadata (``_ops``, GFLOPS counted as
MACs; its docs table rounds them to 0.39, 4.46, 17.56 and 4.49).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from functools import partial

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

PUBLISHED_GMACS = {"efficientnet_b0": 0.386, "convnext_tiny": 4.456, "vit_b_16": 17.564, "swin_t": 4.491}


# ---------------------------------------------------------------- torchvision.ops
def stochastic_depth(input: torch.Tensor, p: float, mode: str, training: bool = True) -> torch.Tensor:
    if not training or p == 0.0:
        return input
    survival_rate = 1.0 - p
    size = [input.shape[0]] + [1] * (input.ndim - 1) if mode == "row" else [1] * input.ndim
    noise = torch.empty(size, dtype=input.dtype, device=input.device).bernoulli_(survival_rate)
    return input * noise.div_(survival_rate)


torch.fx.wrap("stochastic_depth")


class StochasticDepth(nn.Module):
    def __init__(self, p: float, mode: str) -> None:
        super().__init__()
        self.p, self.mode = p, mode

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return stochastic_depth(input, self.p, self.mode, self.training)


class Permute(nn.Module):
    def __init__(self, dims: list[int]) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.permute(x, self.dims)


class Conv2dNormActivation(nn.Sequential):
    def __init__(
        self,
        cin: int,
        cout: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        groups: int = 1,
        norm_layer=nn.BatchNorm2d,
        activation_layer=nn.ReLU,
        bias: bool | None = None,
    ):  # noqa: ANN001
        padding = (kernel_size - 1) // 2 if padding is None else padding
        bias = norm_layer is None if bias is None else bias
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel_size, stride, padding, groups=groups, bias=bias)]
        if norm_layer is not None:
            layers.append(norm_layer(cout))
        if activation_layer is not None:
            layers.append(activation_layer(inplace=True) if activation_layer is not nn.GELU else activation_layer())
        super().__init__(*layers)


class SqueezeExcitation(nn.Module):
    def __init__(self, input_channels: int, squeeze_channels: int, activation=nn.ReLU) -> None:  # noqa: ANN001
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(input_channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, input_channels, 1)
        self.activation = activation()
        self.scale_activation = nn.Sigmoid()

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(input)))))
        return scale * input


class MLP(nn.Sequential):
    def __init__(self, in_channels: int, hidden: list[int], activation_layer=nn.GELU, dropout: float = 0.0) -> None:  # noqa: ANN001
        layers: list[nn.Module] = []
        for h in hidden[:-1]:
            layers += [nn.Linear(in_channels, h), activation_layer(), nn.Dropout(dropout)]
            in_channels = h
        layers += [nn.Linear(in_channels, hidden[-1]), nn.Dropout(dropout)]
        super().__init__(*layers)


# ---------------------------------------------------------------- EfficientNet-B0
class MBConv(nn.Module):
    def __init__(self, expand: int, kernel: int, stride: int, cin: int, cout: int, sd_prob: float) -> None:
        super().__init__()
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        expanded = cin * expand
        if expanded != cin:
            layers.append(Conv2dNormActivation(cin, expanded, 1, activation_layer=nn.SiLU))
        layers.append(
            Conv2dNormActivation(expanded, expanded, kernel, stride, groups=expanded, activation_layer=nn.SiLU)
        )
        layers.append(SqueezeExcitation(expanded, max(1, cin // 4), activation=partial(nn.SiLU, inplace=True)))
        layers.append(Conv2dNormActivation(expanded, cout, 1, activation_layer=None))
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(sd_prob, "row")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        result = self.block(input)
        if self.use_res_connect:
            result = self.stochastic_depth(result)
            result += input
        return result


def efficientnet_b0(num_classes: int = 1000) -> nn.Module:
    setting = [(1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
               (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1)]  # fmt: skip
    total = sum(s[-1] for s in setting)
    layers: list[nn.Module] = [Conv2dNormActivation(3, 32, 3, 2, activation_layer=nn.SiLU)]
    block_id = 0
    for expand, kernel, stride, cin, cout, n in setting:
        stage = []
        for i in range(n):
            stage.append(MBConv(expand, kernel, stride if i == 0 else 1, cin if i == 0 else cout, cout,
                                0.2 * block_id / total))  # fmt: skip
            block_id += 1
        layers.append(nn.Sequential(*stage))
    layers.append(Conv2dNormActivation(320, 1280, 1, activation_layer=nn.SiLU))
    return _Classifier(
        nn.Sequential(*layers), nn.Sequential(nn.Dropout(0.2, inplace=True), nn.Linear(1280, num_classes))
    )


class _Classifier(nn.Module):
    """features, average pool, (flatten,) classifier: EfficientNet flattens, ConvNeXt's classifier does."""

    def __init__(self, features: nn.Module, classifier: nn.Module, flatten: bool = True) -> None:
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = classifier
        self.flatten = flatten

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1) if self.flatten else x)


# ---------------------------------------------------------------- ConvNeXt-Tiny
class LayerNorm2d(nn.LayerNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class CNBlock(nn.Module):
    def __init__(self, dim: int, layer_scale: float, sd_prob: float) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(dim, dim, 7, padding=3, groups=dim, bias=True), Permute([0, 2, 3, 1]),
            nn.LayerNorm(dim, eps=1e-6), nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim),
            Permute([0, 3, 1, 2]),
        )  # fmt: skip
        self.layer_scale = nn.Parameter(torch.ones(dim, 1, 1) * layer_scale)
        self.stochastic_depth = StochasticDepth(sd_prob, "row")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        result = self.layer_scale * self.block(input)
        result = self.stochastic_depth(result)
        result += input
        return result


def convnext_tiny(num_classes: int = 1000) -> nn.Module:
    setting = [(96, 192, 3), (192, 384, 3), (384, 768, 9), (768, None, 3)]
    norm = partial(LayerNorm2d, eps=1e-6)
    layers: list[nn.Module] = [Conv2dNormActivation(3, 96, 4, 4, 0, norm_layer=norm, activation_layer=None, bias=True)]
    total, block_id = sum(s[2] for s in setting), 0
    for cin, cout, n in setting:
        stage = []
        for _ in range(n):
            stage.append(CNBlock(cin, 1e-6, 0.1 * block_id / (total - 1)))
            block_id += 1
        layers.append(nn.Sequential(*stage))
        if cout is not None:
            layers.append(nn.Sequential(norm(cin), nn.Conv2d(cin, cout, 2, 2)))
    classifier = nn.Sequential(norm(768), nn.Flatten(1), nn.Linear(768, num_classes))
    return _Classifier(nn.Sequential(*layers), classifier, flatten=False)


# ---------------------------------------------------------------- ViT-B/16
class EncoderBlock(nn.Module):
    def __init__(self, heads: int, hidden: int, mlp_dim: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(hidden, eps=1e-6)
        self.self_attention = nn.MultiheadAttention(hidden, heads, dropout=0.0, batch_first=True)
        self.dropout = nn.Dropout(0.0)
        self.ln_2 = nn.LayerNorm(hidden, eps=1e-6)
        self.mlp = MLP(hidden, [mlp_dim, hidden], nn.GELU, 0.0)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        torch._assert(input.dim() == 3, f"Expected (batch_size, seq_length, hidden_dim) got {input.shape}")
        x = self.ln_1(input)
        x, _ = self.self_attention(x, x, x, need_weights=False)
        x = self.dropout(x)
        x = x + input
        y = self.ln_2(x)
        y = self.mlp(y)
        return x + y


class Encoder(nn.Module):
    def __init__(self, seq_length: int, layers: int, heads: int, hidden: int, mlp_dim: int) -> None:
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.empty(1, seq_length, hidden).normal_(std=0.02))
        self.dropout = nn.Dropout(0.0)
        self.layers = nn.Sequential(*[EncoderBlock(heads, hidden, mlp_dim) for _ in range(layers)])
        self.ln = nn.LayerNorm(hidden, eps=1e-6)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        torch._assert(input.dim() == 3, f"Expected (batch_size, seq_length, hidden_dim) got {input.shape}")
        input = input + self.pos_embedding
        return self.ln(self.layers(self.dropout(input)))


class VisionTransformer(nn.Module):
    def __init__(self, image_size: int = 224, patch_size: int = 16, layers: int = 12, heads: int = 12,
                 hidden: int = 768, mlp_dim: int = 3072, num_classes: int = 1000,
                 in_channels: int = 3) -> None:  # fmt: skip
        super().__init__()
        self.image_size, self.patch_size, self.hidden_dim = image_size, patch_size, hidden
        self.conv_proj = nn.Conv2d(in_channels, hidden, patch_size, patch_size)
        seq_length = (image_size // patch_size) ** 2 + 1
        self.class_token = nn.Parameter(torch.zeros(1, 1, hidden))
        self.encoder = Encoder(seq_length, layers, heads, hidden, mlp_dim)
        self.heads = nn.Sequential()
        self.heads.add_module("head", nn.Linear(hidden, num_classes))

    def _process_input(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        p = self.patch_size
        torch._assert(h == self.image_size, f"Wrong image height! Expected {self.image_size} but got {h}!")
        torch._assert(w == self.image_size, f"Wrong image width! Expected {self.image_size} but got {w}!")
        n_h, n_w = h // p, w // p
        x = self.conv_proj(x)
        x = x.reshape(n, self.hidden_dim, n_h * n_w)
        return x.permute(0, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._process_input(x)
        n = x.shape[0]
        batch_class_token = self.class_token.expand(n, -1, -1)
        x = torch.cat([batch_class_token, x], dim=1)
        x = self.encoder(x)
        x = x[:, 0]
        return self.heads(x)


def vit_b_16(num_classes: int = 1000) -> nn.Module:
    return VisionTransformer(num_classes=num_classes)


# ---------------------------------------------------------------- Swin-T
def _patch_merging_pad(x: torch.Tensor) -> torch.Tensor:
    H, W, _ = x.shape[-3:]
    x = F.pad(x, (0, 0, 0, W % 2, 0, H % 2))
    x0 = x[..., 0::2, 0::2, :]
    x1 = x[..., 1::2, 0::2, :]
    x2 = x[..., 0::2, 1::2, :]
    x3 = x[..., 1::2, 1::2, :]
    return torch.cat([x0, x1, x2, x3], -1)


torch.fx.wrap("_patch_merging_pad")


def _get_relative_position_bias(table: torch.Tensor, index: torch.Tensor, window_size: list[int]) -> torch.Tensor:
    N = window_size[0] * window_size[1]
    bias = table[index]
    bias = bias.view(N, N, -1)
    return bias.permute(2, 0, 1).contiguous().unsqueeze(0)


torch.fx.wrap("_get_relative_position_bias")


class PatchMerging(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reduction(self.norm(_patch_merging_pad(x)))


def shifted_window_attention(
    input: torch.Tensor, qkv_weight: torch.Tensor, proj_weight: torch.Tensor, relative_position_bias: torch.Tensor,
    window_size: list[int], num_heads: int, shift_size: list[int], attention_dropout: float = 0.0,
    dropout: float = 0.0, qkv_bias: torch.Tensor | None = None, proj_bias: torch.Tensor | None = None,
    logit_scale: torch.Tensor | None = None, training: bool = True,
) -> torch.Tensor:  # fmt: skip
    B, H, W, C = input.shape
    pad_r = (window_size[1] - W % window_size[1]) % window_size[1]
    pad_b = (window_size[0] - H % window_size[0]) % window_size[0]
    x = F.pad(input, (0, 0, 0, pad_r, 0, pad_b))
    _, pad_H, pad_W, _ = x.shape
    shift_size = shift_size.copy()
    if window_size[0] >= pad_H:
        shift_size[0] = 0
    if window_size[1] >= pad_W:
        shift_size[1] = 0
    if sum(shift_size) > 0:
        x = torch.roll(x, shifts=(-shift_size[0], -shift_size[1]), dims=(1, 2))
    num_windows = (pad_H // window_size[0]) * (pad_W // window_size[1])
    x = x.view(B, pad_H // window_size[0], window_size[0], pad_W // window_size[1], window_size[1], C)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(B * num_windows, window_size[0] * window_size[1], C)
    qkv = F.linear(x, qkv_weight, qkv_bias)
    qkv = qkv.reshape(x.size(0), x.size(1), 3, num_heads, C // num_heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    q = q * (C // num_heads) ** -0.5
    attn = q.matmul(k.transpose(-2, -1))
    attn = attn + relative_position_bias
    if sum(shift_size) > 0:
        attn_mask = x.new_zeros((pad_H, pad_W))
        h_slices = ((0, -window_size[0]), (-window_size[0], -shift_size[0]), (-shift_size[0], None))
        w_slices = ((0, -window_size[1]), (-window_size[1], -shift_size[1]), (-shift_size[1], None))
        count = 0
        for h in h_slices:
            for w in w_slices:
                attn_mask[h[0] : h[1], w[0] : w[1]] = count
                count += 1
        attn_mask = attn_mask.view(pad_H // window_size[0], window_size[0], pad_W // window_size[1], window_size[1])
        attn_mask = attn_mask.permute(0, 2, 1, 3).reshape(num_windows, window_size[0] * window_size[1])
        attn_mask = attn_mask.unsqueeze(1) - attn_mask.unsqueeze(2)
        attn_mask = attn_mask.masked_fill(attn_mask != 0, -100.0).masked_fill(attn_mask == 0, 0.0)
        attn = attn.view(x.size(0) // num_windows, num_windows, num_heads, x.size(1), x.size(1))
        attn = attn + attn_mask.unsqueeze(1).unsqueeze(0)
        attn = attn.view(-1, num_heads, x.size(1), x.size(1))
    attn = F.softmax(attn, dim=-1)
    attn = F.dropout(attn, p=attention_dropout, training=training)
    x = attn.matmul(v).transpose(1, 2).reshape(x.size(0), x.size(1), C)
    x = F.linear(x, proj_weight, proj_bias)
    x = F.dropout(x, p=dropout, training=training)
    x = x.view(B, pad_H // window_size[0], pad_W // window_size[1], window_size[0], window_size[1], C)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(B, pad_H, pad_W, C)
    if sum(shift_size) > 0:
        x = torch.roll(x, shifts=(shift_size[0], shift_size[1]), dims=(1, 2))
    return x[:, :H, :W, :].contiguous()


torch.fx.wrap("shifted_window_attention")


class ShiftedWindowAttention(nn.Module):
    def __init__(self, dim: int, window_size: list[int], shift_size: list[int], num_heads: int) -> None:
        super().__init__()
        self.window_size, self.shift_size, self.num_heads = window_size, shift_size, num_heads
        self.attention_dropout, self.dropout = 0.0, 0.0
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim, bias=True)
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window_size[0] - 1) * (2 * window_size[1] - 1), num_heads)
        )
        coords = torch.stack(torch.meshgrid(torch.arange(window_size[0]), torch.arange(window_size[1]), indexing="ij"))
        coords_flatten = torch.flatten(coords, 1)
        rel = (coords_flatten[:, :, None] - coords_flatten[:, None, :]).permute(1, 2, 0).contiguous()
        rel[:, :, 0] += window_size[0] - 1
        rel[:, :, 1] += window_size[1] - 1
        rel[:, :, 0] *= 2 * window_size[1] - 1
        self.register_buffer("relative_position_index", rel.sum(-1).flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = _get_relative_position_bias(self.relative_position_bias_table, self.relative_position_index,
                                           self.window_size)  # fmt: skip
        return shifted_window_attention(
            x, self.qkv.weight, self.proj.weight, bias, self.window_size, self.num_heads, shift_size=self.shift_size,
            attention_dropout=self.attention_dropout, dropout=self.dropout, qkv_bias=self.qkv.bias,
            proj_bias=self.proj.bias, training=self.training,
        )  # fmt: skip


class SwinTransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, window_size: list[int], shift_size: list[int], sd_prob: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.attn = ShiftedWindowAttention(dim, window_size, shift_size, heads)
        self.stochastic_depth = StochasticDepth(sd_prob, "row")
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        self.mlp = MLP(dim, [4 * dim, dim], nn.GELU, 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.stochastic_depth(self.attn(self.norm1(x)))
        return x + self.stochastic_depth(self.mlp(self.norm2(x)))


class SwinTransformer(nn.Module):
    def __init__(self, embed_dim: int = 96, depths: tuple[int, ...] = (2, 2, 6, 2),
                 heads: tuple[int, ...] = (3, 6, 12, 24), window: int = 7,
                 num_classes: int = 1000) -> None:  # fmt: skip
        super().__init__()
        layers: list[nn.Module] = [
            nn.Sequential(nn.Conv2d(3, embed_dim, 4, 4), Permute([0, 2, 3, 1]), nn.LayerNorm(embed_dim, eps=1e-5))
        ]
        total, block_id = sum(depths), 0
        for i, depth in enumerate(depths):
            dim = embed_dim * 2**i
            stage = []
            for j in range(depth):
                shift = [0 if j % 2 == 0 else window // 2] * 2
                stage.append(SwinTransformerBlock(dim, heads[i], [window, window], shift, 0.2 * block_id / (total - 1)))
                block_id += 1
            layers.append(nn.Sequential(*stage))
            if i < len(depths) - 1:
                layers.append(PatchMerging(dim))
        self.features = nn.Sequential(*layers)
        num_features = embed_dim * 2 ** (len(depths) - 1)
        self.norm = nn.LayerNorm(num_features, eps=1e-5)
        self.permute = Permute([0, 3, 1, 2])
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.head = nn.Linear(num_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.permute(self.norm(self.features(x)))
        return self.head(self.flatten(self.avgpool(x)))


def swin_t(num_classes: int = 1000) -> nn.Module:
    return SwinTransformer(num_classes=num_classes)


# ---------------------------------------------------------------- 2-layer LSTM language model
class LSTMLanguageModel(nn.Module):
    """Zaremba et al. (2014), medium: embedding, 2 x LSTM(650), decoder to the vocabulary per step."""

    def __init__(self, vocab: int = 10_000, hidden: int = 650, layers: int = 2) -> None:
        super().__init__()
        self.encoder = nn.Embedding(vocab, hidden)
        self.drop = nn.Dropout(0.5)
        self.rnn = nn.LSTM(hidden, hidden, layers, dropout=0.5, batch_first=True)
        self.decoder = nn.Linear(hidden, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.drop(self.encoder(tokens.long())))
        return self.decoder(self.drop(out))


# ---------------------------------------------------------------- MaxViT-T (torchvision)
def _conv_out(size: tuple[int, int], kernel: int = 3, stride: int = 2, padding: int = 1) -> tuple[int, int]:
    return tuple((d - kernel + 2 * padding) // stride + 1 for d in size)  # type: ignore[return-value]


def _relative_position_index(height: int, width: int) -> torch.Tensor:
    coords = torch.stack(torch.meshgrid([torch.arange(height), torch.arange(width)], indexing="ij"))
    flat = torch.flatten(coords, 1)
    rel = (flat[:, :, None] - flat[:, None, :]).permute(1, 2, 0).contiguous()
    rel[:, :, 0] += height - 1
    rel[:, :, 1] += width - 1
    rel[:, :, 0] *= 2 * width - 1
    return rel.sum(-1)


class MaxVitMBConv(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, sd_prob: float) -> None:
        super().__init__()
        norm = partial(nn.BatchNorm2d, eps=1e-3, momentum=0.01)
        if stride != 1 or cin != cout:
            proj: list[nn.Module] = [nn.Conv2d(cin, cout, 1, 1, bias=True)]
            if stride == 2:
                proj = [nn.AvgPool2d(3, stride, 1), *proj]
            self.proj: nn.Module = nn.Sequential(*proj)
        else:
            self.proj = nn.Identity()
        mid, sqz = cout * 4, int(cout * 0.25)
        self.stochastic_depth = StochasticDepth(sd_prob, "row") if sd_prob else nn.Identity()
        self.layers = nn.Sequential(OrderedDict(
            pre_norm=norm(cin),
            conv_a=Conv2dNormActivation(cin, mid, 1, 1, 0, norm_layer=norm, activation_layer=nn.GELU),
            conv_b=Conv2dNormActivation(mid, mid, 3, stride, 1, groups=mid, norm_layer=norm, activation_layer=nn.GELU),
            squeeze_excitation=SqueezeExcitation(mid, sqz, activation=nn.SiLU),
            conv_c=nn.Conv2d(mid, cout, 1, bias=True),
        ))  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x) + self.stochastic_depth(self.layers(x))


class RelativePositionalMultiHeadAttention(nn.Module):
    def __init__(self, feat_dim: int, head_dim: int, max_seq_len: int) -> None:
        super().__init__()
        self.n_heads, self.head_dim = feat_dim // head_dim, head_dim
        self.size, self.max_seq_len = int(math.sqrt(max_seq_len)), max_seq_len
        self.to_qkv = nn.Linear(feat_dim, self.n_heads * head_dim * 3)
        self.scale_factor = feat_dim**-0.5
        self.merge = nn.Linear(head_dim * self.n_heads, feat_dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * self.size - 1) ** 2, self.n_heads))
        self.register_buffer("relative_position_index", _relative_position_index(self.size, self.size))

    def get_relative_positional_bias(self) -> torch.Tensor:
        bias_index = self.relative_position_index.view(-1)
        bias = self.relative_position_bias_table[bias_index].view(self.max_seq_len, self.max_seq_len, -1)
        return bias.permute(2, 0, 1).contiguous().unsqueeze(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, G, P, D = x.shape
        H, DH = self.n_heads, self.head_dim
        q, k, v = torch.chunk(self.to_qkv(x), 3, dim=-1)
        q = q.reshape(B, G, P, H, DH).permute(0, 1, 3, 2, 4)
        k = k.reshape(B, G, P, H, DH).permute(0, 1, 3, 2, 4)
        v = v.reshape(B, G, P, H, DH).permute(0, 1, 3, 2, 4)
        k = k * self.scale_factor
        dot_prod = torch.einsum("B G H I D, B G H J D -> B G H I J", q, k)
        dot_prod = F.softmax(dot_prod + self.get_relative_positional_bias(), dim=-1)
        out = torch.einsum("B G H I J, B G H J D -> B G H I D", dot_prod, v)
        return self.merge(out.permute(0, 1, 3, 2, 4).reshape(B, G, P, D))


class SwapAxes(nn.Module):
    def __init__(self, a: int, b: int) -> None:
        super().__init__()
        self.a, self.b = a, b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.swapaxes(x, self.a, self.b)


class WindowPartition(nn.Module):
    def forward(self, x: torch.Tensor, p: int) -> torch.Tensor:
        B, C, H, W = x.shape
        x = x.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 3, 5, 1)
        return x.reshape(B, (H // p) * (W // p), p * p, C)


class WindowDepartition(nn.Module):
    def forward(self, x: torch.Tensor, p: int, h_partitions: int, w_partitions: int) -> torch.Tensor:
        B, G, PP, C = x.shape
        x = x.reshape(B, h_partitions, w_partitions, p, p, C).permute(0, 5, 1, 3, 2, 4)
        return x.reshape(B, C, h_partitions * p, w_partitions * p)


class PartitionAttentionLayer(nn.Module):
    def __init__(self, dim: int, head_dim: int, partition_size: int, partition_type: str,
                 grid_size: tuple[int, int], sd_prob: float) -> None:  # fmt: skip
        super().__init__()
        self.n_partitions, self.grid_size = grid_size[0] // partition_size, grid_size
        if partition_type == "window":
            self.p, self.g = partition_size, self.n_partitions
        else:
            self.p, self.g = self.n_partitions, partition_size
        self.partition_op, self.departition_op = WindowPartition(), WindowDepartition()
        self.partition_swap = SwapAxes(-2, -3) if partition_type == "grid" else nn.Identity()
        self.departition_swap = SwapAxes(-2, -3) if partition_type == "grid" else nn.Identity()
        self.attn_layer = nn.Sequential(
            nn.LayerNorm(dim), RelativePositionalMultiHeadAttention(dim, head_dim, partition_size**2), nn.Dropout(0.0)
        )
        self.mlp_layer = nn.Sequential(
            nn.LayerNorm(dim), nn.Linear(dim, dim * 4), nn.GELU(), nn.Linear(dim * 4, dim), nn.Dropout(0.0)
        )
        self.stochastic_dropout = StochasticDepth(sd_prob, "row")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gh, gw = self.grid_size[0] // self.p, self.grid_size[1] // self.p
        torch._assert(self.grid_size[0] % self.p == 0 and self.grid_size[1] % self.p == 0, "grid % partition")
        x = self.partition_swap(self.partition_op(x, self.p))
        x = x + self.stochastic_dropout(self.attn_layer(x))
        x = x + self.stochastic_dropout(self.mlp_layer(x))
        return self.departition_op(self.departition_swap(x), self.p, gh, gw)


class MaxVitLayer(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, head_dim: int, partition_size: int,
                 grid_size: tuple[int, int], sd_prob: float) -> None:  # fmt: skip
        super().__init__()
        self.layers = nn.Sequential(OrderedDict(
            MBconv=MaxVitMBConv(cin, cout, stride, sd_prob),
            window_attention=PartitionAttentionLayer(cout, head_dim, partition_size, "window", grid_size, sd_prob),
            grid_attention=PartitionAttentionLayer(cout, head_dim, partition_size, "grid", grid_size, sd_prob),
        ))  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class MaxVitBlock(nn.Module):
    def __init__(self, cin: int, cout: int, head_dim: int, partition_size: int, input_grid: tuple[int, int],
                 sd_probs: list[float]) -> None:  # fmt: skip
        super().__init__()
        self.grid_size = _conv_out(input_grid)
        self.layers = nn.ModuleList(
            MaxVitLayer(cin if i == 0 else cout, cout, 2 if i == 0 else 1, head_dim, partition_size, self.grid_size, p)
            for i, p in enumerate(sd_probs)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class MaxVit(nn.Module):
    """torchvision 0.20's ``MaxVit`` (``maxvit_t``: stem 64, blocks 64/128/256/512 x 2/2/5/2, heads of 32,
    7 x 7 partitions), as written there: window and grid attention swap axes with ``torch.swapaxes``."""

    def __init__(self, input_size: tuple[int, int] = (224, 224), stem: int = 64,
                 channels: tuple[int, ...] = (64, 128, 256, 512), depths: tuple[int, ...] = (2, 2, 5, 2),
                 head_dim: int = 32, partition_size: int = 7, sd_prob: float = 0.2,
                 num_classes: int = 1000) -> None:  # fmt: skip
        super().__init__()
        norm = partial(nn.BatchNorm2d, eps=1e-3, momentum=0.01)
        self.stem = nn.Sequential(
            Conv2dNormActivation(3, stem, 3, 2, norm_layer=norm, activation_layer=nn.GELU, bias=False),
            Conv2dNormActivation(stem, stem, 3, 1, norm_layer=None, activation_layer=None, bias=True),
        )
        grid = _conv_out(input_size)
        total = sum(depths)
        probs = [sd_prob * i / (total - 1) for i in range(total)]
        self.blocks = nn.ModuleList()
        for cin, cout, n in zip((stem, *channels[:-1]), channels, depths, strict=True):
            start = sum(len(b.layers) for b in self.blocks)
            self.blocks.append(MaxVitBlock(cin, cout, head_dim, partition_size, grid, probs[start : start + n]))
            grid = self.blocks[-1].grid_size
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.LayerNorm(channels[-1]), nn.Linear(channels[-1], channels[-1]),
            nn.Tanh(), nn.Linear(channels[-1], num_classes, bias=False),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.classifier(x)


def maxvit_t(num_classes: int = 1000) -> nn.Module:
    return MaxVit(num_classes=num_classes)


# ---------------------------------------------------------------- MobileViT-S (timm)
def _make_divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


class ConvNormAct(nn.Sequential):
    """timm's ``ConvNormAct`` (conv, BatchNormAct2d = BN + activation), SiLU in MobileViT."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1,
                 act: bool = True) -> None:  # fmt: skip
        super().__init__(OrderedDict(
            conv=nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            bn=nn.BatchNorm2d(cout), act=nn.SiLU(inplace=True) if act else nn.Identity(),
        ))  # fmt: skip


class InvertedResidual(nn.Module):
    """timm's ``BottleneckBlock`` with ``bottle_in=True, linear_out=True`` and depthwise groups (MobileViT's
    'inverted residual'); no shortcut when the shape changes (``downsample=''``)."""

    def __init__(self, cin: int, cout: int, stride: int, ratio: float = 4.0) -> None:
        super().__init__()
        mid = _make_divisible(cin * ratio)
        self.shortcut = nn.Identity() if cin == cout and stride == 1 else None
        self.conv1_1x1 = ConvNormAct(cin, mid, 1)
        self.conv2_kxk = ConvNormAct(mid, mid, 3, stride, groups=mid)
        self.conv2b_kxk, self.attn = nn.Identity(), nn.Identity()
        self.conv3_1x1 = ConvNormAct(mid, cout, 1, act=False)
        self.attn_last, self.drop_path, self.act = nn.Identity(), nn.Identity(), nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.conv3_1x1(self.attn(self.conv2b_kxk(self.conv2_kxk(self.conv1_1x1(x)))))
        x = self.drop_path(self.attn_last(x))
        if self.shortcut is not None:
            x = x + self.shortcut(shortcut)
        return self.act(x)


class TimmAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.fused_attn = True
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.q_norm, self.k_norm = nn.Identity(), nn.Identity()
        self.attn_drop, self.proj, self.proj_drop = nn.Dropout(0.0), nn.Linear(dim, dim), nn.Dropout(0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop.p if self.training else 0.0)
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(B, N, C)))


class TimmBlock(nn.Module):
    """timm's ``vision_transformer.Block`` (pre-norm attention and MLP, SiLU in MobileViT)."""

    def __init__(self, dim: int, num_heads: int = 4, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), TimmAttention(dim, num_heads)
        self.ls1, self.drop_path1 = nn.Identity(), nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(OrderedDict(
            fc1=nn.Linear(dim, hidden), act=nn.SiLU(), drop1=nn.Dropout(0.0), norm=nn.Identity(),
            fc2=nn.Linear(hidden, dim), drop2=nn.Dropout(0.0),
        ))  # fmt: skip
        self.ls2, self.drop_path2 = nn.Identity(), nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x))))
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


class MobileVitBlock(nn.Module):
    """timm's ``MobileVitBlock``: local conv, unfold into patches, transformer, fold, fuse. Its
    ``forward`` branches on the feature map's size (``math.ceil``, ``if new_h != H``), which
    torch.fx cannot trace symbolically."""

    def __init__(self, chs: int, transformer_dim: int, depth: int, patch_size: int = 2) -> None:
        super().__init__()
        self.conv_kxk = ConvNormAct(chs, chs, 3)
        self.conv_1x1 = nn.Conv2d(chs, transformer_dim, 1, bias=False)
        self.transformer = nn.Sequential(*[TimmBlock(transformer_dim) for _ in range(depth)])
        self.norm = nn.LayerNorm(transformer_dim)
        self.conv_proj = ConvNormAct(transformer_dim, chs, 1)
        self.conv_fusion = ConvNormAct(2 * chs, chs, 3)
        self.patch_size = (patch_size, patch_size)
        self.patch_area = patch_size * patch_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.conv_1x1(self.conv_kxk(x))
        patch_h, patch_w = self.patch_size
        B, C, H, W = x.shape
        new_h, new_w = math.ceil(H / patch_h) * patch_h, math.ceil(W / patch_w) * patch_w
        num_patch_h, num_patch_w = new_h // patch_h, new_w // patch_w
        num_patches = num_patch_h * num_patch_w
        interpolate = False
        if new_h != H or new_w != W:
            x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False)
            interpolate = True
        x = x.reshape(B * C * num_patch_h, patch_h, num_patch_w, patch_w).transpose(1, 2)
        x = x.reshape(B, C, num_patches, self.patch_area).transpose(1, 3).reshape(B * self.patch_area, num_patches, -1)
        x = self.norm(self.transformer(x))
        x = x.contiguous().view(B, self.patch_area, num_patches, -1)
        x = x.transpose(1, 3).reshape(B * C * num_patch_h, num_patch_w, patch_h, patch_w)
        x = x.transpose(1, 2).reshape(B, C, num_patch_h * patch_h, num_patch_w * patch_w)
        if interpolate:
            x = F.interpolate(x, size=(H, W), mode="bilinear", align_corners=False)
        x = self.conv_proj(x)
        return self.conv_fusion(torch.cat((shortcut, x), dim=1))


class MobileVit(nn.Module):
    """timm 1.0's ``mobilevit_s`` (a ``ByobNet``): stem 16, inverted residuals 32 and 3 x 64, then per stage
    an inverted residual and a MobileViT block (96/144 x 2, 128/192 x 4, 160/240 x 3, patches 2 x 2),
    a 640-channel 1 x 1 conv, average pool and classifier. Default input 3 x 256 x 256."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.stem = ConvNormAct(3, 16, 3, 2)
        stages: list[nn.Module] = [
            nn.Sequential(InvertedResidual(16, 32, 1)),
            nn.Sequential(InvertedResidual(32, 64, 2), InvertedResidual(64, 64, 1), InvertedResidual(64, 64, 1)),
        ]
        for cin, c, dim, depth in ((64, 96, 144, 2), (96, 128, 192, 4), (128, 160, 240, 3)):
            stages.append(nn.Sequential(InvertedResidual(cin, c, 2), MobileVitBlock(c, dim, depth)))
        self.stages = nn.Sequential(*stages)
        self.final_conv = ConvNormAct(160, 640, 1)
        self.head = nn.Sequential(OrderedDict(
            global_pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(1), drop=nn.Dropout(0.0),
            fc=nn.Linear(640, num_classes),
        ))  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.final_conv(self.stages(self.stem(x))))


def mobilevit_s(num_classes: int = 1000) -> nn.Module:
    return MobileVit(num_classes)


REFERENCE = {
    "efficientnet_b0": (efficientnet_b0, (3, 224, 224)),
    "convnext_tiny": (convnext_tiny, (3, 224, 224)),
    "vit_b_16": (vit_b_16, (3, 224, 224)),
    "swin_t": (swin_t, (3, 224, 224)),
}
