"""Model zoo: structures match the usual definitions; user files load with clear errors."""

from __future__ import annotations

import pytest
import torch

from cimdse import models
from cimdse.errors import CimdseError

# Parameter counts of torchvision's definitions (and the digits models' own).
PARAMS = {
    "resnet18": 11_689_512,
    "vgg11": 132_863_336,
    "vgg16": 138_357_544,
    "mobilenetv2": 3_504_872,
    "lenet": 13_706,
    "mlp": 17_226,
    # 8 convs (5 taps, then 3): 1*32*5 + 32*32*3 + 32*64*3 + 64*64*3 + 64*96*3 + 96*96*3 + 96*128*3 + 128*128*3
    # = 153,760; BN 2 * 640 = 1,280; fc 128*10 + 10 = 1,290
    "cnn1d": 156_330,
}


@pytest.mark.parametrize("name", list(PARAMS))
def test_parameter_counts_match_reference_definitions(name):
    assert sum(p.numel() for p in models.build(name).parameters()) == PARAMS[name]


@pytest.mark.parametrize("name", ["mlp", "lenet", "resnet20", "cnn1d"])
def test_small_models_run_on_their_input_shape(name):
    shape = models.default_input_shape(name)
    out = models.build(name).eval()(torch.zeros(2, *shape))
    assert out.shape == (2, models.ZOO[name].num_classes)


def test_builds_are_seeded():
    a, b = models.build("lenet", seed=3), models.build("lenet", seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_user_model_file(tmp_path):
    path = tmp_path / "net.py"
    path.write_text("from torch import nn\n\ndef make():\n    return nn.Sequential(nn.Flatten(), nn.Linear(40, 3))\n")
    model = models.load_model(f"{path}:make")
    assert model(torch.zeros(1, 40)).shape == (1, 3)


@pytest.mark.parametrize(
    "body, spec_suffix, msg",
    [
        ("def make():\n    return 3\n", ":make", "returned int, not a torch.nn.Module"),
        ("def make():\n    raise ValueError('boom')\n", ":make", r"make\(\) failed: ValueError: boom"),
        ("import nonexistent_pkg\n", ":make", "failed to import: ModuleNotFoundError"),
        ("x = 1\n", ":make", "has no callable 'make'"),
    ],
)
def test_user_model_errors(tmp_path, body, spec_suffix, msg):
    path = tmp_path / "bad.py"
    path.write_text(body)
    with pytest.raises(CimdseError, match=msg):
        models.load_model(f"{path}{spec_suffix}")


def test_unknown_model_and_shapes():
    with pytest.raises(CimdseError, match="unknown model 'alexnet'"):
        models.load_model("alexnet")
    assert models.parse_input_shape("3x224x224") == (3, 224, 224)
    assert models.parse_input_shape("40") == (40,)
    with pytest.raises(CimdseError, match="expected dimensions"):
        models.parse_input_shape("3xabc")


def test_embedded_datasets_have_default_models():
    from cimdse.compiler import trace

    assert models.default_model("digits") == "lenet" and models.default_model("mnist1d:train=100") == "cnn1d"
    assert models.default_model("mnist") is None
    assert len(trace(models.build("cnn1d"), (1, 40)).layers) == 9  # 8 convs + the classifier on crossbars


def test_resnet18_policy_order_is_cim_aqs():
    """The shortcut conv comes before conv1 in each downsampling block (CIM-AQ's order):
    21 crossbar layers, a positional policy's entries 5..7 are layer2.0's."""
    from cimdse.compiler import trace_spec

    names = trace_spec("resnet18").names
    assert len(names) == 21 and names[0] == "conv1" and names[-1] == "fc"
    assert names[5:8] == ["layer2.0.downsample.0", "layer2.0.conv1", "layer2.0.conv2"]
    for stage in (2, 3, 4):
        assert names.index(f"layer{stage}.0.downsample.0") + 1 == names.index(f"layer{stage}.0.conv1")
