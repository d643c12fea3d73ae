#!/usr/bin/env bash
# The main job: set up .venv/, then build the book in the quick profile from the offline data mirror
# (no Materials Project API key needed). Pass another profile as the first argument: cpu | gpu.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000
.venv/bin/deepknet book --profile "${1:-quick}"
