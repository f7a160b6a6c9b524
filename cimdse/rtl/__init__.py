"""Verilog for one crossbar tile, and its verification against the functional model.

:func:`generate` writes the tile for a spec and a layer's (w_bits, a_bits) to a file
named after its module (:func:`module_name`, unique per parameterization);
:func:`cimdse.costs.tile_cycles_per_mvm` is its cycle count, shared with the cost
model; :mod:`cimdse.rtl.verify` lints it (pyverilog, ``iverilog -Wall``,
``verilator --lint-only -Wall``) and simulates it with the cocotb bench in
:mod:`cimdse.rtl.bench` under Icarus or Verilator; :mod:`cimdse.rtl.layer` runs a
trained layer of a checkpoint on as many tile instances as its mapping needs.
"""

from cimdse.costs import tile_cycles_per_mvm
from cimdse.rtl.generate import (
    GENERATOR_VERSION,
    GeneratedTile,
    TileParams,
    generate,
    lint,
    module_name,
    render,
    tile_params,
)

__all__ = [
    "GENERATOR_VERSION",
    "GeneratedTile",
    "TileParams",
    "generate",
    "lint",
    "module_name",
    "render",
    "tile_cycles_per_mvm",
    "tile_params",
]
