"Random forest / XGBoost baselines on bar codes: they must find a planted signal and must not find one in noise."
from types import SimpleNamespace

import json
import numpy as np
import pytest

from deepknet_lit.baselines import barcodes, fit_baseline, make_estimator, param_grid


def _cube_hkl(k=1):
    g = np.arange(-k, k + 1)
    return np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)


def _store(n=240, seed=0, shuffle=False, n_classes=2, signal_point=7):
    "Synthetic store: the class sets the intensity of one reflection; everything else is noise."
    rng = np.random.default_rng(seed)
    hkl = _cube_hkl()
    f = rng.normal(size=(n, len(hkl), 4)).astype(np.float32)
    f[:, :, 3] = rng.uniform(0.05, 1.0, size=(n, len(hkl)))
    y = rng.integers(0, n_classes, n)
    f[:, signal_point, 3] = 0.2 + 0.6 * y / max(1, n_classes - 1) + rng.normal(0, 0.03, n)
    if shuffle:
        y = rng.permutation(y)
    return SimpleNamespace(features=f, y=y, hkl=hkl, classes=[f"c{i}" for i in range(n_classes)],
                           ids=[f"toy-{i}" for i in range(n)])


def _split(n, seed=0):
    idx = np.random.default_rng(seed).permutation(n)
    a, b = int(0.6 * n), int(0.8 * n)
    return dict(train=idx[:a], valid=idx[a:b], test=idx[b:])


@pytest.mark.parametrize("kind", ["rf", "xgb"])
def test_separable_signal_is_found(kind):
    res = fit_baseline(_store(), _split(240), kind=kind, grid="small", progress=False)
    assert res["test"]["roc_auc"] > 0.95
    assert res["best_params"] in [c["params"] for c in res["candidates"]]
    ci = res["test"]["roc_auc_ci"]
    assert ci["low"] <= res["test"]["roc_auc"] + 1e-9 and ci["high"] >= ci["low"]


@pytest.mark.parametrize("kind", ["rf", "xgb"])
def test_shuffled_labels_give_chance(kind):
    aucs = [fit_baseline(_store(n=300, seed=s, shuffle=True), _split(300, s), kind=kind, grid="small",
                         progress=False, n_boot=0)["test"]["roc_auc"] for s in range(3)]
    assert abs(np.mean(aucs) - 0.5) < 0.12, aucs


def test_multiclass_and_json(tmp_path):
    out = tmp_path / "sub" / "rf.json"
    res = fit_baseline(_store(n=300, n_classes=3), _split(300), kind="rf", grid="small", progress=False, out=out,
                       n_boot=0)
    assert res["test"]["roc_auc"] > 0.9
    saved = json.loads(out.read_text())
    assert saved["best_params"] == res["best_params"] and saved["classes"] == ["c0", "c1", "c2"]


def test_barcode_is_miller_sorted_and_independent_of_point_order():
    s = _store(n=10)
    perm = np.random.default_rng(3).permutation(27)
    a = barcodes(s.features, s.hkl)
    b = barcodes(s.features[:, perm], s.hkl[perm])
    assert np.array_equal(a, b)
    # first column is (-1,-1,-1), second (-1,-1,0): the lexicographic Miller order
    first = [int(np.flatnonzero((s.hkl == h).all(1))[0]) for h in ([-1, -1, -1], [-1, -1, 0])]
    assert np.array_equal(a[:, :2], s.features[:, first, 3])


def test_selection_uses_validation_split():
    "The chosen setting is the best on validation, not on test."
    res = fit_baseline(_store(), _split(240), kind="rf", grid=dict(n_estimators=[5, 50], max_depth=[1, None],
                                                                     criterion=["gini"], max_features=["sqrt"]),
                       progress=False, n_boot=0)
    best = max(c["valid"]["roc_auc"] for c in res["candidates"])
    assert res["valid"]["roc_auc"] == best and len(res["candidates"]) == 4


def test_paper_grid_mapping():
    assert len(param_grid("rf", "paper")) == 54
    xg = param_grid("xgb", "paper")
    assert len(xg) == 27 and all(p["criterion"] is None for p in xg)
    est = make_estimator("xgb", dict(n_estimators=50, criterion=None, max_depth=None, max_features="log2"), 343)
    assert est.get_params()["max_depth"] == 0 and est.get_params()["grow_policy"] == "lossguide"
    assert est.get_params()["colsample_bynode"] == pytest.approx(8 / 343)


def test_bad_inputs_are_named():
    s = _store(n=50)
    s.features[3, 2, 3] = np.nan
    with pytest.raises(ValueError, match="toy-3"):
        fit_baseline(s, _split(50), grid="small", progress=False)
    with pytest.raises(ValueError, match="unknown baseline kind"):
        fit_baseline(_store(n=50), _split(50), kind="svm", progress=False)
    with pytest.raises(ValueError, match="unknown grid"):
        param_grid("rf", "huge")
    with pytest.raises(ValueError, match="valid"):
        fit_baseline(_store(n=50), dict(train=np.arange(40), test=np.arange(40, 50)), progress=False)


def test_run_baseline_uses_training_split(tmp_path):
    "run_baseline opens the data and splits them exactly as deepknet_lit.train does."
    from deepknet_lit.store import load_npz_store
    from deepknet_lit.train import TrainConfig, split_indices
    s = _store(n=200)
    np.savez(tmp_path / "s.npz", features=s.features, y=s.y)
    cfg = dict(store_path=str(tmp_path / "s.npz"), seed=3)
    res = fit_baseline(s, split_indices(load_npz_store(tmp_path / "s.npz"), TrainConfig.from_dict(cfg)),
                       grid="small", seed=3, progress=False, n_boot=0)
    from deepknet_lit.baselines import run_baseline
    res2 = run_baseline(cfg, grid="small", progress=False, out=tmp_path / "b.json", n_boot=0)
    assert res2["n_train"] == res["n_train"] and res2["test"]["roc_auc"] == pytest.approx(res["test"]["roc_auc"])
    assert json.loads((tmp_path / "b.json").read_text())["config"]["seed"] == 3
