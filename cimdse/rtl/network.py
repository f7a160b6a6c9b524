"""A whole trained network run on generated tile instances.

Every crossbar layer of a checkpoint runs on tiles under a simulator, as
:func:`cimdse.rtl.layer.run_tiles` runs one layer (row blocks, column splits and conv
groups as the mapping cuts them); everything between the layers (ReLU, pooling,
flatten, folded batch norm, residual adds) is the model's own float64 code, exactly as
the crossbar model runs it (:func:`cimdse.quant.hardware.integer_model`): the RTL's
integers are dequantized, biased and handed on, and the next layer re-quantizes them.

Checks, image for image:

- each layer's RTL integers against the functional model of that layer
  (:func:`cimdse.rtl.layer.model_product`, the architecture's ADC) on the same inputs;
- the RTL network's predictions against those of the crossbar-model network run on
  its own (``integer_model(..., arch, backend="numpy")``), and against the exact
  fake-quant model's (equal when the ADC is lossless, reported otherwise).

Equal layer integers on equal inputs give equal inputs to the next layer, so a run with
no mismatch in any layer and identical predictions is the crossbar model, bit for bit.
Tiles of one shape and bit widths share one simulator build across layers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cimdse.arch import CrossbarSpec
from cimdse.crossbar import adc_is_lossless
from cimdse.errors import CimdseError
from cimdse.rtl.layer import model_product, resolve_arch, run_tiles


@dataclass
class NetLayer:
    """What one crossbar layer did on the tiles."""

    name: str
    kind: str
    w_bits: int
    a_bits: int
    tiles: int  # tile instances
    modules: int  # distinct tile shapes (one simulator build each, shared across layers)
    vectors: int  # input vectors through every instance
    mismatches: int  # vectors whose outputs differ from the functional model
    images_differing: int  # images with at least one differing vector
    cycles_ok: bool  # every instance's cycles per MVM equal the formula
    build_s: float
    sim_s: float  # simulator runs (programming, checked and streamed vectors)


@dataclass
class NetworkRun:
    """The network on the tiles and its comparisons."""

    arch: str
    simulator: str
    images: int
    lossless: bool
    layers: list[NetLayer] = field(default_factory=list)
    rtl_pred: np.ndarray | None = None
    model_pred: np.ndarray | None = None  # the crossbar-model network, run on its own
    fake_pred: np.ndarray | None = None  # the exact fake-quant model
    labels: np.ndarray | None = None
    seconds: float = 0.0

    @property
    def predictions_equal(self) -> bool:
        return self.rtl_pred is not None and np.array_equal(self.rtl_pred, self.model_pred)

    @property
    def ok(self) -> bool:
        layers_ok = all(lay.mismatches == 0 and lay.cycles_ok for lay in self.layers)
        exact = not self.lossless or np.array_equal(self.rtl_pred, self.fake_pred)
        return bool(self.layers) and layers_ok and self.predictions_equal and exact

    def table(self) -> list[str]:
        lines = [
            f"{'layer':16s} {'kind':7s} {'bits':>5s} {'tiles':>5s} {'modules':>7s} {'vectors':>7s} "
            f"{'mismatch':>8s} {'images':>6s} {'cycles':>6s} {'build_s':>7s} {'sim_s':>7s}"
        ]
        for lay in self.layers:
            lines.append(
                f"{lay.name:16s} {lay.kind:7s} {f'W{lay.w_bits}A{lay.a_bits}':>5s} {lay.tiles:5d} {lay.modules:7d} "
                f"{lay.vectors:7d} {lay.mismatches:8d} {lay.images_differing:6d} "
                f"{'ok' if lay.cycles_ok else 'FAIL':>6s} {lay.build_s:7.1f} {lay.sim_s:7.1f}"
            )
        return lines

    def summary_lines(self) -> list[str]:
        assert self.rtl_pred is not None and self.model_pred is not None and self.fake_pred is not None
        n = self.images
        acc = float((self.rtl_pred == self.labels).mean()) if n else float("nan")
        agree_fq = int((self.rtl_pred == self.fake_pred).sum())
        tiles = sum(lay.tiles for lay in self.layers)
        vectors = sum(lay.vectors for lay in self.layers)
        lines = [
            f"{len(self.layers)} crossbar layer(s) on {tiles} tile instance(s) ({self.arch}, {self.simulator}), "
            f"{n} image(s), {vectors} input vectors: "
            f"{sum(lay.mismatches for lay in self.layers)} differ from the functional model",
            f"predictions: RTL vs crossbar model {int((self.rtl_pred == self.model_pred).sum())} of {n} identical; "
            f"vs fake-quant {agree_fq} of {n}"
            + ("" if self.lossless else " (not required: the ADC may round or clip)")
            + f"; RTL accuracy {acc:.4f}",
            f"build {sum(lay.build_s for lay in self.layers):.1f} s, simulation "
            f"{sum(lay.sim_s for lay in self.layers):.1f} s, total {self.seconds:.1f} s",
            "result: " + ("ok" if self.ok else "FAIL"),
        ]
        return lines

    def failure(self) -> str:
        for lay in self.layers:
            if lay.mismatches or not lay.cycles_ok:
                return f"layer {lay.name}: {lay.mismatches} vector(s) differ, cycles {'ok' if lay.cycles_ok else 'off'}"
        if not self.predictions_equal:
            return "the predictions differ from the crossbar model's"
        return "the predictions differ from the fake-quant model's with a lossless ADC"


class _TileBackend:
    """A quantized layer's integer product on tile instances (what the crossbar model's
    backend computes), checked against the functional model on the same inputs."""

    def __init__(
        self,
        spec: CrossbarSpec,
        root: Path,
        run: NetworkRun,
        *,
        simulator: str,
        vectors: int,
        seed: int,
        progress: Callable[[str], None],
    ) -> None:
        self.spec, self.root, self.run = spec, root, run
        self.simulator, self.vectors, self.seed, self.say = simulator, vectors, seed, progress

    def __call__(self, layer, x_int: torch.Tensor) -> torch.Tensor:  # noqa: ANN001 - an IntLayer
        from cimdse.quant.export import unfold_inputs

        cols, fold = unfold_inputs(layer, x_int.cpu())
        x_all = cols.round().long().numpy()
        y_rtl, instances = run_tiles(
            layer, x_all, self.spec, self.root, simulator=self.simulator, vectors=self.vectors, seed=self.seed
        )
        bad = (y_rtl != model_product(layer, x_all, self.spec)).any(axis=1)
        per_image = len(x_all) // self.run.images
        lay = NetLayer(
            name=layer.name,
            kind=layer.kind,
            w_bits=layer.w_bits,
            a_bits=layer.a_bits,
            tiles=len(instances),
            modules=len({i.module for i in instances}),
            vectors=len(x_all),
            mismatches=int(bad.sum()),
            images_differing=int(bad.reshape(self.run.images, per_image).any(axis=1).sum()),
            cycles_ok=all(i.mismatches == 0 and i.cycles == [i.formula] for i in instances),
            build_s=sum(i.build_s for i in instances),
            sim_s=sum(i.sim_s for i in instances),
        )
        self.run.layers.append(lay)
        self.say(self.run.table()[-1])
        return fold(torch.from_numpy(y_rtl).double()).to(x_int.device)


def run_network(
    checkpoint: str | Path,
    root: Path,
    *,
    arch_name: str | None = None,
    overrides: list[str] | None = None,
    images: int = 16,
    simulator: str = "verilator",
    vectors: int = 4,
    seed: int = 0,
    data_dir: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> NetworkRun:
    """Run the first ``images`` test images of ``checkpoint`` through every crossbar
    layer on tile instances; see the module docstring."""
    from cimdse.data import load_dataset
    from cimdse.quant.apply import quant_layers
    from cimdse.quant.checkpoint import load_checkpoint
    from cimdse.quant.hardware import integer_model

    say = progress or (lambda line: None)
    start = time.perf_counter()
    ckpt = load_checkpoint(checkpoint)
    layers = ckpt.int_layers()
    arch = resolve_arch(ckpt.arch, arch_name, overrides or [])
    spec = arch.crossbar
    if spec.nonideal.any:
        raise CimdseError("the RTL tile is exact: switch the architecture's non-idealities off")
    splits = load_dataset(ckpt.dataset, data_dir or ckpt.data_dir, seed=0)
    x_img, labels = splits.test.tensors[0][:images], splits.test.tensors[1][:images]
    run = NetworkRun(arch.name, simulator, len(x_img), adc_is_lossless(spec), labels=labels.numpy())
    if run.images == 0:
        raise CimdseError(f"the {ckpt.dataset} test split is empty")
    qmodel = ckpt.build()
    with torch.no_grad():
        run.fake_pred = integer_model(qmodel, layers)(x_img).argmax(dim=1).numpy()
        run.model_pred = integer_model(qmodel, layers, spec, backend="numpy")(x_img).argmax(dim=1).numpy()
        say(
            f"{len(layers)} crossbar layer(s) of {ckpt.model} on {arch.name} ({spec.rows}x{spec.cols}, "
            f"{spec.mapping}, encoding {spec.encoding}), {run.images} test image(s), {simulator}"
        )
        say(run.table()[0])
        model = integer_model(qmodel, layers)
        backend = _TileBackend(spec, root, run, simulator=simulator, vectors=vectors, seed=seed, progress=say)
        for q in quant_layers(model).values():
            q.backend = backend
        run.rtl_pred = model(x_img).argmax(dim=1).numpy()
    run.seconds = time.perf_counter() - start
    return run
