#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment .venv/ in the repository root,
# install deepknet-lit with every extra at the exact versions of constraints.txt (pyproject.toml holds compatible
# ranges only), and register the Jupyter kernel "deepknet-lit".
# Idempotent: reinstalls only when pyproject.toml or constraints.txt changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PY --version)"
  $PY -m venv .venv
fi
stamp=.venv/.deepknet-installed
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
if [ "$(cat $stamp 2>/dev/null)" != "$want" ]; then
  echo "[setup] installing pinned dependencies into .venv (first time: a few minutes)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -c constraints.txt -e '.[dev,all]'
  # exactly the pinned set: a distribution installed but not pinned means constraints.txt misses a new dependency
  unpinned=$(.venv/bin/python -m pip freeze --exclude-editable | grep -vxFf constraints.txt || true)
  if [ -n "$unpinned" ]; then
    echo "[setup] installed but not pinned in constraints.txt (add them):" $unpinned >&2
    if [ "${CI:-}" = "true" ]; then exit 1; fi
  fi
  .venv/bin/python -m ipykernel install --sys-prefix --name deepknet-lit --display-name "Python (deepknet-lit)" >/dev/null
  echo "$want" > $stamp
fi
# the book's browser test drives Debian's chromium (Playwright's own browser download needs the internet)
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "[setup] installing chromium (Debian) for the browser test of the book"
  apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; } \
    || echo "[setup] could not install chromium: tests/test_book.py will skip the browser test" >&2
fi
# the exported package must exist before anything imports it (fresh clone: it is committed, this is a no-op)
echo "[setup] .venv ready: $(.venv/bin/python -c 'import deepknet_lit, torch, pymatgen.core; print("deepknet_lit", deepknet_lit.__version__, "| torch", torch.__version__)')"
