"""Beyond the paper: regression targets (band gap, log10 K_VRH, log10 G_VRH, E_hull) on the classification tasks' data."""
import json, os, subprocess, sys
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from deepknet_lit.runs import evaluate_run
from deepknet_lit.tasks import REGRESSION_TASKS, load_task, make_splits, split_hash, stratified_subset

DEEPKNET = str(Path(sys.executable).parent / "deepknet")
MIRROR = Path(os.environ.get("DEEPKNET_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
FAST = {**os.environ, "MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "100000000000"}
needs_data = pytest.mark.skipif(not (MIRROR / "mp_mtcgcnn_36k").exists(), reason="offline data mirror not present")


@needs_data
def test_every_target_reads_the_values_its_base_task_thresholds():
    "A regression target reads the same materials as its base task, and the values that task's labels come from."
    for name, spec in REGRESSION_TASKS.items():
        base = load_task(spec.base)
        t = spec.target(base.values)
        assert len(t) == len(base) and np.isfinite(t).mean() > 0.99, name
        assert load_task(name).ids == base.ids
    bulk = load_task("bulk_modulus")
    k = np.asarray(bulk.values, dtype=float)
    assert np.allclose(10 ** REGRESSION_TASKS["log_kvrh"].target(bulk.values), k, rtol=1e-12)  # log10 K, inverted
    # the label is the thresholded value itself (not its log round trip: 10**log10(85) is 85.00000000000003, and
    # six materials sit at exactly 85 GPa)
    assert np.array_equal(k > bulk.thresholds["k_gpa"], bulk.y.astype(bool))


@needs_data
def test_cli_trains_a_regression_target_on_its_base_tasks_split(tmp_path):
    "`deepknet train --task log_kvrh` (quick profile): MAE/RMSE/R² beside the mean's MAE, the bulk-modulus split, predict works."
    out = tmp_path / "kvrh"
    done = subprocess.run([DEEPKNET, "train", "--task", "log_kvrh", "--profile", "quick", "--epochs", "3", "--out", str(out)],
                          capture_output=True, text=True, env=FAST)
    assert done.returncode == 0, done.stderr[-3000:]
    printed = json.loads(done.stdout[:done.stdout.rindex("}") + 1])
    m = json.loads((out / "metrics.json").read_text())
    assert set(printed) >= {"mae", "rmse", "r2", "dummy_mae"} and printed["unit"] == "log10(GPa)"
    assert m["target"]["name"] == "log_kvrh" and 0 < m["test"]["mae"] <= m["test"]["rmse"] <= m["test"]["max_error"]
    assert m["test"]["mae_ci"]["low"] <= m["test"]["mae"] <= m["test"]["mae_ci"]["high"]
    # the split is the bulk-modulus classification's split of the same seed (task-level, then restricted to the
    # quick profile's subset, as training does): the same test materials
    bulk = load_task("bulk_modulus")
    subset = {bulk.ids[i] for i in stratified_subset(bulk.y, m["config"]["limit"])}
    test = [bulk.ids[i] for i in make_splits(bulk, seed=m["config"]["seed"])["test"] if bulk.ids[i] in subset]
    assert m["split_hash"] == split_hash(test) and len(test) == m["test"]["n"]
    saved = np.load(out / "test_predictions.npz")
    assert len(saved["pred"]) == m["test"]["n"] and np.allclose(np.abs(saved["pred"] - saved["y"]).mean(), m["test"]["mae"])
    # re-evaluating the run gives the numbers training wrote
    ev = evaluate_run(out, n_boot=50)
    assert abs(ev["test"]["mae"] - m["test"]["mae"]) < 1e-6
    # a regression model predicts a value in the target's unit, per structure
    nacl = Structure(Lattice.cubic(5.64), ["Na"] * 4 + ["Cl"] * 4,
                     [[0, 0, 0], [.5, .5, 0], [.5, 0, .5], [0, .5, .5], [.5, 0, 0], [0, .5, 0], [0, 0, .5], [.5, .5, .5]])
    nacl.to(filename=str(tmp_path / "NaCl.cif"))
    done = subprocess.run([DEEPKNET, "predict", "--model", str(out), str(tmp_path / "NaCl.cif"), "--out", str(tmp_path / "p.csv")],
                          capture_output=True, text=True, env=FAST)
    assert done.returncode == 0, done.stderr[-3000:]
    import pandas as pd
    row = pd.read_csv(tmp_path / "p.csv").iloc[0]
    assert row["unit"] == "log10(GPa)" and 0 < row["predicted"] < 4 and row["predicted_std"] >= 0


@needs_data
def test_regression_baselines_share_the_split(monkeypatch, tmp_path):
    "The training mean ('majority', matbench's Dummy) and bar-code XGBoost on a regression target, quick profile."
    from deepknet_lit import experiments
    monkeypatch.setenv("DEEPKNET_RESULTS", str(tmp_path))  # quick results of this test stay out of the book
    mean = experiments.run_baseline("log_gvrh", "majority", profile="quick")
    xgb = experiments.run_baseline("log_gvrh", "xgboost", profile="quick")
    assert mean["test"]["mae"] == pytest.approx(mean["test"]["dummy_mae"])  # predicting the mean *is* the dummy
    assert xgb["test"]["mae"] < mean["test"]["mae"]  # the bar code carries some of the modulus (R² ~0.05 on 700 materials)
    assert mean["split_hash"] == xgb["split_hash"] == experiments.run_baseline("shear_modulus", "majority", profile="quick")["split_hash"]
    net = experiments.run_experiment("log_gvrh", profile="quick", epochs=2, progress=False)
    assert net["split_hash"] == mean["split_hash"] and len(net["parity"]["y"]) == len(net["parity"]["pred"]) == net["test"]["n"]
    assert np.mean(np.abs(np.subtract(net["parity"]["pred"], net["parity"]["y"]))) == pytest.approx(net["test"]["mae"], abs=1e-3)
