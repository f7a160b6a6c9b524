"""Model zoo in plain torch (no torchvision), with the usual layer structures and
module names, plus loading of user models from ``path/to/file.py:factory``.

ImageNet models (``resnet18``, ``vgg11``, ``vgg16``, ``mobilenetv2``) follow
torchvision's definitions layer for layer, so their compiled shapes match published
tables; ``resnet20`` is the CIFAR ResNet of He et al. (2016); ``lenet``, ``mlp``,
``vit`` (a small Vision Transformer, Dosovitskiy et al. 2021) and ``lstm`` (a 2-layer
LSTM reading the image row by row) are sized for the embedded 8x8 digits, ``cnn1d``
for the embedded MNIST-1D signals. Each embedded dataset has a default zoo model
(:data:`DEFAULT_MODEL`).

Layer order: a residual block here runs its ``downsample`` (the 1x1 shortcut conv)
before ``conv1``, as CIM-AQ's (HAQ's) ResNet-18 does, while torchvision runs it after
``conv2``. Shapes, names and results are the same; the order of the crossbar layers is
not, and positional policies (lists, HAQ / CIM-AQ ``.npy`` arrays) follow this order,
so a CIM-AQ ResNet-18 strategy applies to ``resnet18`` as it is. ``cimdse layers``
prints the order.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from cimdse.errors import CimdseError


# ---------------------------------------------------------------- small models
def mlp(num_classes: int = 10, in_features: int = 64, hidden: int = 128) -> nn.Module:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(in_features, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden // 2),
        nn.ReLU(),
        nn.Linear(hidden // 2, num_classes),
    )


class LeNet(nn.Module):
    """A LeNet-style CNN for 8x8 single-channel images (scikit-learn digits)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(2 * width * 2 * 2, 64),
            nn.ReLU(),
            nn.Linear(64, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class CNN1d(nn.Module):
    """An 8-conv 1D CNN for MNIST-1D signals [1, 40]: four stages of two 3-tap convs
    (BatchNorm, ReLU), widths 32-64-96-128, max-pooled by 2 between stages, global
    average pool, one linear classifier: 9 crossbar layers, about 155k parameters.
    The first conv has 5 taps (its input is one channel). On the default 10,000
    training signals it reaches about 98-99 % test accuracy (published MNIST-1D CNN
    baseline: 94 % with 4,000)."""

    WIDTHS = (32, 64, 96, 128)

    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for stage, width in enumerate(self.WIDTHS):
            for j in range(2):
                k = 5 if (stage, j) == (0, 0) else 3
                layers += [nn.Conv1d(c, width, k, padding=k // 2, bias=False), nn.BatchNorm1d(width), nn.ReLU()]
                c = width
            if stage < len(self.WIDTHS) - 1:
                layers.append(nn.MaxPool1d(2))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.pool(self.features(x))))


# ---------------------------------------------------------------- small ViT and LSTM
class Attention(nn.Module):
    """Multi-head self-attention written out: its projections are Linear layers (crossbars,
    V = tokens), ``Q K^T`` and ``A V`` are activation x activation matmuls (digital)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        qkv = self.qkv(x).reshape(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, t, c))


class TransformerBlock(nn.Module):
    """Pre-norm encoder block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, dim: int, heads: int, mlp_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Linear(mlp_dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """A small Vision Transformer: patch embedding (a strided conv), class token, learned
    position embedding, pre-norm blocks, the class token's LayerNorm -> Linear head."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, image_size: int = 8, patch: int = 2,
                 dim: int = 32, depth: int = 2, heads: int = 2, mlp_dim: int = 64) -> None:  # fmt: skip
        super().__init__()
        tokens = (image_size // patch) ** 2
        self.patch_embed = nn.Conv2d(in_channels, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, tokens + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*[TransformerBlock(dim, heads, mlp_dim) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        return self.head(self.norm(self.blocks(x))[:, 0])


class LSTMClassifier(nn.Module):
    """Reads a C x H x W image as H steps of C * W values with a stacked LSTM and
    classifies from the last step's hidden state."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 8, hidden: int = 64,
                 layers: int = 2) -> None:  # fmt: skip
        super().__init__()
        self.lstm = nn.LSTM(in_channels * width, hidden, layers, batch_first=True)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x.permute(0, 2, 1, 3).flatten(2))
        return self.fc(out[:, -1])


# ---------------------------------------------------------------- ResNets
class BasicBlock(nn.Module):
    """torchvision's BasicBlock, except that ``downsample`` runs first (CIM-AQ's layer
    order, see the module docstring): the shortcut conv precedes ``conv1`` in policies."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


def _downsample(inplanes: int, planes: int, stride: int) -> nn.Module | None:
    if stride == 1 and inplanes == planes:
        return None
    return nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))


class ResNet(nn.Module):
    """torchvision's ResNet with BasicBlocks (resnet18: [2, 2, 2, 2])."""

    def __init__(self, layers: list[int], num_classes: int = 1000, in_channels: int = 3) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._stage(64, layers[0], 1)
        self.layer2 = self._stage(128, layers[1], 2)
        self.layer3 = self._stage(256, layers[2], 2)
        self.layer4 = self._stage(512, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(512, num_classes)

    def _stage(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        mods = [BasicBlock(self.inplanes, planes, stride, _downsample(self.inplanes, planes, stride))]
        self.inplanes = planes
        mods += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.flatten(self.avgpool(x)))


class CifarResNet(nn.Module):
    """ResNet-20/32/56 for 32x32 images (He et al. 2016), 1x1-conv shortcuts."""

    def __init__(self, depth: int = 20, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.inplanes = 16
        self.layer1 = self._stage(16, n, 1)
        self.layer2 = self._stage(32, n, 2)
        self.layer3 = self._stage(64, n, 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(64, num_classes)

    _stage = ResNet._stage

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.flatten(self.avgpool(x)))


# ---------------------------------------------------------------- VGG
VGG_CFG: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


class VGG(nn.Module):
    """torchvision's VGG without batch norm: features, 7x7 adaptive pool, classifier."""

    def __init__(self, cfg: list[int | str], num_classes: int = 1000, in_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, int(v), 3, padding=1), nn.ReLU(inplace=True)]
                c = int(v)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(True),
            nn.Dropout(),
            nn.Linear(4096, 4096),
            nn.ReLU(True),
            nn.Dropout(),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.avgpool(self.features(x))))


# ---------------------------------------------------------------- MobileNetV2
def _conv_bn_act(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    mods: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act:
        mods.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*mods)


class InvertedResidual(nn.Module):
    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = inp * expand_ratio
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(_conv_bn_act(inp, hidden, 1))
        layers += [
            _conv_bn_act(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """torchvision's MobileNetV2 (width 1.0)."""

    SETTING = [
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ]

    def __init__(self, num_classes: int = 1000, in_channels: int = 3) -> None:
        super().__init__()
        inp = 32
        features: list[nn.Module] = [_conv_bn_act(in_channels, inp, 3, 2)]
        for t, c, n, s in self.SETTING:
            for i in range(n):
                features.append(InvertedResidual(inp, c, s if i == 0 else 1, t))
                inp = c
        features.append(_conv_bn_act(inp, 1280, 1))
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.avgpool(self.features(x))))


# ---------------------------------------------------------------- registry
@dataclass(frozen=True)
class ZooEntry:
    factory: Callable[..., nn.Module]
    input_shape: tuple[int, ...]  # one sample, no batch dimension
    num_classes: int
    summary: str


ZOO: dict[str, ZooEntry] = {
    "mlp": ZooEntry(mlp, (1, 8, 8), 10, "3-layer MLP for 8x8 digits"),
    "lenet": ZooEntry(LeNet, (1, 8, 8), 10, "LeNet-style CNN for 8x8 digits"),
    "cnn1d": ZooEntry(CNN1d, (1, 40), 10, "8-conv 1D CNN for MNIST-1D signals"),
    "vit": ZooEntry(ViT, (1, 8, 8), 10, "small Vision Transformer for 8x8 digits (2x2 patches, 2 blocks)"),
    "lstm": ZooEntry(LSTMClassifier, (1, 8, 8), 10, "2-layer LSTM reading 8x8 digits row by row"),
    "resnet20": ZooEntry(lambda **kw: CifarResNet(20, **kw), (3, 32, 32), 10, "CIFAR ResNet-20"),
    "resnet18": ZooEntry(lambda **kw: ResNet([2, 2, 2, 2], **kw), (3, 224, 224), 1000, "ImageNet ResNet-18"),
    "vgg11": ZooEntry(lambda **kw: VGG(VGG_CFG["vgg11"], **kw), (3, 224, 224), 1000, "ImageNet VGG-11"),
    "vgg16": ZooEntry(lambda **kw: VGG(VGG_CFG["vgg16"], **kw), (3, 224, 224), 1000, "ImageNet VGG-16"),
    "mobilenetv2": ZooEntry(MobileNetV2, (3, 224, 224), 1000, "ImageNet MobileNetV2"),
}


#: the zoo model each embedded dataset uses when no ``--model`` is given
DEFAULT_MODEL = {"digits": "lenet", "mnist1d": "cnn1d"}


def default_model(dataset: str) -> str | None:
    """The zoo model for an embedded dataset (options after ':' ignored), else None."""
    return DEFAULT_MODEL.get(dataset.partition(":")[0].lower())


def build(name: str, num_classes: int | None = None, seed: int = 0) -> nn.Module:
    """A zoo model with seeded initial weights."""
    if name not in ZOO:
        raise CimdseError(f"unknown model {name!r}; zoo: {', '.join(ZOO)}, or a user file path/to/file.py:factory")
    torch.manual_seed(seed)
    entry = ZOO[name]
    return entry.factory(num_classes=num_classes or entry.num_classes)


def check_model_spec(spec: str) -> None:
    """Raise the one clear error for a name that is neither a zoo model nor an existing
    ``path/to/file.py:factory``."""
    if spec in ZOO:
        return
    path_text, sep, _ = spec.rpartition(":")
    if not sep or not path_text.endswith(".py"):
        raise CimdseError(f"unknown model {spec!r}; zoo: {', '.join(ZOO)}, or a user file path/to/file.py:factory")
    if not Path(path_text).is_file():
        raise CimdseError(f"{path_text}: no such model file")


def load_model(spec: str, num_classes: int | None = None, seed: int = 0) -> nn.Module:
    """A zoo name, or ``path/to/file.py:factory`` where ``factory()`` returns an nn.Module."""
    if spec in ZOO:
        return build(spec, num_classes, seed)
    check_model_spec(spec)
    path_text, _, factory_name = spec.rpartition(":")
    path = Path(path_text)
    mod_name = f"cimdse_user_model_{abs(hash(path.resolve()))}"
    module_spec = importlib.util.spec_from_file_location(mod_name, path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[mod_name] = module
    try:
        module_spec.loader.exec_module(module)
    except KeyboardInterrupt:  # Ctrl-C stops the run, as anywhere else
        sys.modules.pop(mod_name, None)
        raise
    except BaseException as err:  # the user's file, even sys.exit() in it: report, do not crash
        sys.modules.pop(mod_name, None)
        raise CimdseError(f"{path}: failed to import: {type(err).__name__}: {err}") from None
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise CimdseError(f"{path}: has no callable {factory_name!r}")
    torch.manual_seed(seed)
    try:
        model = factory()
    except KeyboardInterrupt:
        raise
    except BaseException as err:
        raise CimdseError(f"{path}:{factory_name}() failed: {type(err).__name__}: {err}") from None
    if not isinstance(model, nn.Module):
        raise CimdseError(f"{path}:{factory_name}() returned {type(model).__name__}, not a torch.nn.Module")
    return model


def default_input_shape(spec: str) -> tuple[int, ...] | None:
    """The zoo model's usual input shape (one sample), or None for user models."""
    entry = ZOO.get(spec)
    return entry.input_shape if entry else None


def parse_input_shape(text: str) -> tuple[int, ...]:
    """``3x224x224`` -> (3, 224, 224); ``40`` -> (40,)."""
    try:
        dims = tuple(int(t) for t in text.lower().replace(",", "x").split("x"))
    except ValueError:
        raise CimdseError(f"--input {text!r}: expected dimensions like 3x224x224 or 40") from None
    if not dims or any(d <= 0 for d in dims):
        raise CimdseError(f"--input {text!r}: dimensions must be positive integers")
    return dims
