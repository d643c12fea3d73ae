"""Crystal-system labels benchmark: wall time to label all ICSD-tagged candidates of the crystal-system task (23,089
materials of mp_mtcgcnn_36k) from a cold symmetry cache, on every core. Goal: <= 60 s on a 2-core machine.
The reference, measured in the same run on a sample: pymatgen's `SpacegroupAnalyzer(s, symprec=0.1).get_crystal_system()`
per structure (parse included), extrapolated to all candidates on one core.

    python benchmarks/labels.py

Writes benchmarks/results/labels.json. The symmetry cache is written to a temporary DEEPKNET_CACHE (deleted after)."""
import json, os, platform, shutil, tempfile, time, warnings
from pathlib import Path

GOAL_S = 60.0


def main() -> None:
    cache = Path(tempfile.mkdtemp(prefix="deepknet-labels-bench-"))
    os.environ["DEEPKNET_CACHE"] = str(cache)
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer
    from deepknet_lit import sources, tasks
    load_before = os.getloadavg()
    try:
        t0 = time.perf_counter()
        task = tasks.load_task("crystal_system")
        wall = time.perf_counter() - t0
        source, ids = tasks._xsys_candidates(None)
        load = sources.structure_loader(source)
        sample = ids[:: max(1, len(ids) // 500)][:500]
        t = time.process_time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = [SpacegroupAnalyzer(load(m), symprec=tasks.SYMPREC, angle_tolerance=tasks.ANGLE_TOLERANCE).get_crystal_system()
                   for m in sample]
        ref_ms = 1000 * (time.process_time() - t) / len(sample)
        ours = dict(zip(task.ids, task.values))
        agree = sum(ours.get(m) == r for m, r in zip(sample, ref))
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    result = dict(
        benchmark="crystal-system labels of every ICSD-tagged candidate, cold cache, all cores",
        command="python benchmarks/labels.py",
        machine=dict(cpus=os.cpu_count(), python=platform.python_version(),
                     load_average_before=[round(x, 2) for x in load_before],
                     load_average_after=[round(x, 2) for x in os.getloadavg()]),
        candidates=len(ids), labelled=len(task), skipped=len(task.provenance["skipped"]),
        wall_s=round(wall, 1), goal_s=GOAL_S, goal_met=bool(wall <= GOAL_S),
        reference=dict(what="pymatgen SpacegroupAnalyzer(symprec=0.1).get_crystal_system(), parse included, one core",
                       ms_per_structure=round(ref_ms, 2), extrapolated_wall_s=round(ref_ms * len(ids) / 1000, 1),
                       sample=len(sample), same_crystal_system=f"{agree}/{len(sample)}"),
        speedup=round(ref_ms * len(ids) / 1000 / wall, 1))
    out = Path(__file__).parent / "results" / "labels.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
