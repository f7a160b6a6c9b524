"""cocotb testbench of the generated crossbar tile.

Programs random weights through the programming port (cells from
``cimdse.crossbar.program``), drives input vectors (all-zero, all-max, random, some
back to back, some with gaps), holds ``out_ready`` low for random stretches, and
checks every result bit-exact against ``cimdse.crossbar.mvm`` and the cycles of
every MVM against ``cimdse.costs.tile_cycles_per_mvm``. The run's parameters come
from the JSON file named by ``CIMDSE_TB_CONFIG``; a summary is written back to the
file it names, for ``cimdse verify``.
"""

from __future__ import annotations

import json
import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from sim.tile_model import TbConfig, TileModel, pack, random_inputs, random_weights, unpack_signed


async def _reset(dut) -> None:
    dut.rst.value = 1
    dut.prog_en.value = 0
    dut.in_valid.value = 0
    dut.out_ready.value = 0
    dut.in_vec.value = 0
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0


async def _program(dut, writes: list[tuple[int, int, int]]) -> None:
    for row, col, value in writes:
        dut.prog_en.value = 1
        dut.prog_row.value = row
        dut.prog_col.value = col
        dut.prog_data.value = value
        await RisingEdge(dut.clk)
    dut.prog_en.value = 0


@cocotb.test()
async def tile_matches_model(dut) -> None:
    """Random weights and inputs with random back-pressure: every result exact, in
    order, exactly once, each after the formula's cycles (plus any stall)."""
    cfg = TbConfig.from_env()
    p = cfg.params
    rng = np.random.default_rng(cfg.seed)
    model = TileModel(p, random_weights(p, rng))
    x = random_inputs(p, cfg.vectors, rng)
    expected = model.expected(x)
    formula = p.cycles

    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    await _reset(dut)
    await _program(dut, model.cell_writes())

    # Phase 1 (first half): inputs back to back, out_ready high: the initiation
    # interval is the formula. Phase 2: random input gaps and out_ready stretches.
    streaming = cfg.vectors // 2
    accept_cycle: list[int] = []
    results: list[list[int]] = []
    out_cycle: list[int] = []  # cycle in which each result was first valid
    fire_cycle: list[int] = []  # cycle in which each result was taken
    nxt, cycle, ready_left, ready_level = 0, 0, 0, 1
    was_valid = False
    driving: int | None = None  # index of the vector on in_vec while in_valid is high
    packed = [pack(row, p.a_bits) for row in x]
    limit = (cfg.vectors + 2) * (formula + 40) * 3
    extra_outputs = 0
    t_start = time.perf_counter()
    while len(fire_cycle) < cfg.vectors and cycle < limit:
        await RisingEdge(dut.clk)
        cycle += 1
        # Drive this cycle's inputs (held until accepted).
        if nxt < cfg.vectors and (nxt < streaming or driving == nxt or rng.random() < 0.5):
            if driving != nxt:  # a new vector: write the wide port only when it changes
                dut.in_valid.value = 1
                dut.in_vec.value = packed[nxt]
                driving = nxt
        elif driving is not None:
            dut.in_valid.value = 0
            driving = None
        if len(fire_cycle) < streaming:
            dut.out_ready.value = 1
        else:
            if ready_left == 0:
                ready_level = int(rng.random() < 0.5)
                ready_left = int(rng.integers(1, 3 * formula // 2 + 3))
            ready_left -= 1
            dut.out_ready.value = ready_level
        await ReadOnly()
        if driving is not None and int(dut.in_ready.value):
            accept_cycle.append(cycle)
            nxt += 1
        valid = bool(int(dut.out_valid.value))
        if valid and not was_valid:
            out_cycle.append(cycle)
        if valid and int(dut.out_ready.value):
            if len(fire_cycle) >= cfg.vectors:
                extra_outputs += 1
            results.append(unpack_signed(int(dut.out_vec.value.to_unsigned()), p.n, p.out_width))
            fire_cycle.append(cycle)
            was_valid = False  # a new result may be valid in the next cycle
        else:
            was_valid = valid

    mvm_seconds = time.perf_counter() - t_start

    # Nothing more may come out: no duplicated or phantom result.
    await RisingEdge(dut.clk)
    dut.in_valid.value = 0
    dut.out_ready.value = 1
    for _ in range(2 * formula + 4):
        await ReadOnly()
        if int(dut.out_valid.value):
            extra_outputs += 1
        await RisingEdge(dut.clk)

    mismatches = []
    for i, row in enumerate(results[: cfg.vectors]):
        if row != expected[i].tolist():
            bad = [n for n in range(p.n) if row[n] != expected[i][n]]
            mismatches.append({"vector": i, "outputs": bad[:8], "got": row[bad[0]], "want": int(expected[i][bad[0]])})
    # Cycle check: result i is valid `formula` cycles after its accept cycle, or right
    # after result i-1 was taken when the output register was still full (FINAL stall).
    cycle_errors, latencies = [], []
    for i in range(min(len(out_cycle), len(accept_cycle))):
        want = accept_cycle[i] + formula
        if i > 0:
            want = max(want, fire_cycle[i - 1] + 1)
        if out_cycle[i] != want:
            cycle_errors.append(
                {"vector": i, "measured": out_cycle[i] - accept_cycle[i], "want": want - accept_cycle[i]}
            )
        if want == accept_cycle[i] + formula:  # not stalled by the output register
            latencies.append(out_cycle[i] - accept_cycle[i])
    intervals = [b - a for a, b in zip(accept_cycle[:streaming], accept_cycle[1:streaming], strict=False)]
    summary = {
        "vectors": cfg.vectors,
        "received": len(results),
        "extra_outputs": extra_outputs,
        "mismatches": len(mismatches) + max(0, cfg.vectors - len(results)),
        "first_mismatches": mismatches[:3],
        "cycle_errors": cycle_errors[:3],
        "cycles_measured": sorted(set(latencies)),
        "interval_measured": sorted(set(intervals)),
        "cycles_formula": formula,
        "saturated_conversions": model.saturated_conversions(x),
        "sim_cycles": cycle,
        "mvm_seconds": mvm_seconds,  # wall time of the MVM phase (after programming)
    }
    if cfg.result_path is not None:
        cfg.result_path.write_text(json.dumps(summary, indent=2))
    assert len(results) == cfg.vectors, f"{cfg.vectors - len(results)} result(s) lost (timeout after {cycle} cycles)"
    assert extra_outputs == 0, f"{extra_outputs} result(s) more than inputs"
    assert not mismatches, f"{len(mismatches)} of {cfg.vectors} vectors differ from the model, first: {mismatches[0]}"
    assert not cycle_errors, f"cycle count differs from the formula ({formula}): {cycle_errors[0]}"
    assert all(v == formula for v in intervals), f"back-to-back interval {intervals} != formula {formula}"
