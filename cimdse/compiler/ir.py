"""Layer IR: what the mapper needs to know about a traced network, nothing more.

A :class:`Network` holds the crossbar layers (conv and linear, in execution order;
their index is the index of a policy row) and the digital ops (pooling, residual add,
concat, activations, unfolded normalization) that run beside the crossbars.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import pandas as pd


@dataclass(frozen=True)
class Layer:
    """One weight layer mapped onto crossbars.

    ``K`` is the rows of one group's unrolled weight (C_in / groups * kernel
    elements for a conv), ``N`` the outputs of the whole layer (C_out), ``V`` the
    matrix-vector products per inference (output pixels of a conv, tokens of a
    linear). A grouped conv is ``groups`` independent ``K x N/groups`` matrices.
    """

    name: str  # qualified module name, as in model.named_modules()
    kind: str  # conv1d | conv2d | linear
    K: int
    N: int
    V: int
    groups: int = 1
    kernel: tuple[int, ...] = ()
    stride: tuple[int, ...] = ()
    padding: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()
    in_shape: tuple[int, ...] = ()  # one sample, no batch dimension
    out_shape: tuple[int, ...] = ()
    bias: bool = False
    folded_bn: str | None = None  # name of the BatchNorm folded into this layer

    @property
    def n_per_group(self) -> int:
        return self.N // self.groups

    @property
    def params(self) -> int:
        return self.K * self.N + (self.N if self.bias or self.folded_bn else 0)

    @property
    def macs(self) -> int:
        return self.K * self.N * self.V

    def row(self) -> dict[str, object]:
        d = asdict(self)
        d.update(params=self.params, macs=self.macs)
        return d


@dataclass(frozen=True)
class DigitalOp:
    """A non-crossbar op on the digital unit; ``elements`` is its element-op count."""

    name: str  # graph node name (module name for module calls)
    kind: str  # relu, maxpool2d, add, concat, batchnorm ...
    category: str  # activation | pool | add | concat | norm | elementwise
    elements: int
    out_shape: tuple[int, ...] = ()
    module: str = ""  # module path the op sits in ('' = top level)
    layer: str = ""  # the crossbar layer run last before it: the op runs on that layer's tiles


@dataclass(frozen=True)
class Network:
    """A traced network: crossbar layers in policy order, plus digital ops."""

    layers: list[Layer]
    digital_ops: list[DigitalOp] = field(default_factory=list)
    input_shape: tuple[int, ...] = ()
    name: str = "model"

    @property
    def names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    def __len__(self) -> int:
        return len(self.layers)

    def digital_elements(self) -> list[int]:
        """Element ops of the digital ops run after each crossbar layer (ops before the first
        layer count with it), in layer order."""
        index = {name: i for i, name in enumerate(self.names)}
        out = [0] * len(self.layers)
        for op in self.digital_ops:
            out[index.get(op.layer, 0)] += op.elements
        return out

    def layers_frame(self) -> pd.DataFrame:
        """The IR as a table (``cimdse layers``), shapes written as ``AxBxC``."""
        cols = [
            "name",
            "kind",
            "K",
            "N",
            "V",
            "groups",
            "params",
            "macs",
            "kernel",
            "stride",
            "padding",
            "dilation",
            "in_shape",
            "out_shape",
            "folded_bn",
        ]
        rows = []
        for layer in self.layers:
            r = layer.row()
            for key in ("kernel", "stride", "padding", "dilation", "in_shape", "out_shape"):
                r[key] = "x".join(str(v) for v in r[key])
            r["folded_bn"] = r["folded_bn"] or ""
            rows.append({c: r[c] for c in cols})
        return pd.DataFrame(rows, columns=cols)

    def digital_frame(self) -> pd.DataFrame:
        cols = ["name", "kind", "category", "elements", "out_shape", "module", "layer"]
        rows = [{**asdict(op), "out_shape": "x".join(str(v) for v in op.out_shape)} for op in self.digital_ops]
        return pd.DataFrame(rows, columns=cols)
