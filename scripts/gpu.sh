#!/usr/bin/env bash
# The whole paper on one GPU, in one command: every chapter of the book with the gpu profile (full data, the paper's
# 1024-wide PointNet, three seeds, bf16 autocast). On a machine with a CUDA GPU, the pinned torch==2.13.0 from PyPI is
# a CUDA build. Results land in book/results/gpu/ (commit them: they are small JSON files).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if ! .venv/bin/python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "scripts/gpu.sh: no CUDA GPU visible to torch $(.venv/bin/python -c 'import torch; print(torch.__version__)');" \
       "use scripts/main.sh (quick) or 'deepknet book --profile cpu' on a CPU machine" >&2
  exit 1
fi
.venv/bin/deepknet book --profile gpu "$@"
