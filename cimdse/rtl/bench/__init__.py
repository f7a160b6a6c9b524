"""The cocotb testbench of the generated tile (:mod:`.tile_bench`) and the Python
model beside it (:mod:`.tile_model`); they ship with the package, so ``cimdse verify``
runs from an installed wheel."""
