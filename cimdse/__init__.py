"""cimdse: design-space exploration for RRAM computing-in-memory accelerators.

The public API, lowest layer first (data flows arch -> compiler -> costs -> search -> report):

    cimdse.arch.load(name_or_path)                 architecture spec (presets or YAML)
    cimdse.crossbar.mvm(x, w, spec, w_bits, a_bits) bit-exact crossbar tile model
    cimdse.crossbar.program(w, spec, w_bits)       cell matrices the crossbars hold
    cimdse.costs                                   component cost models with cited constants
    cimdse.compiler.trace(model, input_shape)      torch model -> layer IR
    cimdse.compiler.compile_network(net, spec)     layer IR -> mapping, schedule, costs
    cimdse.quant                                   mixed-precision QAT and integer export
    cimdse.search.run.run_search(...)                per-layer bit-width search
    cimdse.sweep                                   sweeps over models, archs and bits
    cimdse.report                                  plots and report.md from result folders

Submodules are imported on use, so ``import cimdse`` stays cheap.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cimdse")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
