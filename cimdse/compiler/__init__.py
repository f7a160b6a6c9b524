"""Compiler: torch model -> layer IR -> crossbar mapping -> schedule -> costs.

net = trace(model, (3, 224, 224))            # Network: .layers (policy order), .digital_ops
cn = compile_network(net, arch.load("isaac"))
ev = cn.evaluate(policies)                   # [L, 2] or [P, L, 2] int (w_bits, a_bits)
layers_df, summary_df = policy_tables(cn, policy)

Names are imported on first use, so a light user (the CLI's argument parser, the cost
model) does not pay for torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

#: public name -> its module
_API = {
    "CompiledNetwork": "evaluate", "Evaluation": "evaluate", "compile_network": "evaluate",
    "trace": "frontend", "trace_spec": "frontend", "DigitalOp": "ir", "Layer": "ir", "Network": "ir",
    "policy_tables": "tables",
}  # fmt: skip

__all__ = [
    "CompiledNetwork",
    "DigitalOp",
    "Evaluation",
    "Layer",
    "Network",
    "compile_network",
    "policy_tables",
    "trace",
    "trace_spec",
]

if TYPE_CHECKING:  # pragma: no cover
    from cimdse.compiler.evaluate import CompiledNetwork, Evaluation, compile_network
    from cimdse.compiler.frontend import trace, trace_spec
    from cimdse.compiler.ir import DigitalOp, Layer, Network
    from cimdse.compiler.tables import policy_tables


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'cimdse.compiler' has no attribute {name!r}")
    return getattr(import_module(f"cimdse.compiler.{_API[name]}"), name)
