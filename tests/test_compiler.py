"""Compiler: front end, layer IR, mapping, replication, schedules, CIM-AQ figures, CLI."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from cimdse import arch, models
from cimdse.cli import main
from cimdse.compiler import compile_network, policy_tables, trace
from cimdse.compiler.frontend import trace_spec
from cimdse.compiler.ir import Layer
from cimdse.compiler.mapping import place
from cimdse.compiler.replication import allocate_max, allocate_sum
from cimdse.errors import CimdseError
from cimdse.policy import uniform_policy


@pytest.fixture(scope="module")
def resnet18():
    return trace_spec("resnet18")


@pytest.fixture(scope="module")
def vgg16():
    return trace_spec("vgg16")


def _speedup(net, a, sets=()):
    cn = compile_network(net, arch.load(a, list(sets)))
    return cn.evaluate(uniform_policy(8, 8, len(net))).latency_s[0], cn.speedup_vs_w8a8(uniform_policy(4, 4, len(net)))[
        0
    ]


# ---------------------------------------------------------------- CIM-AQ reproduction
def test_cimaq_resnet18_latency_and_speedup(resnet18):
    lat8, speedup = _speedup(resnet18, "cim-aq")
    assert lat8 == pytest.approx(1.5075, abs=5e-4)  # published 1.507 s
    assert round(speedup, 2) == 2.86  # published 2.86x


def test_cimaq_vgg16_speedup(vgg16):
    assert round(_speedup(vgg16, "cim-aq")[1], 2) == 3.28


def test_cimaq_resnet18_two_bit_cells(resnet18):
    assert round(_speedup(resnet18, "cim-aq", ["crossbar.cell_bits=2"])[1], 2) == 3.89


def test_cimaq_formula_per_layer(resnet18):
    """latency_l = t_l * 56 us + V * t_l * a * 1.4 us, t_l = ceil(2 N ceil(b/4) / 256) ceil(K / 256)."""
    cn = compile_network(resnet18, arch.load("cim-aq"))
    rng = np.random.default_rng(1)
    pol = rng.integers(1, 9, (len(resnet18), 2))
    ev = cn.evaluate(pol)
    for i, layer in enumerate(resnet18.layers):
        w, a = pol[i]
        t = math.ceil(layer.N * math.ceil(w / 4) * 2 / 256) * math.ceil(layer.K / 256)
        assert ev.layer_latency_s[0, i] == pytest.approx(t * 56e-6 + layer.V * t * a * 1.4e-6)


# ---------------------------------------------------------------- front end and IR
def test_resnet18_ir(resnet18):
    by = {layer.name: layer for layer in resnet18.layers}
    conv1 = by["conv1"]
    assert (conv1.K, conv1.N, conv1.V, conv1.kind) == (147, 64, 12544, "conv2d")
    assert (conv1.kernel, conv1.stride, conv1.in_shape, conv1.out_shape) == (
        (7, 7),
        (2, 2),
        (3, 224, 224),
        (64, 112, 112),
    )
    assert (by["layer1.0.conv1"].K, by["layer1.0.conv1"].V) == (576, 3136)
    assert (by["layer4.1.conv2"].K, by["layer4.1.conv2"].N, by["layer4.1.conv2"].V) == (4608, 512, 49)
    assert (by["fc"].K, by["fc"].N, by["fc"].V, by["fc"].kind) == (512, 1000, 1, "linear")
    assert len(resnet18.layers) == 21 and resnet18.layers[0].name == "conv1" and resnet18.layers[-1].name == "fc"
    # names are module names, BatchNorm folded away
    names = dict(models.build("resnet18").named_modules())
    assert all(n in names and isinstance(names[n], (nn.Conv2d, nn.Linear)) for n in resnet18.names)
    assert conv1.folded_bn == "bn1"
    kinds = {op.category for op in resnet18.digital_ops}
    assert {"add", "pool", "activation"} <= kinds and "norm" not in kinds
    assert sum(1 for op in resnet18.digital_ops if op.kind == "add") == 8
    assert sum(layer.macs for layer in resnet18.layers) == 1_814_073_344


def test_lenet_ir():
    net = trace_spec("lenet")
    df = net.layers_frame()
    assert list(df["name"]) == ["features.0", "features.3", "classifier.1", "classifier.3"]
    assert list(df["K"]) == [9, 144, 128, 64] and list(df["N"]) == [16, 32, 64, 10] and list(df["V"]) == [64, 16, 1, 1]
    assert df["params"].sum() == 13_706


def test_real_weights_trace_like_meta():
    model = models.build("lenet")
    assert trace(model, (1, 8, 8)).layers == trace_spec("lenet").layers


def test_mobilenetv2_depthwise_and_bn_folding():
    net = trace_spec("mobilenetv2")
    dw = [layer for layer in net.layers if layer.groups > 1]
    assert dw and all(layer.groups == layer.N and layer.K == 9 for layer in dw)
    assert all(layer.folded_bn for layer in net.layers if layer.kind != "linear")
    assert not any(op.category == "norm" for op in net.digital_ops)
    first = net.layers[1]
    assert (first.name, first.K, first.N, first.groups, first.V) == ("features.1.conv.0.0", 9, 32, 32, 12544)


class _Mixed(nn.Module):
    """Conv1d, dilation, groups, concat, functional ops, view, BN without a layer before it."""

    def __init__(self) -> None:
        super().__init__()
        self.bn0 = nn.BatchNorm1d(4)
        self.a = nn.Conv1d(4, 8, 3, padding=2, dilation=2)
        self.b = nn.Conv1d(4, 8, 1, groups=2)
        self.fc = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn0(x)
        y = torch.cat([torch.relu(self.a(x)), torch.sigmoid(self.b(x))], dim=1)
        y = torch.nn.functional.adaptive_avg_pool1d(y, 1).view(x.size(0), -1)
        return self.fc(y * 2)


def test_conv1d_concat_and_functional_ops():
    net = trace(_Mixed(), (4, 10))
    by = {layer.name: layer for layer in net.layers}
    assert (by["a"].kind, by["a"].K, by["a"].N, by["a"].V, by["a"].dilation) == ("conv1d", 12, 8, 10, (2,))
    assert (by["b"].K, by["b"].groups, by["b"].n_per_group) == (2, 2, 4)
    cats = [op.category for op in net.digital_ops]
    assert cats.count("concat") == 1 and "norm" in cats and "pool" in cats and "elementwise" in cats
    assert by["fc"].V == 1 and net.names == ["a", "b", "fc"]


def test_linear_tokens_count_as_mvms():
    net = trace(nn.Sequential(nn.Linear(40, 20), nn.GELU(), nn.Linear(20, 5)), (7, 40))
    assert [layer.V for layer in net.layers] == [7, 7]


class _FFT(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.fft(self.fc(x)).real


class _Rnn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(8, 8))
        self.rnn = nn.Bilinear(8, 8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(self.body(x), x)


def test_unsupported_ops_name_op_and_module():
    wrapper = nn.Sequential()
    wrapper.add_module("spectral", _FFT())
    with pytest.raises(CimdseError, match=r"unsupported op .*fft.* at module 'spectral'"):
        trace(wrapper, (8,))
    with pytest.raises(CimdseError, match=r"unsupported op nn\.Bilinear at module 'rnn'.*; supported: crossbar layers"):
        trace(_Rnn(), (4, 8))


def test_bad_input_shape_and_untraceable_model():
    with pytest.raises(CimdseError, match=r"input shape 3x8x8 does not fit the model: .*module 'features.0'"):
        trace_spec("lenet", (3, 8, 8))

    class Branchy(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x if x.sum() > 0 else -x

    with pytest.raises(CimdseError, match="torch.fx cannot trace"):
        trace(Branchy(), (4,))


# ---------------------------------------------------------------- mapping
def test_placement_rules():
    spec = arch.load("demo").crossbar  # 64x64, 2-bit cells, differential-column, magnitude rule
    dense = Layer("l", "linear", K=100, N=20, V=1)
    p = place(dense, spec, 8)  # 7 magnitude bits -> 4 cells x 2 polarities -> 160 cols
    assert (p.cells_per_weight, p.crossbars) == (4, math.ceil(160 / 64) * math.ceil(100 / 64))
    assert (p.rows_used, p.cols_used) == (64, 64)
    offset = arch.load("demo", ["crossbar.mapping=offset"]).crossbar
    po = place(dense, offset, 8)  # 8 bits -> 4 cells, + 1 reference column
    assert (po.group_cols, po.crossbars) == (81, 2 * 2)
    row = arch.load("demo", ["crossbar.mapping=differential-row"]).crossbar
    assert place(dense, row, 8).group_rows == 200
    signed = arch.load("demo", ["crossbar.count_sign_bit=true"]).crossbar
    assert place(dense, signed, 8).cells_per_weight == 4 and place(dense, signed, 7).cells_per_weight == 4
    assert place(dense, spec, 7).cells_per_weight == 3


def test_depthwise_groups_pack_block_diagonally():
    spec = arch.load("demo").crossbar
    dw = Layer("dw", "conv2d", K=9, N=32, V=100, groups=32)  # each group 9 rows x (1 * 2 * 2) cols
    p = place(dw, spec, 4)  # 3 magnitude bits -> 2 cells -> 4 columns per group
    assert p.groups_per_crossbar == min(64 // 9, 64 // 4) == 7
    assert p.crossbars == math.ceil(32 / 7) and p.cells == 32 * 9 * 4


def test_evaluate_batch_equals_single_evaluations(resnet18):
    rng = np.random.default_rng(0)
    pols = rng.integers(1, 9, (16, len(resnet18), 2))
    for name, sets in [("isaac", []), ("isaac", ["chip.schedule=sequential"]), ("puma", []), ("cim-aq", [])]:
        cn = compile_network(resnet18, arch.load(name, sets))
        batch = cn.evaluate(pols)
        for p in range(len(pols)):
            one = cn.evaluate(pols[p])
            for field in ("latency_s", "energy_j", "crossbars", "fits"):
                np.testing.assert_array_equal(getattr(one, field)[0], getattr(batch, field)[p])
            for field in ("layer_latency_s", "layer_energy_j", "layer_crossbars", "replicas"):
                np.testing.assert_array_equal(getattr(one, field)[0], getattr(batch, field)[p])


def test_replication_speeds_up_and_respects_the_chip(resnet18):
    pol = uniform_policy(4, 4, len(resnet18))
    for schedule in ("sequential", "pipelined"):
        big = compile_network(resnet18, arch.load("isaac", [f"chip.schedule={schedule}"]))
        ev = big.evaluate(pol)
        assert ev.fits[0] and ev.replicas.max() > 1
        assert ev.crossbars[0] <= big.arch.chip.crossbars
        assert ev.crossbars[0] == ev.layer_crossbars.sum() > ev.crossbars_needed[0]
        # linear layers (V = 1) gain nothing from copies
        assert ev.replicas[0, -1] == 1
        # the same network on 20 tiles (1,920 crossbars): it fits, with far fewer spares, so it is slower
        tight = compile_network(resnet18, arch.load("isaac", [f"chip.schedule={schedule}", "chip.tiles=20"]))
        ev_tight = tight.evaluate(pol)
        assert ev_tight.fits[0] and ev_tight.crossbars_needed[0] == ev.crossbars_needed[0]
        assert ev.crossbars_needed[0] < ev_tight.crossbars[0] <= 1920 < ev.crossbars[0]
        assert ev_tight.latency_s[0] > ev.latency_s[0]


def test_reprogramming_when_the_network_does_not_fit(resnet18):
    sets = ["chip.tiles=2", "chip.crossbars_per_tile=16"]  # 32 crossbars
    cn = compile_network(resnet18, arch.load("puma", sets))
    ev = cn.evaluate(uniform_policy(8, 8, len(resnet18)))
    assert not ev.fits[0] and ev.write_energy_j[0] > 0 and ev.programming_energy_j[0] == 0
    assert (ev.replicas == 1).all() and ev.crossbars[0] <= 32
    tb = cn.tables
    i = resnet18.names.index("layer4.1.conv2")
    t = tb.crossbars[i, 7]
    # rounds of 32 crossbars, each written 2 at a time (one per tile), then computing
    full, rest = divmod(int(t), 32)
    writes = full * 16 + math.ceil(rest / 2)
    expected = writes * 56e-6 + math.ceil(t / 32) * resnet18.layers[i].V * 8 * tb.op_ns[i, 7] * 1e-9
    assert ev.layer_latency_s[0, i] - ev.layer_digital_latency_s[0, i] == pytest.approx(expected)
    serial = compile_network(resnet18, arch.load("puma", [*sets, "chip.parallel_writes=1"]))
    extra = serial.evaluate(uniform_policy(8, 8, len(resnet18))).layer_latency_s[0, i] - ev.layer_latency_s[0, i]
    assert extra == pytest.approx((t - writes) * 56e-6)


def test_pipelined_not_slower_than_sequential(resnet18):
    rng = np.random.default_rng(3)
    pols = rng.integers(1, 9, (64, len(resnet18), 2))
    for name in ("isaac", "puma", "demo"):
        seq = compile_network(resnet18, arch.load(name, ["chip.schedule=sequential"])).evaluate(pols)
        pipe = compile_network(resnet18, arch.load(name, ["chip.schedule=pipelined"])).evaluate(pols)
        assert (pipe.interval_s <= seq.interval_s * (1 + 1e-12)).all()
        np.testing.assert_array_equal(seq.interval_s, seq.latency_s)
        assert (pipe.interval_s <= pipe.latency_s).all()
        # resident chips overlap their stages; demo re-programs every layer, so no policy fits there
        assert pipe.fits.all() == (name != "demo") and pipe.fits.any() == (name != "demo")
        assert (pipe.interval_s[pipe.fits] < pipe.latency_s[pipe.fits]).all()


def _greedy_reference(base, cost, vmax, spare):
    """The plain greedy: one copy at a time, largest gain per crossbar that still fits."""
    copies = np.ones(len(base), dtype=np.int64)
    left = spare
    while True:
        gains = [
            base[i] * (1 / copies[i] - 1 / (copies[i] + 1)) / cost[i] if cost[i] <= left and copies[i] < vmax[i] else -1
            for i in range(len(base))
        ]
        best = int(np.argmax(gains))
        if gains[best] <= 0:
            return copies
        copies[best] += 1
        left -= cost[best]


def test_vectorized_greedy_equals_plain_greedy():
    rng = np.random.default_rng(7)
    P, L = 200, 6
    base = rng.uniform(1, 1000, (P, L))
    cost = rng.integers(1, 12, (P, L))
    vmax = rng.integers(1, 40, L)
    spare = rng.integers(0, 150, P)
    got = allocate_sum(base, cost, vmax, spare)
    for p in range(P):
        np.testing.assert_array_equal(got[p], _greedy_reference(base[p], cost[p], vmax, spare[p]))
    pipe = allocate_max(base, cost, vmax, spare)
    assert (pipe <= vmax).all() and (pipe >= 1).all()
    used = ((pipe - 1) * cost).sum(axis=1)
    assert (used <= spare).all(), np.flatnonzero(used > spare)  # per policy, not just the largest
    assert (used > 0).any()  # copies were made
    # no single extra copy of the bottleneck layer would still fit
    worst = (base / pipe).argmax(axis=1)
    room = spare - ((pipe - 1) * cost).sum(axis=1)
    stuck = (cost[np.arange(P), worst] > room) | (pipe[np.arange(P), worst] >= vmax[worst])
    assert stuck.all()


def test_report_frames(resnet18):
    cn = compile_network(resnet18, arch.load("isaac"))
    layers_df, summary_df = policy_tables(cn, uniform_policy(4, 8, len(resnet18)))
    assert list(layers_df["name"]) == resnet18.names
    assert layers_df["latency_s"].gt(0).all() and layers_df["energy_j"].gt(0).all()
    s = summary_df.iloc[0]
    assert s["crossbars"] <= 16128 and s["area_mm2"] == pytest.approx(85.4, rel=0.01) and s["speedup_vs_w8a8"] > 1
    assert s["energy_j"] == pytest.approx(layers_df["energy_j"].sum() + s["energy_leakage_j"])
    parts = [c for c in summary_df.columns if c.startswith("energy_") and c.endswith("_j") and c != "energy_j"]
    assert len(parts) == 11 and s["energy_j"] == pytest.approx(sum(s[c] for c in parts))
    assert s["energy_digital_j"] == pytest.approx(layers_df["energy_digital_j"].sum())


# ---------------------------------------------------------------- CLI
LAYER_CSV = ["name", "kind", "K", "N", "V", "w_bits", "a_bits", "crossbars", "replicas", "latency_s", "energy_j"]
SUMMARY_CSV = ["model", "arch", "latency_s", "energy_j", "area_mm2", "crossbars", "speedup_vs_w8a8"]


def test_cli_layers_prints_pure_csv(capsys):
    assert main(["layers", "--model", "resnet18"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert lines[0].startswith("name,kind,K,N,V,") and len(lines) == 22
    assert lines[1].startswith("conv1,conv2d,147,64,12544,")
    assert all(line.count(",") == lines[0].count(",") for line in lines)
    assert "21 crossbar layers" in captured.err


def test_cli_compile_every_zoo_model(tmp_path, capsys):
    for name in models.ZOO:
        out = tmp_path / name
        assert main(["compile", "--model", name, "--arch", "demo", "--bits", "4,4", "--out", str(out)]) == 0
        layers = pd.read_csv(out / "layers.csv", dtype={"name": str})
        summary = pd.read_csv(out / "summary.csv")
        assert set(LAYER_CSV) <= set(layers.columns) and set(SUMMARY_CSV) <= set(summary.columns)
        assert len(layers) == len(trace_spec(name).layers) and summary.loc[0, "model"] == name
        assert (out / "digital.csv").exists() and not list(out.glob(".*"))  # no temporary files left


def test_cli_compile_cimaq_and_user_model(tmp_path, capsys):
    assert (
        main(["compile", "--model", "resnet18", "--arch", "cim-aq", "--bits", "4,4", "--out", str(tmp_path / "r")]) == 0
    )
    assert "2.856x" in capsys.readouterr().out
    summary = pd.read_csv(tmp_path / "r" / "summary.csv")
    assert summary.loc[0, "speedup_vs_w8a8"] == pytest.approx(2.856, abs=1e-3)
    model = tmp_path / "net.py"
    model.write_text(
        "from torch import nn\n\ndef make():\n"
        "    return nn.Sequential(\n"
        "        nn.Conv1d(2, 8, 3), nn.BatchNorm1d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 38, 4)\n"
        "    )\n"
    )
    out = tmp_path / "u"
    args = ["compile", "--model", f"{model}:make", "--input", "2x40", "--arch", "isaac", "--bits", "8,8"]
    assert main([*args, "--out", str(out)]) == 0
    layers = pd.read_csv(out / "layers.csv", dtype={"name": str})
    assert list(layers["name"]) == ["0", "4"] and list(layers["V"]) == [38, 1]
    assert pd.read_csv(out / "summary.csv").loc[0, "model"] == "net.py:make"  # the factory, not just the file


def test_cli_errors_exit_2_and_leave_nothing(tmp_path, capsys):
    policy = tmp_path / "p.yaml"
    policy.write_text("conv1: [4, 4]\n")
    out = tmp_path / "out"
    assert main(["compile", "--model", "lenet", "--arch", "demo", "--policy", str(policy), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "unknown layer name" in err and str(policy) in err and err.count("\n") == 1
    assert main(["compile", "--model", "lenet", "--arch", "demo", "--bits", "9,4", "--out", str(out)]) == 2
    assert "outside 1..8" in capsys.readouterr().err
    assert main(["layers", "--model", "mlp", "--input", "3x4"]) == 2
    assert "does not fit the model" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    "body, message",
    [
        ("import sys\nsys.exit(3)\n", "net.py: failed to import: SystemExit: 3"),
        ("class Stop(BaseException):\n    pass\nraise Stop('halt')\n", "net.py: failed to import: Stop: halt"),
        ("import sys\ndef make():\n    sys.exit('no')\n", r"net.py:make\(\) failed: SystemExit: no"),
    ],
)
def test_a_model_file_that_exits_is_one_message(run_cli, tmp_path, body, message):
    (tmp_path / "net.py").write_text(body)
    proc = run_cli("compile", "--model", f"{tmp_path / 'net.py'}:make", "--input", "4", "--arch", "demo", "--bits",
                   "4,4", "--out", str(tmp_path / "o"))  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    assert re.search(message, proc.stderr), proc.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "shape, message",
    [
        ("99999999999999999999", "99999999999999999999 elements per sample; at most 2147483647"),
        ("65536x65536", "4294967296 elements per sample; at most 2147483647"),
    ],
)
def test_an_absurd_input_shape_is_one_message(capsys, shape, message):
    assert main(["layers", "--model", "mlp", "--input", shape]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_cli_bad_model_in_a_process(run_cli, tmp_path):
    bad_model = tmp_path / "bad.py"
    bad_model.write_text(
        "from torch import nn\n\ndef make():\n    return nn.Sequential(nn.Linear(4, 4), nn.Conv3d(4, 4, 1))\n"
    )
    proc = run_cli("compile", "--model", f"{bad_model}:make", "--input", "3x4", "--arch", "demo", "--bits", "4,4",
                   "--out", str(tmp_path / "o"))  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stdout == ""
    assert "unsupported op nn.Conv3d at module '1'" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_unknown_model_is_named_before_the_input_is_asked_for():
    from cimdse.compiler.frontend import trace_spec

    with pytest.raises(CimdseError, match="unknown model 'nonexist'"):
        trace_spec("nonexist")


def test_trace_uses_inference_shapes_and_keeps_the_models_mode():
    model = models.build("resnet18").train()
    net = trace(model, (3, 10, 10))  # 1x1 feature maps: batch norm needs eval mode
    assert net.layers[-1].name == "fc"
    assert all(m.training for m in model.modules())
