"""Helpers shared by the command modules: arch options, output folders, atomic files.

Light on purpose: the parsers are built from it, so it imports neither the arch model
(pydantic) nor torch; :func:`load_arch` imports the arch model when a command runs.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from cimdse.errors import CimdseError
from cimdse.files import atomic_write, output_dir, write_csv, write_text
from cimdse.seeds import check_seed

if TYPE_CHECKING:  # pragma: no cover
    from cimdse.arch import ArchSpec


def add_arch_options(parser: argparse.ArgumentParser, *, multiple: bool = False, required: bool = True) -> None:
    """``--arch NAME|FILE`` (repeatable when ``multiple``) and ``--set key=value``."""
    help_arch = "preset name (demo, cim-aq, isaac, puma) or architecture YAML file"
    if multiple:
        parser.add_argument("--arch", action="append", required=required, help=help_arch + "; repeatable")
    else:
        parser.add_argument("--arch", required=required, default=None if required else "demo", help=help_arch)
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a spec field by dotted key, e.g. crossbar.rows=128 (repeatable)",
    )


def add_seed_option(parser: argparse.ArgumentParser, default: int = 0, help: str = "random seed") -> None:
    """``--seed N``, checked by :func:`cimdse.seeds.check_seed` while the arguments are
    parsed: a bad seed stops the command before anything runs or is written."""
    parser.add_argument("--seed", type=_seed, default=default, metavar="N", help=f"{help} (0..2^32-1)")


def _seed(text: str) -> int:
    try:
        return check_seed(int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a seed must be a whole number") from None
    except CimdseError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix("--seed ")) from None


def load_arch(name: str, overrides: list[str]) -> ArchSpec:
    from cimdse import arch as arch_mod

    return arch_mod.load(name, overrides)


def load_archs(args: argparse.Namespace) -> list[ArchSpec]:
    names = args.arch if isinstance(args.arch, list) else [args.arch]
    return [load_arch(n, args.overrides) for n in names]


__all__ = [
    "add_arch_options",
    "add_seed_option",
    "atomic_write",
    "load_arch",
    "load_archs",
    "output_dir",
    "write_csv",
    "write_text",
]


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show an option's default in --help, except where it has none (None: chosen at run time)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)
