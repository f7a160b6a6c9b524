"""The ``cimdse`` command. One module per command group; each exposes
``register(subparsers)`` which adds its parsers and sets ``func``. Only the module of
the command being run is imported, so light commands do not pay for torch.

Bad input raises :class:`cimdse.errors.CimdseError` anywhere below; here it becomes
one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from cimdse.errors import CimdseError

#: command -> the module that registers it (a module may register several).
COMMANDS: dict[str, str] = {
    "arch": "arch_cmd",
    "layers": "compile_cmd",
    "compile": "compile_cmd",
    "train": "train_cmd",
    "evaluate": "train_cmd",
    "search": "search_cmd",
    "compare": "search_cmd",
    "rtl": "rtl_cmd",
    "verify": "rtl_cmd",
    "sweep": "sweep_cmd",
    "report": "report_cmd",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser for ``command`` alone, or for every command (help, unknown names)."""
    parser = argparse.ArgumentParser(
        prog="cimdse",
        description="Design-space exploration for RRAM computing-in-memory accelerators.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = [COMMANDS[command]] if command in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    for name in modules:
        importlib.import_module(f"cimdse.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CimdseError as err:
        print(f"cimdse: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into head & co.
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("cimdse: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
