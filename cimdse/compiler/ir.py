"""Layer IR: what the mapper needs to know about a traced network, nothing more.

A :class:`Network` holds the crossbar layers (conv and linear, in execution order;
their index is the index of a policy row) and the digital ops (pooling, residual add,
concat, activations, unfolded normalization) that run beside the crossbars.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
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
    kind: str  # conv1d | conv2d | linear | lstm | gru | rnn
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
    origin: str = ""  # '' for a Conv/Linear module call; else what holds the weight (nn.LSTM, F.linear, ...)
    max_copies: int = 0  # copies that can work in parallel (0: V); 1 for recurrent weights (step t needs t-1)

    @property
    def copies_limit(self) -> int:
        return self.max_copies or self.V

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
    """A non-crossbar op on the digital unit; ``elements`` is its op count (element ops,
    window reads for pooling, MACs for a matmul)."""

    name: str  # graph node name (module name for module calls)
    kind: str  # relu, maxpool2d, add, concat, layer_norm, softmax, matmul, lstm_gates ...
    category: str  # activation | pool | add | concat | norm | elementwise | matmul | recurrent | gather
    elements: int
    out_shape: tuple[int, ...] = ()
    module: str = ""  # module path the op sits in ('' = top level)
    layer: str = ""  # the crossbar layer run last before it: the op runs on that layer's tiles
    matmul: tuple[int, ...] = ()  # activation x activation matmul: (batch, M, K, N), the K x N operand on the right

    @property
    def macs(self) -> int:
        return self.elements if self.matmul else 0


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

    def digital_elements(self, skip_matmuls: bool = False) -> list[int]:
        """Element ops of the digital ops run after each crossbar layer (ops before the first
        layer count with it), in layer order; without the activation x activation matmuls
        when they run elsewhere."""
        index = {name: i for i, name in enumerate(self.names)}
        out = [0] * len(self.layers)
        for op in self.digital_ops:
            if not (skip_matmuls and op.matmul):
                out[index.get(op.layer, 0)] += op.elements
        return out

    def layers_frame(self) -> pd.DataFrame:
        """The IR as a table (``cimdse layers``), shapes written as ``AxBxC``."""
        return _frame(*self.layers_table())

    def layers_table(self) -> tuple[list[str], list[dict[str, object]]]:
        """Columns and rows of :meth:`layers_frame`, without pandas (the CLI writes them)."""
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
        return cols, rows

    @property
    def crossbar_macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def matmul_macs(self) -> int:
        """MACs of the activation x activation matmuls (attention's Q K^T and A V)."""
        return sum(op.macs for op in self.digital_ops)

    def digital_frame(self) -> pd.DataFrame:
        return _frame(*self.digital_table())

    def digital_table(self) -> tuple[list[str], list[dict[str, object]]]:
        cols = ["name", "kind", "category", "elements", "out_shape", "module", "layer"]
        rows = [{**asdict(op), "out_shape": "x".join(str(v) for v in op.out_shape)} for op in self.digital_ops]
        return cols, [{c: r[c] for c in cols} for r in rows]

    def all_frame(self) -> pd.DataFrame:
        """Crossbar layers and digital ops in execution order, with the unit each runs on
        (``cimdse layers --all``): ``ops`` is MACs for a crossbar layer, the op count else."""
        return _frame(*self.all_table()).astype({c: "Int64" for c in ("K", "N", "V", "groups")})

    def all_table(self) -> tuple[list[str], list[dict[str, object]]]:
        cols = ["name", "kind", "unit", "K", "N", "V", "groups", "params", "macs", "ops", "category", "module"]
        after: dict[str, list[DigitalOp]] = {}
        for op in self.digital_ops:
            after.setdefault(op.layer, []).append(op)

        def digital_rows(key: str) -> list[dict[str, object]]:
            return [
                {"name": op.name, "kind": op.kind, "unit": "digital", "K": op.matmul[2] if op.matmul else None,
                 "N": op.matmul[3] if op.matmul else None, "V": op.matmul[0] * op.matmul[1] if op.matmul else None,
                 "groups": None, "params": 0, "macs": op.macs, "ops": op.elements, "category": op.category,
                 "module": op.module}
                for op in after.get(key, [])
            ]  # fmt: skip

        rows = digital_rows("")
        for layer in self.layers:
            rows.append(
                {"name": layer.name, "kind": layer.kind, "unit": "crossbar", "K": layer.K, "N": layer.N,
                 "V": layer.V, "groups": layer.groups, "params": layer.params, "macs": layer.macs,
                 "ops": layer.macs, "category": "layer", "module": layer.name.rsplit(".", 1)[0]
                 if layer.origin else layer.name}
            )  # fmt: skip
            rows.extend(digital_rows(layer.name))
        return cols, rows


def _frame(cols: list[str], rows: list[dict[str, object]]) -> pd.DataFrame:
    import pandas as pd  # here: tracing, costing and ``cimdse layers`` need no pandas

    return pd.DataFrame(rows, columns=cols)
