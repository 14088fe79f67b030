#!/usr/bin/env bash
# Installs prunetuna (its search extra) into .venv/ at the repository root. Usage: bash scripts/install.sh [--test] [--vision]
# (an edge device that only measures needs less: pip install 'prunetuna[device]', then prunetuna device serve)
# torch goes in first, pinned to the CPU build (TORCH_SPEC overrides it), so that no later
# requirement pulls a multi-GB CUDA build. --vision installs a torch and torchvision pair that import
# together (VISION_SPEC overrides it) and timm, for torchvision and timm models; --test brings the test
# tools and implies --vision and the yolo extra (the test suite runs real torchvision, timm and ultralytics models).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
# PyPI's torchvision does not import beside the CPU torch 2.13.0 ("operator torchvision::nms does not
# exist"); these pairs do (x86_64: a CUDA build of about 5.5 GB that runs on the CPU too).
case "$(uname -m)" in
  aarch64|arm64) DEFAULT_VISION="torch==2.9.1 torchvision==0.24.1" ;;
  *) DEFAULT_VISION="torch==2.14.1 torchvision==0.29.1" ;;
esac
VISION_SPEC=${VISION_SPEC:-$DEFAULT_VISION}
extras=(search)  # torch, Lightning, Optuna, MLflow...: the base install alone is the device agent's
vision=0
for arg in "$@"; do
  case "$arg" in
    --test) extras+=(test vision yolo); vision=1 ;;
    --vision) extras+=(vision); vision=1 ;;
    *) echo "install.sh: unknown option $arg (use --test and/or --vision)" >&2; exit 2 ;;
  esac
done
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
if [ "$vision" = 1 ]; then
  # A pair is kept only if it imports together and torchvision's compiled operators load.
  if ! .venv/bin/python -c "import torch, torchvision; torchvision.ops.nms" >/dev/null 2>&1; then
    # shellcheck disable=SC2086 # VISION_SPEC is a list of requirements
    .venv/bin/python -m pip install --quiet $VISION_SPEC
  fi
elif ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  .venv/bin/python -m pip install --quiet "$TORCH_SPEC"
fi
spec=".[$(printf '%s\n' "${extras[@]}" | sort -u | paste -sd, -)]"
.venv/bin/python -m pip install --quiet -e "$spec"
.venv/bin/python -c "import torch, prunetuna; print(f'prunetuna {prunetuna.__version__} installed in .venv (torch {torch.__version__})')"
if [ "$vision" = 1 ]; then
  .venv/bin/python -c "import torchvision, timm; print(f'torchvision {torchvision.__version__}, timm {timm.__version__}')"
fi
