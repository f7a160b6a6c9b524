"""Front end: a ``torch.nn.Module`` plus an input shape -> :class:`Network`.

The model is put in eval mode and traced with ``torch.fx.symbolic_trace``, or, when that
fails on Python code that reads sizes (``math.ceil(H / p)``, ``if new_h != H``), with a
second fx trace whose proxies carry meta tensors and so answer size questions for the
given input shape (the graph is specialized to it; same graph level, one lowering). A
recurrent layer, encoder or attention module given as the whole model is called from a
wrapper, its first sample axis the sequence. Shapes are propagated on the meta device
when the model's weights are there (the CLI builds large models on meta), by a run on
zeros for a small model, else under a FakeTensorMode. Every graph node is then one of:

- a crossbar layer: Conv1d/Conv2d/Linear modules; ``F.linear``/``F.conv1d``/``F.conv2d``,
  ``@``/``matmul``/``einsum`` with one operand that does not depend on the input (a
  parameter); the projections of ``nn.MultiheadAttention`` (V = tokens), and those and the
  feed-forward layers of ``nn.TransformerEncoder(Layer)``; the input and
  recurrent weights of ``nn.LSTM``/``GRU``/``RNN`` and their cells (V = time steps).
  ``K x N x V`` MACs each;
- folded into one (a BatchNorm module right after it);
- a digital op: activations, pooling, add/mul, concat, norms (LayerNorm, GroupNorm,
  functional batch/layer/group norm), softmax, the activation x activation matmuls of
  attention (``Q K^T`` and ``A V``: ``batch x M x K x N`` MACs, counted as MACs), the
  gates of recurrent layers, table reads (embeddings, relative position bias);
- free: data movement (reshape, permute, transpose, flatten, pad, roll ...), eval-mode
  no-ops (dropout of every kind, stochastic depth), and anything that does not depend
  on the input (weight preprocessing, index tables: computed once, not per inference).

Anything else is an error that names the op and the module path it sits in, and
lists what is supported (:data:`SUPPORTED`).

A digital op's ``elements`` is its op count: one per output element, window reads for
pooling, MACs for matmuls, and for recurrent gates per time step ``13 H`` (LSTM: 4 adds
of the two products, 3 sigmoids, 2 tanh, 3 multiplies, 1 add), ``11 H`` (GRU) or ``2 H``
(Elman RNN).
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import math
import operator
import re
import warnings
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
    "crossbar layers: nn.Conv1d/Conv2d (any stride, padding, dilation, groups), nn.Linear, F.linear/F.conv1d/"
    "F.conv2d and @/matmul/bmm/einsum with a parameter operand, nn.MultiheadAttention, "
    "nn.TransformerEncoder/TransformerEncoderLayer, nn.LSTM/GRU/RNN and "
    "LSTMCell/GRUCell/RNNCell; folded: BatchNorm1d/2d after a layer; digital: activations (ReLU, ReLU6, "
    "LeakyReLU, PReLU, RReLU, ELU, SELU, CELU, GELU, SiLU, Mish, Sigmoid, LogSigmoid, Tanh, Hardtanh, "
    "Hardswish, Hardsigmoid, Softplus, Softsign, GLU, Threshold, clamp, softmax/log_softmax/softmin, exp, "
    "log, sqrt, rsqrt, pow, abs, erf, where, masked_fill), max/avg/adaptive pooling, mean/sum/amax, "
    "add/sub/mul/div, comparisons and logical ops, cat/stack, norms (BatchNorm not after a layer, LayerNorm, "
    "GroupNorm, InstanceNorm, RMSNorm, LocalResponseNorm, F.batch_norm, F.layer_norm, F.group_norm, "
    "F.instance_norm, F.rms_norm, F.normalize), activation x activation "
    "@/matmul/bmm/einsum, F.scaled_dot_product_attention, torchvision's shifted_window_attention, "
    "nn.Embedding and indexing of a parameter (relative position bias tables), interpolate/upsample; free: "
    "data movement (flatten/unflatten/reshape/view/permute/transpose/swapaxes/movedim/squeeze/unsqueeze/expand/"
    "broadcast_to/repeat/tile/roll/flip/rot90/narrow/select/index_select/gather/diagonal/chunk/split/"
    "tensor_split/unbind/getitem/pad/unfold/contiguous/clone, T/mT), PixelShuffle, ChannelShuffle, padding modules, "
    "Identity, dropout of every kind and stochastic depth (eval mode), and anything that does not depend on the "
    "input"
)

_ACT_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Sigmoid, nn.LogSigmoid, nn.Tanh, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softplus, nn.Softsign,
    nn.Softmax, nn.Softmax2d, nn.Softmin, nn.LogSoftmax, nn.GLU, nn.Threshold, nn.Tanhshrink, nn.Hardshrink,
    nn.Softshrink,
)  # fmt: skip
_POOL_MODULES: tuple[type[nn.Module], ...] = (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d)
_ADAPTIVE_MODULES: tuple[type[nn.Module], ...] = (
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
)  # fmt: skip
_NORM_MODULES: tuple[type[nn.Module], ...] = (nn.BatchNorm1d, nn.BatchNorm2d)
_DIGITAL_NORM_MODULES: tuple[type[nn.Module], ...] = (
    nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.LocalResponseNorm,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)  # fmt: skip
_FREE_MODULES: tuple[type[nn.Module], ...] = (
    nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
    nn.FeatureAlphaDropout, nn.PixelShuffle, nn.PixelUnshuffle, nn.ChannelShuffle, nn.Unfold,
    *(getattr(nn, f"{kind}Pad{d}d") for kind in ("Zero", "Constant", "Reflection", "Replication", "Circular")
      for d in (1, 2, 3) if hasattr(nn, f"{kind}Pad{d}d")),
)  # fmt: skip
_UPSAMPLE_MODULES: tuple[type[nn.Module], ...] = (nn.Upsample, nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d)
_RNN_MODULES: tuple[type[nn.Module], ...] = (nn.LSTM, nn.GRU, nn.RNN)
_CELL_MODULES: tuple[type[nn.Module], ...] = (nn.LSTMCell, nn.GRUCell, nn.RNNCell)

_ACT_FUNCTIONS = {
    F.relu, torch.relu, F.relu_, torch.relu_, F.relu6, F.leaky_relu, F.rrelu, F.elu, F.selu, F.celu, F.gelu, F.silu,
    F.mish, F.hardtanh, F.hardswish, F.hardsigmoid, F.softplus, F.softsign, F.logsigmoid, F.glu, F.threshold,
    F.prelu, F.tanhshrink, F.hardshrink, F.softshrink, F.sigmoid, torch.sigmoid, F.tanh, torch.tanh, F.softmax,
    torch.softmax, F.softmin, F.log_softmax, torch.log_softmax, torch.clamp, torch.clip, torch.exp, torch.log,
    torch.sqrt, torch.rsqrt, torch.pow, torch.abs, torch.neg, torch.erf, torch.reciprocal, torch.square,
    torch.maximum, torch.minimum, torch.where, torch.nn.functional.interpolate,
}  # fmt: skip
_ACT_METHODS = {
    "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "clamp", "clamp_", "clip", "softmax", "log_softmax",
    "exp", "log", "sqrt", "rsqrt", "pow", "abs", "neg", "erf", "reciprocal", "square", "masked_fill",
    "masked_fill_",
}  # fmt: skip
_POOL_FUNCTIONS = {
    F.max_pool1d, F.max_pool2d, F.avg_pool1d, F.avg_pool2d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d,
    F.adaptive_max_pool1d, F.adaptive_max_pool2d, torch.mean, torch.amax, torch.sum, torch.amin,
}  # fmt: skip
_POOL_METHODS = {"mean", "amax", "sum", "amin"}
_COMPARE_TARGETS = {
    operator.gt, operator.lt, operator.ge, operator.le, operator.eq, operator.ne, operator.and_, operator.or_,
    operator.invert, torch.gt, torch.lt, torch.ge, torch.le, torch.eq, torch.ne, torch.logical_and,
    torch.logical_or, torch.logical_not, "gt", "lt", "ge", "le", "eq", "ne", "logical_and", "logical_or",
    "logical_not",
}  # fmt: skip
_ADD_TARGETS = {
    operator.add, operator.iadd, operator.sub, operator.isub, operator.neg, torch.add, torch.sub, "add", "add_",
    "sub", "sub_", "rsub",
}  # fmt: skip
_MUL_TARGETS = {
    operator.mul, operator.imul, operator.truediv, operator.itruediv, torch.mul, torch.div, "mul", "mul_", "div",
    "div_",
}  # fmt: skip
_CONCAT_TARGETS = {
    f for f in (getattr(torch, name, None) for name in ("cat", "concat", "concatenate", "stack", "hstack", "vstack",
                                                        "dstack", "column_stack", "row_stack")) if f is not None
}  # fmt: skip
_NORM_FUNCTIONS = {
    F.layer_norm, F.group_norm, F.batch_norm, F.instance_norm, F.normalize, F.local_response_norm,
    *((F.rms_norm,) if hasattr(F, "rms_norm") else ()),
}  # fmt: skip
_MATMUL_TARGETS = {operator.matmul, torch.matmul, torch.bmm, torch.mm, torch.einsum, "matmul", "bmm", "mm"}
#: data movement: what torch documents as views and as "indexing, slicing, joining, mutating" ops
#: that only move or copy elements (joins are the digital ``concat``), in function and method form
DATA_MOVEMENT = (
    "flatten", "unflatten", "ravel", "reshape", "view", "view_as", "reshape_as", "squeeze", "unsqueeze",
    "permute", "transpose", "swapaxes", "swapdims", "moveaxis", "movedim", "t", "adjoint", "narrow", "narrow_copy",
    "select", "index_select", "masked_select", "take", "take_along_dim", "gather", "diagonal", "as_strided",
    "chunk", "split", "split_with_sizes", "tensor_split", "unsafe_split", "unsafe_chunk", "hsplit", "vsplit",
    "dsplit", "unbind", "expand", "expand_as", "broadcast_to", "repeat", "tile", "repeat_interleave", "roll",
    "flip", "fliplr", "flipud", "rot90", "unfold", "atleast_1d", "atleast_2d", "atleast_3d", "contiguous",
    "clone", "detach", "squeeze_", "unsqueeze_", "transpose_", "t_", "swapaxes_", "swapdims_", "detach_",
    "positive", "conj", "resolve_conj", "resolve_neg",  # identities on real tensors
)  # fmt: skip
_FREE_TARGETS = {
    *(f for f in (getattr(torch, name, None) for name in DATA_MOVEMENT) if callable(f)), *DATA_MOVEMENT,
    F.pad, F.pixel_shuffle, F.pixel_unshuffle, F.channel_shuffle, F.unfold, F.dropout, F.dropout1d, F.dropout2d,
    F.dropout3d, F.alpha_dropout, F.feature_alpha_dropout, operator.getitem, getattr, "size", "dim", "numel",
    "to", "float", "type_as", "type", "long", "int", "double", "half", "bfloat16", "cpu", "cuda", "new_zeros",
    "new_ones", "new_empty", "new_full", "zeros_like", torch.zeros_like, torch.ones_like, torch.empty_like,
    torch.full_like,
}  # fmt: skip
#: ops that read elements at indices: a table read (digital ``gather``) when the source is a
#: parameter and the index comes from the input, else data movement
_INDEXING_TARGETS = {operator.getitem, torch.index_select, torch.gather, torch.take, torch.take_along_dim,
                     "index_select", "gather", "take", "take_along_dim"}  # fmt: skip
# torchvision's fx-wrapped helpers (leaf functions in its graphs), recognized by name.
_NAMED_FUNCTIONS = {
    "stochastic_depth": "free",  # eval mode: identity
    "_patch_merging_pad": "free",  # Swin: pad to even H, W
    "_get_relative_position_bias": "gather",  # Swin: read the bias table
    "shifted_window_attention": "attention",  # Swin: window attention with its qkv and proj weights
}
_DIGITAL_CATEGORIES = ("activation", "pool", "add", "elementwise", "concat", "norm", "gather")
_GATE_OPS_PER_STEP = {"LSTM": 13, "GRU": 11, "RNN_TANH": 2, "RNN_RELU": 2}  # element ops per hidden unit
_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}


def trace_spec(model: str, input_shape: Sequence[int] | None = None) -> Network:
    """Trace a zoo name or ``path/to/file.py:factory``; zoo models default to their usual
    input. Mapping needs shapes, not weights, so models are built on the meta device. A
    small one (:func:`_runs_for_real`) is built again on the CPU and run on zeros: cheaper
    than the meta kernels' first use, which imports sympy and dynamo (about a second). A
    user model is built on the CPU instead when it cannot be built on meta, or when its
    meta trace fails in a way a CPU run can fix (an op without a meta kernel, a value
    read from a tensor); any other failure is reported at once."""
    from cimdse import models

    if model in models.ZOO:
        name = model
    else:
        models.check_model_spec(model)  # an unknown name or missing file is reported here, first
        path_text, _, factory = model.rpartition(":")
        name = f"{Path(path_text).name}:{factory}"  # the factory, not just the file
    shape = input_shape or models.default_input_shape(model)
    if shape is None:
        raise CimdseError(f"{model}: --input is required for a user model (e.g. --input 3x32x32)")
    try:
        with torch.device("meta"):
            module = models.load_model(model)
    except CimdseError:
        if model in models.ZOO:
            raise
        module = None  # the factory needs real tensors (reads a value, loads a file): built on the CPU below
    if module is not None:
        if _runs_for_real(module, shape):
            module = None
        else:
            try:
                return trace(module, shape, name)
            except _MetaOnlyFailure:
                pass  # an op without a meta kernel or a value read: a CPU run fixes it
    return trace(models.load_model(model), shape, name)


def trace(model: nn.Module, input_shape: Sequence[int], name: str = "model") -> Network:
    """Trace ``model`` in eval mode for one sample of ``input_shape`` (no batch dimension)."""
    shape = tuple(int(d) for d in input_shape)
    if not shape or any(d <= 0 for d in shape):
        raise CimdseError(f"{name}: input shape {shape} must be positive dimensions, e.g. 3x224x224")
    if math.prod(shape) > MAX_INPUT_ELEMENTS:
        raise CimdseError(
            f"{name}: input shape {'x'.join(map(str, shape))} has {math.prod(shape)} elements per sample; "
            f"at most {MAX_INPUT_ELEMENTS} (2^31 - 1) are supported"
        )
    root, model = model, _whole_model_module(model)
    modes = {m: m.training for m in model.modules()}
    model.eval()  # inference graph: dropout and stochastic depth are identities, BN uses running statistics
    try:
        gm = _symbolic_trace(model, shape, name)
        _propagate_shapes(gm, gm, shape, name)
    finally:
        for m, training in modes.items():
            m.train(training)
    net = _Lowering(gm, name, shape).run()
    return _unwrapped(net) if model is not root else net


# ---------------------------------------------------------------- front ends
def _symbolic_trace(model: nn.Module, shape: tuple[int, ...], name: str) -> fx.GraphModule:
    """torch.fx's symbolic trace; when it fails (control flow on sizes, ``math.ceil`` of a
    dimension), a second trace whose proxies know their sizes for this input shape, so
    such code runs as plain Python and the graph is specialized to the shape. Both give
    the same graph (module calls as leaves), lowered by the one :class:`_Lowering`."""
    try:
        return fx.symbolic_trace(model)
    except Exception as err:  # noqa: BLE001 - any tracing failure is the model's, reported in one line
        first = f"{type(err).__name__}: {_concrete_text(first_line(err))}"
    try:
        return _shape_specialized_trace(model, shape)
    except Exception as err:  # noqa: BLE001
        second = f"{type(err).__name__}: {first_line(err)}"
    raise CimdseError(
        f"{name}: torch.fx cannot trace the model ({first}), nor can a trace specialized to input "
        f"{'x'.join(map(str, shape))} ({second}); control flow that depends on tensor values in forward() "
        "is not supported"
    ) from None


def _meta_copy(model: nn.Module) -> nn.Module:
    """The module with every parameter and buffer on the meta device; no storage is copied."""
    tensors = [*model.parameters(), *model.buffers()]
    if all(t.is_meta for t in tensors):
        return model
    memo: dict[int, Any] = {}
    for t in tensors:
        meta = t.detach().to("meta")
        memo[id(t)] = nn.Parameter(meta, t.requires_grad) if isinstance(t, nn.Parameter) else meta
    return copy.deepcopy(model, memo)


def _shape_specialized_trace(model: nn.Module, shape: tuple[int, ...]) -> fx.GraphModule:
    from torch.fx.experimental.meta_tracer import MetaProxy, MetaTracer

    class SizedProxy(MetaProxy):
        """A proxy that answers size questions with the meta tensor's values."""

        def size(self, dim: int | None = None) -> Any:
            meta = getattr(self, "_tensor_meta", None)
            if meta is None:
                return super().size(dim)
            return meta.size() if dim is None else meta.size(dim)

        def numel(self) -> Any:
            meta = getattr(self, "_tensor_meta", None)
            return super().__getattr__("numel")() if meta is None else meta.numel()

        @property
        def ndim(self) -> Any:
            meta = getattr(self, "_tensor_meta", None)
            return super().__getattr__("ndim") if meta is None else meta.dim()

        def __len__(self) -> int:
            meta = getattr(self, "_tensor_meta", None)
            if meta is None:
                return super().__len__()
            return len(meta)

    class Tracer(MetaTracer):
        allow_insert_stateless_mods = False  # never add modules to the user's model

        def proxy(self, node: fx.Node) -> SizedProxy:
            return SizedProxy(node, self)

    root = _meta_copy(model)
    placeholder = next(iter(inspect.signature(root.forward).parameters))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ops whose sizes it cannot infer warn; their size questions fail below
        graph = Tracer().trace(root, {placeholder: torch.empty((1, *shape), device="meta")})
    return fx.GraphModule(root, graph, type(root).__name__)


class _WholeModel(nn.Module):
    """A module fx keeps as one call (an LSTM, an encoder, attention) given as the whole
    model: called from this wrapper, so it is lowered like a layer inside a model. The
    sample's first axis is its sequence: ``--input 35x650`` is 35 steps of 650."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.whole = module
        first = getattr(module, "batch_first", None)
        if isinstance(module, nn.TransformerEncoder):
            first = module.layers[0].self_attn.batch_first
        elif isinstance(module, nn.TransformerEncoderLayer):
            first = module.self_attn.batch_first
        self.seq_first = first is False

    def forward(self, x: torch.Tensor) -> Any:
        if self.seq_first:
            x = x.transpose(0, 1)  # [1, L, E] -> [L, 1, E]
        if isinstance(self.whole, nn.MultiheadAttention):
            return self.whole(x, x, x, need_weights=False)
        return self.whole(x)


_WHOLE_PREFIX = "whole"


def _whole_model_module(model: nn.Module) -> nn.Module:
    if isinstance(model, _RNN_MODULES + _CELL_MODULES + (nn.MultiheadAttention, nn.TransformerEncoder,
                                                          nn.TransformerEncoderLayer)):  # fmt: skip
        return _WholeModel(model)
    return model


def _unwrapped(net: Network) -> Network:
    """Names as the bare module names them (``weight_ih_l0``, ``layers.0.linear1``)."""

    def strip(text: str) -> str:
        return "" if text == _WHOLE_PREFIX else text.removeprefix(f"{_WHOLE_PREFIX}.")

    layers = [dataclasses.replace(layer, name=strip(layer.name)) for layer in net.layers]
    ops = [dataclasses.replace(op, name=strip(op.name), module=strip(op.module), layer=strip(op.layer))
           for op in net.digital_ops]  # fmt: skip
    return Network(layers, ops, net.input_shape, net.name)


def _runs_for_real(model: nn.Module, shape: tuple[int, ...]) -> bool:
    """Small enough to run on zeros on the CPU (parameters x input elements, a bound on
    the MACs of a network that does not upsample, at most :data:`_REAL_RUN_BUDGET`)."""
    params = sum(p.numel() for p in model.parameters())
    return params * math.prod(shape) <= _REAL_RUN_BUDGET


_REAL_RUN_BUDGET = 10**9  # ~ a few ms to a few hundred ms of CPU


# ---------------------------------------------------------------- shapes
class _NodeFailure(Exception):
    def __init__(self, node: fx.Node, err: Exception) -> None:
        super().__init__(str(err))
        self.node, self.err = node, err


def _shape_of(value: Any) -> tuple[int, ...] | None:
    return tuple(int(d) for d in value.shape) if isinstance(value, torch.Tensor) else None


def _flatten(value: Any) -> list[Any]:
    if isinstance(value, (tuple, list)):
        return [x for v in value for x in _flatten(v)]
    return [value]


class _ShapeRecorder(fx.Interpreter):
    """Runs the graph on meta/fake tensors and stores each node's output shape."""

    def run_node(self, n: fx.Node) -> Any:
        try:
            result = super().run_node(n)
        except Exception as err:  # noqa: BLE001
            raise _NodeFailure(n, err) from None
        n.meta["cimdse_shape"] = _shape_of(result)
        n.meta["cimdse_tensor"] = any(isinstance(r, torch.Tensor) for r in _flatten(result))
        if isinstance(result, (int, float, bool, torch.Size)) or (
            isinstance(result, tuple) and len(result) <= 8 and all(isinstance(r, int) for r in result)
        ):
            n.meta["cimdse_value"] = tuple(result) if isinstance(result, torch.Size) else result
        return result


def _propagate_shapes(gm: fx.GraphModule, model: nn.Module, shape: tuple[int, ...], name: str) -> None:
    """Shapes on meta tensors (a model on meta); a small model on its device runs for real
    on zeros, a large one on fake tensors; an op whose output shape depends on values (a
    mask compared with a causal one) makes a real run on zeros."""
    tensors = [*model.parameters(), *model.buffers()]
    on_meta = any(t.is_meta for t in tensors)  # built on meta (a constant made on the CPU may sit beside)
    try:
        if on_meta:
            _ShapeRecorder(gm).run(torch.empty((1, *shape), device="meta"))
        else:
            device = tensors[0].device if tensors else torch.device("cpu")
            if _runs_for_real(model, shape):
                with torch.no_grad(), warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # about kernels chosen for a run whose values are unused
                    _ShapeRecorder(gm).run(torch.zeros((1, *shape), device=device))
                return
            from torch._subclasses.fake_tensor import DataDependentOutputException, FakeTensorMode

            try:
                with FakeTensorMode(allow_non_fake_inputs=True):
                    _ShapeRecorder(gm).run(torch.empty((1, *shape), device=device))
            except _NodeFailure as failure:
                if not isinstance(failure.err, DataDependentOutputException):
                    raise
                with torch.no_grad():
                    _ShapeRecorder(gm).run(torch.zeros((1, *shape), device=device))
    except _NodeFailure as failure:
        n = failure.node
        if _category(gm, n) is None and n.op == "call_module":
            raise CimdseError(f"{name}: {_unsupported_text(gm, n)}") from None
        error = _MetaOnlyFailure if on_meta and _meta_only(failure.err) else CimdseError
        raise error(
            f"{name}: input shape {'x'.join(map(str, shape))} does not fit the model: {_describe(gm, n)} "
            f"at {_where(gm, n)} failed: {type(failure.err).__name__}: {_concrete_text(first_line(failure.err), gm)}"
        ) from None


class _MetaOnlyFailure(CimdseError):
    """A failure of the meta device, not of the model: no meta kernel, or a value read."""


def _meta_only(err: Exception) -> bool:
    text = str(err).lower()
    return (
        isinstance(err, NotImplementedError)
        or "meta" in text
        or "data-dependent" in text
        or (type(err).__name__ in ("DataDependentOutputException", "DynamicOutputShapeException"))
    )


def _concrete_text(text: str, gm: fx.GraphModule | None = None) -> str:
    """A message formatted while tracing holds fx proxies (``Proxy(getitem_2)``): the
    values those nodes had in the shape run replace them (else ``<size>``)."""
    values = {n.name: n.meta["cimdse_value"] for n in gm.graph.nodes if "cimdse_value" in n.meta} if gm else {}
    return re.sub(r"Proxy\((\w+)\)", lambda m: str(values.get(m.group(1), "<size>")), text)


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
    """What a node is: layer, bn, rnn, cell, mha, activation, pool, add, elementwise, concat, norm, matmul,
    linear_fn, conv_fn, sdpa, attention, gather, upsample, free, io; None if unsupported."""
    if n.op in ("placeholder", "output", "get_attr"):
        return "io"
    if n.op == "call_module":
        mod = gm.get_submodule(str(n.target))
        checks: tuple[tuple[tuple[type[nn.Module], ...], str], ...] = (
            ((nn.Conv1d, nn.Conv2d, nn.Linear), "layer"),
            (_NORM_MODULES, "bn"),
            (_ACT_MODULES, "activation"),
            (_POOL_MODULES + _ADAPTIVE_MODULES, "pool"),
            (_DIGITAL_NORM_MODULES, "norm"),
            (_FREE_MODULES, "free"),
            (_UPSAMPLE_MODULES, "activation"),
            ((nn.Embedding,), "gather"),
            (_RNN_MODULES, "rnn"),
            (_CELL_MODULES, "cell"),
            ((nn.MultiheadAttention,), "mha"),
            ((nn.TransformerEncoderLayer, nn.TransformerEncoder), "encoder"),
        )
        return next((cat for types, cat in checks if isinstance(mod, types)), None)
    t = n.target
    if n.op == "call_function" and getattr(t, "__name__", None) in _NAMED_FUNCTIONS:
        return _NAMED_FUNCTIONS[t.__name__]  # type: ignore[union-attr]
    for targets, cat in (
        (_FREE_TARGETS, "free"),
        (_MATMUL_TARGETS, "matmul"),
        (_ACT_FUNCTIONS, "activation"),
        (_ACT_METHODS, "activation"),
        (_POOL_FUNCTIONS, "pool"),
        (_POOL_METHODS, "pool"),
        (_ADD_TARGETS, "add"),
        (_MUL_TARGETS, "elementwise"),
        (_COMPARE_TARGETS, "elementwise"),
        (_CONCAT_TARGETS, "concat"),
        (_NORM_FUNCTIONS, "norm"),
    ):
        if t in targets:
            return cat
    if t is F.linear:
        return "linear_fn"
    if t in (F.conv1d, F.conv2d):
        return "conv_fn"
    if t is F.scaled_dot_product_attention:
        return "sdpa"
    return None


def _unsupported_text(gm: fx.GraphModule, n: fx.Node) -> str:
    return f"unsupported op {_describe(gm, n)} at {_where(gm, n)} (graph node '{n.name}'); supported: {SUPPORTED}"


# ---------------------------------------------------------------- lowering
def _tuple(v: Any) -> tuple[int, ...]:
    if isinstance(v, (tuple, list)):
        return tuple(int(x) for x in v)
    if isinstance(v, int):
        return (v,)
    return ()


def _numel(shape: tuple[int, ...] | None) -> int:
    """Elements of the traced tensor: one sample's (the batch is 1, wherever a model moves it)."""
    return math.prod(shape) if shape else 0


def _arg(n: fx.Node, index: int, key: str, default: Any = None) -> Any:
    if len(n.args) > index:
        return n.args[index]
    return n.kwargs.get(key, default)


def _nodes_in(value: Any) -> list[fx.Node]:
    out: list[fx.Node] = []
    fx.node.map_arg(value, out.append)
    return out


def _expand_ellipsis(ia: str, ib: str, out: str | None, ranks: list[int]) -> tuple[str, str, str]:
    """An einsum equation with ``...`` spelled out: the broadcast axes get letters of their
    own, aligned from the right as broadcasting aligns them; without ``->`` the output is
    the broadcast axes, then the letters used once, in alphabetical order (torch's rule)."""
    used = set(ia + ib + (out or "")) - {"."}
    spare = iter(c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" if c not in used)
    widths = [
        rank - len(spec.replace("...", "")) if "..." in spec else 0 for spec, rank in zip((ia, ib), ranks, strict=True)
    ]
    letters = "".join(next(spare) for _ in range(max(widths, default=0)))
    ia, ib = (
        spec.replace("...", letters[len(letters) - w :] if w else "") for spec, w in zip((ia, ib), widths, strict=True)
    )
    if out is None:
        out = letters + "".join(sorted(c for c in set(ia + ib) - set(letters) if (ia + ib).count(c) == 1))
    return ia, ib, out.replace("...", letters)


class _Lowering:
    def __init__(self, gm: fx.GraphModule, name: str, shape: tuple[int, ...]) -> None:
        self.gm, self.name, self.shape = gm, name, shape
        self.layers: dict[str, Layer] = {}
        self.layer_of_node: dict[fx.Node, str] = {}
        self.digital: list[DigitalOp] = []
        self.seen: dict[str, int] = {}
        self.dynamic: set[fx.Node] = set()  # nodes whose tensor depends on the input
        self.last_layer = ""  # the crossbar layer that ran last (digital ops follow it)

    # -- helpers
    def _shape(self, v: Any) -> tuple[int, ...]:
        return (v.meta.get("cimdse_shape") or ()) if isinstance(v, fx.Node) else ()

    def _is_dynamic(self, v: Any) -> bool:
        return any(a in self.dynamic for a in _nodes_in(v))

    def _static_source(self, v: Any) -> str | None:
        """The parameter a static (input-independent) operand is read from, else None."""
        if not isinstance(v, fx.Node) or v in self.dynamic:
            return None
        stack, seen = [v], set()
        while stack:
            cur = stack.pop()
            if cur in seen:
                continue
            seen.add(cur)
            if cur.op == "get_attr":
                return str(cur.target)
            stack.extend(_nodes_in((cur.args, cur.kwargs)))
        return None

    @staticmethod
    def _weight_name(param: str) -> str:
        return param.removesuffix(".weight")

    def _add_layer(self, layer: Layer, n: fx.Node | None = None) -> None:
        old = self.layers.get(layer.name)
        if old is not None:  # called again (a module reused, a recurrent step): weights mapped once, MVMs add up
            layer = dataclasses.replace(
                old, V=old.V + layer.V, max_copies=max(old.max_copies, layer.max_copies) if old.max_copies else 0
            )
        self.layers[layer.name] = layer
        if n is not None:
            self.layer_of_node[n] = layer.name
        self.last_layer = layer.name

    def _add_digital(self, name: str, kind: str, category: str, elements: int, out_shape: tuple[int, ...],
                     module: str, matmul: tuple[int, int, int, int] = ()) -> None:  # fmt: skip
        self.seen[name] = self.seen.get(name, 0) + 1
        if self.seen[name] > 1:  # a module called again (one ReLU used twice): keep names unique
            name = f"{name}#{self.seen[name]}"
        self.digital.append(
            DigitalOp(name, kind, category, int(elements), tuple(out_shape), module, self.last_layer, matmul)
        )

    # -- driver
    def run(self) -> Network:
        handlers = {
            "layer": self._layer, "bn": self._batchnorm, "matmul": self._matmul, "linear_fn": self._linear_fn,
            "conv_fn": self._conv_fn, "sdpa": self._sdpa, "mha": self._mha, "rnn": self._rnn, "cell": self._cell,
            "attention": self._window_attention, "gather": self._gather, "encoder": self._encoder,
        }  # fmt: skip
        for n in self.gm.graph.nodes:
            if n.op == "placeholder":
                self.dynamic.add(n)
                continue
            if n.op == "output":
                continue
            is_tensor = n.meta.get("cimdse_shape") is not None
            if n.op != "call_module" and not (n.meta.get("cimdse_tensor") and self._is_dynamic((n.args, n.kwargs))):
                continue  # sizes and other non-tensor values, or computed once: independent of the input
            self.dynamic.add(n)
            cat = _category(self.gm, n)
            if cat is None:
                raise CimdseError(f"{self.name}: {_unsupported_text(self.gm, n)}")
            if n.target in _INDEXING_TARGETS and is_tensor and self._static_source(n.args[0]):
                cat = "gather"  # a parameter indexed by the input (a table read)
            handler = handlers.get(cat)
            if handler is not None:
                handler(n)
            elif cat in _DIGITAL_CATEGORIES and is_tensor:
                self._digital(n, cat)
        if not self.layers:
            raise CimdseError(f"{self.name}: no Conv1d/Conv2d/Linear layer to map onto crossbars")
        return Network(list(self.layers.values()), self.digital, self.shape, self.name)

    def _in_shape(self, n: fx.Node) -> tuple[int, ...]:
        return self._shape(n.args[0] if n.args else None)

    # -- crossbar layers
    def _layer(self, n: fx.Node) -> None:
        target = str(n.target)
        mod = self.gm.get_submodule(target)
        ins, outs = self._in_shape(n), n.meta["cimdse_shape"]
        if isinstance(mod, nn.Linear):
            layer = Layer(
                target, "linear", mod.in_features, mod.out_features, V=max(1, math.prod(ins[:-1])),
                in_shape=ins[1:], out_shape=outs[1:], bias=mod.bias is not None,
            )  # fmt: skip
        else:
            assert isinstance(mod, (nn.Conv1d, nn.Conv2d))
            kernel = _tuple(mod.kernel_size)
            layer = Layer(
                target, "conv1d" if isinstance(mod, nn.Conv1d) else "conv2d",
                K=mod.in_channels // mod.groups * math.prod(kernel), N=mod.out_channels,
                V=outs[0] * math.prod(outs[2:]),
                groups=mod.groups, kernel=kernel, stride=_tuple(mod.stride), padding=_tuple(mod.padding),
                dilation=_tuple(mod.dilation), in_shape=ins[1:], out_shape=outs[1:], bias=mod.bias is not None,
            )  # fmt: skip
        self._add_layer(layer, n)

    def _batchnorm(self, n: fx.Node) -> None:
        src = n.args[0] if n.args else None
        owner = self.layer_of_node.get(src) if isinstance(src, fx.Node) else None
        if owner is not None and len(src.users) == 1 and self.layers[owner].folded_bn is None:
            self.layers[owner] = dataclasses.replace(self.layers[owner], folded_bn=str(n.target))
            self.layer_of_node[n] = owner
            return
        self._digital(n, "norm")  # not right after a layer: a per-element affine on the digital unit

    def _functional_layer(self, n: fx.Node, param: str, K: int, N: int, origin: str, **kw: Any) -> None:
        outs = n.meta["cimdse_shape"]
        V = kw.pop("V", None) or max(1, math.prod(outs) // N)
        layer = Layer(self._weight_name(param), kw.pop("kind", "linear"), K, N, V, out_shape=outs[1:], origin=origin,
                      **kw)  # fmt: skip
        self._add_layer(layer, n)

    def _linear_fn(self, n: fx.Node) -> None:
        x, w, b = _arg(n, 0, "input"), _arg(n, 1, "weight"), _arg(n, 2, "bias")
        param = self._static_source(w)
        if param is None:
            raise CimdseError(f"{self.name}: F.linear at {_where(self.gm, n)} with a weight computed from the "
                              "input cannot be mapped onto crossbars (its weights change per inference)")  # fmt: skip
        N, K = self._shape(w)[-2:] if len(self._shape(w)) == 2 else (1, self._shape(w)[-1])
        self._functional_layer(n, param, K, N, "F.linear", bias=b is not None, in_shape=self._shape(x)[1:])

    def _conv_fn(self, n: fx.Node) -> None:
        w = _arg(n, 1, "weight")
        param = self._static_source(w)
        if param is None:
            raise CimdseError(f"{self.name}: {_describe(self.gm, n)} at {_where(self.gm, n)} with a weight computed "
                              "from the input cannot be mapped onto crossbars")  # fmt: skip
        ws, outs = self._shape(w), n.meta["cimdse_shape"]
        nd = len(ws) - 2

        def geo(index: int, key: str, default: int) -> tuple[int, ...]:
            v = _tuple(_arg(n, index, key, default))
            return v * nd if len(v) == 1 else v

        groups = int(_arg(n, 6, "groups", 1))
        self._functional_layer(
            n, param, ws[1] * math.prod(ws[2:]), ws[0], "F.conv", kind=f"conv{nd}d", V=outs[0] * math.prod(outs[2:]),
            groups=groups, kernel=tuple(ws[2:]), stride=geo(3, "stride", 1), padding=geo(4, "padding", 0),
            dilation=geo(5, "dilation", 1), bias=_arg(n, 2, "bias") is not None, in_shape=self._in_shape(n)[1:],
        )  # fmt: skip

    def _matmul(self, n: fx.Node) -> None:
        outs = n.meta["cimdse_shape"]
        if n.target is torch.einsum:
            dims = self._einsum_dims(n)
        else:
            a, b = n.args[0], n.args[1]
            sa, sb = self._shape(a), self._shape(b)
            K = sa[-1]
            M = sa[-2] if len(sa) >= 2 else 1
            N_ = sb[-1] if len(sb) >= 2 else 1
            dims = (max(1, math.prod(outs) // (M * N_)), M, K, N_)
            operands = (a, b)
        if n.target is torch.einsum:
            operands = tuple(n.args[1:]) if len(n.args) > 2 else tuple(n.args[1])
        params = [self._static_source(o) for o in operands]
        batch, M, K, N_ = dims
        if params[1] is not None and params[0] is None:  # x @ W: W [K, N] on crossbars
            self._functional_layer(n, params[1], K, N_, "matmul", V=batch * M, in_shape=self._shape(operands[0])[1:])
        elif params[0] is not None and params[1] is None:  # W @ x: W [M, K], V = columns of x
            self._functional_layer(n, params[0], K, M, "matmul", V=batch * N_, in_shape=self._shape(operands[1])[1:])
        else:  # activation x activation: the right operand would be the one written into a crossbar
            self._add_digital(n.name, "matmul", "matmul", batch * M * K * N_, outs[1:], _module_path(n),
                              (batch, M, K, N_))  # fmt: skip

    def _einsum_dims(self, n: fx.Node) -> tuple[int, int, int, int]:
        eq = str(n.args[0]).replace(" ", "")
        ops = list(n.args[1:]) if len(n.args) > 2 else list(n.args[1])
        if len(ops) != 2:
            raise CimdseError(f"{self.name}: einsum '{eq}' at {_where(self.gm, n)}: only two operands are "
                              "supported")  # fmt: skip
        lhs, arrow, out = eq.partition("->")
        ia, ib = lhs.split(",")
        shapes = [self._shape(op) for op in ops]
        ia, ib, out = _expand_ellipsis(ia, ib, out if arrow else None, [len(s) for s in shapes])
        size: dict[str, int] = {}
        for spec, op_shape in ((ia, shapes[0]), (ib, shapes[1])):
            for c, d in zip(spec, op_shape, strict=True):
                size[c] = max(size.get(c, 1), d)  # a broadcast axis of size 1 takes the other's size
        prod = lambda cs: math.prod(size[c] for c in cs)  # noqa: E731
        K = prod(c for c in set(ia + ib) if c not in out)
        M = prod(c for c in set(ia) if c in out and c not in ib)
        N_ = prod(c for c in set(ib) if c in out and c not in ia)
        batch = prod(c for c in set(ia) & set(ib) if c in out)
        return batch, M, K, N_

    # -- attention
    def _attention_ops(self, n: fx.Node, prefix: str, b: int, L: int, S: int, E: int, Ev: int,
                       adds: tuple[str, ...] = (), module: str | None = None) -> None:  # fmt: skip
        """Q K^T, softmax (after the score ``adds``: bias, mask) and A V of ``b`` heads (x windows),
        L queries, S keys."""
        module = _module_path(n) if module is None else module
        self._add_digital(f"{prefix}.qk", "matmul", "matmul", b * L * E * S, (b, L, S), module, (b, L, E, S))
        for add in adds:
            self._add_digital(f"{prefix}.{add}", "add", "add", b * L * S, (b, L, S), module)
        self._add_digital(f"{prefix}.softmax", "softmax", "activation", b * L * S, (b, L, S), module)
        self._add_digital(f"{prefix}.av", "matmul", "matmul", b * L * S * Ev, (b, L, Ev), module, (b, L, S, Ev))

    def _sdpa(self, n: fx.Node) -> None:
        q, k, v = (_arg(n, i, key) for i, key in enumerate(("query", "key", "value")))
        sq, sk, sv = self._shape(q), self._shape(k), self._shape(v)
        b = math.prod(sq[:-2])
        mask = _arg(n, 3, "attn_mask") is not None or bool(_arg(n, 5, "is_causal", False))
        self._attention_ops(n, n.name, b, sq[-2], sk[-2], sq[-1], sv[-1], ("mask",) if mask else ())

    def _mha(self, n: fx.Node) -> None:
        path = str(n.target)
        mod = self.gm.get_submodule(path)
        assert isinstance(mod, nn.MultiheadAttention)
        q, k, v = (_arg(n, i, key) for i, key in enumerate(("query", "key", "value")))
        sq, sk = self._shape(q), self._shape(k)
        tokens_axis = (1 if mod.batch_first else 0) if len(sq) == 3 else 0
        L, S = sq[tokens_axis], sk[tokens_axis]
        E, h = mod.embed_dim, mod.num_heads
        origin = "nn.MultiheadAttention"
        bias = mod.in_proj_bias is not None
        if q is k and k is v and mod._qkv_same_embed_dim:
            self._add_layer(Layer(f"{path}.in_proj", "linear", E, 3 * E, L, bias=bias, origin=origin))
        else:
            self._add_layer(Layer(f"{path}.q_proj", "linear", E, E, L, bias=bias, origin=origin))
            self._add_layer(Layer(f"{path}.k_proj", "linear", mod.kdim, E, S, bias=bias, origin=origin))
            self._add_layer(Layer(f"{path}.v_proj", "linear", mod.vdim, E, S, bias=bias, origin=origin))
        S += int(mod.bias_k is not None) + int(mod.add_zero_attn)
        mask = _arg(n, 3, "key_padding_mask") is not None or _arg(n, 5, "attn_mask") is not None
        self._attention_ops(n, path, h, L, S, E // h, E // h, ("mask",) if mask else ())
        self._add_layer(
            Layer(f"{path}.out_proj", "linear", E, E, L, bias=mod.out_proj.bias is not None, origin=origin), n
        )

    def _encoder(self, n: fx.Node) -> None:
        """``nn.TransformerEncoder`` / ``nn.TransformerEncoderLayer`` (leaf modules for fx, with a
        fast path fx cannot trace): each layer lowered as its forward computes it in eval mode."""
        path = str(n.target)
        mod = self.gm.get_submodule(path)
        if isinstance(mod, nn.TransformerEncoder):
            blocks = [(f"{path}.layers.{i}", layer) for i, layer in enumerate(mod.layers)]
        else:
            blocks = [(path, mod)]
        sx = self._in_shape(n)
        mask = _arg(n, 1, "mask") is not None or bool(_arg(n, 3, "is_causal", False))
        for name, layer in blocks:
            assert isinstance(layer, nn.TransformerEncoderLayer)
            attn = layer.self_attn
            L = sx[1 if attn.batch_first else 0] if len(sx) == 3 else sx[0]
            E, h, hidden = attn.embed_dim, attn.num_heads, layer.linear1.out_features
            origin, module = "nn.TransformerEncoderLayer", name

            def digital(op: str, kind: str, category: str, elements: int) -> None:
                self._add_digital(f"{name}.{op}", kind, category, elements, (L, E), module)  # noqa: B023

            for part in ("attention", "feed_forward"):
                if layer.norm_first:
                    digital("norm1" if part == "attention" else "norm2", "layernorm", "norm", L * E)
                if part == "attention":
                    bias = attn.in_proj_bias is not None
                    self._add_layer(Layer(f"{name}.self_attn.in_proj", "linear", E, 3 * E, L, bias=bias,
                                          origin=origin))  # fmt: skip
                    self._attention_ops(n, f"{name}.self_attn", h, L, L, E // h, E // h, ("mask",) if mask else (),
                                        f"{name}.self_attn")  # fmt: skip
                    self._add_layer(Layer(f"{name}.self_attn.out_proj", "linear", E, E, L,
                                          bias=attn.out_proj.bias is not None, origin=origin))  # fmt: skip
                else:
                    for lin in ("linear1", "linear2"):
                        m = layer.get_submodule(lin)
                        assert isinstance(m, nn.Linear)
                        self._add_layer(Layer(f"{name}.{lin}", "linear", m.in_features, m.out_features, L,
                                              bias=m.bias is not None))  # fmt: skip
                        if lin == "linear1":
                            act = getattr(layer.activation, "__name__", type(layer.activation).__name__).lower()
                            self._add_digital(f"{name}.activation", act, "activation", L * hidden, (L, hidden),
                                              module)  # fmt: skip
                digital("add1" if part == "attention" else "add2", "add", "add", L * E)
                if not layer.norm_first:
                    digital("norm1" if part == "attention" else "norm2", "layernorm", "norm", L * E)
        if isinstance(mod, nn.TransformerEncoder) and mod.norm is not None:
            self._add_digital(f"{path}.norm", "layernorm", "norm", _numel(n.meta.get("cimdse_shape")), sx[1:], path)
        self.layer_of_node[n] = self.last_layer

    def _window_attention(self, n: fx.Node) -> None:
        """torchvision's ``shifted_window_attention(input, qkv_weight, proj_weight, relative_position_bias,
        window_size, num_heads, shift_size, ...)`` (Swin): qkv and proj on crossbars, V = tokens after padding
        to whole windows; per window Q K^T, bias (+ mask when shifted), softmax, A V."""
        x = _arg(n, 0, "input")
        _, H, W, C = self._shape(x)
        ws = list(_tuple(_arg(n, 4, "window_size")))
        heads = int(_arg(n, 5, "num_heads"))
        shift = list(_tuple(_arg(n, 6, "shift_size")))
        pH, pW = H + (ws[0] - H % ws[0]) % ws[0], W + (ws[1] - W % ws[1]) % ws[1]
        if ws[0] >= pH:
            shift[0] = 0
        if ws[1] >= pW:
            shift[1] = 0
        tokens, per_window = pH * pW, ws[0] * ws[1]
        origin = "shifted_window_attention"
        qkv, proj = self._static_source(_arg(n, 1, "qkv_weight")), self._static_source(_arg(n, 2, "proj_weight"))
        if qkv is None or proj is None:
            raise CimdseError(f"{self.name}: shifted_window_attention at {_where(self.gm, n)}: weights must be "
                              "parameters")  # fmt: skip
        qkv_bias, proj_bias = _arg(n, 9, "qkv_bias"), _arg(n, 10, "proj_bias")
        self._add_layer(Layer(self._weight_name(qkv), "linear", C, 3 * C, tokens, bias=qkv_bias is not None,
                              in_shape=(H, W, C), origin=origin))  # fmt: skip
        if _arg(n, 11, "logit_scale") is not None:  # Swin V2: cosine attention normalizes q and k
            self._add_digital(f"{n.name}.normalize", "normalize", "norm", 2 * tokens * C, (tokens, C),
                              _module_path(n))  # fmt: skip
        b = tokens // per_window * heads
        self._attention_ops(n, n.name, b, per_window, per_window, C // heads, C // heads,
                            ("bias", "mask") if any(shift) else ("bias",))  # fmt: skip
        self._add_layer(Layer(self._weight_name(proj), "linear", C, C, tokens, bias=proj_bias is not None,
                              out_shape=(H, W, C), origin=origin), n)  # fmt: skip

    # -- recurrent layers
    def _rnn(self, n: fx.Node) -> None:
        path = str(n.target)
        mod = self.gm.get_submodule(path)
        assert isinstance(mod, nn.RNNBase)
        sx = self._in_shape(n)
        L = sx[1 if mod.batch_first else 0] if len(sx) == 3 else sx[0]
        H, P = mod.hidden_size, mod.proj_size or mod.hidden_size
        g, dirs = _GATES[mod.mode], 2 if mod.bidirectional else 1
        origin = f"nn.{type(mod).__name__}"
        kind = mod.mode.lower().split("_")[0]
        for layer in range(mod.num_layers):
            k_in = mod.input_size if layer == 0 else P * dirs
            for d in range(dirs):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                self._add_layer(Layer(f"{path}.weight_ih{sfx}", kind, k_in, g * H, L, bias=mod.bias, origin=origin))
                self._add_layer(Layer(f"{path}.weight_hh{sfx}", kind, P, g * H, L, bias=mod.bias, origin=origin,
                                      max_copies=1))  # fmt: skip
                self._add_digital(f"{path}.gates{sfx}", f"{kind}_gates", "recurrent",
                                  L * _GATE_OPS_PER_STEP[mod.mode] * H, (L, H), path)  # fmt: skip
                if mod.proj_size:
                    self._add_layer(Layer(f"{path}.weight_hr{sfx}", kind, H, P, L, origin=origin, max_copies=1))

    def _cell(self, n: fx.Node) -> None:
        path = str(n.target)
        mod = self.gm.get_submodule(path)
        assert isinstance(mod, nn.RNNCellBase)
        mode = {nn.LSTMCell: "LSTM", nn.GRUCell: "GRU"}.get(type(mod), "RNN_TANH")
        g, H = _GATES[mode], mod.hidden_size
        origin, kind = f"nn.{type(mod).__name__}", mode.lower().split("_")[0]
        self._add_layer(Layer(f"{path}.weight_ih", kind, mod.input_size, g * H, 1, bias=mod.bias, origin=origin))
        self._add_layer(Layer(f"{path}.weight_hh", kind, H, g * H, 1, bias=mod.bias, origin=origin, max_copies=1))
        self._add_digital(f"{path}.gates", f"{kind}_gates", "recurrent", _GATE_OPS_PER_STEP[mode] * H, (H,), path)
        self.layer_of_node[n] = f"{path}.weight_hh"

    # -- digital ops
    def _gather(self, n: fx.Node) -> None:
        outs = n.meta.get("cimdse_shape")
        if outs is None:
            return
        self._digital(n, "gather")

    def _digital(self, n: fx.Node, category: str) -> None:
        outs = n.meta["cimdse_shape"]
        elements = _numel(outs)
        kind = _describe(self.gm, n).split(".")[-1].lower().lstrip("_")
        if category == "pool":
            ks = getattr(self.gm.get_submodule(str(n.target)), "kernel_size", None) if n.op == "call_module" else None
            if ks is None:  # adaptive or functional pooling: every input element is read once
                elements = max(_numel(self._in_shape(n)), elements)
            else:  # a k x k window per output element
                ks = _tuple(ks)
                elements = _numel(outs) * math.prod(ks * (len(outs) - 2) if len(ks) == 1 else ks)
        name = str(n.target) if n.op == "call_module" else n.name
        self._add_digital(name, kind, category, elements, outs[1:], _module_path(n))
