"""A trained layer run on generated tile instances, checked against the models.

The layer's integer weights ``w`` [K, N] (one matrix per conv group) are cut as a
crossbar holds them (design.md section 4): row blocks of ``R`` physical rows (``R/2``
inputs for differential-row) and column splits of ``floor(C / (P * n_w))`` whole
outputs, ``P * n_w`` columns per output. Each block is programmed into its own tile
instance; the real integer activations of N test images (im2col rows for a conv)
stream through every instance, and the partial results combine digitally:

    y[:, outputs of split j] = sum over row blocks i of tile_ij(x[:, rows of block i])
    y -= 2^(a-1) * sum_k w[k, :]        (signed inputs, offset-encoded on the tile)

``y`` is compared bit-exactly with the functional model of the whole layer
(``crossbar.mvm``, the architecture's ADC) and, when that ADC is lossless, with the
fake-quant layer's integer product and its dequantized float64 output. Instances of
one shape share a module, so a simulator is built once per shape and re-programmed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from cimdse import crossbar
from cimdse.arch import ArchSpec, CrossbarSpec, apply_overrides, from_dict
from cimdse.arch import load as load_arch
from cimdse.compiler.ir import Layer
from cimdse.compiler.mapping import place
from cimdse.errors import CimdseError
from cimdse.rtl.generate import generate, tile_params
from cimdse.rtl.verify import build, iverilog_lint, load_outputs, run_bench, verilator_lint

if TYPE_CHECKING:
    from cimdse.quant.export import IntLayer


@dataclass
class Instance:
    """One tile instance of the layer: which weights it holds and what it did."""

    group: int
    row_block: int
    col_block: int
    rows: tuple[int, int]  # logical inputs [k0, k1)
    outputs: tuple[int, int]  # outputs [n0, n1) within the group
    module: str = ""
    vectors: int = 0
    mismatches: int = -1  # against the functional model of this block
    cycles: list[int] = field(default_factory=list)
    formula: int = 0
    build_s: float = 0.0  # building its module (shared by the instances of one shape: on the first)
    sim_s: float = 0.0  # simulating every instance of its shape (on the first)
    stream_s: float = 0.0


@dataclass
class LayerRun:
    """The layer's run on the RTL tiles and its comparisons."""

    layer: str
    kind: str
    arch: str
    simulator: str
    w_bits: int
    a_bits: int
    signed: bool
    images: int
    vectors: int  # input vectors per instance (M)
    outputs: int  # N of the layer
    compiler_crossbars: int  # t_l of the compiler's mapping
    instances: list[Instance]
    vs_model: int  # output values differing from the functional model
    vs_fake_quant: int  # output values differing from the fake-quant integer product
    float_equal: bool | None  # dequantized outputs identical to the fake-quant layer's (lossless ADC)
    lossless: bool
    model_vs_fake_quant: int  # how many the functional model itself differs (the ADC's effect)

    @property
    def ok(self) -> bool:
        per_tile = all(i.mismatches == 0 and i.cycles == [i.formula] for i in self.instances)
        exact = not self.lossless or (self.vs_fake_quant == 0 and bool(self.float_equal))
        return per_tile and self.vs_model == 0 and exact

    def failure(self) -> str:
        bad = [i for i in self.instances if i.mismatches != 0 or i.cycles != [i.formula]]
        if bad:
            i = bad[0]
            return f"tile g{i.group} r{i.row_block} c{i.col_block}: {i.mismatches} mismatches, cycles {i.cycles}"
        if self.vs_model:
            return f"{self.vs_model} output values differ from the functional model"
        return f"{self.vs_fake_quant} output values differ from the fake-quant layer"

    def summary_lines(self) -> list[str]:
        total = self.vectors * self.outputs
        adc = "lossless ADC" if self.lossless else "lossy ADC"
        lines = [
            f"layer {self.layer} ({self.kind}, W{self.w_bits}A{self.a_bits}{', signed inputs' if self.signed else ''})"
            f" on {self.arch} ({adc}), {self.simulator}: {len(self.instances)} tile instance(s) "
            f"(the compiler counts {self.compiler_crossbars} crossbar(s)), {self.images} image(s), "
            f"{self.vectors} input vectors x {self.outputs} outputs",
            f"RTL vs functional model (whole layer):   {self.vs_model} of {total} output values differ",
        ]
        if self.lossless:
            lines.append(f"RTL vs fake-quant integer product:       {self.vs_fake_quant} of {total} differ")
            lines.append(f"RTL dequantized vs fake-quant output:    {'identical' if self.float_equal else 'DIFFERENT'}")
        else:
            lines.append(
                f"RTL vs fake-quant integer product:       {self.vs_fake_quant} of {total} differ "
                f"(not required: the ADC may round or clip; the functional model differs in "
                f"{self.model_vs_fake_quant}; with an ideal ADC they must be equal)"
            )
        lines.append("result: " + ("ok" if self.ok else "FAIL"))
        return lines


def _layer_inputs(qmodel: torch.nn.Module, layers: dict, name: str, x: torch.Tensor) -> tuple:
    """The layer's input and output in the exact fake-quant model (float64)."""
    from cimdse.quant.hardware import integer_model

    model = integer_model(qmodel, layers)
    target = next((m for m in model.modules() if getattr(m, "qname", None) == name), None)
    if target is None:  # pragma: no cover - quant_layers and the export agree
        raise CimdseError(f"layer {name!r} not found in the model")
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    handle = target.register_forward_hook(lambda m, inp, out: seen.append((inp[0].detach(), out.detach())))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return seen[0]


def resolve_arch(ckpt_arch: dict | None, name: str | None, overrides: list[str]) -> ArchSpec:
    """The named architecture, else the checkpoint's own, else ``demo`` (with overrides)."""
    if name:
        return load_arch(name, overrides)
    if ckpt_arch is not None:
        return from_dict(apply_overrides(ckpt_arch, overrides), "checkpoint arch")
    return load_arch("demo", overrides)


def run_layer(
    checkpoint: str | Path,
    name: str,
    root: Path,
    *,
    arch_name: str | None = None,
    overrides: list[str] | None = None,
    images: int = 2,
    simulator: str = "icarus",
    vectors: int = 4,
    seed: int = 0,
    data_dir: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> LayerRun:
    """Run layer ``name`` of ``checkpoint`` on tile instances; see the module docstring."""
    from cimdse.data import load_dataset
    from cimdse.quant.checkpoint import load_checkpoint
    from cimdse.quant.export import act_integers, int_product, unfold_inputs

    say = progress or (lambda line: None)
    ckpt = load_checkpoint(checkpoint)
    layers = ckpt.int_layers()
    if name not in layers:
        raise CimdseError(f"no crossbar layer {name!r} in {checkpoint}; its layers: {', '.join(layers)}")
    layer = layers[name]
    arch = resolve_arch(ckpt.arch, arch_name, overrides or [])
    spec = arch.crossbar
    if spec.nonideal.any:
        raise CimdseError("the RTL tile is exact: switch the architecture's non-idealities off")
    splits = load_dataset(ckpt.dataset, data_dir or ckpt.data_dir, seed=0)
    x_img = splits.test.tensors[0][:images]
    images = len(x_img)

    x_in, y_float = _layer_inputs(ckpt.build(), layers, name, x_img)
    x_int = act_integers(layer, x_in)
    cols, _ = unfold_inputs(layer, x_int)
    x_all = cols.round().long().numpy()  # [M, groups * K]
    acc_fq = int_product(layer, x_int)  # the fake-quant integer product, layer-shaped
    y_fq = _rows(layer.kind, acc_fq)  # [M, N]
    compiler = place(
        Layer(name=name, kind=layer.kind, K=layer.k, N=layer.n, V=1, groups=layer.groups), spec, layer.w_bits
    ).crossbars
    y_rtl, instances = run_tiles(
        layer, x_all, spec, root, simulator=simulator, vectors=vectors, seed=seed, progress=say, images=images
    )
    y_model = model_product(layer, x_all, spec)
    lossless = crossbar.adc_is_lossless(spec)
    float_equal = None
    if lossless:
        _, fold = unfold_inputs(layer, x_int)
        acc = fold(torch.from_numpy(y_rtl).double())
        shape = (1, -1) + (1,) * (acc.dim() - 2) if layer.kind != "linear" else (-1,)
        float_equal = bool(torch.equal(acc * layer.out_scale().view(shape) + layer.bias.view(shape), y_float))
    return LayerRun(
        layer=name,
        kind=layer.kind,
        arch=arch.name,
        simulator=simulator,
        w_bits=layer.w_bits,
        a_bits=layer.a_bits,
        signed=layer.signed,
        images=images,
        vectors=len(x_all),
        outputs=layer.n,
        compiler_crossbars=compiler,
        instances=instances,
        vs_model=int((y_rtl != y_model).sum()),
        vs_fake_quant=int((y_rtl != y_fq).sum()),
        float_equal=float_equal,
        lossless=lossless,
        model_vs_fake_quant=int((y_model != y_fq).sum()),
    )


def tile_instances(layer: IntLayer, spec: CrossbarSpec) -> list[Instance]:
    """The layer cut as a crossbar holds it: per conv group, row blocks of ``rows``
    physical rows x column splits of whole outputs (see the module docstring)."""
    ng, kg = layer.n // layer.groups, layer.k
    per_out = crossbar.polarities(spec) * crossbar.cells_per_weight(spec, layer.w_bits)
    out_per_tile = spec.cols // per_out
    rows_per_tile = spec.rows // (2 if crossbar.signed_sums(spec) else 1)
    if out_per_tile < 1:
        tile_params(spec, layer.w_bits, layer.a_bits)  # raises the tile's own message
    instances = []
    for g in range(layer.groups):
        for i in range(math.ceil(kg / rows_per_tile)):
            for j in range(math.ceil(ng / out_per_tile)):
                k0, n0 = i * rows_per_tile, j * out_per_tile
                instances.append(Instance(g, i, j, (k0, min(kg, k0 + rows_per_tile)), (n0, min(ng, n0 + out_per_tile))))
    return instances


def run_tiles(
    layer: IntLayer,
    x_all: np.ndarray,
    spec: CrossbarSpec,
    root: Path,
    *,
    simulator: str = "icarus",
    vectors: int = 4,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    images: int | None = None,
) -> tuple[np.ndarray, list[Instance]]:
    """The layer's integer product of ``x_all`` [M, groups * K] (its integer inputs,
    signed when the layer's are) on tile instances: each instance programmed with its
    block, every input vector streamed through it (the first ``vectors`` checked cycle
    by cycle), row blocks added, the signed-input offset removed. Returns y [M, N] and
    the instances with what each did; ``progress`` gets a line per instance."""
    say = progress or (lambda line: None)
    ng, kg = layer.n // layer.groups, layer.k
    w_all = layer.w_int.cpu().numpy()
    half = 2 ** (layer.a_bits - 1) if layer.signed else 0
    x_tile = x_all + half  # unsigned a-bit on the tile (offset-encoded when signed)
    instances = tile_instances(layer, spec)
    m = x_tile.shape[0]
    from_images = f" from {images} image(s)" if images is not None else ""
    say(
        f"{layer.name}: K={kg} N={layer.n}{f' groups={layer.groups}' if layer.groups > 1 else ''}, {m} input vectors"
        f"{from_images}; {len(instances)} tile instance(s) on {spec.rows}x{spec.cols} ({simulator})"
    )
    say(
        f"{'tile':>10s} {'inputs':>9s} {'outputs':>9s} {'module':38s} {'vectors':>7s} {'mismatch':>8s} "
        f"{'cycles':>6s} {'formula':>7s} {'build_s':>7s} {'MVM/s':>7s}"
    )

    y_rtl = np.zeros((m, layer.n), dtype=np.int64)
    shapes: dict[tuple[int, int], list[Instance]] = {}
    for inst in instances:
        shapes.setdefault((inst.rows[1] - inst.rows[0], inst.outputs[1] - inst.outputs[0]), []).append(inst)
    for (k_b, n_b), group_insts in shapes.items():
        folder = root / f"tile_k{k_b}_n{n_b}_w{layer.w_bits}a{layer.a_bits}_{simulator}"
        folder.mkdir(parents=True, exist_ok=True)
        tile = generate(spec, layer.w_bits, layer.a_bits, folder, k=k_b, n=n_b)
        if simulator == "icarus":
            iverilog_lint(tile.path, folder)
        else:
            verilator_lint(tile.path)
        build_s = build(tile, simulator, folder)
        jobs = []
        for idx, inst in enumerate(group_insts):
            (k0, k1), (n0, n1), g = inst.rows, inst.outputs, inst.group
            w_blk = w_all[k0:k1, g * ng + n0 : g * ng + n1]
            x_blk = x_tile[:, g * kg + k0 : g * kg + k1]
            data = folder / f"job{idx}.npz"
            np.savez(data, w=w_blk, x=x_blk)
            jobs.append((data, folder / f"job{idx}_y.npy"))
        start = time.perf_counter()
        summary, _passed, log = run_bench(
            tile, simulator, folder, folder / "run", vectors=min(vectors, m), stream=0, seed=seed, jobs=jobs
        )
        sim_s = time.perf_counter() - start
        if not summary:
            raise CimdseError(f"the simulation of {tile.module} did not finish; see {log}")
        for idx, (inst, job) in enumerate(zip(group_insts, summary["jobs"], strict=True)):
            (n0, n1), g = inst.outputs, inst.group
            y_blk = load_outputs(jobs[idx][1], m, n1 - n0)
            y_rtl[:, g * ng + n0 : g * ng + n1] += y_blk  # row blocks add up
            inst.module, inst.vectors, inst.mismatches = tile.module, job["vectors"], job["mismatches"]
            inst.cycles, inst.formula = job["cycles_measured"], job["cycles_formula"]
            inst.build_s = build_s if idx == 0 else 0.0
            inst.sim_s = sim_s if idx == 0 else 0.0
            inst.stream_s = job["stream_seconds"]
            rate = f"{job['stream_vectors'] / inst.stream_s:7.0f}" if inst.stream_s else f"{'-':>7s}"
            say(
                f"{f'g{g} r{inst.row_block} c{inst.col_block}':>10s} {f'{inst.rows[0]}-{inst.rows[1] - 1}':>9s} "
                f"{f'{n0}-{n1 - 1}':>9s} {tile.module:38s} {inst.vectors:7d} {inst.mismatches:8d} "
                f"{','.join(map(str, inst.cycles)) or '-':>6s} {inst.formula:7d} {inst.build_s:7.1f} {rate}"
            )
    if half:
        y_rtl -= half * w_all.sum(axis=0)[None, :]
    return y_rtl, instances


def model_product(layer: IntLayer, x_all: np.ndarray, spec: CrossbarSpec) -> np.ndarray:
    """The functional model of the whole layer on ``x_all`` [M, groups * K]: each conv
    group its own programmed matrix, the architecture's ADC."""
    ng, kg = layer.n // layer.groups, layer.k
    w_all = layer.w_int.cpu().numpy()
    return np.concatenate(
        [
            crossbar.mvm(
                x_all[:, g * kg : (g + 1) * kg],
                crossbar.program(w_all[:, g * ng : (g + 1) * ng], spec, layer.w_bits),
                a_bits=layer.a_bits,
                signed_inputs=layer.signed,
            )
            for g in range(layer.groups)
        ],
        axis=1,
    )


def _rows(kind: str, acc: torch.Tensor) -> np.ndarray:
    """A layer-shaped product [B, N, ...] as rows [M, N] in the im2col order."""
    if kind == "linear":
        return acc.reshape(-1, acc.shape[-1]).round().long().numpy()
    n = acc.shape[1]
    return acc.reshape(acc.shape[0], n, -1).transpose(1, 2).reshape(-1, n).round().long().numpy()
