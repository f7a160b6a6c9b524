"""Front end: a ``torch.nn.Module`` plus an input shape -> :class:`Network`.

The model is traced with ``torch.fx.symbolic_trace`` and its shapes are propagated
without computing anything: on the meta device when the model's weights are there
(the CLI builds zoo models on meta), else under a FakeTensorMode. Every graph node is
then either a crossbar layer (conv, linear), folded into one (a BatchNorm right after
it), a digital op (activation, pooling, add, concat, unfolded norm) or free data
movement (flatten, reshape, dropout, shape arithmetic). Anything else is an error
that names the op and the module path it sits in.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from cimdse.compiler.ir import DigitalOp, Layer, Network
from cimdse.errors import CimdseError, first_line

MAX_INPUT_ELEMENTS = 2**31 - 1  # one sample; beyond it a shape is a typo, not a network

SUPPORTED = (
    "Conv1d/Conv2d (any stride, padding, dilation, groups), Linear, BatchNorm (folded), elementwise activations, "
    "max/avg/adaptive pooling, add/sub/mul, concat, flatten/reshape/view, dropout"
)

_ACT_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Sigmoid,
    nn.Tanh, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softplus, nn.Softmax, nn.LogSoftmax,
)  # fmt: skip
_POOL_MODULES: tuple[type[nn.Module], ...] = (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d)
_ADAPTIVE_MODULES: tuple[type[nn.Module], ...] = (
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
)  # fmt: skip
_NORM_MODULES: tuple[type[nn.Module], ...] = (nn.BatchNorm1d, nn.BatchNorm2d)
_DIGITAL_NORM_MODULES: tuple[type[nn.Module], ...] = (nn.LayerNorm, nn.GroupNorm)
_FREE_MODULES: tuple[type[nn.Module], ...] = (nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout, nn.Dropout1d,
                                              nn.Dropout2d, nn.AlphaDropout)  # fmt: skip

_ACT_FUNCTIONS = {
    F.relu, torch.relu, F.relu_, torch.relu_, F.relu6, F.leaky_relu, F.elu, F.selu, F.gelu, F.silu, F.mish,
    F.hardtanh, F.hardswish, F.hardsigmoid, F.softplus, F.sigmoid, torch.sigmoid, F.tanh, torch.tanh, F.softmax,
    torch.softmax, F.log_softmax, torch.clamp, torch.clip,
}  # fmt: skip
_ACT_METHODS = {"relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "clamp", "clamp_", "clip", "softmax"}
_POOL_FUNCTIONS = {
    F.max_pool1d, F.max_pool2d, F.avg_pool1d, F.avg_pool2d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d,
    F.adaptive_max_pool1d, F.adaptive_max_pool2d, torch.mean, torch.amax,
}  # fmt: skip
_POOL_METHODS = {"mean", "amax"}
_ADD_TARGETS = {operator.add, operator.iadd, operator.sub, operator.isub, torch.add, torch.sub, "add", "add_", "sub"}
_MUL_TARGETS = {operator.mul, operator.imul, operator.truediv, torch.mul, torch.div, "mul", "mul_", "div"}
_CONCAT_TARGETS = {torch.cat, torch.concat, torch.stack}
_FREE_TARGETS = {
    torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze, torch.permute, torch.transpose, torch.chunk,
    torch.split, F.dropout, operator.getitem, getattr, "flatten", "view", "reshape", "squeeze", "unsqueeze",
    "permute", "transpose", "contiguous", "size", "dim", "chunk", "split", "clone", "detach", "to", "float",
    "type_as", "expand", "expand_as", "view_as", "reshape_as",
}  # fmt: skip


_DIGITAL_CATEGORIES = ("activation", "pool", "add", "elementwise", "concat", "norm")


def trace_spec(model: str, input_shape: Sequence[int] | None = None) -> Network:
    """Trace a zoo name or ``path/to/file.py:factory``; zoo models default to their
    usual input and are built on the meta device (no weights are needed to map them)."""
    from cimdse import models

    if model in models.ZOO:
        with torch.device("meta"):
            module = models.build(model)
        name = model
    else:
        module = models.load_model(model)  # an unknown name is reported here, first
        path_text, _, factory = model.rpartition(":")
        name = f"{Path(path_text).name}:{factory}"  # the factory, not just the file
    shape = input_shape or models.default_input_shape(model)
    if shape is None:
        raise CimdseError(f"{model}: --input is required for a user model (e.g. --input 3x32x32)")
    return trace(module, shape, name)


def trace(model: nn.Module, input_shape: Sequence[int], name: str = "model") -> Network:
    """Trace ``model`` for one sample of ``input_shape`` (no batch dimension)."""
    shape = tuple(int(d) for d in input_shape)
    if not shape or any(d <= 0 for d in shape):
        raise CimdseError(f"{name}: input shape {shape} must be positive dimensions, e.g. 3x224x224")
    if math.prod(shape) > MAX_INPUT_ELEMENTS:
        raise CimdseError(
            f"{name}: input shape {'x'.join(map(str, shape))} has {math.prod(shape)} elements per sample; "
            f"at most {MAX_INPUT_ELEMENTS} (2^31 - 1) are supported"
        )
    try:
        gm = fx.symbolic_trace(model)
    except Exception as err:  # noqa: BLE001 - any tracing failure is the model's, reported in one line
        raise CimdseError(
            f"{name}: torch.fx cannot trace the model ({type(err).__name__}: {first_line(err)}); "
            "data-dependent control flow in forward() is not supported"
        ) from None
    modes = {m: m.training for m in model.modules()}
    model.eval()  # inference shapes: batch norm on one sample must not need batch statistics
    try:
        _propagate_shapes(gm, model, shape, name)
    finally:
        for m, training in modes.items():
            m.train(training)
    return _Lowering(gm, name, shape).run()


# ---------------------------------------------------------------- shapes
class _NodeFailure(Exception):
    def __init__(self, node: fx.Node, err: Exception) -> None:
        super().__init__(str(err))
        self.node, self.err = node, err


class _ShapeRecorder(fx.Interpreter):
    """Runs the graph on meta/fake tensors and stores each node's output shape."""

    def run_node(self, n: fx.Node) -> Any:
        try:
            result = super().run_node(n)
        except Exception as err:  # noqa: BLE001
            raise _NodeFailure(n, err) from None
        n.meta["cimdse_shape"] = tuple(result.shape) if isinstance(result, torch.Tensor) else None
        return result


def _propagate_shapes(gm: fx.GraphModule, model: nn.Module, shape: tuple[int, ...], name: str) -> None:
    tensors = [*model.parameters(), *model.buffers()]
    try:
        if tensors and all(t.is_meta for t in tensors):
            _ShapeRecorder(gm).run(torch.empty((1, *shape), device="meta"))
        else:
            from torch._subclasses.fake_tensor import FakeTensorMode

            device = tensors[0].device if tensors else torch.device("cpu")
            with FakeTensorMode(allow_non_fake_inputs=True):
                _ShapeRecorder(gm).run(torch.empty((1, *shape), device=device))
    except _NodeFailure as failure:
        n = failure.node
        problem = _unsupported(gm, n)
        if problem:
            raise CimdseError(f"{name}: {problem}") from None
        raise CimdseError(
            f"{name}: input shape {'x'.join(map(str, shape))} does not fit the model: {_describe(gm, n)} "
            f"at {_where(gm, n)} failed: {type(failure.err).__name__}: {first_line(failure.err)}"
        ) from None


# ---------------------------------------------------------------- classification
def _module_path(n: fx.Node) -> str:
    if n.op == "call_module":
        return str(n.target)
    stack = n.meta.get("nn_module_stack")
    if stack:
        return str(list(stack.values())[-1][0])
    return ""


def _where(gm: fx.GraphModule, n: fx.Node) -> str:
    path = _module_path(n)
    return f"module '{path}'" if path else "the top-level forward()"


def _describe(gm: fx.GraphModule, n: fx.Node) -> str:
    if n.op == "call_module":
        cls = type(gm.get_submodule(str(n.target)))
        mod = cls.__module__
        return f"nn.{cls.__name__}" if mod.startswith("torch.nn") else f"{mod}.{cls.__name__}"
    if n.op == "call_method":
        return f"Tensor.{n.target}"
    t = n.target
    mod = getattr(t, "__module__", None) or ""
    return f"{mod}.{getattr(t, '__name__', str(t))}".lstrip(".")


def _category(gm: fx.GraphModule, n: fx.Node) -> str | None:
    """What a node is: layer, bn, activation, pool, add, mul, concat, norm, free, io; None if unsupported."""
    if n.op in ("placeholder", "output", "get_attr"):
        return "io"
    if n.op == "call_module":
        mod = gm.get_submodule(str(n.target))
        if isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            return "layer"
        if isinstance(mod, _NORM_MODULES):
            return "bn"
        if isinstance(mod, _ACT_MODULES):
            return "activation"
        if isinstance(mod, _POOL_MODULES + _ADAPTIVE_MODULES):
            return "pool"
        if isinstance(mod, _DIGITAL_NORM_MODULES):
            return "norm"
        if isinstance(mod, _FREE_MODULES):
            return "free"
        return None
    t = n.target
    if t in _FREE_TARGETS:
        return "free"
    if t in _ACT_FUNCTIONS or t in _ACT_METHODS:
        return "activation"
    if t in _POOL_FUNCTIONS or t in _POOL_METHODS:
        return "pool"
    if t in _ADD_TARGETS:
        return "add"
    if t in _MUL_TARGETS:
        return "elementwise"
    if t in _CONCAT_TARGETS:
        return "concat"
    return None


def _unsupported(gm: fx.GraphModule, n: fx.Node) -> str | None:
    if _category(gm, n) is not None:
        return None
    if n.op != "call_module" and "cimdse_shape" in n.meta and n.meta["cimdse_shape"] is None:
        return None  # arithmetic on sizes and other non-tensor values
    return f"unsupported op {_describe(gm, n)} at {_where(gm, n)} (graph node '{n.name}'); supported: {SUPPORTED}"


# ---------------------------------------------------------------- lowering
def _tuple(v: Any) -> tuple[int, ...]:
    if isinstance(v, (tuple, list)):
        return tuple(int(x) for x in v)
    if isinstance(v, int):
        return (v,)
    return ()


def _numel(shape: tuple[int, ...] | None) -> int:
    return math.prod(shape[1:]) if shape else 0


class _Lowering:
    def __init__(self, gm: fx.GraphModule, name: str, shape: tuple[int, ...]) -> None:
        self.gm, self.name, self.shape = gm, name, shape
        self.layers: dict[str, Layer] = {}
        self.layer_of_node: dict[fx.Node, str] = {}
        self.digital: list[DigitalOp] = []
        self.seen: dict[str, int] = {}
        self.last_layer = ""

    def run(self) -> Network:
        for n in self.gm.graph.nodes:
            problem = _unsupported(self.gm, n)
            if problem:
                raise CimdseError(f"{self.name}: {problem}")
            cat = _category(self.gm, n)
            if cat == "layer":
                self._layer(n)
            elif cat == "bn":
                self._batchnorm(n)
            elif cat in _DIGITAL_CATEGORIES and n.meta.get("cimdse_shape") is not None:
                self._digital(n, cat)  # (x + 1 on sizes, with no tensor out, is shape arithmetic)
        if not self.layers:
            raise CimdseError(f"{self.name}: no Conv1d/Conv2d/Linear layer to map onto crossbars")
        return Network(list(self.layers.values()), self.digital, self.shape, self.name)

    def _in_shape(self, n: fx.Node) -> tuple[int, ...]:
        arg = n.args[0] if n.args else None
        return arg.meta.get("cimdse_shape") or () if isinstance(arg, fx.Node) else ()

    def _layer(self, n: fx.Node) -> None:
        target = str(n.target)
        mod = self.gm.get_submodule(target)
        ins, outs = self._in_shape(n), n.meta["cimdse_shape"]
        if isinstance(mod, nn.Linear):
            layer = Layer(
                target, "linear", mod.in_features, mod.out_features, V=max(1, math.prod(ins[1:-1])),
                in_shape=ins[1:], out_shape=outs[1:], bias=mod.bias is not None,
            )  # fmt: skip
        else:
            assert isinstance(mod, (nn.Conv1d, nn.Conv2d))
            kernel = _tuple(mod.kernel_size)
            layer = Layer(
                target, "conv1d" if isinstance(mod, nn.Conv1d) else "conv2d",
                K=mod.in_channels // mod.groups * math.prod(kernel), N=mod.out_channels, V=math.prod(outs[2:]),
                groups=mod.groups, kernel=kernel, stride=_tuple(mod.stride), padding=_tuple(mod.padding),
                dilation=_tuple(mod.dilation), in_shape=ins[1:], out_shape=outs[1:], bias=mod.bias is not None,
            )  # fmt: skip
        old = self.layers.get(target)
        if old is not None:  # a module called twice: its weights are mapped once, its MVMs add up
            layer = dataclasses.replace(old, V=old.V + layer.V)
        self.layers[target] = layer
        self.layer_of_node[n] = target
        self.last_layer = target

    def _batchnorm(self, n: fx.Node) -> None:
        src = n.args[0] if n.args else None
        owner = self.layer_of_node.get(src) if isinstance(src, fx.Node) else None
        if owner is not None and len(src.users) == 1 and self.layers[owner].folded_bn is None:
            self.layers[owner] = dataclasses.replace(self.layers[owner], folded_bn=str(n.target))
            self.layer_of_node[n] = owner
            return
        self._digital(n, "norm")  # not right after a layer: a per-element affine on the digital unit

    def _digital(self, n: fx.Node, category: str) -> None:
        outs = n.meta["cimdse_shape"]
        elements = _numel(outs)
        kind = _describe(self.gm, n).split(".")[-1].lower()
        if category == "pool":
            ks = getattr(self.gm.get_submodule(str(n.target)), "kernel_size", None) if n.op == "call_module" else None
            if ks is None:  # adaptive or functional pooling: every input element is read once
                elements = max(_numel(self._in_shape(n)), elements)
            else:  # a k x k window per output element
                ks = _tuple(ks)
                elements = _numel(outs) * math.prod(ks * (len(outs) - 2) if len(ks) == 1 else ks)
        name = str(n.target) if n.op == "call_module" else n.name
        self.seen[name] = self.seen.get(name, 0) + 1
        if self.seen[name] > 1:  # a module called again (one ReLU used twice): keep names unique
            name = f"{name}#{self.seen[name]}"
        self.digital.append(
            DigitalOp(name, kind, category, int(elements), tuple(outs[1:]), _module_path(n), self.last_layer)
        )
