"""The package surface: a regular package with a version."""

import cimdse


def test_cimdse_is_a_regular_package_with_a_version():
    assert cimdse.__file__ is not None and cimdse.__file__.endswith("__init__.py")
    parts = cimdse.__version__.split(".")
    assert len(parts) >= 2 and parts[0].isdigit(), cimdse.__version__
