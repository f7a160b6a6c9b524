"""Hostile and careless input across the commands: each case gets one message, exit
code 2 and no files (design section 9), where it used to get a traceback, silence or
a run without bound. The CLI is called in-process (``main``) wherever it can be."""

from __future__ import annotations

import errno
import itertools
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import warnings
from pathlib import Path

import pandas as pd
import pytest

from cimdse import arch, files, sweep
from cimdse.cli import main
from cimdse.errors import CimdseError
from cimdse.policy import load_policy
from cimdse.seeds import SEED_MAX, check_seed

TINY_SEARCH = ["--episodes", "2", "--pretrain-epochs", "1", "--final-epochs", "1", "--methods", "random", "--quiet"]


def run_main(argv: list[str], capsys) -> tuple[int, str]:
    """``main(argv)``'s exit code (argparse's included) and stderr."""
    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code
    return code, capsys.readouterr().err


def one_message(err: str, *parts: str) -> None:
    assert "Traceback" not in err and err.count("cimdse: error:") == 1, err
    for part in parts:
        assert part in err, err


# ---------------------------------------------------------------- output folders
@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """What the writing commands read: a checkpoint, a compile folder, a sweep config."""
    root = tmp_path_factory.mktemp("inputs")
    assert (
        main(["train", "--epochs", "0", "--bits", "4,4", "--qat-epochs", "0", "--out", str(root / "ckpt"), "--quiet"])
        == 0
    )
    assert main(["compile", "--model", "mlp", "--arch", "demo", "--bits", "4,4", "--out", str(root / "comp")]) == 0
    (root / "sweep.yaml").write_text("models: [mlp]\narchs: [demo]\nbits: ['8,8']\n")
    return root


WRITERS = {
    "search": lambda r: ["search", *TINY_SEARCH],
    "train": lambda r: ["train", "--epochs", "0", "--quiet"],
    "compile": lambda r: ["compile", "--model", "mlp", "--arch", "demo", "--bits", "4,4"],
    "report": lambda r: ["report", str(r / "comp")],
    "sweep": lambda r: ["sweep", str(r / "sweep.yaml"), "--jobs", "1"],
    "evaluate": lambda r: ["evaluate", "--checkpoint", str(r / "ckpt" / "checkpoint.pt"), "--quiet"],
    "rtl": lambda r: ["rtl", "--arch", "demo"],
}


@pytest.mark.parametrize("command", list(WRITERS))
def test_read_only_output_folder_is_one_message_and_leaves_no_folder(command, inputs, tmp_path, monkeypatch, capsys):
    """A read-only folder, as the kernel treats it for a user who is not root: making a
    file in it fails (the test may run as root, whom chmod does not stop, so the refusal
    is simulated where every file is made)."""
    read_only = tmp_path / "ro"
    read_only.mkdir()
    real = tempfile.mkstemp

    def mkstemp(*args, **kw):
        folder = Path(kw.get("dir") or ".").resolve()
        if folder == read_only or read_only in folder.parents:
            raise PermissionError(errno.EACCES, "Permission denied", str(folder))
        return real(*args, **kw)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(tempfile, "mkdtemp", lambda *a, **kw: mkstemp(*a, **kw) and None)
    for out in (read_only, read_only / "new" / "run"):
        code, err = run_main([*WRITERS[command](inputs), "--out", str(out)], capsys)
        assert code == 2
        one_message(err, f"{out}: cannot write to output folder (Permission denied)")
    assert list(read_only.iterdir()) == []  # "new" was made (root may), then removed


def test_a_really_read_only_folder(tmp_path):
    """The same, with the kernel saying no: as root, with the capability that overrides
    file permissions dropped (setpriv), else as the user the tests run as."""
    read_only = tmp_path / "ro"
    read_only.mkdir()
    read_only.chmod(0o555)
    prefix: list[str] = []
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("root without setpriv: permissions cannot be enforced")
        prefix = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]
    cmd = [*prefix, sys.executable, "-m", "cimdse", "rtl", "--arch", "demo", "--out", str(read_only)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == f"cimdse: error: {read_only}: cannot write to output folder (Permission denied)\n"


def test_an_os_error_while_writing_is_one_message(tmp_path, monkeypatch, capsys):
    """A disk that fills up after the folder was made: the error, not a traceback."""

    def full(*args, **kw):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out" / "layers.csv"))

    monkeypatch.setattr(files, "atomic_write", full)
    monkeypatch.setattr("cimdse.cli.common.write_csv", lambda df, path: full())
    code, err = run_main(
        ["compile", "--model", "mlp", "--arch", "demo", "--bits", "4,4", "--out", str(tmp_path / "out")], capsys
    )
    assert code == 2
    one_message(err, "layers.csv: No space left on device")
    assert not (tmp_path / "out").exists()


def test_compare_out_through_a_file_is_one_message(tmp_path, capsys):
    run = _search_run(tmp_path / "s0")
    (tmp_path / "afile").write_text("x")
    code, err = run_main(["compare", str(run), str(run), "--out", str(tmp_path / "afile" / "x.csv")], capsys)
    assert code == 2
    one_message(err, "afile: cannot write to output folder")


# ---------------------------------------------------------------- seeds
@pytest.mark.parametrize("seed", ["-5", "99999999999999999999", str(SEED_MAX + 1)])
@pytest.mark.parametrize("command", ["search", "train"])
def test_seed_out_of_range_is_refused_before_any_file(command, seed, tmp_path, capsys):
    out = tmp_path / "out"
    args = [command, *(TINY_SEARCH if command == "search" else ["--epochs", "1", "--quiet"])]
    code, err = run_main([*args, "--seed", seed, "--out", str(out)], capsys)
    assert code == 2 and "Traceback" not in err
    assert f"argument --seed: {seed}: a seed must be a whole number from 0 to {SEED_MAX}" in err
    assert not out.exists()


def test_one_seed_rule_for_every_seed():
    assert check_seed(0) == 0 and check_seed(SEED_MAX) == SEED_MAX
    for bad in (-1, SEED_MAX + 1, True, 1.0):
        with pytest.raises(CimdseError, match="a seed must be a whole number from 0 to 4294967295"):
            check_seed(bad)
    with pytest.raises(CimdseError, match="mnist1d seed=-1: a seed"):
        files_free_dataset("mnist1d:seed=-1")
    with pytest.raises(CimdseError, match="nonideal.seed"):
        arch.load("demo", [f"crossbar.nonideal.seed={SEED_MAX + 1}"])


def files_free_dataset(name: str):
    from cimdse.data_mnist1d import parse_options

    return parse_options(name.partition(":")[2])


# ---------------------------------------------------------------- datasets
def test_mnist1d_sizes_are_bounded_and_keys_given_once():
    with pytest.raises(CimdseError, match=r"train\+val\+test = 100,000,005,999 signals: at most 1,000,000"):
        files_free_dataset("mnist1d:train=99999999999")
    with pytest.raises(CimdseError, match="mnist1d option 'train' is given twice"):
        files_free_dataset("mnist1d:train=500,train=600")
    assert files_free_dataset("mnist1d:train=980000")["train"] == 980_000  # at the bound: accepted


# ---------------------------------------------------------------- sweeps
BIG_GRID = """\
models: [mlp]
archs: [demo]
grid:
  crossbar.rows: [16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 100]
  crossbar.cols: [16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 100]
  crossbar.adcs: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
  crossbar.dac_bits: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
  chip.tiles: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
  chip.clock_ghz: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
bits: ["8,8", "4,4"]
"""


def test_a_huge_sweep_grid_is_counted_and_refused_unless_raised(tmp_path, capsys):
    config = tmp_path / "big.yaml"
    config.write_text(BIG_GRID)
    out = tmp_path / "out"
    code, err = run_main(["sweep", str(config), "--out", str(out)], capsys)
    assert code == 2 and not out.exists()
    one_message(err, "2,000,000 points (1 x 1 x 10 x 10 x 10 x 10 x 10 x 10 x 2", "more than 100,000",
                "--max-points 2000000")  # fmt: skip
    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    assert f"default {sweep.MAX_POINTS:,}" in " ".join(capsys.readouterr().out.split())  # the help says the limit
    plan = sweep.plan(sweep.load_config(config), max_points=2_000_000)  # lazy: instant, nothing held
    assert plan.point_count == len(plan.points) == 2_000_000 and len(plan.units) == 1_000_000
    head = list(itertools.islice(plan.units, 12))
    assert [u.grid for u in head] == [plan.units[i].grid for i in range(12)]  # indexing agrees with the order
    assert plan.units[-1].grid == tuple(zip(plan.grid_keys, [100, 100, 10, 10, 10, 10], strict=True))
    assert plan.points[3].bits == "4,4" and plan.points[3].grid == head[1].grid


@pytest.mark.parametrize(
    "search, message",
    [
        ("{episodes: true}", "search.episodes: Input should be a valid integer"),
        ("{episodes: 2, seed: -1}", "search option seed: -1: a seed must be a whole number"),
        ("{episodes: 2, max_acc_drop: yes}", "search option max_acc_drop: True is not a number"),
        ("{episodes: 2, methods: tpe}", "search option methods: 'tpe' is not a list of names"),
        ("{episodes: 2, lr: 0.1}", "search options ['lr'] unknown"),
    ],
)
def test_a_sweeps_search_options_are_checked_before_any_point_runs(search, message, tmp_path, capsys):
    """Checked per point before, so a bad seed failed every point after the others ran."""
    config = tmp_path / "s.yaml"
    config.write_text(f"models: [lenet]\narchs: [demo]\nbits: ['8,8']\nsearch: {search}\n")
    out = tmp_path / "out"
    code, err = run_main(["sweep", str(config), "--out", str(out), "--jobs", "1"], capsys)
    assert code == 2 and not out.exists()
    one_message(err, message)


def test_a_huge_sweep_starts_without_building_its_plan(tmp_path, monkeypatch):
    """The run streams units to the executor: stopped after its first row, a sweep of a
    million units has made only the few it reached."""
    from sweep_fakes import fake_evaluator

    config = tmp_path / "big.yaml"
    config.write_text(BIG_GRID)
    plan = sweep.plan(sweep.load_config(config), max_points=2_000_000)
    made = []
    real = sweep.Plan._make
    monkeypatch.setattr(sweep.Plan, "_make", lambda self, *a: made.append(1) or real(self, *a))

    class Enough(Exception):
        pass

    def stop(row):
        raise Enough

    with pytest.raises(Enough):
        sweep.run_sweep(plan, tmp_path / "out", evaluator=fake_evaluator, on_row=stop)
    assert len(made) <= 2


# ---------------------------------------------------------------- input files
@pytest.mark.parametrize(
    "argv",
    [
        ["arch", "show", "/dev/zero"],
        ["compile", "--model", "mlp", "--arch", "demo", "--policy", "/dev/zero", "--out", "OUT"],
        ["sweep", "/dev/zero", "--out", "OUT"],
        ["evaluate", "--checkpoint", "/dev/zero", "--out", "OUT"],
    ],
)
def test_devices_are_refused_not_read(argv, tmp_path, capsys):
    code, err = run_main([str(tmp_path / "out") if a == "OUT" else a for a in argv], capsys)
    assert code == 2 and not (tmp_path / "out").exists()
    one_message(err, "/dev/zero: cannot read", "(not a regular file: a device, pipe or socket)")


def test_reads_are_capped_and_folders_refused(tmp_path):
    big = tmp_path / "big.yaml"
    with open(big, "wb") as f:
        f.truncate(files.MAX_DOCUMENT_BYTES + 1)  # sparse: no disk used
    with pytest.raises(CimdseError, match=r"big.yaml: architecture of 16,777,217 bytes is larger than the 16,777,216"):
        arch.load(big)
    with pytest.raises(CimdseError, match=r"cannot read sweep config \(not a regular file: a folder\)"):
        sweep.load_config(tmp_path)
    with pytest.raises(CimdseError, match="larger than the 10 bytes read"):
        files.read_bytes(big, limit=10)


def test_yaml_and_json_keys_given_twice_are_refused(tmp_path):
    spec = tmp_path / "a.yaml"
    spec.write_text("crossbar:\n  rows: 128\n  cols: 128\n  rows: 64\n")
    with pytest.raises(CimdseError, match=r"a.yaml: line 4, column 3: malformed YAML: key 'rows' is given twice"):
        arch.load(spec)
    layers = ["fc1", "fc2"]
    pol = tmp_path / "p.yaml"
    pol.write_text("fc1: [4, 4]\nfc2: [8, 8]\nfc1: [2, 2]\n")
    with pytest.raises(CimdseError, match="key 'fc1' is given twice"):
        load_policy(pol, layers)
    pol_json = tmp_path / "p.json"
    pol_json.write_text('{"fc1": [4, 4], "fc2": [8, 8], "fc1": [2, 2]}')
    with pytest.raises(CimdseError, match="p.json: malformed JSON: key 'fc1' is given twice"):
        load_policy(pol_json, layers)
    merged = tmp_path / "m.yaml"  # overriding a merged key is what merges are for
    merged.write_text("base: &b {rows: 64, cols: 64}\ncrossbar:\n  <<: *b\n  rows: 128\n")
    assert files.read_yaml(merged)["crossbar"] == {"rows": 128, "cols": 64}


# ---------------------------------------------------------------- specs
@pytest.mark.parametrize(
    ("override", "field"),
    [("crossbar.rows=true", "crossbar.rows"), ("crossbar.adcs=yes", "crossbar.adcs"),
     ("crossbar.adc_mode=true", "crossbar.adc_mode"), ("chip.clock_ghz=false", "chip.clock_ghz"),
     ("crossbar.timing.read_ns=true", "crossbar.timing.read_ns")],
)  # fmt: skip
def test_booleans_are_not_numbers(override, field):
    with pytest.raises(CimdseError, match=rf"{field}: (true|false) is a boolean, not a number"):
        arch.load("demo", [override, "crossbar.adc_bits=6"] if "adc_mode" in override else [override])


def test_booleans_are_not_numbers_in_spec_files_either(tmp_path):
    spec = tmp_path / "a.yaml"
    spec.write_text("crossbar: {rows: yes, cols: 64}\n")
    with pytest.raises(CimdseError, match="crossbar.rows: true is a boolean, not a number"):
        arch.load(spec)
    assert arch.load("demo", ["crossbar.timing.adc_overlap=true"]).crossbar.timing.adc_overlap  # a real flag


def test_a_crossbar_holds_one_output_of_an_8_bit_weight(tmp_path, capsys):
    """The rule the RTL tile needs, checked where every command loads its spec."""
    msg = "cols (4) cannot hold one output of an 8-bit weight: it takes 14 columns (7 cell(s) of 1 bit(s) x 2"
    with pytest.raises(CimdseError, match=re.escape(msg)):
        arch.load("demo", ["crossbar.cols=4", "crossbar.cell_bits=1"])
    code, err = run_main(["compile", "--model", "mlp", "--arch", "demo", "--set", "crossbar.cols=4", "--set",
                          "crossbar.cell_bits=1", "--bits", "2,2", "--out", str(tmp_path / "o")], capsys)  # fmt: skip
    assert code == 2 and not (tmp_path / "o").exists()
    one_message(err, msg)
    assert arch.load("demo", ["crossbar.cols=14", "crossbar.cell_bits=1"]).crossbar.cols == 14
    offset = arch.load("demo", ["crossbar.cols=8", "crossbar.cell_bits=1", "crossbar.mapping=offset"])
    assert offset.crossbar.cols == 8  # offset: 8 cells of one polarity


# ---------------------------------------------------------------- search options
@pytest.mark.parametrize(("methods", "message"), [("", "name at least one of"), ("random,,greedy", "an empty name")])
def test_search_methods_empty_are_refused(methods, message, tmp_path, capsys):
    out = tmp_path / "out"
    code, err = run_main(["search", *TINY_SEARCH, "--methods", methods, "--out", str(out)], capsys)
    assert code == 2 and not out.exists()
    one_message(err, f"--methods {methods!r}: {message}")


# ---------------------------------------------------------------- compare
def _search_run(folder: Path, seed: int = 0, **settings) -> Path:
    folder.mkdir(parents=True)
    rows = [
        {"arch": "demo", "method": m, "evaluations": 10, "hypervolume": hv, "speedup_vs_w8a8": 2.0,
         "acc_drop_pp": 0.1, "within_bound": True}
        for m, hv in (("uniform8", 0.0), ("random", 1.5 + seed))
    ]  # fmt: skip
    pd.DataFrame(rows).to_csv(folder / "summary.csv", index=False)
    config = {"dataset": "digits", "model": "lenet", "episodes": 10, "max_acc_drop": 0.5, "seed": seed, **settings}
    (folder / "search_config.yaml").write_text("".join(f"{k}: {v}\n" for k, v in config.items()))
    return folder


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"dataset": "mnist1d"}, "dataset 'digits' vs 'mnist1d'"),
        ({"model": "cnn1d"}, "model 'lenet' vs 'cnn1d'"),
        ({"max_acc_drop": 1.0}, "max_acc_drop 0.5 vs 1.0"),
        ({"episodes": 20}, "episodes 10 vs 20"),
    ],
)
def test_compare_refuses_runs_of_different_experiments(settings, message, tmp_path, capsys):
    a, b = _search_run(tmp_path / "a"), _search_run(tmp_path / "b", seed=1, **settings)
    code, err = run_main(["compare", str(a), str(b)], capsys)
    assert code == 2
    one_message(err, "are different experiments", message)


def test_compare_refuses_other_archs_and_malformed_or_cut_rows(tmp_path, capsys):
    a, b = _search_run(tmp_path / "a"), _search_run(tmp_path / "b", seed=1)
    summary = b / "summary.csv"
    good = summary.read_text()
    summary.write_text(good.replace("demo", "isaac"))
    assert run_main(["compare", str(a), str(b)], capsys)[1].count("archs demo vs isaac") == 1
    summary.write_text(good[:-20])  # cut mid-row
    code, err = run_main(["compare", str(a), str(b)], capsys)
    assert code == 2
    one_message(err, "the last line is cut short")
    summary.write_text(good[:-20] + "\n")  # cut mid-row, newline after
    one_message(run_main(["compare", str(a), str(b)], capsys)[1], "row 2 has 3 field(s), the header 7")
    summary.write_text(good.splitlines()[0] + "\n" + good.splitlines()[1] + "\n")  # a row lost
    one_message(run_main(["compare", str(a), str(b)], capsys)[1], "methods uniform8, random vs uniform8")
    summary.write_text(good.replace("2.5", "abc"))
    one_message(run_main(["compare", str(a), str(b)], capsys)[1], "row 2, column hypervolume: 'abc' is not a number")
    summary.write_text(good.replace("2.5", ""))
    one_message(run_main(["compare", str(a), str(b)], capsys)[1], "hypervolume: an empty cell is not a number")
    summary.write_text(good)
    assert run_main(["compare", str(a), str(b)], capsys)[0] == 0


# ---------------------------------------------------------------- report
def test_report_refuses_a_cut_sweep_csv_and_a_header_only_history(tmp_path, capsys):
    from sweep_fakes import fake_evaluator

    config = tmp_path / "s.yaml"
    config.write_text("models: [mlp]\narchs: [demo]\nbits: ['8,8', '4,4']\n")
    run = tmp_path / "sweep"
    sweep.run_sweep(sweep.plan(sweep.load_config(config)), run, evaluator=fake_evaluator)
    csv = run / "sweep.csv"
    csv.write_bytes(csv.read_bytes()[:-30])
    before = sorted(p.name for p in run.iterdir())
    code, err = run_main(["report", str(run)], capsys)
    assert code == 2 and sorted(p.name for p in run.iterdir()) == before
    one_message(err, "sweep.csv: the last line is cut short")
    hist = tmp_path / "search"
    hist.mkdir()
    (hist / "history.csv").write_text("episode,method,arch,policy,latency_s,speedup_vs_w8a8,val_acc,reward\n")
    code, err = run_main(["report", str(hist), "--out", str(tmp_path / "rep")], capsys)
    assert code == 2 and not (tmp_path / "rep").exists()
    one_message(err, "history.csv: result table has a header but no rows")


# ---------------------------------------------------------------- messages
def test_a_plain_pickle_checkpoint_is_refused_without_a_torch_warning(tmp_path, capsys):
    ckpt = tmp_path / "plain.pkl"
    ckpt.write_bytes(pickle.dumps({"format": "cimdse-checkpoint/1"}, protocol=4))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, err = run_main(["evaluate", "--checkpoint", str(ckpt), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and not caught, [str(w.message) for w in caught]
    one_message(err, "plain.pkl: not a readable checkpoint (a pickle of Python objects, which cimdse does not")


def test_matmul_bits_out_of_range_blame_matmul_bits(tmp_path, capsys):
    args = ["compile", "--model", "vit", "--arch", "demo", "--bits", "4,4", "--matmul", "crossbar"]
    code, err = run_main([*args, "--matmul-bits", "9,9", "--out", str(tmp_path / "o")], capsys)
    assert code == 2
    one_message(err, "--matmul-bits '9,9': w_bits = 9 outside 1..8")


# ---------------------------------------------------------------- Ctrl-C
def test_a_second_ctrl_c_during_cleanup_ends_quietly(tmp_path):
    """The first Ctrl-C unwinds the command; a second one arriving in its cleanup (as
    when a Dask client closes) used to print "Exception ignored ... KeyboardInterrupt"
    from the finalizer it hit. Now: one line, exit 130."""
    script = textwrap.dedent(
        """
        import os, signal, sys, time, types
        from cimdse import cli

        # as Python starts when Ctrl-C is live, even if this test runs with it ignored
        # (a background job of a shell), which the child would inherit
        signal.signal(signal.SIGINT, signal.default_int_handler)

        def executor():  # like the sweep's Dask executor: a generator closing a client
            try:
                yield 1
            finally:
                os.kill(os.getpid(), signal.SIGINT)  # the second Ctrl-C, during the cleanup
                time.sleep(5)

        def run(args):
            units = executor()
            next(units)
            os.kill(os.getpid(), signal.SIGINT)  # the first Ctrl-C
            time.sleep(5)

        mod = types.ModuleType("cimdse.cli.fake_cmd")
        mod.register = lambda sub: sub.add_parser("fake").set_defaults(func=run)
        sys.modules[mod.__name__] = mod
        cli.COMMANDS["fake"] = "fake_cmd"
        sys.exit(cli.main(["fake"]))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 130
    assert "Exception ignored" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.endswith("cimdse: interrupted again: stopping now\n")


def test_a_process_started_with_ctrl_c_ignored_keeps_it_ignored(capsys):
    """``nohup``-style and background jobs inherit an ignored SIGINT: the CLI leaves it so."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        assert main(["arch", "list"]) == 0
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
    assert signal.getsignal(signal.SIGINT) is previous
