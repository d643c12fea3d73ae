"""Train the full profile's missing experiments, cheapest and most important first, one at a time.

    nohup .venv/bin/python scripts/full_queue.py > full_queue.log 2>&1 &

Each experiment is one `run_experiment(..., profile="full")`: cached by its key under book/results/full/ (a finished
one is skipped), resumable from its checkpoint under $DEEPKNET_CACHE/runs/ if killed. Commit the JSON files as
they land. `--dry-run` lists what is missing."""
import argparse, sys, time, traceback

from deepknet_lit.experiments import book_profile, experiment_config, experiment_key, experiment_task, results_dir, run_experiment
from deepknet_lit.train import ensure_fast_malloc

SMALL = ("bulk_modulus", "shear_modulus", "stability")


def plan(profile: str = "full") -> list[dict]:
    "Experiments in the order to run them."
    g = book_profile(profile)
    seeds, out = g["seeds"], []
    add = lambda **e: out.append(e)
    for s in seeds:                                   # Fig. 4b-e headline: phi1 at n = 343
        for t in SMALL: add(task=t, n=343, perturbation="phi1", seed=s)
    add(task="metallicity", n=343, perturbation="phi1", seed=0)
    for p in ("phi2", "phi3", "phi4", "phi2_raw"):   # perturbations on the small tasks
        for s in seeds:
            for t in SMALL: add(task=t, n=343, perturbation=p, seed=s)
    for s in seeds[1:]: add(task="metallicity", n=343, perturbation="phi1", seed=s)
    for n in (3, 4, 27, 125):                         # Fig. 4a
        for s in seeds:
            for t in SMALL: add(task=t, n=n, perturbation="phi1", seed=s)
    for p in ("phi2", "phi3", "phi4", "phi2_raw"):
        for s in seeds: add(task="metallicity", n=343, perturbation=p, seed=s)
    for n in (3, 4, 27, 125):
        for s in seeds: add(task="metallicity", n=n, perturbation="phi1", seed=s)
    return out


def missing(profile: str = "full") -> list[dict]:
    "The planned experiments without a result."
    todo = []
    for e in plan(profile):
        c = experiment_config(profile=profile, **e)
        if not (results_dir(profile) / e["task"] / f"{experiment_key(c, [], experiment_task(c))}.json").exists(): todo.append(e)
    return todo


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="full"); p.add_argument("--dry-run", action="store_true")
    a = p.parse_args()
    ensure_fast_malloc()
    todo = missing(a.profile)
    print(f"{len(todo)} of {len(plan(a.profile))} experiments missing", flush=True)
    if a.dry_run:
        for e in todo: print(e)
        sys.exit(0)
    for i, e in enumerate(todo):
        t0 = time.time()
        print(f"[{time.strftime('%H:%M:%S')}] {i + 1}/{len(todo)} {e}", flush=True)
        try:
            r = run_experiment(profile=a.profile, progress=False, **e)
            print(f"    test ROC-AUC {r['test']['roc_auc']:.4f}  best epoch {r['best_epoch']}  {time.time() - t0:.0f} s", flush=True)
        except Exception:
            traceback.print_exc(); sys.stdout.flush()
