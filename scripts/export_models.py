"""Export the reproduction's seed-0 full-profile runs as the pretrained models shipped in deepknet_lit/models/:

    .venv/bin/python scripts/export_models.py                 # every task whose result is committed
    .venv/bin/python scripts/export_models.py metallicity     # only these

Each model is the run of `experiments.PRETRAINED[name]` (the paper's setting for each task; metallicity_powder reads
measured powder patterns) whose result is committed
under book/results/full/; its weights come from the run folder under $DEEPKNET_CACHE/runs/full/ (so export on the
machine that trained it). Never trains: a task without a result is reported and skipped."""
import argparse
import os

from deepknet_lit.experiments import PRETRAINED, TRAIN_ENV, experiment_config, experiment_task, run_experiment
from deepknet_lit.paper import paper_figures
from deepknet_lit.pretrained import export_model, models_dir
from deepknet_lit.registry import cache_root

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("tasks", nargs="*", default=list(PRETRAINED))
    a = p.parse_args()
    os.environ[TRAIN_ENV] = "0"
    for name in a.tasks:
        job = dict(PRETRAINED[name]); task = job.pop("task", name)  # a model named after its task unless it says otherwise
        record = run_experiment(task, profile="full", progress=False, **job)
        if record is None:
            print(f"{name}: no committed full-profile result for {task}, {job}: run scripts/full_queue.py first"); continue
        config = experiment_config(task, profile="full", **job)
        paper = {} if job.get("encoder") else paper_figures(task, **job)  # the paper trained no encoder
        out = export_model(cache_root() / "runs" / "full" / record["key"], experiment_task(config), name=name, paper=paper,
                           extra={"result": {"profile": "full", "key": record["key"], "seconds": record["seconds"]}})
        print(f"{name}: {out} ({sum(f.stat().st_size for f in out.iterdir()) / 1024:.0f} kB)")
    print(f"models in {models_dir()}")
