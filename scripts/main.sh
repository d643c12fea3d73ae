#!/usr/bin/env bash
# The main job: set up .venv/, then build the book from the committed full-profile results (book/results/full/),
# without training: offline data mirror, no Materials Project API key; a result not yet computed shows as pending.
# Another profile as the first argument (quick | gpu) trains whatever that profile is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000
profile="${1:-full}"
if [ "$profile" = "full" ]; then
  .venv/bin/deepknet book --profile full --no-train
else
  .venv/bin/deepknet book --profile "$profile"
fi
