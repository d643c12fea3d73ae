"""Compute every missing job of a profile's plan (`experiments.plan`), one at a time, in the background:

    nohup .venv/bin/python scripts/full_queue.py > full_queue.log 2>&1 &
    .venv/bin/python scripts/full_queue.py --dry-run      # what is missing

Each job is cached by its key under book/results/<profile>/ (a finished one is skipped) and a killed training resumes
from its checkpoint under $DEEPKNET_CACHE/runs/. Commit the JSON files as they land."""
import argparse

from deepknet_lit.experiments import missing, plan, run_missing
from deepknet_lit.train import ensure_fast_malloc

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="full"); p.add_argument("--dry-run", action="store_true")
    a = p.parse_args()
    ensure_fast_malloc()
    todo = missing(a.profile)
    print(f"{len(todo)} of {len(plan(a.profile))} jobs missing", flush=True)
    if a.dry_run:
        for j in todo: print(j)
    else:
        run_missing(a.profile, log=lambda s: print(s, flush=True))
