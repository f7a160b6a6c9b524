"""Compiler: torch model -> layer IR -> crossbar mapping -> schedule -> costs.

net = trace(model, (3, 224, 224))            # Network: .layers (policy order), .digital_ops
cn = compile_network(net, arch.load("isaac"))
ev = cn.evaluate(policies)                   # [L, 2] or [P, L, 2] int (w_bits, a_bits)
layers_df, summary_df = cn.report(policy)
"""

from cimdse.compiler.evaluate import CompiledNetwork, Evaluation, compile_network
from cimdse.compiler.frontend import trace, trace_spec
from cimdse.compiler.ir import DigitalOp, Layer, Network

__all__ = [
    "CompiledNetwork",
    "DigitalOp",
    "Evaluation",
    "Layer",
    "Network",
    "compile_network",
    "trace",
    "trace_spec",
]
