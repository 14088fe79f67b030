#!/usr/bin/env bash
# Installs prunetuna into .venv/ at the repository root. Usage: bash scripts/install.sh [--test]
# torch goes in first, pinned to the CPU build (TORCH_SPEC overrides it), so that no later
# requirement pulls a multi-GB CUDA build; with --test the test tools come too.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  .venv/bin/python -m pip install --quiet "$TORCH_SPEC"
fi
extras=""
[ "${1:-}" = "--test" ] && extras="[test]"
.venv/bin/python -m pip install --quiet -e ".${extras}"
.venv/bin/python -c "import torch, prunetuna; print(f'prunetuna {prunetuna.__version__} installed in .venv (torch {torch.__version__})')"
