"""Verilog for one crossbar tile, and its verification against the functional model.

:func:`generate` writes the tile for a spec and a layer's (w_bits, a_bits);
:func:`cimdse.costs.tile_cycles_per_mvm` is its cycle count, shared with the cost
model; :mod:`cimdse.rtl.verify` lints and simulates it with cocotb under Icarus.
"""

from cimdse.costs import tile_cycles_per_mvm
from cimdse.rtl.generate import GENERATOR_VERSION, TileParams, generate, lint, render, tile_params

__all__ = ["GENERATOR_VERSION", "TileParams", "generate", "lint", "render", "tile_cycles_per_mvm", "tile_params"]
