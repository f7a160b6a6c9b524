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


REFERENCE = {
    "efficientnet_b0": (efficientnet_b0, (3, 224, 224)),
    "convnext_tiny": (convnext_tiny, (3, 224, 224)),
    "vit_b_16": (vit_b_16, (3, 224, 224)),
    "swin_t": (swin_t, (3, 224, 224)),
}
