"""Compiler front end, third round: every data-movement op of torch is free, a second
trace for models whose forward() branches on sizes (MobileViT), MaxViT and MobileViT-S
with FlopCounter's MACs, bare recurrent and encoder modules as whole models, einsum
with ``...``, and refusals that are fast and print sizes, not fx proxies."""

from __future__ import annotations

import textwrap

import pytest
import torch
import torch.fx as fx
import torch.nn.functional as F
from reference_models import maxvit_t, mobilevit_s, vit_b_16
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cimdse import models
from cimdse.cli import main
from cimdse.compiler import trace
from cimdse.compiler.frontend import trace_spec
from cimdse.errors import CimdseError


def _flop_counter_macs(model: nn.Module, shape: tuple[int, ...], *inputs: torch.Tensor) -> int:
    """MACs torch counts for one forward (FlopCounterMode's FLOPs / 2: mm, bmm, conv, attention)."""
    x = inputs or (torch.empty((1, *shape), device=next(model.parameters()).device),)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(*x)
    return counter.get_total_flops() // 2


# ---------------------------------------------------------------- data movement
_IDX = torch.tensor([0, 2, 4])
_GATHER = torch.zeros(1, 2, 12, dtype=torch.long)
_OTHER = torch.empty(2, 6, 12)
#: y is [1, 6, 12]; each entry moves its elements only (torch's views and its indexing,
#: slicing and joining ops that copy), as a function and as a method where torch has both
DATA_MOVEMENT = {
    "torch.swapaxes": lambda y: torch.swapaxes(y, 1, 2),
    "torch.swapdims": lambda y: torch.swapdims(y, 1, 2),
    "torch.moveaxis": lambda y: torch.moveaxis(y, 1, 2),
    "torch.movedim": lambda y: torch.movedim(y, 1, 2),
    "torch.unflatten": lambda y: torch.unflatten(y, 2, (3, 4)),
    "torch.narrow": lambda y: torch.narrow(y, 1, 0, 3),
    "torch.narrow_copy": lambda y: torch.narrow_copy(y, 1, 0, 3),
    "torch.select": lambda y: torch.select(y, 1, 0),
    "torch.index_select": lambda y: torch.index_select(y, 1, _IDX),
    "torch.gather": lambda y: torch.gather(y, 1, _GATHER),
    "torch.take_along_dim": lambda y: torch.take_along_dim(y, _GATHER, 1),
    "torch.chunk": lambda y: torch.chunk(y, 2, 1)[0],
    "torch.split": lambda y: torch.split(y, 3, 1)[1],
    "torch.split_with_sizes": lambda y: torch.split_with_sizes(y, [2, 4], 1)[1],
    "torch.tensor_split": lambda y: torch.tensor_split(y, 3, 1)[2],
    "torch.hsplit": lambda y: torch.hsplit(y, 2)[0],
    "torch.vsplit": lambda y: torch.vsplit(y, 1)[0],
    "torch.dsplit": lambda y: torch.dsplit(y, 2)[1],
    "torch.unbind": lambda y: torch.unbind(y, 1)[0],
    "torch.t": lambda y: torch.t(y[0]),
    "torch.adjoint": lambda y: torch.adjoint(y),
    "torch.flip": lambda y: torch.flip(y, [1]),
    "torch.fliplr": lambda y: torch.fliplr(y[0]),
    "torch.flipud": lambda y: torch.flipud(y[0]),
    "torch.rot90": lambda y: torch.rot90(y, 1, [1, 2]),
    "torch.roll": lambda y: torch.roll(y, 1, 1),
    "torch.tile": lambda y: torch.tile(y, (1, 2, 1)),
    "torch.broadcast_to": lambda y: torch.broadcast_to(y, (2, 6, 12)),
    "torch.repeat_interleave": lambda y: torch.repeat_interleave(y, 2, dim=1),
    "torch.diagonal": lambda y: torch.diagonal(y, 0, 0, 1),
    "torch.as_strided": lambda y: torch.as_strided(y, (1, 6, 6), (72, 12, 1)),
    "torch.ravel": lambda y: torch.ravel(y),
    "torch.flatten": lambda y: torch.flatten(y, 1),
    "torch.atleast_3d": lambda y: torch.atleast_3d(y[0]),
    "torch.squeeze": lambda y: torch.squeeze(y, 0),
    "torch.unsqueeze": lambda y: torch.unsqueeze(y, 0),
    "torch.permute": lambda y: torch.permute(y, (0, 2, 1)),
    "torch.transpose": lambda y: torch.transpose(y, 1, 2),
    "torch.reshape": lambda y: torch.reshape(y, (1, 72)),
    "F.pad": lambda y: F.pad(y, (1, 1)),
    "F.unfold": lambda y: F.unfold(y.unsqueeze(1), 2),
    "Tensor.swapaxes": lambda y: y.swapaxes(1, 2),
    "Tensor.swapdims": lambda y: y.swapdims(1, 2),
    "Tensor.moveaxis": lambda y: y.moveaxis(1, 2),
    "Tensor.movedim": lambda y: y.movedim(1, 2),
    "Tensor.unflatten": lambda y: y.unflatten(2, (3, 4)),
    "Tensor.narrow": lambda y: y.narrow(1, 0, 3),
    "Tensor.select": lambda y: y.select(1, 0),
    "Tensor.index_select": lambda y: y.index_select(1, _IDX),
    "Tensor.gather": lambda y: y.gather(1, _GATHER),
    "Tensor.chunk": lambda y: y.chunk(2, 1)[0],
    "Tensor.split": lambda y: y.split([2, 4], 1)[0],
    "Tensor.tensor_split": lambda y: y.tensor_split(3, 1)[0],
    "Tensor.hsplit": lambda y: y.hsplit(2)[0],
    "Tensor.unbind": lambda y: y.unbind(1)[0],
    "Tensor.t": lambda y: y[0].t(),
    "Tensor.T": lambda y: y[0].T,
    "Tensor.mT": lambda y: y.mT,
    "Tensor.mH": lambda y: y.mH,
    "Tensor.adjoint": lambda y: y.adjoint(),
    "Tensor.expand": lambda y: y.expand(2, 6, 12),
    "Tensor.expand_as": lambda y: y.expand_as(_OTHER),
    "Tensor.broadcast_to": lambda y: y.broadcast_to((2, 6, 12)),
    "Tensor.repeat": lambda y: y.repeat(1, 2, 1),
    "Tensor.repeat_interleave": lambda y: y.repeat_interleave(2, 1),
    "Tensor.tile": lambda y: y.tile((1, 2)),
    "Tensor.flip": lambda y: y.flip(1),
    "Tensor.fliplr": lambda y: y[0].fliplr(),
    "Tensor.roll": lambda y: y.roll(1, 1),
    "Tensor.diagonal": lambda y: y.diagonal(0, 0, 1),
    "Tensor.as_strided": lambda y: y.as_strided((1, 6, 6), (72, 12, 1)),
    "Tensor.ravel": lambda y: y.ravel(),
    "Tensor.view": lambda y: y.view(1, 72),
    "Tensor.view_as": lambda y: y.view_as(_OTHER[:1]),
    "Tensor.reshape_as": lambda y: y.reshape_as(_OTHER[:1]),
    "Tensor.unfold": lambda y: y.unfold(2, 4, 4),
    "Tensor.flatten": lambda y: y.flatten(),
    "Tensor.contiguous": lambda y: y.contiguous(),
    "Tensor.clone": lambda y: y.clone(),
    "Tensor.detach": lambda y: y.detach(),
    "Tensor.squeeze": lambda y: y.squeeze(0),
    "Tensor.unsqueeze": lambda y: y.unsqueeze(0),
    "Tensor.permute": lambda y: y.permute(0, 2, 1),
    "Tensor.transpose": lambda y: y.transpose(1, 2),
    "Tensor.getitem": lambda y: y[:, 1:4, ::2],
    "torch.positive": lambda y: torch.positive(y),
    "Tensor.conj": lambda y: y.conj(),
    "Tensor.resolve_neg": lambda y: y.resolve_neg(),
}


def _aten_view_ops() -> set[str]:
    """Every public ATen op whose result aliases its first argument (a view), by name."""
    names = set()
    for schema in torch._C._jit_get_all_schemas():
        if not schema.name.startswith("aten::") or not schema.returns or not schema.arguments:
            continue
        arg, out = schema.arguments[0].alias_info, schema.returns[0].alias_info
        if arg is not None and out is not None and not arg.is_write and not out.is_write:
            names.add(schema.name.removeprefix("aten::"))
    return {n for n in names if not n.startswith("_") and (hasattr(torch, n) or hasattr(torch.Tensor, n))}


#: views that are not data movement of a dense real tensor: sparse and complex accessors,
#: device moves (free as conversions), ``mT``/``mH`` (attributes: free as ``getattr``)
_NOT_DENSE_MOVES = {
    "ccol_indices", "col_indices", "crow_indices", "row_indices", "indices", "values", "coalesce", "real", "imag",
    "view_as_real", "view_as_complex", "as_tensor", "cpu", "cuda", "to", "pin_memory", "mT", "mH", "slice_inverse",
}  # fmt: skip


def test_every_view_op_of_torch_is_listed_as_data_movement():
    """Read from torch's own operator schemas, so an op added to torch shows up here."""
    from cimdse.compiler.frontend import DATA_MOVEMENT

    views = _aten_view_ops()
    assert {"swapaxes", "movedim", "unflatten", "narrow", "select", "expand", "split", "unbind"} <= views
    assert sorted(views - _NOT_DENSE_MOVES - set(DATA_MOVEMENT)) == []


class _Moves(nn.Module):
    def __init__(self, op) -> None:  # noqa: ANN001
        super().__init__()
        self.op = op
        self.fc1, self.fc2 = nn.Linear(8, 12), nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, 6, 8]
        return self.fc2(self.op(self.fc1(x)).reshape(1, -1)[:, :8])


@pytest.mark.parametrize("name", list(DATA_MOVEMENT))
def test_every_data_movement_op_is_free(name):
    net = trace(_Moves(DATA_MOVEMENT[name]), (6, 8), name)
    assert [(layer.name, layer.K, layer.N, layer.V) for layer in net.layers] == [("fc1", 8, 12, 6), ("fc2", 8, 3, 1)]
    assert net.digital_ops == []  # nothing computed between the layers


def test_a_parameter_read_at_input_indices_is_a_table_read():
    class Table(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.table = nn.Parameter(torch.zeros(10, 4))
            self.fc = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, 3] ids
            return self.fc(torch.index_select(self.table, 0, x[0].long()))

    net = trace(Table(), (3,))
    assert [(op.kind, op.category, op.elements) for op in net.digital_ops] == [("index_select", "gather", 12)]


# ---------------------------------------------------------------- MaxViT, MobileViT: torch's own count
def test_maxvit_t_compiles_with_flop_counter_macs():
    """torchvision's maxvit_t swaps axes for grid attention (``torch.swapaxes``)."""
    with torch.device("meta"):
        model = maxvit_t()
    net = trace(model, (3, 224, 224), "maxvit_t")
    assert len(net.layers) == 151
    assert net.crossbar_macs + net.matmul_macs == _flop_counter_macs(model, (3, 224, 224)) == 5_558_046_720
    grid = [op for op in net.digital_ops if op.matmul and op.module.startswith("blocks.0.layers.0.layers.grid")]
    # 64 channels in heads of 32 on a 56 x 56 map: 64 partitions of 7 x 7, Q K^T per partition and head
    assert grid[0].matmul == (64 * 2, 49, 32, 49)


def test_mobilevit_s_needs_the_second_trace_and_compiles_with_flop_counter_macs():
    with torch.device("meta"):
        model = mobilevit_s()
    with pytest.raises(fx.proxy.TraceError):  # forward() branches on the feature map's size
        fx.symbolic_trace(model)
    net = trace(model, (3, 256, 256), "mobilevit_s")
    assert len(net.layers) == 72
    assert net.crossbar_macs + net.matmul_macs == _flop_counter_macs(model, (3, 256, 256)) == 2_000_831_488
    qkv = next(layer for layer in net.layers if layer.name == "stages.2.1.transformer.0.attn.qkv")
    assert (qkv.K, qkv.N, qkv.V) == (144, 432, 4 * 256)  # 2 x 2 patches of a 32 x 32 map: 4 x 256 tokens
    # a size the patches do not divide: the specialized trace takes forward()'s interpolate branch
    odd = trace(model, (3, 200, 200), "mobilevit_s")
    assert any(op.kind == "interpolate" for op in odd.digital_ops)
    assert odd.crossbar_macs + odd.matmul_macs == _flop_counter_macs(model, (3, 200, 200))


def test_the_second_trace_works_on_a_model_with_real_weights_and_leaves_it_alone():
    model = mobilevit_s(num_classes=10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    net = trace(model, (3, 64, 64), "mobilevit_s")
    with torch.device("meta"):  # counted on meta: on the CPU torch's fused attention kernel is not counted
        twin = mobilevit_s(num_classes=10)
    assert net.crossbar_macs + net.matmul_macs == _flop_counter_macs(twin, (3, 64, 64))
    assert all(torch.equal(before[k], v) and v.device.type == "cpu" for k, v in model.state_dict().items())


# ---------------------------------------------------------------- bare modules as the whole model
@pytest.mark.parametrize("batch_first", [False, True])
def test_bare_lstm_is_the_whole_model(batch_first):
    """``--input 35x650``: 35 steps of 650 features, whichever axis the module calls batch."""
    net = trace(nn.LSTM(650, 650, 2, batch_first=batch_first), (35, 650), "lstm")
    assert [(layer.name, layer.K, layer.N, layer.V) for layer in net.layers] == [
        ("weight_ih_l0", 650, 2600, 35), ("weight_hh_l0", 650, 2600, 35),
        ("weight_ih_l1", 650, 2600, 35), ("weight_hh_l1", 650, 2600, 35),
    ]  # fmt: skip
    assert net.crossbar_macs == 35 * 2 * 4 * 650 * (650 + 650) == 236_600_000
    assert [op.module for op in net.digital_ops] == ["", ""]  # the gates, named as the bare module names them


def test_bare_transformer_encoder_is_the_whole_model():
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(650, 10, 1300), 2, enable_nested_tensor=False)
    net = trace(enc, (35, 650), "encoder")
    assert [layer.name for layer in net.layers[:4]] == [
        "layers.0.self_attn.in_proj", "layers.0.self_attn.out_proj", "layers.0.linear1", "layers.0.linear2",
    ]  # fmt: skip
    assert all(layer.V == 35 for layer in net.layers)
    assert net.crossbar_macs == 2 * 35 * 650 * (1950 + 650 + 1300) + 2 * 35 * 1300 * 650
    # 10 heads of 65, 35 x 35 scores: Q K^T and A V per layer
    assert net.matmul_macs == 2 * 2 * 10 * 35 * 65 * 35
    mha = trace(nn.MultiheadAttention(64, 4, batch_first=True), (10, 64))
    assert [(layer.name, layer.V) for layer in mha.layers] == [("in_proj", 10), ("out_proj", 10)]


def test_cli_layers_of_a_bare_lstm_file(tmp_path, capsys):
    path = tmp_path / "bare.py"
    path.write_text("from torch import nn\n\ndef make():\n    return nn.LSTM(650, 650, 2)\n")
    assert main(["layers", "--model", f"{path}:make", "--input", "35x650"]) == 0
    out = capsys.readouterr()
    assert "weight_hh_l1,lstm,650,2600,35" in out.out and "236,600,000 MACs" in out.err


# ---------------------------------------------------------------- einsum with ...
@pytest.mark.parametrize(
    ("equation", "a", "b", "layers", "matmul"),
    [
        ("...ij,jk->...ik", (5, 3, 8), "w", [("w", 8, 6, 15)], []),  # a parameter: a crossbar layer, V = 5 x 3
        ("...ij,...kj->...ik", (5, 3, 8), (5, 4, 8), [], [(5, 3, 8, 4)]),
        ("...ij,...jk", (2, 5, 3, 8), (5, 8, 4), [], [(10, 3, 8, 4)]),  # implicit output, broadcast batch
        ("b...d,bjd->b...j", (4, 5, 8), (7, 8), [], [(1, 20, 8, 7)]),  # the batch of 1, 4 x 5 rows
    ],
)  # fmt: skip
def test_einsum_with_ellipsis(equation, a, b, layers, matmul):
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.randn(8, 6))
            self.fc_a = nn.Linear(math_prod(a), math_prod(a))
            self.fc_b = nn.Linear(math_prod(a), 1 if b == "w" else math_prod(b))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            flat = x.reshape(1, -1)
            other = self.w if b == "w" else self.fc_b(flat).reshape(1, *b)
            return torch.einsum(equation, self.fc_a(flat).reshape(1, *a), other)

    net = trace(Net(), a)
    assert [(layer.name, layer.K, layer.N, layer.V) for layer in net.layers[2 if b != "w" else 1 :]] == layers
    assert [op.matmul for op in net.digital_ops if op.matmul] == matmul
    assert net.crossbar_macs + net.matmul_macs == _flop_counter_macs(Net(), a)


def math_prod(shape: tuple[int, ...]) -> int:
    out = 1
    for d in shape:
        out *= d
    return out


# ---------------------------------------------------------------- refusals: fast, with sizes
_BIG_REFUSED = """
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4096, 4096)

    def forward(self, x):
        return torch.cumsum(self.fc(x), -1)

class Branchy(Net):
    def forward(self, x):
        return self.fc(x) if x.sum() > 0 else x

class Misfit(Net):
    def forward(self, x):
        return self.fc(x.reshape(x.shape[0], -1)[:, :100])

def unsupported():
    return Net()

def branchy():
    return Branchy()

def misfit():
    return Misfit()
"""


@pytest.mark.parametrize(
    ("factory", "message"),
    [("unsupported", "unsupported op torch.cumsum"), ("branchy", "torch.fx cannot trace the model"),
     ("misfit", "does not fit the model")],
)  # fmt: skip
def test_a_refusal_builds_and_traces_the_model_once(tmp_path, monkeypatch, factory, message):
    """A failure a CPU run cannot fix (an unsupported op, control flow on values, a shape
    that does not fit) is reported from the meta trace: no second build on the CPU."""
    path = tmp_path / "big.py"
    path.write_text(textwrap.dedent(_BIG_REFUSED))
    devices: list[str] = []
    load = models.load_model

    def counting(spec: str, *args, **kwargs) -> nn.Module:  # noqa: ANN002, ANN003
        model = load(spec, *args, **kwargs)
        devices.append(next(model.parameters()).device.type)
        return model

    monkeypatch.setattr(models, "load_model", counting)
    with pytest.raises(CimdseError, match=message):
        trace_spec(f"{path}:{factory}", (300, 4096))
    assert devices == ["meta"]


def test_a_meta_only_failure_is_retried_on_the_cpu(tmp_path):
    path = tmp_path / "numpy_weights.py"
    path.write_text(
        textwrap.dedent("""
        import numpy as np
        import torch
        from torch import nn

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(4096, 4096)
                self.scale = torch.from_numpy(np.ones(4096, dtype=np.float32))  # a CPU tensor even under meta

            def forward(self, x):
                return self.fc(x * self.scale)

        def make():
            return Net()
        """)
    )
    net = trace_spec(f"{path}:make", (300, 4096))
    assert [(layer.K, layer.N, layer.V) for layer in net.layers] == [(4096, 4096, 300)]


def test_a_shape_error_prints_sizes_not_fx_proxies():
    with torch.device("meta"):
        model = vit_b_16()
    with pytest.raises(CimdseError) as info:
        trace(model, (3, 256, 256), "vit_b_16")
    text = str(info.value)
    assert "Wrong image height! Expected 224 but got 256!" in text and "Proxy(" not in text
