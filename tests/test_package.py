"""The package surface: a regular package with a version."""

import subprocess
import sys

import pytest

import cimdse


def test_cimdse_is_a_regular_package_with_a_version():
    assert cimdse.__file__ is not None and cimdse.__file__.endswith("__init__.py")
    parts = cimdse.__version__.split(".")
    assert len(parts) >= 2 and parts[0].isdigit(), cimdse.__version__


def test_every_name_in_the_api_map_exists():
    """The map in cimdse's docstring names real objects (it must not drift from the code)."""
    import importlib
    import re

    names = re.findall(r"^\s+(cimdse(?:\.\w+)+)", cimdse.__doc__, flags=re.M)
    assert len(names) >= 10
    for dotted in names:
        parts = dotted.split(".")
        for cut in range(len(parts), 0, -1):  # the longest importable prefix, then attributes
            try:
                obj = importlib.import_module(".".join(parts[:cut]))
                break
            except ModuleNotFoundError:
                continue
        for attr in parts[cut:]:
            assert hasattr(obj, attr), dotted
            obj = getattr(obj, attr)


def test_policy_module_needs_no_torch():
    """Bit-width policies are read and checked without importing torch (report, sweep planning)."""
    import subprocess
    import sys

    code = "import sys, cimdse.policy; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_yaml_reader_names_line_and_column(tmp_path):
    """Architectures, sweep configs and policies share one YAML reader."""
    import pytest

    from cimdse import arch, policy, sweep
    from cimdse.errors import CimdseError

    path = tmp_path / "bad.yaml"
    path.write_text("a: [1, 2\nb: 3\n")
    for read in (arch.load, sweep.load_config, policy.read_policy):
        with pytest.raises(CimdseError, match=rf"^{path}: line 2, column 2: malformed YAML: "):
            read(path)


# ---------------------------------------------------------------- import directions
def _import_graph() -> dict[str, set[str]]:
    """cimdse module -> the cimdse modules it imports anywhere (top level, functions,
    TYPE_CHECKING blocks), read with ast: every edge, whether it runs at import or later."""
    import ast
    from pathlib import Path

    root = Path(cimdse.__file__).parent
    files = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    head = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(head + ([base] if base else []))
                found.update(f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names)
        graph[name] = {m for m in found if m in files and m != name}
    return graph


def _reaches(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, stack = set(), [start]
    while stack:
        for nxt in graph[stack.pop()] - seen:
            seen.add(nxt)
            stack.append(nxt)
    return seen


#: circles still to be made one-way by their owners (each pair must say why it is here)
_KNOWN_CIRCLES = {frozenset({"cimdse.crossbar", "cimdse.crossbar_torch"})}


def test_imports_run_one_way():
    """No module reaches itself through imports (lazy ones included): each module's place
    in the layers stays visible, and a lower one never needs an upper one."""
    graph = _import_graph()
    assert len(graph) > 50 and "cimdse.costs" in graph["cimdse.compiler.evaluate"]  # the reader works
    circles = {frozenset({a, b}) for a in graph for b in graph[a] if a in _reaches(graph, b)} - _KNOWN_CIRCLES
    assert not circles, sorted(sorted(c) for c in circles)
    lower_upper = [
        ("cimdse.arch", "cimdse.costs"),  # the spec is read by the cost models; both read cimdse.constants
        ("cimdse.compiler.evaluate", "cimdse.compiler.tables"),  # tables are made from a compiled network
        ("cimdse.data_mnist1d", "cimdse.data"),  # data.py splits the arrays MNIST-1D generates
        ("cimdse.pareto", "cimdse.search.fronts"),
    ]
    for lower, upper in lower_upper:
        assert upper not in _reaches(graph, lower), f"{lower} imports {upper}"
        assert lower in _reaches(graph, upper), f"{upper} no longer uses {lower}: update this test"
    # a report reads result files; it never reaches into the search's live code
    assert not {m for m in _reaches(graph, "cimdse.plots") if m.startswith("cimdse.search")}


def test_cli_help_and_argument_errors_import_no_torch():
    """``cimdse --help``, every ``cimdse CMD --help`` and argparse's errors answer without
    importing torch, the compiler or the trainer (lazy imports in cimdse.cli)."""
    import subprocess
    import sys

    code = """
import contextlib, io, sys
from cimdse.cli import COMMANDS, build_parser, main
heavy = ("torch", "pandas", "pydantic", "cimdse.compiler.frontend", "cimdse.arch", "cimdse.search.agent")
def check(argv):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            main(argv)
        except SystemExit as done:
            assert done.code in (0, 2), (argv, done.code)
    loaded = [m for m in heavy if m in sys.modules]
    assert not loaded, (argv, loaded)
check(["--help"])
for cmd in COMMANDS:
    check([cmd, "--help"])
check(["compile", "--model", "lenet"])  # missing --arch and --bits: an argument error
check(["search", "--episodes", "x"])
check(["nonsense"])
parser = build_parser()
assert set(parser._subparsers._group_actions[0].choices) == set(COMMANDS)
"""
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_choices_match_their_owners():
    """Choices written out in the light CLI modules equal the constants of the heavy owners."""
    import argparse

    from cimdse.cli import build_parser
    from cimdse.compiler.runtime import MATMUL_UNITS

    sub = build_parser("compile")._subparsers._group_actions[0]
    matmul = next(a for a in sub.choices["compile"]._actions if a.dest == "matmul")
    assert isinstance(matmul, argparse.Action) and tuple(matmul.choices) == MATMUL_UNITS


def test_cli_layers_of_a_zoo_network_imports_only_torch():
    """``cimdse layers --model lenet`` costs torch's import and little else: no pandas (the
    CSV is written by the csv module), no sympy or dynamo (a small network runs on zeros
    on the CPU instead of through the meta kernels, whose first use imports both)."""
    import subprocess
    import sys

    code = """
import contextlib, io, sys
from cimdse.cli import main
with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()):
    assert main(["layers", "--model", "lenet"]) == 0
assert out.getvalue().startswith("name,kind,K,N,V"), out.getvalue()
loaded = [m for m in ("pandas", "sympy", "torch._dynamo") if m in sys.modules]
assert not loaded, loaded
"""
    subprocess.run([sys.executable, "-c", code], check=True)


_CHURN = """
import resource, sys
import numpy as np
from cimdse.cli import keep_freed_memory
print(keep_freed_memory())
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for i in range(100):  # large temporaries of varying size, as a search's evaluations make
    a = np.ones((1 + i % 7) * 3 * 2**17)  # 3..21 MiB
    b = a * 2
    del a, b
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings")
def test_the_command_keeps_freed_memory_instead_of_faulting_it_in_again():
    """By default glibc hands each freed large temporary back to the kernel and the next
    one is faulted in page by page (~66k faults here); kept, it is reused (~3k)."""
    import os

    def faults(**env: str) -> tuple[str, int]:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
        out = subprocess.run([sys.executable, "-c", _CHURN], env={**clean, **env}, capture_output=True, text=True,
                             check=True).stdout.split()  # fmt: skip
        return out[0], int(out[1])

    (kept, few), (default, many) = faults(), faults(MALLOC_ARENA_MAX="2")  # a user's MALLOC_ setting wins
    assert (kept, default) == ("True", "False")
    assert few * 5 < many, (few, many)
