"""The experiments layer: nested point sets, held-out materials, the results cache and the paper's numbers."""
import json

import numpy as np
import scipy.stats
import pytest
from pymatgen.analysis.prototypes import AFLOW_PROTOTYPE_LIBRARY

from deepknet_lit import experiments as ex
from deepknet_lit.registry import data_root
from deepknet_lit.diffraction import point_clouds
from deepknet_lit.store import Store

MIRROR = data_root()


@pytest.fixture(scope="module")
def structures():
    return [AFLOW_PROTOTYPE_LIBRARY[i]["snl"].structure for i in (0, 7, 42, 100, 200)]


def _store(batch):
    n = len(batch.ids)
    return Store(path=None, features=batch.features, ids=list(batch.ids), y=np.arange(n) % 2, classes=["a", "b"],
                 hkl=batch.hkl, in_sphere=np.asarray(batch.in_sphere), task_index=np.arange(n), meta={}, skipped=[])


@pytest.mark.parametrize("point_set,max_index", [("axes", 1), ("axes+origin", 1), ("cube", 1), ("cube", 2)])
def test_select_points_equals_direct_featurization(structures, point_set, max_index):
    "A smaller point set picked out of the 343-point store equals featurizing it directly."
    big = _store(point_clouds(structures, max_index=3, progress=False))
    small = point_clouds(structures, point_set=point_set, max_index=max_index, progress=False)
    view = ex.select_points(big, point_set, max_index)
    np.testing.assert_array_equal(view.hkl, small.hkl)
    np.testing.assert_allclose(view.features, small.features, rtol=1e-6, atol=1e-7)
    assert view.ids == big.ids and view.features.shape[1] == len(small.hkl)


def test_select_points_refuses_points_the_store_lacks(structures):
    small = _store(point_clouds(structures, max_index=1, progress=False))
    with pytest.raises(ValueError, match="do not contain"):
        ex.select_points(small, "cube", 2)


def test_drop_materials_removes_exactly_those(structures):
    store = _store(point_clouds(structures, max_index=1, progress=False))
    view = ex.drop_materials(store, [store.ids[1], store.ids[3], "not-there"])
    assert view.ids == [store.ids[i] for i in (0, 2, 4)]
    np.testing.assert_array_equal(view.features, store.features[[0, 2, 4]])
    np.testing.assert_array_equal(view.y, store.y[[0, 2, 4]])


def test_experiment_config_maps_phi4_to_neutron():
    c = ex.experiment_config("metallicity", n=27, perturbation="phi4", profile="quick")
    assert (c.probe, c.perturbation, c.point_settings()) == ("neutron", "phi1", ("cube", 1))
    c = ex.experiment_config("metallicity", n=4, profile="quick", epochs=1)
    assert c.epochs == 1 and c.point_settings() == ("axes+origin", 1)


def test_cached_results_are_keyed_by_parameters(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPKNET_RESULTS", str(tmp_path))
    calls = []
    a = ex.cached("quick", "k", {"x": 1}, lambda: calls.append(1) or {"v": 1})
    b = ex.cached("quick", "k", {"x": 2}, lambda: calls.append(1) or {"v": 2})
    c = ex.cached("quick", "k", {"x": 1}, lambda: calls.append(1) or {"v": 3})
    assert (a["result"], b["result"], c["result"], len(calls)) == ({"v": 1}, {"v": 2}, {"v": 1}, 2)
    assert len(list((tmp_path / "quick" / "k").glob("*.json"))) == 2


def test_interval_combines_seed_spread_and_bootstrap():
    recs = [{"test": {"roc_auc": a, "roc_auc_ci": {"std": b}}} for a, b in ((0.79, 0.02), (0.81, 0.01), (0.80, 0.015))]
    s = ex.summarize(recs)
    s2, b2 = np.var([0.79, 0.81, 0.80], ddof=1), np.mean([0.02 ** 2, 0.01 ** 2, 0.015 ** 2])
    expect = np.sqrt((s2 + b2) / 3)
    q = scipy.stats.t.ppf(0.975, 2 * (1 + b2 / s2) ** 2)  # Welch–Satterthwaite degrees of freedom of the sum
    assert s["seeds"] == 3 and np.isclose(s["sd"], expect) and np.isclose(s["high"] - s["low"], 2 * q * expect)
    assert 1.959964 < q < 4.303  # between the normal quantile and t with k - 1 = 2 degrees of freedom
    # one seed: exactly that run's bootstrap interval; the example (0.799, CI 0.770-0.830) holds the paper's 0.83
    one = ex.summarize([{"test": {"roc_auc": 0.799, "roc_auc_ci": {"std": 0.016}}}])
    assert ex.verdict(0.83, one["low"], one["high"]) == "paper inside our interval"
    assert ex.verdict(0.95, one["low"], one["high"]) == "paper above" and ex.verdict(0.70, one["low"], one["high"]) == "paper below"


def test_rows_have_the_documented_keys_and_missing_results_are_pending():
    row = ex.compare("Fig. 4a", [None, None], paper=0.91, task="metallicity", n=343, perturbation="phi1", note="")
    assert set(row) >= {"artefact", "task", "n", "perturbation", "model", "paper", "ours", "sd", "low", "high", "seeds", "verdict"}
    assert row["verdict"] == "no result yet" and row["seeds"] == 0
    table = ex.comparison_table([row])
    assert "None" not in table.to_string() and "nan" not in table.to_string()


def test_list_parameters_from_papermill_strings():
    assert ex.parse_list('["metallicity", "stability"]', ()) == ["metallicity", "stability"]
    assert ex.parse_list("metallicity", ()) == ["metallicity"] and ex.parse_list("3,27", (), int) == [3, 27]


@pytest.mark.skipif(MIRROR is None or not all((MIRROR / d).is_dir() for d in ("mp_binary_elasticity", "mp_elastic_3k_cgcnn", "mp_legacy_2015")), reason="offline data mirror not present")
def test_missing_results_are_not_trained_when_training_is_off(tmp_path, monkeypatch):
    "A result's key fingerprints the task's data, so even a refused training reads the labels: it needs the mirror."
    monkeypatch.setenv("DEEPKNET_RESULTS", str(tmp_path))
    monkeypatch.setenv(ex.TRAIN_ENV, "0")
    monkeypatch.setattr(ex, "train", lambda *a, **k: (_ for _ in ()).throw(AssertionError("trained")))
    assert ex.run_experiment("bulk_modulus", n=3, profile="quick", progress=False) is None
    assert ex.run_baseline("bulk_modulus", "majority", profile="quick") is None
    assert ex.cached("quick", "k", {"x": 1}, lambda: 1 / 0) is None


def test_plan_lists_every_artefact_once():
    full = ex.plan("full")
    keys = [json.dumps(j, sort_keys=True) for j in full]
    assert len(keys) == len(set(keys))
    kinds = {(j["kind"], j["task"], j.get("model")) for j in full}
    for task in ("metallicity", "bulk_modulus", "shear_modulus", "stability"):
        assert {("baseline", task, m) for m in ex.BASELINES} <= kinds
    paper_part = [j for j in full if "rotation" not in j and "encoder" not in j]  # the chapter "Beyond the paper" adds 6
    assert sum(j["kind"] == "pointnet" and j["task"] == "trigonal_hexagonal" for j in paper_part) == 9
    assert {j["task"] for j in full} >= set(ex.REGRESSION_TASKS)


def test_paper_numbers_are_consistent():
    from deepknet_lit.paper import PAPER
    t1 = PAPER["table1"]["metallicity"]
    assert t1["metal"] + t1["insulator"] == t1["total"]
    assert len(PAPER["table2"]) == 17
    assert set(PAPER["table5_std"]) == {"metallicity", "bulk_modulus", "shear_modulus", "stability"}


def test_unknown_profile_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown profile"):
        ex.book_profile("laptop")


@pytest.mark.slow
@pytest.mark.skipif(__import__("deepknet_lit.sources", fromlist=["x"]).data_root() is None, reason="offline data mirror not present")
def test_one_split_per_task_and_seed(tmp_path, monkeypatch):
    "Every n, perturbation and baseline of a task and seed share the test set (the same split_hash); seeds differ."
    monkeypatch.setenv("DEEPKNET_RESULTS", str(tmp_path))
    runs = [ex.run_experiment("bulk_modulus", n=n, perturbation=p, seed=0, profile="quick", progress=False, epochs=1)
            for n, p in ((3, "phi1"), (343, "phi2"), (27, "phi4"))]
    base = ex.run_baseline("bulk_modulus", "density", seed=0, profile="quick")
    other = ex.run_experiment("bulk_modulus", n=3, seed=1, profile="quick", progress=False, epochs=1)
    hashes = {r["split_hash"] for r in runs} | {base["split_hash"]}
    assert len(hashes) == 1 and other["split_hash"] not in hashes


def test_targets_cover_every_target_and_the_cli_prints_them_as_numbers(capsys):
    from deepknet_lit.cli import main
    rows = [ex.compare("Fig. 4a", [None], task="stability", n=343, perturbation="phi1", note="")]
    table = ex.target_table(rows)
    assert list(table.task) == list(ex.TARGETS) and (table["target met"] == "no result yet").all()
    assert main(["results", "--profile", "full", "--targets", "--json"]) == 0  # the committed full-profile tables
    out = json.loads(capsys.readouterr().out)
    assert [r["task"] for r in out] == list(ex.TARGETS)
    assert all(isinstance(r["target"], float) and (r["ours"] is None or 0 <= r["ours"] <= 1) for r in out)


def test_a_powder_model_trained_again_differently_takes_its_curves_with_it(tmp_path, monkeypatch):
    "Retrained on another CPU, a powder model can differ: the detection and measured results of the earlier one go."
    monkeypatch.setenv("DEEPKNET_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("DEEPKNET_CACHE", str(tmp_path / "cache"))  # no checkpoint here: the model is trained again
    monkeypatch.setattr(ex, "_powder_key", lambda task, seed, detection, profile: (None, f"net{detection}"))
    monkeypatch.setattr(ex, "load_model", lambda run_dir: ("model",))
    root = tmp_path / "results" / "quick"
    committed = {"test": {"roc_auc": 0.8}, "seconds": 100}
    ex.write_json(committed, root / "metallicity" / "net0.0.json")
    retrained = {}
    def run_experiment(*a, force=False, **k):  # as the real one: a forced run writes its own result over the committed one
        if force: ex.write_json(retrained, root / "metallicity" / "net0.0.json")
        return retrained if force else committed
    monkeypatch.setattr(ex, "run_experiment", run_experiment)
    def curves():  # a detection result of each model, a measured result of both
        for name, params in (("d0", {"run": "net0.0"}), ("d5", {"run": "net0.05"}), ("m", {"runs": {"0.0": "net0.0", "0.05": "net0.05"}})):
            ex.write_json({"params": params, "result": {}}, root / ("measured" if name == "m" else "detection") / f"{name}.json")
        return {p.name for p in root.rglob("*.json")}
    before = curves()
    retrained.update(test={"roc_auc": 0.8}, seconds=50)  # the same model again: nothing goes, the first timings stay
    ex._powder_run("metallicity", 0, 0.0, "quick", False)
    assert {p.name for p in root.rglob("*.json")} == before and json.loads((root / "metallicity" / "net0.0.json").read_text())["seconds"] == 100
    retrained.update(test={"roc_auc": 0.81})  # another model: its own curve and the measured one go, the other model's stays
    with pytest.warns(UserWarning, match=r"0\.8000 → 0\.8100.*removed 2 result"):
        ex._powder_run("metallicity", 0, 0.0, "quick", False)
    assert {p.name for p in root.rglob("*.json")} == before - {"d0.json", "m.json"}


def test_the_queue_stops_by_its_deadline_and_reports_a_carried_training(monkeypatch):
    "No job starts after the deadline; a baseline, or a training's first epoch, that would overrun it waits; a stopped training is reported."
    import math, time
    import pandas as pd
    jobs = [dict(kind="pointnet", task="t", seed=0), dict(kind="baseline", task="t", model="rf", seed=0),
            dict(kind="pointnet", task="t", seed=2, epochs=10), dict(kind="pointnet", task="t", seed=3),
            dict(kind="baseline", task="t", model="density", seed=0), dict(kind="pointnet", task="t", seed=1)]
    # seed 2: 10 epochs of 500 s, one more than the 400 s left; seed 3: no estimate (trains, carried over if need be)
    left = pd.DataFrame({"job": jobs, "tier": 1, "estimate_s": [60.0, 7200.0, 5000.0, math.nan, 1.0, 60.0], "basis": ""})
    monkeypatch.setattr(ex, "compute_left", lambda profile, where=None: left)
    ran, clock = [], {"now": 1000.0}
    def run_job(job, profile, deadline=None):
        ran.append((job.get("model") or job["seed"], deadline))
        if job["kind"] == "pointnet" and job["seed"] == 0: return None        # stopped at the deadline, carried over
        clock["now"] += 500 if job.get("model") == "density" else 0            # the last baseline runs into the deadline
        return dict(test=dict(roc_auc=0.5, accuracy=0.5))
    monkeypatch.setattr(ex, "run_job", run_job)
    monkeypatch.setattr(time, "time", lambda: clock["now"])
    logs = []
    assert ex.run_missing("quick", log=logs.append, deadline=1400.0) == 0
    assert ran == [(0, 1400.0), (3, 1400.0), ("density", 1400.0)]  # rf (2 h) and seed 2 wait; seed 1 would start late
    text = "\n".join(logs)
    assert "carried over under" in text and "left for the next run (about 120 min" in text
    assert "'seed': 2, 'epochs': 10}: left for the next run (about 83 min, 7 min to the deadline)" in text
    assert "deadline reached: 1 job(s) left" in text
    ran.clear(); clock["now"] = 1000.0
    ex.run_missing("quick", log=logs.append)  # no deadline: everything is tried
    assert [r for r, _ in ran] == [0, "rf", 2, 3, "density", 1] and {d for _, d in ran} == {None}


@pytest.mark.slow
@pytest.mark.skipif(MIRROR is None, reason="offline data mirror not present")
def test_a_training_carried_over_to_another_machine_finishes_there(tmp_path, monkeypatch):
    "Stopped at its deadline, a run waits under partial/runs/ (committed); a machine without its cache finishes it."
    import time
    monkeypatch.setenv("DEEPKNET_RESULTS", str(tmp_path / "results"))
    kw = dict(n=3, seed=0, profile="quick", progress=False, epochs=2)
    monkeypatch.setattr(ex, "cache_root", lambda: tmp_path / "machine1")
    assert ex.run_experiment("bulk_modulus", deadline=time.time(), **kw) is None
    carried = list((tmp_path / "results" / "quick" / "partial" / "runs").iterdir())
    assert len(carried) == 1 and {p.name for p in carried[0].iterdir()} == {"checkpoint.pt", "last.pt"}
    monkeypatch.setattr(ex, "cache_root", lambda: tmp_path / "machine2")  # a new machine: no run directory
    record = ex.run_experiment("bulk_modulus", **kw)
    assert len(record["history"]) == 2 and not carried[0].exists()
    assert record["history"][0]["seconds"] > 0 and record["run_dir"].startswith(str(tmp_path / "machine2"))
    monkeypatch.setattr(ex, "cache_root", lambda: tmp_path / "machine3")
    never_stopped = ex.run_experiment("bulk_modulus", force=True, **kw)
    assert never_stopped["test"] == record["test"]  # one CPU: the carried run is the run that never stopped


def test_carried_runs_lists_what_waits_and_how_far_it_got(tmp_path, monkeypatch):
    "A packed run under partial/runs/ is listed with its task, seed and epochs; nothing carried: an empty table."
    import time
    from deepknet_lit import train as T
    from deepknet_lit.store import ArrayStore
    monkeypatch.setenv("DEEPKNET_RESULTS", str(tmp_path / "results"))
    assert ex.carried_runs("quick").empty
    rng = np.random.default_rng(0)
    f = rng.normal(size=(48, 8, 4)).astype(np.float32); f[..., 3] = rng.random((48, 8))
    store = ArrayStore(f, np.arange(48) % 2, [str(i) for i in range(48)], ["0", "1"])
    cfg = T.TrainConfig(mlp=(8,), head=(4,), epochs=5, batch_size=16, device="cpu", num_threads=1, seed=2, task="metallicity")
    assert T.train(cfg, tmp_path / "run", store=store, progress=False, deadline=time.time()) == {}
    T.pack_run(tmp_path / "run", ex.carried_dir("quick", "abc"))
    rows = ex.carried_runs("quick").to_dict("records")
    assert [(r["key"], r["task"], r["seed"], r["epochs"]) for r in rows] == [("abc", "metallicity", 2, "1 of 5")]
