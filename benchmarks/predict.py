"""`deepknet predict` on structure files, end to end, against featurizing the same files alone, in one run.

    python benchmarks/predict.py --run /tmp/run_quick     # a run folder from `deepknet train` (its settings are used)
    python benchmarks/predict.py                          # trains the quick metallicity profile first (about a minute)

The CIFs are the same fixed sample of mp_mtcgcnn_36k as in benchmarks/featurize_files.py, written into a temporary
folder. Timed on the same files, each a fresh process with start-up included:

- `deepknet featurize DIR -o out.npz` with the run's featurization settings: the floor prediction cannot beat;
- `deepknet predict RUN DIR -o out.csv` with the default 8 test-time rotations, and with `--rotations 0`;

and, in this process (imports and start-up excluded), where the time of a prediction goes: loading the run, reading
the files, featurizing, the network (all rotations of many structures per forward pass). Writes
benchmarks/results/predict.json. Time it on quiet cores.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from featurize_files import DEEPKNET, time_command, write_cifs  # noqa: E402

import deepknet_lit  # noqa: E402
from deepknet_lit.diffraction import featurize_items  # noqa: E402
from deepknet_lit.records import read_items  # noqa: E402
from deepknet_lit.predict import featurize_settings, load_run, rotation_probs  # noqa: E402


def featurize_flags(settings: dict) -> list[str]:
    "The `deepknet featurize` flags that reproduce a run's featurization."
    return ["--max-index", str(settings["max_index"]), "--point-set", settings["point_set"],
            "--probe", settings["probe"], "--cell", settings["cell"]]


def stages(run: Path, folder: Path, n_rotations: int = 8) -> dict:
    "Seconds of each step of a prediction, in this process."
    clock = time.perf_counter
    t0 = clock()
    model, config = load_run(run)
    t1 = clock()
    items, errors, order = read_items([folder])
    t2 = clock()
    batch, _ = featurize_items(items, ordered=True, progress=False, **featurize_settings(config))
    t3 = clock()
    probs = rotation_probs(model, batch.features, config, n_rotations=n_rotations)
    t4 = clock()
    return dict(load_run_s=round(t1 - t0, 3), read_files_s=round(t2 - t1, 3), featurize_s=round(t3 - t2, 3),
                network_s=round(t4 - t3, 3), structures=len(batch.ids), rotations=n_rotations,
                network_clouds_per_s=round(probs.shape[0] * probs.shape[1] / (t4 - t3), 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default=None, help="run folder (default: train the quick metallicity profile first)")
    ap.add_argument("--n", type=int, default=2000, help="CIF files")
    ap.add_argument("--repeats", type=int, default=2, help="runs of each deepknet command (the best is kept)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "predict.json"))
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="deepknet-predict-bench-") as tmp:
        tmp = Path(tmp)
        run = Path(a.run) if a.run else tmp / "run"
        if not a.run:
            subprocess.run([DEEPKNET, "train", "--task", "metallicity", "--profile", "quick", "--out", run], check=True)
        settings = featurize_settings(load_run(run)[1])
        folder = tmp / "cifs"
        folder.mkdir()
        write_cifs(folder, a.n)
        load_before = os.getloadavg()
        feat = time_command(["featurize", folder, "-o", tmp / "x.npz", *featurize_flags(settings)], a.repeats)
        pred = time_command(["predict", run, folder, "-o", tmp / "p.csv"], a.repeats)
        pred0 = time_command(["predict", run, folder, "-o", tmp / "p0.csv", "--rotations", "0"], 1)
        split = stages(run, folder)
        load_after = os.getloadavg()
    rate = lambda s: round(a.n / s, 1)
    result = dict(
        benchmark="deepknet predict on MP CIF files, end to end (start-up included), vs deepknet featurize alone",
        command="python benchmarks/predict.py" + (f" --run {a.run}" if a.run else "") + (f" --n {a.n}" if a.n != 2000 else ""),
        machine=dict(cpus=os.cpu_count(), python=platform.python_version(), platform=platform.platform(),
                     load_average_before=[round(x, 2) for x in load_before],
                     load_average_after=[round(x, 2) for x in load_after]),
        package_version=deepknet_lit.__version__, files=a.n, run_featurization=settings,
        featurize_alone=dict(**feat, structures_per_s=rate(feat["wall_s"])),
        predict_8_rotations=dict(**pred, structures_per_s=rate(pred["wall_s"])),
        predict_no_rotation=dict(**pred0, structures_per_s=rate(pred0["wall_s"])),
        predict_over_featurize_time=round(pred["wall_s"] / feat["wall_s"], 2),
        gap_s=round(pred["wall_s"] - feat["wall_s"], 2),
        stages_in_process=split,
        before="issue 10: predict on 3,785 CIFs took 38 s (about 100 structures/s with 8 rotations, one process, "
               "pymatgen's CIF parser, one forward pass per rotation)",
    )
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
