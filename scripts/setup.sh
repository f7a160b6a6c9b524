#!/usr/bin/env bash
# Set up cimdse on a fresh Debian machine: Icarus Verilog, a virtual environment in
# .venv, and the package with its test tools. Idempotent; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v iverilog >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq iverilog >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch is pinned in the same command as everything else: the CPU build, not a CUDA one.
.venv/bin/python -m pip install -q "torch==2.13.0" -e ".[dev]"
echo "cimdse is set up: $(.venv/bin/cimdse --help >/dev/null && echo ok) ($(iverilog -V 2>/dev/null | head -n 1))"
