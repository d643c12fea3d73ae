"""Random forest / XGBoost baselines (Table IV grid) on a real featurized store, with the network's splits.

Usage: python benchmarks/baselines.py [task] [n] [limit] [grid] [kinds]
e.g.   python benchmarks/baselines.py metallicity 125 2000 paper rf,xgb
Writes benchmarks/results/baselines_<task>_n<n>_limit<limit>_<grid>.json (test ROC-AUC, accuracy, best params, time).
"""
import json
import sys
import time
from pathlib import Path

from deepknet_lit.baselines import run_baseline
from deepknet_lit.train import TrainConfig


def main(task="metallicity", n="125", limit="2000", grid="small", kinds="rf,xgb"):
    cfg = TrainConfig(task=task, n=int(n), limit=None if limit == "none" else int(limit), seed=0)
    out = {}
    for kind in kinds.split(","):
        t0 = time.perf_counter()
        res = run_baseline(cfg, kind=kind, grid=grid, n_jobs=2, progress=True)
        out[kind] = dict(test_roc_auc=res["test"]["roc_auc"], test_accuracy=res["test"]["accuracy"],
                         valid_roc_auc=res["valid"]["roc_auc"], best_params=res["best_params"],
                         n_train=res["n_train"], n_valid=res["n_valid"], n_test=res["n_test"],
                         n_candidates=len(res["candidates"]), wall_s=round(time.perf_counter() - t0, 1))
        print(kind, out[kind])
    path = Path(__file__).parent / "results" / f"baselines_{task}_n{n}_limit{limit}_{grid}.json"
    path.write_text(json.dumps(dict(task=task, n=int(n), limit=limit, grid=grid, results=out), indent=2))
    print("wrote", path)


if __name__ == "__main__":
    main(*sys.argv[1:])
