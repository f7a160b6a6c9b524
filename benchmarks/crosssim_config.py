"""The CrossSim 3.2 configuration that matches a cimdse tile, shared by the benchmarks
that compare against it: 8-bit weights in 4 bit-sliced balanced 2-bit cells, unsigned
8-bit inputs applied in 1-bit slices, a 6-bit ADC per input bit. CrossSim is imported
from ``CROSSSIM_PATH`` (:func:`add_crosssim_path`); cimdse never depends on it."""

from __future__ import annotations

import os
import sys


def add_crosssim_path() -> bool:
    """Put ``CROSSSIM_PATH`` (the folder holding CrossSim's ``simulator/``) on the
    import path; whether CrossSim imports."""
    path = os.environ.get("CROSSSIM_PATH")
    if path and path not in sys.path:
        sys.path.insert(0, path)
    try:
        import simulator  # noqa: F401
    except ImportError:
        return False
    return True


def crosssim_params(rows: int, adc_range: str, input_max: float, gpu: bool = False):
    """CrossSimParameters for ``rows`` x ``rows`` arrays, inputs in [0, input_max] and the
    ADC range option ``adc_range`` (CrossSim's MAX or GRANULAR); ``gpu``: CrossSim on
    CUDA through cupy."""
    from simulator import CrossSimParameters

    p = CrossSimParameters()
    p.simulation.useGPU = gpu
    p.core.style = "BITSLICED"
    p.core.bit_sliced.style = "BALANCED"
    p.core.bit_sliced.num_slices = 4
    p.core.weight_bits = 8
    p.core.rows_max = rows
    p.core.cols_max = rows
    p.xbar.device.cell_bits = 2
    p.xbar.dac.mvm.model = "QuantizerDAC"
    p.xbar.dac.mvm.bits = 8
    p.xbar.dac.mvm.input_bitslicing = True
    p.xbar.dac.mvm.signed = False
    p.xbar.dac.mvm.slice_size = 1
    p.core.mapping.inputs.mvm.min = 0.0
    p.core.mapping.inputs.mvm.max = float(input_max)
    p.xbar.adc.mvm.model = "QuantizerADC"
    p.xbar.adc.mvm.bits = 6
    p.xbar.adc.mvm.adc_per_ibit = True
    p.xbar.adc.mvm.adc_range_option = adc_range
    return p
