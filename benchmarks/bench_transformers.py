"""Transformers and recurrent nets on the compiler: MACs against published counts, the
ViT-B/16 compile time on isaac, and where the time goes.

    python benchmarks/bench_transformers.py [--repeat 3]

Models are the plain-torch copies of torchvision's definitions in
``tests/reference_models.py`` (no weights, built on the meta device), and the 2-layer
LSTM language model of Zaremba et al. (2014, medium). Compile time is the wall time of
the whole command ``cimdse compile --model tests/reference_models.py:vit_b_16 --input
3x224x224 --arch isaac --bits 8,8`` in a fresh process (Python start-up and imports
included), best of ``--repeat``, run with the thread settings printed beside it; the
in-process split is one run after the imports.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from reference_models import PUBLISHED_GMACS, REFERENCE, LSTMLanguageModel  # noqa: E402

from cimdse import arch, models  # noqa: E402
from cimdse.compiler import compile_network, policy_tables, trace  # noqa: E402
from cimdse.compiler.tables import digital_frame  # noqa: E402
from cimdse.policy import uniform_policy  # noqa: E402


def run_seconds(cmd: list[str], repeat: int, threads: int | None) -> tuple[float, float]:
    """Best wall time and best CPU time (user + system of the child) of ``cmd`` in a fresh process."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if threads is not None:
        env.update(OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    walls, cpus = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeat):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t = time.perf_counter()
            subprocess.run([c.replace("{tmp}", f"{tmp}/r{i}") for c in cmd], cwd=ROOT, env=env, check=True,
                           capture_output=True)  # fmt: skip
            walls.append(time.perf_counter() - t)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return min(walls), min(cpus)


def compile_cmd(model: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "cimdse", "compile", "--model", model, *extra, "--arch", "isaac", "--bits", "8,8",
            "--out", "{tmp}"]  # fmt: skip


def shares(cn, bits: int) -> str:  # noqa: ANN001
    pol = uniform_policy(bits, bits, cn.n_layers)
    layers, summary = policy_tables(cn, pol)
    d = digital_frame(cn, pol)
    parts = {"crossbar layers": layers["latency_share"].sum()}
    for (unit, cat), share in d.groupby(["unit", "category"])["latency_share"].sum().items():
        parts[f"{cat} ({unit})"] = share
    top = sorted(parts.items(), key=lambda kv: -kv[1])[:4]
    s = summary.iloc[0]
    return (
        f"W{bits}A{bits}: latency {s['latency_s'] * 1e3:8.3f} ms, energy {s['energy_j'] * 1e3:8.3f} mJ, "
        f"{s['mode']}; " + ", ".join(f"{k} {v:.1%}" for k, v in top)
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    print("## MACs against published counts (torchvision's weights metadata `_ops`)")
    print("| model | crossbar layers | crossbar GMACs | attention matmul GMACs | total | published | error | trace s |")
    print("|---|---|---|---|---|---|---|---|")
    nets = {}
    for name, (factory, shape) in REFERENCE.items():
        with torch.device("meta"):
            model = factory()
        t = time.perf_counter()
        net = trace(model, shape, name)
        dt = time.perf_counter() - t
        nets[name] = net
        total = (net.crossbar_macs + net.matmul_macs) / 1e9
        pub = PUBLISHED_GMACS[name]
        print(f"| {name} | {len(net.layers)} | {net.crossbar_macs / 1e9:.4f} | {net.matmul_macs / 1e9:.4f} | "
              f"{total:.4f} | {pub} | {(total / pub - 1) * 100:+.2f} % | {dt:.2f} |")  # fmt: skip
    with torch.device("meta"):
        lm = LSTMLanguageModel()
    net = trace(lm, (35,), "lstm_lm")
    formula = 35 * (2 * 4 * 650 * (650 + 650) + 650 * 10_000)
    print(f"| 2-layer LSTM LM (650 units, 35 steps) | {len(net.layers)} | {net.crossbar_macs / 1e9:.4f} | 0 | "
          f"{net.crossbar_macs / 1e9:.4f} | {formula / 1e9:.4f} (4H(I+H) per step and layer + decoder) | "
          f"{(net.crossbar_macs / formula - 1) * 100:+.2f} % | |")  # fmt: skip

    print(f"\n## ViT-B/16 compile on isaac, whole CLI command, fresh process (best of {args.repeat})")
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    vit_cmd = compile_cmd("tests/reference_models.py:vit_b_16", "--input", "3x224x224")
    cases = [
        ("vit_b_16, default threads", vit_cmd, None),
        ("vit_b_16, OMP/OPENBLAS/MKL_NUM_THREADS=1", vit_cmd, 1),
        ("resnet18 (zoo), same command", compile_cmd("resnet18"), None),
        ("python -c 'import torch' alone", [sys.executable, "-c", "import torch"], None),
    ]
    for label, cmd, threads in cases:
        wall, cpu = run_seconds(cmd, args.repeat, threads)
        print(f"- {label}: wall {wall:.2f} s, CPU (user + sys) {cpu:.2f} s")
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    t0 = time.perf_counter()
    with torch.device("meta"):
        model = models.load_model("tests/reference_models.py:vit_b_16")
    t1 = time.perf_counter()
    vit = trace(model, (3, 224, 224), "vit_b_16")
    t2 = time.perf_counter()
    cn = compile_network(vit, arch.load("isaac"))
    t3 = time.perf_counter()
    policy_tables(cn, uniform_policy(8, 8, cn.n_layers))
    t4 = time.perf_counter()
    print(f"- in process (imports done, first trace in the process): build on meta {t1 - t0:.2f} s, "
          f"trace {t2 - t1:.2f} s, map {t3 - t2:.3f} s, report {t4 - t3:.3f} s")  # fmt: skip

    print("\n## Where the time goes (share of one inference's latency)")
    for label, sets, matmul in (
        ("vit_b_16 isaac", [], "digital"),
        ("vit_b_16 isaac, --matmul crossbar", [], "crossbar"),
        ("vit_b_16 isaac-sized chip x4 (resident)", ["chip.tiles=672"], "digital"),
        ("swin_t isaac", [], "digital"),
    ):
        net = nets["swin_t"] if label.startswith("swin") else vit
        c = compile_network(net, arch.load("isaac", sets), matmul=matmul)
        for bits in (8, 4):
            print(f"- {label}: {shares(c, bits)}")
    c = compile_network(trace(lm, (35,), "lstm_lm"), arch.load("isaac"))
    for bits in (8, 4):
        print(f"- lstm_lm isaac: {shares(c, bits)}")


if __name__ == "__main__":
    main()
