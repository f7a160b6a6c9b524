"""The ``cimdse`` command. One module per command group; each exposes
``register(subparsers)`` which adds its parser and sets ``func``.

Bad input raises :class:`cimdse.errors.CimdseError` anywhere below; here it becomes
one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cimdse.cli import arch_cmd, compile_cmd, rtl_cmd, search_cmd, train_cmd
from cimdse.errors import CimdseError

COMMAND_MODULES = [arch_cmd, compile_cmd, train_cmd, search_cmd, rtl_cmd]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cimdse",
        description="Design-space exploration for RRAM computing-in-memory accelerators.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
