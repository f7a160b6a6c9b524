"""Quantizers, BN folding, policies, integer export and the ideal-ADC identity:
the crossbar model and the exact fake-quant model predict the same class for every
sample."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from cimdse import arch as arch_mod
from cimdse import models
from cimdse.data import load_dataset
from cimdse.errors import CimdseError
from cimdse.quant.apply import crossbar_layers, fold_batchnorm, quant_layers, quantize, resolve_policy
from cimdse.quant.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from cimdse.quant.export import IntLayer, act_integers, export_model, layers_from_dicts, layers_to_dicts, unfold_inputs
from cimdse.quant.hardware import CrossbarBackend, evaluate_hardware, hardware_aware, integer_model
from cimdse.quant.quantizers import ActQuantizer, WeightQuantizer, fake_quant, mse_scale
from cimdse.quant.train import accuracy, evaluate_policy, finetune, pretrain, quantize_for

torch.set_num_threads(1)

IDEAL = arch_mod.load("demo", ["crossbar.adc_bits=null", "crossbar.adc_mode=ideal"])


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def lenet(digits):
    return pretrain(models.build("lenet", seed=0), digits, epochs=8, seed=0)


# ---------------------------------------------------------------- quantizers
@settings(max_examples=40, deadline=None)
@given(bits=st.integers(2, 8), seed=st.integers(0, 1000))
def test_weight_integers_in_symmetric_range(bits, seed):
    w = torch.randn(6, 3, 3, 3, generator=torch.Generator().manual_seed(seed))
    q = WeightQuantizer(bits, 6)
    q.init_scale(w)
    ints = q.integers(w)
    assert int(ints.abs().max()) <= 2 ** (bits - 1) - 1
    assert torch.allclose(q(w), ints * q.scale.view(-1, 1, 1, 1), atol=1e-6)


def test_act_quantizer_ranges_and_ste():
    x = torch.linspace(-3, 3, 101, requires_grad=True)
    q = ActQuantizer(3)
    q.scale.data.fill_(0.25)
    y = q(x)
    assert float(y.detach().min()) == 0.0 and float(y.detach().max()) == pytest.approx(7 * 0.25)
    y.sum().backward()
    assert x.grad is not None and float(x.grad[50]) == 1.0 and float(x.grad[0]) == 0.0  # STE inside, 0 clipped
    assert q.scale.grad is not None
    q.signed = True
    assert q.qrange == (-4, 3) and float(q(torch.tensor([-9.0])).detach()) == -1.0


def test_mse_scale_beats_max_scaling_at_low_bits():
    x = torch.randn(20000, generator=torch.Generator().manual_seed(0))
    s = mse_scale(x, -1, 1)
    err = lambda sc: float(((fake_quant(x, torch.tensor(sc), -1, 1) - x) ** 2).mean())  # noqa: E731
    assert err(float(s)) < err(float(x.abs().max()))


# ---------------------------------------------------------------- structure
def test_layer_order_and_policy_resolution():
    m = models.build("lenet")
    names = crossbar_layers(m, (1, 8, 8))
    assert names == ["features.0", "features.3", "classifier.1", "classifier.3"]
    assert resolve_policy([[8, 8], [4, 4], [4, 2], [8, 8]], names)["classifier.1"] == (4, 2)
    assert resolve_policy(np.array([[4, 4]] * 4), names)["features.0"] == (4, 4)
    for bad, msg in [
        ([[8, 8]] * 3, "has 3 layers, the network has 4"),
        ({n: [8, 8] for n in names} | {"fc": [8, 8]}, "unknown layer"),
        ({n: [8, 8] for n in names[:3]}, r"no bit widths for 1 layer\(s\)"),
        ([[8, 9]] * 4, "a_bits = 9 outside 1..8"),
        ([[1, 8]] * 4, "w_bits = 1 outside 2..8"),
        ([[8, 4.5]] * 4, "whole numbers"),
        ([[8, 8], [8], [8, 8], [8, 8]], "expected \\[w_bits, a_bits\\]"),
    ]:
        with pytest.raises(CimdseError, match=msg):
            resolve_policy(bad, names)


def test_resnet_layer_order_matches_execution():
    m = models.build("resnet20")
    names = crossbar_layers(m, (3, 32, 32))
    assert names[:4] == ["conv1", "layer1.0.conv1", "layer1.0.conv2", "layer1.1.conv1"]
    assert names.index("layer2.0.downsample.0") < names.index("layer2.0.conv1")  # called first in forward
    assert names[-1] == "fc" and len(names) == 22


def test_batchnorm_folding_preserves_outputs():
    m = models.build("resnet20").eval()
    gen = torch.Generator().manual_seed(0)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.normal_(generator=gen)
            mod.running_var.uniform_(0.5, 2.0, generator=gen)
            mod.weight.data.uniform_(0.5, 1.5, generator=gen)
    x = torch.randn(3, 3, 32, 32, generator=gen)
    ref = m(x)
    folded = fold_batchnorm(m, (3, 32, 32))
    assert not any(isinstance(mod, nn.BatchNorm2d) for mod in folded.modules())
    assert torch.allclose(folded(x), ref, atol=1e-4, rtol=1e-4)


class _Mixed(nn.Module):
    """Conv1d, depthwise and grouped Conv2d, a residual add without ReLU (signed
    input to the next layer), a Linear on 3-D input, BN to fold."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv1d(2, 4, 3, padding=1)
        self.c2 = nn.Conv2d(1, 8, 3, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.g = nn.Conv2d(8, 6, 1, groups=2)
        self.fc_t = nn.Linear(6, 5)
        self.fc = nn.Linear(5 * 16 + 4 * 16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.c1(x.reshape(-1, 2, 32)))  # [B, 4, 32]
        a = nn.functional.max_pool1d(a, 2)
        b = torch.relu(self.bn(self.c2(x)))  # [B, 8, 4, 4]
        b = b + self.dw(b)  # the residual add leaves negative values
        b = self.g(b)  # signed input
        t = self.fc_t(b.flatten(2).transpose(1, 2))  # [B, 16, 5] token-wise
        return self.fc(torch.cat([t.flatten(1), a.flatten(1)], dim=1))


def test_mixed_model_ideal_adc_identity_and_signed_inputs():
    torch.manual_seed(0)
    m = _Mixed().eval()
    m.bn.running_mean.uniform_(-0.2, 0.2)
    x = torch.rand(40, 1, 8, 8) - 0.3  # the first layer's input is signed too
    names = crossbar_layers(m, (1, 8, 8))
    assert names == ["c1", "c2", "dw", "g", "fc_t", "fc"]
    policy = dict(zip(names, [(4, 3), (8, 8), (3, 5), (5, 4), (6, 6), (2, 2)], strict=True))
    q = quantize(m, policy, x)
    signed = {n: layer.act_q.signed for n, layer in quant_layers(q).items()}
    assert signed == {"c1": True, "c2": True, "dw": False, "g": True, "fc_t": True, "fc": True}
    ds = torch.utils.data.TensorDataset(x, torch.zeros(40, dtype=torch.long))
    res = evaluate_hardware(q, ds, IDEAL)
    assert np.array_equal(res.fake_pred, res.hardware_pred)
    exact, hw = integer_model(q), integer_model(q, arch=IDEAL)
    assert torch.equal(exact(x), hw(x))  # identical logits, not only predictions
    # different row/column tilings and mappings give the same integers
    for overrides in (["crossbar.rows=8", "crossbar.active_rows=8", "crossbar.cols=16"], ["crossbar.mapping=offset"]):
        spec = arch_mod.load("demo", ["crossbar.adc_bits=null", "crossbar.adc_mode=ideal", *overrides])
        assert torch.equal(integer_model(q, arch=spec)(x), exact(x))


def test_torch_and_numpy_crossbar_backends_give_identical_logits():
    # Signed inputs, grouped and depthwise convs, a saturating 5-bit full-range ADC, and
    # conductance variation with read noise: both backends of the crossbar model agree bit for bit.
    torch.manual_seed(1)
    m = _Mixed().eval()
    x = torch.rand(24, 1, 8, 8) - 0.3
    names = crossbar_layers(m, (1, 8, 8))
    q = quantize(m, dict(zip(names, [(4, 3), (8, 8), (3, 5), (5, 4), (6, 6), (2, 2)], strict=True)), x)
    for overrides in (
        ["crossbar.adc_bits=5", "crossbar.adc_mode=full_range", "crossbar.active_rows=16"],
        ["crossbar.mapping=differential-row", "crossbar.adc_bits=4"],
        ["crossbar.nonideal.conductance_sigma=0.05", "crossbar.nonideal.read_noise_sigma=0.02"],
    ):
        spec = arch_mod.load("demo", overrides)
        ref = integer_model(q, arch=spec, backend="numpy")(x)
        assert torch.equal(integer_model(q, arch=spec, backend="torch")(x), ref)
        assert not torch.equal(ref, integer_model(q)(x))  # the crossbar's losses are really there


def test_export_semantics_match_the_formula(lenet, digits):
    q = quantize_for(lenet, [(4, 4), (3, 5), (6, 2), (8, 8)], digits)
    layers = export_model(q)
    assert list(layers) == ["features.0", "features.3", "classifier.1", "classifier.3"]
    conv = layers["features.3"]
    assert conv.w_int.shape == (16 * 9, 32) and int(conv.w_int.abs().max()) <= 3
    x = torch.rand(5, 16, 4, 4) * 2
    x_int = act_integers(conv, x)
    assert float(x_int.min()) >= 0 and float(x_int.max()) <= 31
    cols = nn.functional.unfold(x_int, 3, padding=1).transpose(1, 2)  # [B, L, K] im2col
    y = conv.s_x * conv.s_w * (cols @ conv.w_int.double()) + conv.bias  # [B, L, N]
    ref = quant_layers(q)["features.3"].forward_exact(x)
    assert torch.allclose(y.transpose(1, 2).reshape(ref.shape), ref, rtol=0, atol=1e-12)
    # the float32 fake-quant path agrees with the exact one up to float rounding
    fq = quant_layers(q)["features.3"](x.float())
    assert torch.allclose(fq.double(), ref, atol=1e-4)
    assert layers_from_dicts(layers_to_dicts(layers))["features.3"].w_int.equal(conv.w_int)


@pytest.mark.parametrize(
    "kernel,stride,padding,dilation",
    [((3, 3), (1, 1), (1, 1), (1, 1)), ((3, 2), (2, 1), (0, 2), (1, 2)), ((1, 5), (1, 3), (0, 2), (1, 2))],
)
def test_unfold_inputs_is_torch_unfold_in_any_dtype(kernel, stride, padding, dilation):
    # the strided im2col gives F.unfold's rows and columns (for integer inputs too), and
    # fold puts row b * L + l, column n at [b, n, l]; the last case also as a conv1d
    k = 3 * kernel[0] * kernel[1]
    x = torch.randint(0, 16, (2, 3, 7 if kernel[0] > 1 else 1, 11)).double()
    ref = nn.functional.unfold(x, kernel, dilation, padding, stride).transpose(1, 2).reshape(-1, k)
    cases = [("conv2d", x, kernel, stride, padding, dilation)]
    if kernel[0] == 1:
        cases.append(("conv1d", x[:, :, 0], kernel[1:], stride[1:], padding[1:], dilation[1:]))
    for kind, xin, *geo in cases:
        layer = IntLayer("c", kind, torch.zeros(k, 2), 4, 4, False, 1.0, torch.ones(2), torch.zeros(2), *geo)
        for dtype in (torch.float64, torch.int16):
            cols, fold = unfold_inputs(layer, xin.to(dtype))
            assert cols.dtype == dtype and torch.equal(cols.double(), ref)
            acc = torch.arange(cols.shape[0] * 2).view(-1, 2)
            assert torch.equal(fold(acc).reshape(2, 2, -1).transpose(1, 2).reshape(-1, 2), acc)


def test_trained_lenet_hardware_identity_on_the_whole_test_set(lenet, digits):
    q = quantize_for(lenet, [(4, 4)] * 4, digits)
    finetune(q, digits, epochs=1, seed=0)
    res = evaluate_hardware(q, digits.test, IDEAL)
    assert res.samples == 359 and res.agreement == 1.0
    assert np.array_equal(res.fake_pred, res.hardware_pred)
    assert res.hardware == res.fake_quant == pytest.approx(accuracy(q, digits.test), abs=0.01)
    # the demo's 8-bit ADC never rounds (largest partial sum 64 * 1 * 3 < 256): identical too
    lossless = arch_mod.load("demo", ["crossbar.adc_bits=8"])
    assert np.array_equal(integer_model(q, arch=lossless)(digits.test.tensors[0]).argmax(1).numpy(), res.fake_pred)
    # a 3-bit ADC and 10 % conductance variation do change results, reproducibly
    lossy = arch_mod.load("demo", ["crossbar.adc_bits=3", "crossbar.nonideal.conductance_sigma=0.1"])
    a, b = evaluate_hardware(q, digits.test, lossy), evaluate_hardware(q, digits.test, lossy)
    assert a.agreement < 1.0 and np.array_equal(a.hardware_pred, b.hardware_pred)


def test_crossbar_backend_seeds_layers_independently(lenet, digits):
    q = quantize_for(lenet, [(4, 4)] * 4, digits)
    spec = arch_mod.load("demo", ["crossbar.nonideal.conductance_sigma=0.05"]).crossbar
    layers = export_model(q)
    b0 = CrossbarBackend(layers["features.0"], spec, 0)
    b1 = CrossbarBackend(layers["features.0"], spec, 1)
    assert not np.array_equal(b0.programmed[0].conductance, b1.programmed[0].conductance)


# ---------------------------------------------------------------- hardware-aware training
LOSSY = arch_mod.load("demo", ["crossbar.adc_mode=full_range"])  # 6-bit ADC, shift 2: rounds


def test_hardware_aware_forward_is_the_crossbar_and_backward_the_fake_quant(lenet, digits):
    x = digits.test.tensors[0][:64]
    # forward, whole network: the crossbar model's logits (up to float32 rounding), not fake quant's
    q = quantize_for(lenet, [(4, 4)] * 4, digits)
    fq_out = q(x).detach()
    hw_out = hardware_aware(q, LOSSY)(x).detach()
    assert torch.allclose(hw_out, integer_model(q, arch=LOSSY)(x).float(), rtol=1e-4, atol=1e-4)
    assert (hw_out - fq_out).abs().max() > 0.1
    assert all(layer.hardware_forward is None for layer in quant_layers(hardware_aware(q, None)).values())
    # backward, one layer under a linear loss (dL/dy = r whatever y is): exactly the fake-quant
    # gradients of the weights, bias and both scales (straight-through)
    torch.manual_seed(0)
    one = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.Flatten())
    q1 = quantize(one, {"0": (4, 4)}, x)
    r = torch.randn(64, 8 * 64)

    def grads() -> tuple[torch.Tensor, list[torch.Tensor]]:
        q1.zero_grad()
        out = q1(x)
        (out * r).sum().backward()
        return out.detach(), [p.grad.clone() for p in q1.parameters()]

    fq1, fq_grads = grads()
    hardware_aware(q1, LOSSY)
    hw1, hw_grads = grads()
    assert not torch.equal(fq1, hw1) and len(fq_grads) == 4
    for a, b in zip(fq_grads, hw_grads, strict=True):
        assert torch.equal(a, b)


def test_hardware_aware_finetune_trains_against_the_adc(lenet, digits):
    q = quantize_for(lenet, [(4, 4)] * 4, digits)
    rows = []
    finetune(q, digits, epochs=1, seed=0, hardware=LOSSY, callback=rows.append)
    assert [m.phase for m in rows] == ["hw-qat"]
    # the epoch's metrics are accuracies on the crossbar model; the hook is gone afterwards
    assert rows[0].val_acc == accuracy(integer_model(q, arch=LOSSY), digits.val)
    assert all(layer.hardware_forward is None for layer in quant_layers(q).values())


# ---------------------------------------------------------------- training and the search API
def test_training_is_seeded(digits):
    def run() -> list[float]:
        rows = []
        m = pretrain(models.build("mlp", seed=1), digits, epochs=2, seed=4, callback=lambda e: rows.append(e))
        q = quantize_for(m, [(4, 4)] * 3, digits, seed=4)
        finetune(q, digits, epochs=1, seed=4, callback=lambda e: rows.append(e))
        return [(r.train_loss, r.val_acc, r.test_acc) for r in rows]

    assert run() == run()


def test_evaluate_policy_is_fast_and_cached(lenet, digits):
    evaluate_policy(lenet, [(8, 8)] * 4, digits)  # calibration, once
    t0 = time.perf_counter()
    accs = {bits: evaluate_policy(lenet, [(bits, bits)] * 4, digits) for bits in (2, 3, 4, 8)}
    per_call = (time.perf_counter() - t0) / 4
    assert per_call < 1.0
    assert accs[8] >= accs[2] and accs[8] > 0.8
    assert evaluate_policy(lenet, [(4, 4)] * 4, digits) == accs[4]
    tuned = evaluate_policy(lenet, [(2, 2)] * 4, digits, finetune_epochs=2)
    assert tuned > accs[2] - 0.05
    on_ideal = evaluate_policy(lenet, [(4, 4)] * 4, digits, hardware=IDEAL)
    assert on_ideal == accs[4]  # both the integer model's: an ideal ADC changes nothing
    on_lossy = evaluate_policy(lenet, [(4, 4)] * 4, digits, hardware=arch_mod.load("demo", ["crossbar.adc_bits=3"]))
    assert on_lossy < on_ideal


def test_checkpoint_roundtrip_and_errors(tmp_path, lenet, digits):
    q = quantize_for(lenet, [(5, 6)] * 4, digits)
    names = crossbar_layers(lenet, (1, 8, 8))
    ckpt = Checkpoint(
        "lenet",
        10,
        (1, 8, 8),
        "digits",
        None,
        0,
        names,
        q.state_dict(),
        policy={n: (5, 6) for n in names},
        export=layers_to_dicts(export_model(q)),
        metrics={"test_acc": 0.5},
    )
    path = save_checkpoint(ckpt, tmp_path / "c.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary left over
    first = path.read_bytes()
    assert save_checkpoint(ckpt, path).read_bytes() == first  # same model, same bytes (no temp name inside)
    back = load_checkpoint(path)
    rebuilt = back.build()
    x = digits.test.tensors[0][:50]
    assert torch.equal(integer_model(rebuilt, back.int_layers())(x), integer_model(q)(x))
    assert back.metrics == {"test_acc": 0.5} and back.policy["features.0"] == (5, 6)
    with pytest.raises(CimdseError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "none.pt")
    (tmp_path / "bad.pt").write_bytes(path.read_bytes()[:100])
    with pytest.raises(CimdseError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "bad.pt")


# ---------------------------------------------------------------- exact evaluation
def _boundary_case() -> tuple:
    """A Linear(1, 2) classifying x > t, calibrated on 256 inputs in [0, 0.9] at W8A4,
    with t halfway between two input codes n and n + 1, and a float32 input x on that
    code boundary where float32 fake quant (``x / s`` rounded in float32: exactly
    n + 0.5, then to even) and the integer model (``x / s_x`` in float64) pick different
    codes, hence different classes."""
    from cimdse.data import make_splits
    from cimdse.quant.quantizers import MIN_SCALE
    from cimdse.quant.train import PolicyEvaluator

    train_x = np.linspace(0, 0.9, 256, dtype=np.float32)[:, None]

    def build(threshold: float) -> nn.Module:
        m = nn.Linear(1, 2)
        with torch.no_grad():
            m.weight.copy_(torch.tensor([[1.0], [-1.0]]))
            m.bias.copy_(torch.tensor([-threshold, threshold]))
        return nn.Sequential(m)

    def splits_with(val_x: np.ndarray, val_y: np.ndarray):
        x = np.concatenate([train_x, val_x])
        y = np.concatenate([np.zeros(256, dtype=np.int64), val_y])
        held = np.arange(256, len(x))
        return make_splits("boundary", x, y, [np.arange(256), held, held], 2)

    probe = splits_with(np.zeros((1, 1), np.float32), np.zeros(1, np.int64))
    q = PolicyEvaluator(build(0.0), probe).prepared.quantize([(8, 4)])
    layer, act_q = quant_layers(q)["0"].export(), quant_layers(q)["0"].act_q
    for n in range(15):  # the first input whose two codes differ, a few float32 steps from a boundary
        x0 = torch.tensor([(n + 0.5) * layer.s_x], dtype=torch.float32)
        for x in (x0, torch.nextafter(x0, x0 + 1), torch.nextafter(x0, x0 - 1)):
            with torch.no_grad():
                fq_code = int(torch.round(act_q(x) / act_q.scale.clamp_min(MIN_SCALE)))
            if fq_code != int(act_integers(layer, x)):
                val_x = np.array([[float(x)], [0.05], [0.85]], dtype=np.float32)
                model = build((n + 0.5) * layer.s_x)
                labels = integer_model(quantize(model, [(8, 4)], torch.from_numpy(train_x)))
                val_y = labels(torch.from_numpy(val_x)).argmax(1).numpy()
                return model, splits_with(val_x, val_y)
    raise AssertionError("no float32 input on a code boundary")


def test_reported_accuracy_is_the_integer_models_where_fake_quant_rounds_otherwise():
    from cimdse.search.accuracy import QATAccuracy

    model, splits = _boundary_case()
    q = quantize_for(model, [(8, 4)], splits)
    assert accuracy(q, splits.val) == pytest.approx(2 / 3)  # float32 fake quant: the boundary sample's other class
    assert accuracy(integer_model(q, arch=IDEAL), splits.val) == 1.0  # the crossbar agrees with the integer model
    # every accuracy reported is the integer model's: search, train's epoch metrics, evaluate_policy
    assert QATAccuracy(model, splits)(np.array([[8, 4]])) == 1.0
    assert evaluate_policy(model, [(8, 4)], splits) == 1.0
    rows = []
    finetune(q, splits, epochs=1, lr=0.0, callback=rows.append)  # no step: the same model
    assert (rows[0].val_acc, rows[0].test_acc) == (1.0, 1.0)


def test_exact_model_is_the_crossbar_model_bit_for_bit(lenet, digits):
    from cimdse.quant.exact import exact_accuracy, exact_model
    from cimdse.quant.export import FLOAT32_EXACT, exact_product, product_bound

    q = quantize_for(lenet, [(8, 8), (5, 3), (8, 6), (4, 8)], digits)
    finetune(q, digits, epochs=1, seed=0)
    x = digits.test.tensors[0]
    exact = exact_model(q)(x)
    assert torch.equal(exact, integer_model(q, arch=IDEAL)(x))  # logits, bit for bit

    def float64_product(lay, x_int: torch.Tensor) -> torch.Tensor:
        w = lay.weight_tensor()
        if lay.kind == "linear":
            return nn.functional.linear(x_int, w)
        return nn.functional.conv2d(x_int, w, None, lay.stride, lay.padding, lay.dilation, lay.groups)

    reference = integer_model(q)
    for layer in quant_layers(reference.model).values():  # the product in float64 throughout
        layer.backend = float64_product
    assert torch.equal(exact, reference(x))
    assert exact_accuracy(q, digits.test) == accuracy(integer_model(q, arch=IDEAL), digits.test)
    # large layers: the two-digit float32 product, then float64, still give the exact integers
    gen = torch.Generator().manual_seed(0)
    for k, path in ((2048, "sliced"), (16384, "float64")):
        w_int = torch.randint(-127, 128, (k, 3), generator=gen)
        w_int[:, 0] = 127  # the bound is reached
        lin = export_model(quantize(nn.Sequential(nn.Linear(k, 3)), [(8, 8)], torch.rand(4, k)))["0"]
        lin = dataclasses.replace(lin, w_int=w_int)
        x_int = torch.randint(0, 256, (5, k), generator=gen).double()
        assert (product_bound(lin) > FLOAT32_EXACT) and (product_bound(lin, sliced=True) <= FLOAT32_EXACT) == (
            path == "sliced"
        )
        ref = x_int.long() @ w_int
        assert torch.equal(exact_product(lin, x_int).double(), ref.double())
