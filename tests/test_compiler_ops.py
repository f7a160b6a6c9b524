"""Compiler front end, second round: functional norms and eval-mode no-ops, attention,
recurrent layers, run-time written matmuls, ``layers --all``, and the published MAC
counts of torchvision's EfficientNet-B0, ConvNeXt-Tiny, ViT-B/16 and Swin-T."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from reference_models import PUBLISHED_GMACS, REFERENCE, LSTMLanguageModel, SwinTransformer, stochastic_depth
from torch import nn

from cimdse import arch, costs, models
from cimdse.cli import main
from cimdse.compiler import compile_network, trace
from cimdse.compiler.frontend import trace_spec
from cimdse.compiler.mapping import place
from cimdse.errors import CimdseError
from cimdse.policy import uniform_policy


def _ops(net):
    return {op.name: op for op in net.digital_ops}


def _layers(net):
    return {layer.name: layer for layer in net.layers}


# ---------------------------------------------------------------- functional forms, no-ops
class _Functional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.register_buffer("mean", torch.zeros(4))
        self.register_buffer("var", torch.ones(4))
        self.drop3 = nn.Dropout1d(0.5)
        self.alpha = nn.AlphaDropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, 4, 8]
        x = F.layer_norm(x, (8,))
        x = F.batch_norm(x, self.mean, self.var, training=False)
        x = F.group_norm(x, 2)
        x = stochastic_depth(x, 0.5, "row", self.training)  # torchvision's fx-wrapped helper
        x = F.dropout1d(F.dropout(x, 0.3, self.training), 0.3, self.training)
        x = self.alpha(self.drop3(x))
        x = F.hardswish(F.silu(F.gelu(x)))
        x = x.permute(0, 2, 1).reshape(1, 8, 4).transpose(1, 2).contiguous()
        return self.fc(x)


def test_functional_norms_and_eval_mode_noops_are_digital_or_free():
    net = trace(_Functional(), (4, 8))
    ops = _ops(net)
    assert [(op.kind, op.category, op.elements) for op in net.digital_ops] == [
        ("layer_norm", "norm", 32), ("batch_norm", "norm", 32), ("group_norm", "norm", 32),
        ("gelu", "activation", 32), ("silu", "activation", 32), ("hardswish", "activation", 32),
    ]  # fmt: skip
    assert "stochastic_depth" not in ops and not any("dropout" in name for name in ops)
    (fc,) = net.layers
    assert (fc.K, fc.N, fc.V) == (8, 8, 4)  # permute/reshape pass through: 4 tokens of 8


def test_trace_is_in_eval_mode_and_restores_training():
    model = _Functional().train()
    trace(model, (4, 8))
    assert model.training and model.drop3.training


# ---------------------------------------------------------------- attention
def test_multihead_attention_maps_projections_and_counts_attention_by_hand():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = nn.MultiheadAttention(16, 4, batch_first=True)
            self.cross = nn.MultiheadAttention(16, 2, kdim=6, vdim=6)

        def forward(
            self,
            x: torch.Tensor,
        ) -> torch.Tensor:  # x: [B, 5, 16]
            y, _ = self.attn(x, x, x, need_weights=False)
            mem = torch.zeros(3, x.shape[0], 6)
            return self.cross(y.transpose(0, 1), mem + 1, mem + 2)[0]

    net = trace(Net(), (5, 16))
    layers = _layers(net)
    assert (layers["attn.in_proj"].K, layers["attn.in_proj"].N, layers["attn.in_proj"].V) == (16, 48, 5)
    assert (layers["attn.out_proj"].K, layers["attn.out_proj"].V) == (16, 5)
    assert layers["attn.in_proj"].origin == "nn.MultiheadAttention"
    # cross attention: separate projections, keys from a 3-step memory of 6 features
    assert [(n, layers[n].K, layers[n].V) for n in ("cross.q_proj", "cross.k_proj", "cross.v_proj")] == [
        ("cross.q_proj", 16, 5), ("cross.k_proj", 6, 3), ("cross.v_proj", 6, 3),
    ]  # fmt: skip
    ops = _ops(net)
    # 4 heads of dim 4, 5 queries x 5 keys: Q K^T 4*5*4*5 MACs, softmax 4*5*5, A V 4*5*5*4
    assert (ops["attn.qk"].elements, ops["attn.softmax"].elements, ops["attn.av"].elements) == (400, 100, 400)
    assert ops["attn.qk"].matmul == (4, 5, 4, 5) and ops["attn.av"].matmul == (4, 5, 5, 4)
    assert ops["cross.qk"].matmul == (2, 5, 8, 3)  # 2 heads of dim 8, 3 keys
    assert net.matmul_macs == 400 + 400 + 2 * (2 * 5 * 8 * 3)


def test_transformer_encoder_layers_by_hand():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layer = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True, norm_first=True)
            self.enc = nn.TransformerEncoder(layer, 2, norm=nn.LayerNorm(16), enable_nested_tensor=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, 5, 16]
            return self.enc(x, mask=torch.zeros(5, 5))

    net = trace(Net(), (5, 16))
    assert [(layer.name, layer.K, layer.N, layer.V) for layer in net.layers[:4]] == [
        ("enc.layers.0.self_attn.in_proj", 16, 48, 5), ("enc.layers.0.self_attn.out_proj", 16, 16, 5),
        ("enc.layers.0.linear1", 16, 32, 5), ("enc.layers.0.linear2", 32, 16, 5),
    ]  # fmt: skip
    assert len(net.layers) == 8 and net.crossbar_macs == 2 * 5 * (16 * 48 + 16 * 16 + 16 * 32 + 32 * 16)
    assert net.matmul_macs == 2 * 2 * (2 * 5 * 8 * 5)
    kinds = [op.kind for op in net.digital_ops if op.module == "enc.layers.1"]
    assert kinds == ["layernorm", "add", "layernorm", "relu", "add"]  # pre-norm order
    assert [op.name for op in net.digital_ops if op.module == "enc.layers.1.self_attn"] == [
        "enc.layers.1.self_attn.qk", "enc.layers.1.self_attn.mask", "enc.layers.1.self_attn.softmax",
        "enc.layers.1.self_attn.av",
    ]  # fmt: skip
    assert net.digital_ops[-1].name == "enc.norm"


class _HandAttention(nn.Module):
    def __init__(self, sdpa: bool) -> None:
        super().__init__()
        self.sdpa = sdpa
        self.qkv = nn.Linear(12, 36)
        self.w_out = nn.Parameter(torch.randn(12, 12))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, 7, 12], 3 heads of 4
        b, t, c = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, 3, 4).permute(2, 0, 3, 1, 4).unbind(0)
        if self.sdpa:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            y = torch.matmul((q @ k.transpose(-2, -1) / 2.0).softmax(-1), v)
        return y.transpose(1, 2).reshape(b, t, c) @ self.w_out  # a parameter operand: a crossbar layer


@pytest.mark.parametrize("sdpa", [False, True])
def test_handwritten_attention_and_sdpa(sdpa):
    net = trace(_HandAttention(sdpa), (7, 12))
    assert [(layer.name, layer.K, layer.N, layer.V) for layer in net.layers] == [
        ("qkv", 12, 36, 7), ("w_out", 12, 12, 7),
    ]  # fmt: skip
    assert net.layers[1].origin == "matmul"
    mm = [op for op in net.digital_ops if op.matmul]
    assert [op.matmul for op in mm] == [(3, 7, 4, 7), (3, 7, 7, 4)]
    assert net.matmul_macs == 2 * 3 * 7 * 7 * 4
    softmax = [op for op in net.digital_ops if op.kind == "softmax"]
    assert len(softmax) == 1 and softmax[0].elements == 3 * 7 * 7
    if sdpa:  # the causal mask is one more add over the scores
        assert any(op.name.endswith(".mask") and op.elements == 3 * 7 * 7 for op in net.digital_ops)


def test_einsum_and_functional_linear():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.randn(6, 10))
            self.b = nn.Parameter(torch.randn(6))
            self.u = nn.Parameter(torch.randn(10, 3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, 4, 10]
            h = F.linear(x, self.w, self.b)  # [B, 4, 6]
            scores = torch.einsum("btc,bsc->bts", h, h)  # activation x activation: 4*4*6 MACs
            return torch.einsum("bts,bsc->btc", scores, x) @ self.u

    net = trace(Net(), (4, 10))
    assert [(layer.name, layer.K, layer.N, layer.V, layer.bias) for layer in net.layers] == [
        ("w", 10, 6, 4, True), ("u", 10, 3, 4, False),
    ]  # fmt: skip
    assert [op.matmul for op in net.digital_ops if op.matmul] == [(1, 4, 6, 4), (1, 4, 4, 10)]


def test_relative_position_bias_and_embedding_tables():
    class WindowAttention(nn.Module):  # timm's Swin: table[index] with a constant index
        def __init__(self) -> None:
            super().__init__()
            self.qkv = nn.Linear(8, 24)
            self.table = nn.Parameter(torch.zeros(9, 2))
            self.register_buffer("index", torch.randint(0, 9, (16,)))
            self.emb = nn.Embedding(5, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, 4, 8], 2 heads
            q, k, v = self.qkv(x).reshape(1, 4, 3, 2, 4).permute(2, 0, 3, 1, 4).unbind(0)
            bias = self.table[self.index].view(4, 4, 2).permute(2, 0, 1)  # computed once: free
            attn = (q @ k.transpose(-2, -1) + bias).softmax(-1)
            ids = (x[:, :, 0] > 0).long()
            return (attn @ v).sum() + self.emb(ids).sum() + self.table[ids].sum()

    net = trace(WindowAttention(), (4, 8))
    cats = [(op.category, op.kind, op.elements) for op in net.digital_ops]
    assert ("add", "add", 2 * 4 * 4) in cats  # the bias read by the score add
    gathers = [op for op in net.digital_ops if op.category == "gather"]
    assert [(op.kind, op.elements) for op in gathers] == [("embedding", 16), ("getitem", 8)]


def test_torchvision_swin_window_attention_by_hand():
    """A 2-stage Swin on 16x16: stage 1 has 4x4 = 16 tokens of 8 in 4 windows of 2x2."""
    model = SwinTransformer(embed_dim=8, depths=(2, 2), heads=(1, 2), window=2, num_classes=5)
    net = trace(model, (3, 16, 16))
    layers = _layers(net)
    qkv = layers["features.1.0.attn.qkv"]
    assert (qkv.K, qkv.N, qkv.V, qkv.origin) == (8, 24, 16, "shifted_window_attention")
    assert (layers["features.3.1.attn.proj"].K, layers["features.3.1.attn.proj"].V) == (16, 4)
    shifted = [op for op in net.digital_ops if op.module == "features.1.1.attn"]
    # 4 windows x 1 head: Q K^T (4, 4, 8, 4), bias add, mask add (shifted), softmax, A V (4, 4, 4, 8)
    assert [(op.kind, op.elements) for op in shifted] == [
        ("matmul", 4 * 4 * 8 * 4), ("add", 64), ("add", 64), ("softmax", 64), ("matmul", 4 * 4 * 4 * 8),
    ]  # fmt: skip
    last = [op.kind for op in net.digital_ops if op.module == "features.3.1.attn"]
    assert last.count("add") == 1  # one 2x2 window holds the whole 2x2 map: no shift, no mask


# ---------------------------------------------------------------- recurrent layers
@pytest.mark.parametrize(
    ("cls", "gates", "ops_per_step"), [(nn.LSTM, 4, 13), (nn.GRU, 3, 11), (nn.RNN, 1, 2)]
)  # fmt: skip
def test_recurrent_layers_by_hand(cls, gates, ops_per_step):
    model = nn.Sequential(cls(10, 16, num_layers=2, batch_first=True, bidirectional=True))
    net = trace(model, (7, 10))
    names = [layer.name for layer in net.layers]
    assert names[:4] == ["0.weight_ih_l0", "0.weight_hh_l0", "0.weight_ih_l0_reverse", "0.weight_hh_l0_reverse"]
    layers = _layers(net)
    ih = layers["0.weight_ih_l0"]
    assert (10, gates * 16, 7) == (ih.K, ih.N, ih.V)
    assert layers["0.weight_ih_l1"].K == 32  # both directions of layer 0
    assert layers["0.weight_hh_l1"].K == 16 and layers["0.weight_hh_l1"].copies_limit == 1
    assert layers["0.weight_ih_l1"].copies_limit == 7
    gate_ops = [op for op in net.digital_ops if op.category == "recurrent"]
    assert len(gate_ops) == 4 and all(op.elements == 7 * ops_per_step * 16 for op in gate_ops)
    assert net.crossbar_macs == 7 * gates * 16 * (10 + 16 + 10 + 16 + 32 + 16 + 32 + 16)


def test_lstm_projection_and_cells():
    net = trace(nn.Sequential(nn.LSTM(6, 8, proj_size=3)), (5, 6))  # unbatched-looking: [1, 5, 6] is L=1
    assert [(layer.name, layer.K, layer.N) for layer in net.layers] == [
        ("0.weight_ih_l0", 6, 32), ("0.weight_hh_l0", 3, 32), ("0.weight_hr_l0", 8, 3),
    ]  # fmt: skip

    class Cells(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.cell = nn.GRUCell(4, 6)

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, 3, 4], three steps
            h = self.cell(x[:, 0])
            for t in range(1, 3):
                h = self.cell(x[:, t], h)
            return h

    net = trace(Cells(), (3, 4))
    assert [(layer.name, layer.V, layer.copies_limit) for layer in net.layers] == [
        ("cell.weight_ih", 3, 3), ("cell.weight_hh", 3, 1),
    ]  # fmt: skip
    assert [op.elements for op in net.digital_ops] == [11 * 6] * 3


def test_recurrent_weights_get_no_parallel_copies():
    net = trace_spec("lstm")
    cn = compile_network(net, arch.load("isaac", ["chip.schedule=sequential"]))  # thousands of spare crossbars
    ev = cn.evaluate(uniform_policy(8, 8, len(net)))
    copies = dict(zip(net.names, ev.replicas[0].tolist(), strict=True))
    assert copies["lstm.weight_hh_l0"] == 1 and copies["lstm.weight_hh_l1"] == 1
    assert copies["lstm.weight_ih_l0"] == 8  # one per time step


def test_two_layer_lstm_language_model_macs():
    """Zaremba et al. medium: per step and layer 4 H (I + H), plus the decoder, 35 steps."""
    with torch.device("meta"):
        model = LSTMLanguageModel()
    net = trace(model, (35,))
    assert net.crossbar_macs == 35 * (2 * 4 * 650 * (650 + 650) + 650 * 10_000) == 464_100_000
    assert [op.kind for op in net.digital_ops] == ["embedding", "lstm_gates", "lstm_gates"]


# ---------------------------------------------------------------- published MAC counts
@pytest.mark.parametrize("name", list(REFERENCE))
def test_reference_models_macs_within_one_percent_of_published(name):
    factory, shape = REFERENCE[name]
    with torch.device("meta"):
        model = factory()
    net = trace(model, shape, name)
    gmacs = (net.crossbar_macs + net.matmul_macs) / 1e9
    assert gmacs == pytest.approx(PUBLISHED_GMACS[name], rel=0.01)


# ---------------------------------------------------------------- run-time written matmuls
def test_matmul_on_runtime_written_crossbars_by_hand():
    net = trace(_HandAttention(False), (7, 12))
    demo = arch.load("demo")
    spec = demo.crossbar
    digital = compile_network(net, demo)
    on_xbar = compile_network(net, demo, matmul="crossbar", matmul_bits=(4, 4))
    qk, av = on_xbar.runtime_matmuls
    # Q K^T: 3 heads, K^T is 4 x 7 at 4 bits: 4 rows; 7 outputs x ceil(3 magnitude bits / 2) cells x 2 polarities
    cols = 7 * math.ceil(3 / spec.cell_bits) * 2
    assert place(net.layers[0].__class__("qk", "matmul", 4, 7, 7), spec, 4).cols_used == cols
    t_op = costs.op_ns(spec, 4, cols)
    slices = math.ceil(4 / spec.dac_bits)
    # one crossbar per head, all 3 written at once (demo writes one crossbar per tile at a time, 4 tiles)
    assert demo.chip.writes_at_once >= 3
    assert qk.latency_s == pytest.approx((spec.timing.write_us * 1e3 + 7 * slices * t_op) * 1e-9)
    cells = 3 * 4 * cols
    e_op = float(np.sum(costs.op_energy_pj(spec, 4, cols)))
    assert qk.cells == cells and qk.crossbars == 3
    e_write = cells * costs.constant(spec, "write_pj_per_cell")
    assert qk.energy_j == pytest.approx((e_write + 3 * 7 * slices * e_op) * 1e-12)
    pol = uniform_policy(8, 8, len(net))
    ev_d, ev_x = digital.evaluate(pol), on_xbar.evaluate(pol)
    mm_ops = sum(op.elements for op in net.digital_ops if op.matmul)
    assert digital.digital_elements.sum() - on_xbar.digital_elements.sum() == mm_ops == 2 * 3 * 7 * 7 * 4
    # the matmuls leave the digital unit (ops after 'qkv', whose copy fills one tile) for the run-time crossbars
    lanes_ns = costs.constant(spec, "digital_ns_per_op") / demo.chip.digital_lanes
    tiles_qkv = int(ev_d.layer_crossbars[0, 0] + demo.chip.crossbars_per_tile - 1) // demo.chip.crossbars_per_tile
    assert ev_d.latency_s[0] - ev_x.latency_s[0] == pytest.approx(
        mm_ops * lanes_ns / tiles_qkv * 1e-9 - qk.latency_s - av.latency_s
    )
    assert ev_x.energy_j[0] - ev_d.energy_j[0] > (qk.write_energy_j + av.write_energy_j) * 0.5
    with pytest.raises(CimdseError, match="matmul unit 'analog'"):
        compile_network(net, demo, matmul="analog")


# ---------------------------------------------------------------- CLI
def test_cli_layers_all_and_compile_show_where_time_goes(tmp_path, capsys):
    assert main(["layers", "--model", "vit", "--all"]) == 0
    df = pd.read_csv(__import__("io").StringIO(capsys.readouterr().out))
    assert set(df["unit"]) == {"crossbar", "digital"}
    xbar = df[df["unit"] == "crossbar"]
    assert list(xbar["name"]) == trace_spec("vit").names  # policy order
    assert df.loc[df["name"] == "matmul", ["K", "N", "V", "macs"]].values.tolist() == [[16, 17, 34, 2 * 17 * 16 * 17]]
    assert df["name"].tolist().index("blocks.0.attn.qkv") < df["name"].tolist().index("matmul")

    out = tmp_path / "vit"
    assert main(["compile", "--model", "vit", "--arch", "demo", "--bits", "4,4", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "where the time goes" in printed and "matmul on digital" in printed
    layers = pd.read_csv(out / "layers.csv")
    digital = pd.read_csv(out / "digital.csv")
    assert layers["latency_share"].sum() + digital["latency_share"].sum() == pytest.approx(1.0)
    summary = pd.read_csv(out / "summary.csv").iloc[0]
    assert summary["matmul_macs"] == 2 * 2 * (2 * 17 * 16 * 17) and summary["matmul_unit"] == "digital"

    out2 = tmp_path / "vit_xbar"
    args = ["compile", "--model", "vit", "--arch", "demo", "--bits", "4,4", "--matmul", "crossbar", "--out", str(out2)]
    assert main(args) == 0
    d2 = pd.read_csv(out2 / "digital.csv")
    assert set(d2.loc[d2["category"] == "matmul", "unit"]) == {"crossbar"}
    assert pd.read_csv(out2 / "summary.csv").iloc[0]["matmul_latency_s"] > 0


def test_unsupported_op_lists_what_is_supported():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cumsum(self.fc(x), dim=-1)

    with pytest.raises(CimdseError) as info:
        trace(Net(), (4,))
    text = str(info.value)
    assert "unsupported op torch.cumsum at the top-level forward()" in text
    for name in ("nn.MultiheadAttention", "nn.LSTM", "F.layer_norm", "F.scaled_dot_product_attention", "dropout"):
        assert name in text


# ---------------------------------------------------------------- zoo models, QAT and hardware
def test_zoo_vit_and_lstm_train_on_digits_and_quantization_support():
    from cimdse.data import load_dataset
    from cimdse.quant.apply import quantize
    from cimdse.quant.hardware import evaluate_hardware
    from cimdse.quant.train import accuracy, pretrain

    torch.set_num_threads(1)
    splits = load_dataset("digits")
    vit = pretrain(models.build("vit"), splits, epochs=15, seed=0)
    assert accuracy(vit, splits.test) > 0.75
    lstm = pretrain(models.build("lstm"), splits, epochs=8, seed=0)
    assert accuracy(lstm, splits.test) > 0.75
    calib = splits.train.tensors[0][:128]
    # attention written with nn.Linear: quantized and run on the crossbar model like any layer
    q = quantize(vit, [(8, 8)] * 10, calib)
    sub = torch.utils.data.TensorDataset(splits.test.tensors[0][:40], splits.test.tensors[1][:40])
    res = evaluate_hardware(q, sub, arch.load("demo", ["crossbar.adc_bits=null", "crossbar.adc_mode=ideal"]))
    assert res.agreement == 1.0 and res.hardware > 0.6
    # recurrent weights are refused with one message naming the layer
    with pytest.raises(CimdseError, match=r"'lstm.weight_ih_l0' \(nn.LSTM weight\) cannot be quantized"):
        quantize(lstm, [(8, 8)] * 5, calib)
    assert np.isfinite(accuracy(q, splits.test))
