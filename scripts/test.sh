#!/usr/bin/env bash
# Run every test: notebooks in sync and clean, notebook examples (nbdev-test), pytest (unit, property,
# integration, end-to-end, and the quick book). Creates/uses .venv/ first.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
export MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000
export PATH="$PWD/.venv/bin:$PATH"
status=0
echo "== nbdev-test: every notebook in nbs/ runs, its examples are its tests"
nbdev-test --n-workers 2 --timing || status=1
echo "== pytest"
python -m pytest --durations=20 "$@"
rc=$?
# exit code 5 = no tests collected: that is a failure of the suite, not a pass
if [ $rc -eq 5 ]; then echo "pytest collected no tests"; rc=1; fi
[ $rc -ne 0 ] && status=$rc
exit $status
