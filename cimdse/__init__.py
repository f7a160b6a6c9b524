"""cimdse: design-space exploration for RRAM computing-in-memory accelerators.

The public API, lowest layer first (data flows arch -> compiler -> costs -> search -> report):

    cimdse.arch.load(name_or_path, overrides)       architecture spec (presets or YAML)
    cimdse.crossbar.mvm(x, w, spec, w_bits, a_bits) bit-exact crossbar tile model
    cimdse.crossbar.program(w, spec, w_bits)        cell matrices the crossbars hold
    cimdse.crossbar_torch.program / .mvm            the same model on torch kernels, CPU or CUDA
    cimdse.costs                                    component cost models with cited constants
    cimdse.policy.load_policy(file, net)            per-layer bit widths: parse, load, check, save
    cimdse.compiler.trace(model, input_shape)       torch model -> layer IR
    cimdse.compiler.compile_network(net, spec)      layer IR -> mapping, schedule, costs
    cimdse.quant                                    mixed-precision QAT and integer export
    cimdse.quant.hardware.hardware_aware(q, arch)   ADC-aware QAT: the crossbar model in the forward pass
    cimdse.search.run.run_search(config, archs, out) per-layer bit-width search (PPO, TPE, ILP, ...)
    cimdse.search.compare.compare_runs(runs)        methods' hypervolume over seeds
    cimdse.sweep.run_sweep(plan, out)               sweeps over models, archs and bits
    cimdse.plots.make_report(folder)                plots and report.md from result folders

Submodules are imported on use, so ``import cimdse`` stays cheap.
"""

__all__ = ["__version__"]


def __getattr__(name: str) -> str:
    """``__version__`` is read from the installed metadata on first use (importlib.metadata
    costs tens of ms, which ``cimdse --help`` should not pay)."""
    if name != "__version__":
        raise AttributeError(f"module 'cimdse' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cimdse")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"
