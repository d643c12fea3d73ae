"""Training throughput of the poolings of Table III at the full profile's width (n = 343, batch 64): max (the
reference, measured in the same run), mean, and self-attention pooling with 0 and 2 self-attention layers. It sizes the training part of a full-profile metallicity run (validation not counted):
25,716 training materials × 40 epochs at the measured samples/s (`experiments.job_tier` puts attention last).

    python benchmarks/pooling.py

Writes benchmarks/results/pooling.json. Run it on a quiet machine: other jobs on the 2 cores distort every number."""
import json, os, platform
from pathlib import Path

from time_to_quality import throughput

if __name__ == "__main__":
    from deepknet_lit.train import PROFILES, ensure_fast_malloc
    ensure_fast_malloc()
    width = {k: PROFILES["full"][k] for k in ("mlp", "head")}
    poolings = {"max": dict(pooling="max"), "mean": dict(pooling="mean"),
                "attention, 0 layers": dict(pooling="attention", attention_layers=0), "attention": dict(pooling="attention")}
    rates = throughput({name: dict(width, **kw) for name, kw in poolings.items()}, steps=6)
    train_materials, epochs = 25716, PROFILES["full"]["epochs"]   # 70 % of the 36,738 metallicity materials
    result = dict(benchmark="training samples/s by pooling, full-profile width, n = 343, batch 64",
                  command="python benchmarks/pooling.py",
                  machine=dict(cpus=os.cpu_count(), python=platform.python_version(),
                               load_average=[round(x, 2) for x in os.getloadavg()]),
                  samples_per_s=rates, reference="max",
                  slowdown_vs_max={p: round(rates["max"] / r, 1) for p, r in rates.items()},
                  training_hours_per_metallicity_run={p: round(train_materials * epochs / r / 3600, 2) for p, r in rates.items()})
    out = Path(__file__).parent / "results" / "pooling.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
