"""``cimdse train`` and ``cimdse evaluate`` end to end, and their clear errors."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from cimdse.cli import main


def test_train_evaluate_and_continue(run_cli, tmp_path):
    """One flow (each step needs the one before): train, evaluate with an ideal ADC
    (hardware == fake-quant on every test sample), continue QAT from the checkpoint."""
    out = tmp_path / "train"
    proc = run_cli(
        "train",
        "--model",
        "lenet",
        "--dataset",
        "digits",
        "--bits",
        "4,4",
        "--epochs",
        "4",
        "--qat-epochs",
        "1",
        "--seed",
        "3",
        "--out",
        str(out),
        check=True,
    )
    m = pd.read_csv(out / "metrics.csv")
    assert {"epoch", "phase", "train_loss", "val_acc", "test_acc"} <= set(m.columns)
    assert m["phase"].tolist() == ["float"] * 4 + ["ptq", "qat"]
    assert (out / "checkpoint.pt").is_file()
    assert "W4A4" in proc.stdout and "train:" in proc.stderr  # the progress bar is on stderr

    ev_dir = tmp_path / "eval"
    proc = run_cli(
        "evaluate",
        "--checkpoint",
        str(out / "checkpoint.pt"),
        "--hardware",
        "--arch",
        "demo",
        "--set",
        "crossbar.adc_bits=null",
        "--set",
        "crossbar.adc_mode=ideal",
        "--out",
        str(ev_dir),
        check=True,
    )
    ev = pd.read_csv(ev_dir / "eval.csv").set_index("mode")
    assert list(ev.index) == ["fake_quant", "hardware"]
    assert ev.loc["hardware", "accuracy"] == ev.loc["fake_quant", "accuracy"]
    assert ev.loc["hardware", "agreement"] == 1.0
    pred = pd.read_csv(ev_dir / "predictions.csv")
    assert len(pred) == 359 and (pred["hardware"] == pred["fake_quant"]).all()
    assert "hardware" in proc.stdout

    # a quantized checkpoint continues QAT at its own policy (here given as a file)
    names = ["features.0", "features.3", "classifier.1", "classifier.3"]
    policy = tmp_path / "p.json"
    policy.write_text(json.dumps({n: [4, 4] for n in names}))
    proc = run_cli(
        "train",
        "--from",
        str(out / "checkpoint.pt"),
        "--policy",
        str(policy),
        "--qat-epochs",
        "1",
        "--quiet",
        "--out",
        str(tmp_path / "cont"),
        check=True,
    )
    assert pd.read_csv(tmp_path / "cont" / "metrics.csv")["phase"].tolist() == ["qat"]
    assert "W4A4" in proc.stdout

    # ADC-aware QAT from the same checkpoint, against a rounding 6-bit full-range ADC
    proc = run_cli(
        "train",
        "--from",
        str(out / "checkpoint.pt"),
        "--qat-epochs",
        "1",
        "--hardware-aware",
        "--arch",
        "demo",
        "--set",
        "crossbar.adc_mode=full_range",
        "--quiet",
        "--out",
        str(tmp_path / "hw"),
        check=True,
    )
    assert pd.read_csv(tmp_path / "hw" / "metrics.csv")["phase"].tolist() == ["hw-qat"]
    assert "hardware test" in proc.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--model", "lenet", "--dataset", "imagenet"], "unknown dataset 'imagenet'"),
        (["train", "--model", "lenet", "--policy", "{tmp}/missing.yaml"], "no such policy file"),
        (["train", "--model", "lenet", "--policy", "{tmp}/bad.yaml"], "no bit widths for 3 layer(s)"),
        (["train", "--model", "lenet", "--bits", "4,x"], "expected W,A"),
        (["train", "--model", "lenet", "--bits", "1,4"], "w_bits = 1 outside 2..8"),
        (["train", "--bits", "1,4"], "w_bits = 1 outside 2..8"),  # the model defaults to digits' own lenet
        (["train", "--dataset", "cifar10"], "--dataset cifar10 has no default model: give --model"),
        (["train", "--model", "resnet20"], "does not run on digits inputs"),
        (["train", "--model", "{tmp}/silent.py:make"], "(1, 8, 8) (RuntimeError: RuntimeError); use a model"),
        (["train", "--model", "lenet", "--device", "cuda:7"], "no CUDA device"),
        (["train", "--model", "lenet", "--bits", "4,4", "--hardware-aware"], "--hardware-aware needs --arch"),
        (["train", "--model", "lenet", "--hardware-aware", "--arch", "demo"], "--hardware-aware trains a quantized"),
        (["evaluate", "--checkpoint", "{tmp}/none.pt"], "no such checkpoint"),
        (["evaluate", "--checkpoint", "{tmp}/none.pt", "--device", "cuda:7"], "no CUDA device"),
        (["evaluate", "--checkpoint", "{tmp}/bad.yaml"], "not a readable checkpoint"),
    ],
)
def test_errors_exit_2_with_one_line_and_no_output(capsys, tmp_path, args, message):
    """In process (the same ``main`` the command runs): fast, and the same output."""
    (tmp_path / "bad.yaml").write_text("features.0: [4, 4]\n")
    (tmp_path / "silent.py").write_text(  # its forward raises an error without a message
        "import torch\nclass M(torch.nn.Linear):\n    def forward(self, x):\n        raise RuntimeError()\n"
        "def make():\n    return M(64, 10)\n"
    )
    out = tmp_path / "out"
    code = main([*[a.format(tmp=tmp_path) for a in args], "--quiet", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
    assert not out.exists()


def test_a_subprocess_error_has_no_traceback(run_cli, tmp_path):
    proc = run_cli("evaluate", "--checkpoint", str(tmp_path / "none.pt"), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and proc.stderr.strip().endswith("no such checkpoint")
    assert proc.stderr.count("\n") == 1 and not (tmp_path / "o").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_hardware_aware_training_and_evaluation_on_cuda(tmp_path):
    """ADC-aware QAT and hardware-accurate evaluation on the GPU, end to end; the
    evaluation agrees with the CPU's sample for sample (the crossbar model is bit-exact)."""
    common = ["--arch", "demo", "--set", "crossbar.adc_mode=full_range", "--quiet"]
    args = ["train", "--model", "lenet", "--bits", "4,4", "--epochs", "2", "--qat-epochs", "1", "--hardware-aware"]
    assert main([*args, *common, "--device", "cuda", "--out", str(tmp_path / "t")]) == 0
    ckpt = str(tmp_path / "t" / "checkpoint.pt")
    for device in ("cuda", "cpu"):
        ev = ["evaluate", "--checkpoint", ckpt, "--hardware", "--device", device, "--out", str(tmp_path / device)]
        assert main([*ev, *common]) == 0
    gpu, cpu = (pd.read_csv(tmp_path / d / "predictions.csv") for d in ("cuda", "cpu"))
    assert gpu["hardware"].equals(cpu["hardware"])
