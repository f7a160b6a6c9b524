"""The package surface: a regular package with a version."""

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
