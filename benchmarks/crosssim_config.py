"""The CrossSim 3.2 configuration that matches a cimdse tile, shared by the benchmarks
that compare against it: 8-bit weights in 4 bit-sliced balanced 2-bit cells, unsigned
8-bit inputs applied in 1-bit slices, a 6-bit ADC per input bit. CrossSim is imported
from ``CROSSSIM_PATH`` by the benchmark runner; cimdse never depends on it."""

from __future__ import annotations


def crosssim_params(rows: int, adc_range: str, input_max: float):
    """CrossSimParameters for ``rows`` x ``rows`` arrays, inputs in [0, input_max] and the
    ADC range option ``adc_range`` (CrossSim's MAX or GRANULAR)."""
    from simulator import CrossSimParameters

    p = CrossSimParameters()
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
