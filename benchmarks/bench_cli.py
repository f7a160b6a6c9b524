"""CLI latency: ``cimdse --help``, every ``cimdse CMD --help``, ``cimdse layers --model
lenet`` and ``import torch`` alone, each a fresh process (cold for Python, warm for the
OS file cache: one warm-up run first), best of N, all in one run. Then, in one process,
a compile against a refusal of a large user model (the refusal no longer builds and
traces the model a second time on the CPU).

    python benchmarks/bench_cli.py [--repeat 5] [--compare OTHER_TREE]

``--compare`` times the same commands with another source tree first on the path (an
older checkout), in the same run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

COMMANDS = ["arch", "layers", "compile", "train", "evaluate", "search", "compare", "rtl", "verify", "sweep", "report"]

BIG_MODEL = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, refuse):
        super().__init__()
        self.refuse = refuse
        self.layers = nn.Sequential(*[nn.Linear(2048, 2048) for _ in range(24)])

    def forward(self, x):
        x = self.layers(x)
        return torch.cumsum(x, -1) if self.refuse else x


def ok():
    return Net(False)


def refused():
    return Net(True)
"""


def wall(cmd: list[str], repeat: int, root: Path = ROOT) -> float:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])))
    cwd = tempfile.gettempdir()  # not a source tree: ``python -m`` puts the working folder first on the path
    subprocess.run(cmd, env=env, capture_output=True, check=False, cwd=cwd)  # warm-up: OS file cache
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, capture_output=True, check=True, cwd=cwd)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--compare", type=Path, default=None, metavar="TREE", help="another source tree to time too")
    args = ap.parse_args()
    import torch

    py = [sys.executable]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# {os.cpu_count()} cores, load average {load:.1f}, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, best of {args.repeat} fresh processes")  # fmt: skip
    trees = [ROOT, *([args.compare.resolve()] if args.compare else [])]
    commands = [("python -c 'import torch'", ["-c", "import torch"]), ("cimdse --help", ["-m", "cimdse", "--help"])]
    commands += [(f"cimdse {c} --help", ["-m", "cimdse", c, "--help"]) for c in COMMANDS]
    commands.append(("cimdse layers --model lenet", ["-m", "cimdse", "layers", "--model", "lenet"]))
    rows = [(name, [wall([*py, *argv], args.repeat, tree) for tree in trees]) for name, argv in commands]
    print("| command | " + " | ".join(f"`{t.name}` (s)" for t in trees) + " |")
    print("|---|" + "---:|" * len(trees))
    for name, seconds in rows:
        print(f"| `{name}` | " + " | ".join(f"{s:.3f}" for s in seconds) + " |")
    torch_s, layers = rows[0][1][0], rows[-1][1][0]
    helps = [s[0] for name, s in rows if "--help" in name]
    print(
        f"\nslowest --help {max(helps):.3f} s (target < 0.5 s); layers --model lenet - import torch = "
        f"{layers - torch_s:.3f} s (target <= 1 s)"
    )

    for tree in trees:
        env = dict(os.environ, PYTHONPATH=str(tree), OPENBLAS_NUM_THREADS="1")
        out = subprocess.run([*py, str(Path(__file__).resolve()), "--refusal"], env=env, capture_output=True,
                             text=True, check=True).stdout  # fmt: skip
        print(f"`{tree.name}`: {out.strip()}")


def refusal() -> None:
    """In one process: a trace against a refusal of the same large user model."""
    import contextlib

    import torch

    torch.set_num_threads(1)
    from cimdse.compiler.frontend import trace_spec
    from cimdse.errors import CimdseError

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.py"
        path.write_text(BIG_MODEL)
        trace_spec(f"{path}:ok", (512, 2048))  # warm-up: first use of the meta kernels
        t0 = time.perf_counter()
        trace_spec(f"{path}:ok", (512, 2048))
        t_ok = time.perf_counter() - t0
        t0 = time.perf_counter()
        with contextlib.suppress(CimdseError):
            trace_spec(f"{path}:refused", (512, 2048))
        t_refused = time.perf_counter() - t0
    print(f"24 x Linear(2048, 2048) on 512 tokens (100M parameters), one process, 1 thread: trace {t_ok:.2f} s, "
          f"refusal (torch.cumsum) {t_refused:.2f} s")  # fmt: skip


if __name__ == "__main__":
    if sys.argv[1:] == ["--refusal"]:
        sys.path.remove(str(ROOT))  # the tree on PYTHONPATH is the one measured
        refusal()
    else:
        main()
