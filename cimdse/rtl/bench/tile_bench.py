"""cocotb testbench of the generated crossbar tile (runs under Icarus and Verilator).

Programs weights through the programming port (cells from
``cimdse.crossbar.program``), then runs two phases, each checked bit-exact against
``cimdse.crossbar.mvm`` and against ``cimdse.costs.tile_cycles_per_mvm``:

1. checked: input vectors (all-zero, all-max, random, some back to back, some with
   gaps) with ``out_ready`` held low for random stretches; the bench wakes up every
   clock cycle and checks every MVM's cycles, that nothing is lost or duplicated;
2. stream: vectors back to back with ``out_ready`` high; the bench wakes up only on
   the handshakes (three times per MVM), so its wall time is the simulator's
   steady-state throughput, and every initiation interval must be the formula.

The run's parameters come from the JSON file named by ``CIMDSE_TB_CONFIG``; a
summary goes to the file it names (and the streamed outputs to an ``.npy`` file
when asked), for ``cimdse verify``.
"""

from __future__ import annotations

import json
import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import ReadOnly, RisingEdge, SimTimeoutError, with_timeout

from cimdse.rtl.bench.tile_model import TbConfig, TileModel, pack, unpack_signed

PERIOD_NS = 10


async def _reset(dut, flip: bool) -> None:
    dut.rst.value = 1
    dut.prog_en.value = 0
    if flip:
        dut.prog_flip.value = 0
    dut.in_valid.value = 0
    dut.out_ready.value = 0
    dut.in_vec.value = 0
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0


async def _program(dut, writes: list[tuple[int, int, int]], flips: list[tuple[int, int, int]]) -> None:
    """The cells, then (flip encoding) the flip bits of every row group and column."""
    for flag, items in ((0, writes), (1, flips)):
        if flag and items:
            dut.prog_flip.value = 1
        for row, col, value in items:
            dut.prog_en.value = 1
            dut.prog_row.value = row
            dut.prog_col.value = col
            dut.prog_data.value = value
            await RisingEdge(dut.clk)
    dut.prog_en.value = 0
    if flips:
        dut.prog_flip.value = 0


def _now_cycles() -> int:
    return int(get_sim_time(unit="ns")) // PERIOD_NS


async def _checked_phase(dut, cfg: TbConfig, x: np.ndarray, rng: np.random.Generator) -> dict:
    """Every cycle observed: first half back to back with ``out_ready`` high (the
    initiation interval is the formula), then random input gaps and back-pressure."""
    p = cfg.params
    count, formula = len(x), p.cycles
    streaming = count // 2
    accept_cycle: list[int] = []
    results: list[list[int]] = []
    out_cycle: list[int] = []  # cycle in which each result was first valid
    fire_cycle: list[int] = []  # cycle in which each result was taken
    nxt, cycle, ready_left, ready_level = 0, 0, 0, 1
    was_valid = False
    driving: int | None = None  # index of the vector on in_vec while in_valid is high
    packed = [pack(row, p.a_bits) for row in x]
    limit = (count + 2) * (formula + 40) * 3
    extra_outputs = 0
    while len(fire_cycle) < count and cycle < limit:
        await RisingEdge(dut.clk)
        cycle += 1
        # Drive this cycle's inputs (held until accepted).
        if nxt < count and (nxt < streaming or driving == nxt or rng.random() < 0.5):
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
            if len(fire_cycle) >= count:
                extra_outputs += 1
            results.append(unpack_signed(int(dut.out_vec.value.to_unsigned()), p.n, p.out_width))
            fire_cycle.append(cycle)
            was_valid = False  # a new result may be valid in the next cycle
        else:
            was_valid = valid

    # Nothing more may come out: no duplicated or phantom result.
    await RisingEdge(dut.clk)
    dut.in_valid.value = 0
    dut.out_ready.value = 1
    for _ in range(2 * formula + 4):
        await ReadOnly()
        if int(dut.out_valid.value):
            extra_outputs += 1
        await RisingEdge(dut.clk)

    # Result i is valid `formula` cycles after its accept cycle, or right after
    # result i-1 was taken when the output register was still full (FINAL stall).
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
    return {
        "results": results,
        "extra_outputs": extra_outputs,
        "cycle_errors": cycle_errors,
        "latencies": latencies,
        "intervals": intervals,
        "cycles": cycle,
    }


async def _stream_phase(dut, cfg: TbConfig, x: np.ndarray) -> dict:
    """Back to back with ``out_ready`` high, waking only on the handshakes: the tile
    accepts vector i+1 in the cycle after result i appears, so the next vector is put
    on ``in_vec`` right after each accept edge."""
    p = cfg.params
    count, formula = len(x), p.cycles
    packed = [pack(row, p.a_bits) for row in x]
    results: list[list[int]] = []
    accept_at: list[int] = []
    out_at: list[int] = []
    lost = False
    dut.out_ready.value = 1
    if count == 0:
        return {"results": results, "intervals": [], "latencies": [], "cycles": 0, "seconds": 0.0, "lost": False}
    dut.in_vec.value = packed[0]
    dut.in_valid.value = 1
    await RisingEdge(dut.clk)  # the tile is idle: this edge accepts vector 0
    start = time.perf_counter()
    accept_at.append(_now_cycles())
    if count > 1:
        dut.in_vec.value = packed[1]
    else:
        dut.in_valid.value = 0
    for i in range(count):
        try:
            await with_timeout(RisingEdge(dut.out_valid), 4 * formula * PERIOD_NS, "ns")
        except SimTimeoutError:
            lost = True
            break
        await ReadOnly()
        out_at.append(_now_cycles())
        results.append(unpack_signed(int(dut.out_vec.value.to_unsigned()), p.n, p.out_width))
        if i + 1 < count:
            await RisingEdge(dut.clk)  # accepts vector i + 1
            accept_at.append(_now_cycles())
            if i + 2 < count:
                dut.in_vec.value = packed[i + 2]
            else:
                dut.in_valid.value = 0
    seconds = time.perf_counter() - start
    await RisingEdge(dut.clk)  # leave the ReadOnly phase: the next job drives the ports
    return {
        "results": results,
        "intervals": [b - a for a, b in zip(accept_at, accept_at[1:], strict=False)],
        # out_valid rises at the FINAL edge; the formula also counts the accept cycle
        "latencies": [o - a + 1 for a, o in zip(accept_at, out_at, strict=False)],
        "cycles": (out_at[-1] - accept_at[0] + 1) if out_at else 0,
        "seconds": seconds,
        "lost": lost,
    }


def _mismatches(results: list[list[int]], expected: np.ndarray, n: int) -> list[dict]:
    out = []
    for i, row in enumerate(results[: len(expected)]):
        if row != expected[i].tolist():
            bad = [j for j in range(n) if row[j] != expected[i][j]]
            out.append({"vector": i, "outputs": bad[:8], "got": row[bad[0]], "want": int(expected[i][bad[0]])})
    return out


async def _run_job(dut, cfg: TbConfig, w: np.ndarray, x_checked: np.ndarray, x_stream: np.ndarray, rng) -> dict:
    """Program ``w``, run both phases, compare with the model; one job's summary."""
    p = cfg.params
    model = TileModel(p, w)
    formula = p.cycles
    await _program(dut, model.cell_writes(), model.flip_writes())
    t0 = time.perf_counter()
    checked = await _checked_phase(dut, cfg, x_checked, rng) if len(x_checked) else None
    checked_seconds = time.perf_counter() - t0
    stream = await _stream_phase(dut, cfg, x_stream)

    mism_checked = _mismatches(checked["results"], model.expected(x_checked), p.n) if checked else []
    mism_stream = _mismatches(stream["results"], model.expected(x_stream), p.n)
    lost = (len(x_checked) - len(checked["results"]) if checked else 0) + len(x_stream) - len(stream["results"])
    cycle_errors = list(checked["cycle_errors"]) if checked else []
    cycle_errors += [
        {"stream_vector": i, "measured": v, "want": formula} for i, v in enumerate(stream["latencies"]) if v != formula
    ]
    return {
        "vectors": len(x_checked) + len(x_stream),
        "checked_vectors": len(x_checked),
        "stream_vectors": len(x_stream),
        "received": (len(checked["results"]) if checked else 0) + len(stream["results"]),
        "extra_outputs": checked["extra_outputs"] if checked else 0,
        "mismatches": len(mism_checked) + len(mism_stream) + lost,
        "lost": lost,
        "first_mismatches": (mism_checked + mism_stream)[:3],
        "cycle_errors": cycle_errors[:3],
        "cycles_measured": sorted(set((checked["latencies"] if checked else []) + stream["latencies"])),
        "interval_measured": sorted(set((checked["intervals"] if checked else []) + stream["intervals"])),
        "cycles_formula": formula,
        "saturated_conversions": model.saturated_conversions(np.concatenate([x_checked, x_stream])),
        "checked_seconds": checked_seconds,  # wall time of the cycle-by-cycle phase
        "checked_cycles": checked["cycles"] if checked else 0,
        "stream_seconds": stream["seconds"],  # wall time of the back-to-back phase
        "stream_cycles": stream["cycles"],
        "outputs": stream["results"],
    }


_SUMMED = ("vectors", "checked_vectors", "stream_vectors", "received", "extra_outputs", "mismatches", "lost")
_SUMMED_F = ("saturated_conversions", "checked_seconds", "checked_cycles", "stream_seconds", "stream_cycles")


@cocotb.test()
async def tile_matches_model(dut) -> None:
    """Every result exact, in order, exactly once, each after the formula's cycles
    (plus any stall), in both phases, for every job."""
    cfg = TbConfig.from_env()
    formula = cfg.params.cycles
    rng = np.random.default_rng(cfg.seed + 1)
    cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns").start())
    await _reset(dut, cfg.params.flip)
    jobs = []
    for index, (w, x_checked, x_stream) in enumerate(cfg.stimulus()):
        job = await _run_job(dut, cfg, w, x_checked, x_stream, rng)
        outputs = job.pop("outputs")
        if cfg.jobs and outputs:
            np.save(cfg.jobs[index][1], np.array(outputs, dtype=np.int64))
        jobs.append(job)

    summary: dict = {key: sum(j[key] for j in jobs) for key in _SUMMED + _SUMMED_F}
    summary.update(
        first_mismatches=[m for j in jobs for m in j["first_mismatches"]][:3],
        cycle_errors=[e for j in jobs for e in j["cycle_errors"]][:3],
        cycles_measured=sorted({c for j in jobs for c in j["cycles_measured"]}),
        interval_measured=sorted({c for j in jobs for c in j["interval_measured"]}),
        cycles_formula=formula,
        jobs=jobs,
    )
    if cfg.result_path is not None:
        cfg.result_path.write_text(json.dumps(summary, indent=2))
    assert summary["lost"] == 0, f"{summary['lost']} result(s) lost"
    assert summary["extra_outputs"] == 0, f"{summary['extra_outputs']} result(s) more than inputs"
    assert summary["mismatches"] == 0, f"{summary['mismatches']} vectors differ from the model"
    assert not summary["cycle_errors"], (
        f"cycle count differs from the formula ({formula}): {summary['cycle_errors'][0]}"
    )
    assert summary["interval_measured"] in ([], [formula]), f"interval {summary['interval_measured']} != {formula}"
