"""`deepknet featurize` on structure files, end to end, against pymatgen's own route, in one run.

    python benchmarks/featurize_files.py                  # 2,000 MP CIFs (mp_mtcgcnn_36k), n = 343 X-ray clouds
    python benchmarks/featurize_files.py --n 500 --repeats 1

The CIFs are written from `sources.cif_texts("mp_mtcgcnn_36k")` (a fixed random sample) into a temporary folder, never
into the repository. Timed, in this order, on the same files:

- `deepknet featurize DIR -o out.npz` as a user runs it: a fresh process, start-up included, all cores
  (the store builder's fast path: `records.parse_cif` -> `standard_cell` -> batched `point_clouds`, a process pool);
- the same with `--workers 1`, to show what the second core adds;
- pymatgen's own route, one structure after another in this process (start-up excluded, which flatters it):
  `Structure.from_str` + `SpacegroupAnalyzer(s).get_primitive_standard_structure()` + `XRDCalculator().get_pattern(s)`.

Goal (issue 10): `deepknet featurize` >= 8x pymatgen's route in structures per second. Writes
benchmarks/results/featurize_files.json. Time it on quiet cores: with other jobs running the numbers say little
(the load averages before and after are recorded).
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

import deepknet_lit
from deepknet_lit import sources

DATASET = "mp_mtcgcnn_36k"
GOAL = 8.0
DEEPKNET = str(Path(sys.executable).parent / "deepknet")


def write_cifs(folder: Path, n: int, seed: int = 0) -> list[Path]:
    "A fixed random sample of `n` CIF files of the dataset, named by their index."
    texts = sources.cif_texts(DATASET)
    keys = sorted(texts)
    paths = []
    for i in sorted(np.random.default_rng(seed).choice(len(keys), n, replace=False)):
        p = folder / f"{keys[i]}.cif"
        p.write_text(texts[keys[i]])
        paths.append(p)
    return paths


def time_command(args: list, repeats: int) -> dict:
    "Wall seconds of a fresh `deepknet ...` process (best and all of `repeats`), and its last summary line."
    walls, out = [], ""
    for _ in range(repeats):
        t = time.perf_counter()
        done = subprocess.run([DEEPKNET, *map(str, args)], capture_output=True, text=True)
        walls.append(time.perf_counter() - t)
        if done.returncode != 0:
            raise SystemExit(f"deepknet {' '.join(map(str, args))} failed:\n{done.stderr[-2000:]}")
        out = done.stdout.strip().splitlines()[-1]
        skipped = [line.strip() for line in done.stderr.splitlines() if line.strip().startswith(("skipped", "failed"))]
    return dict(wall_s=round(min(walls), 3), all_wall_s=[round(w, 3) for w in walls], summary=out, skipped=skipped[:20])


def pymatgen_route(paths: list[Path]) -> dict:
    "Seconds for pymatgen's own route over `paths`, one after another, in this process."
    from pymatgen.analysis.diffraction.xrd import XRDCalculator
    from pymatgen.core import Structure
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer
    failed = 0
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for p in paths:
            try:
                s = Structure.from_str(p.read_text(), fmt="cif")
                s = SpacegroupAnalyzer(s).get_primitive_standard_structure()
                XRDCalculator().get_pattern(s)
            except Exception:
                failed += 1
    return dict(wall_s=round(time.perf_counter() - t, 3), structures=len(paths), failed=failed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="CIF files")
    ap.add_argument("--reference", type=int, default=None, help="files timed through pymatgen's route (default: all)")
    ap.add_argument("--repeats", type=int, default=2, help="runs of each deepknet command (the best is kept)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "featurize_files.json"))
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="deepknet-featurize-files-") as tmp:
        folder = Path(tmp) / "cifs"
        folder.mkdir()
        paths = write_cifs(folder, a.n)
        load_before = os.getloadavg()
        ours = time_command(["featurize", folder, "-o", Path(tmp) / "out.npz"], a.repeats)
        one = time_command(["featurize", folder, "-o", Path(tmp) / "one.npz", "--workers", "1"], 1)
        ref = pymatgen_route(paths[: a.reference or a.n])
        load_after = os.getloadavg()
        z = np.load(Path(tmp) / "out.npz")
        n_ok, n_failed = len(z["ids"]), len(z["errors"])
    rate = lambda n, s: round(n / s, 1)
    ours_rate, ref_rate = rate(a.n, ours["wall_s"]), rate(ref["structures"], ref["wall_s"])
    result = dict(
        benchmark="deepknet featurize on MP CIF files, end to end (start-up included), vs pymatgen's own route",
        command="python benchmarks/featurize_files.py" + (f" --n {a.n}" if a.n != 2000 else ""),
        machine=dict(cpus=os.cpu_count(), python=platform.python_version(), platform=platform.platform(),
                     load_average_before=[round(x, 2) for x in load_before],
                     load_average_after=[round(x, 2) for x in load_after]),
        package_version=deepknet_lit.__version__, files=a.n, featurized=int(n_ok), skipped=int(n_failed),
        sample=f"fixed random sample (seed 0) of {DATASET}",
        settings="n = 343 (max_index 3, cube), X-ray, standard primitive cell",
        deepknet_featurize=dict(**ours, structures_per_s=ours_rate, command="deepknet featurize DIR -o out.npz"),
        deepknet_featurize_one_worker=dict(**one, structures_per_s=rate(a.n, one["wall_s"]),
                                           command="deepknet featurize DIR -o out.npz --workers 1"),
        pymatgen_route=dict(**ref, structures_per_s=ref_rate,
                            route="Structure.from_str + SpacegroupAnalyzer(s).get_primitive_standard_structure() + "
                                  "XRDCalculator().get_pattern(s), one process, start-up excluded"),
        speedup=round(ours_rate / ref_rate, 1), goal=GOAL, goal_met=bool(ours_rate / ref_rate >= GOAL),
    )
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
