"Tests of deepknet_lit.evaluate against scikit-learn."
import json

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from deepknet_lit.evaluate import (bootstrap_ci, evaluate_probs, predict_probs, plot_roc,
                                   plot_confusion, write_json)
from deepknet_lit.model import PointNet


@pytest.fixture
def binary():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 400)
    p1 = np.clip(0.25 * y + 0.75 * rng.random(400), 0, 1)
    return y, np.stack([1 - p1, p1], 1)


def test_binary_matches_sklearn(binary):
    y, p = binary
    m = evaluate_probs(y, p)
    pred = p.argmax(1)
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p[:, 1]), abs=1e-12)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert m["confusion"] == skm.confusion_matrix(y, pred).tolist()
    fpr, tpr, _ = skm.roc_curve(y, p[:, 1])
    assert np.allclose(m["roc_curve"]["fpr"], fpr) and np.allclose(m["roc_curve"]["tpr"], tpr)


def test_auc_is_dataset_level_not_batch_average(binary):
    y, p = binary
    batches = [skm.roc_auc_score(y[i:i + 40], p[i:i + 40, 1]) for i in range(0, 400, 40)]
    m = evaluate_probs(y, p)
    assert m["roc_auc"] != pytest.approx(np.mean(batches), abs=1e-9)
    # thresholding would give a different (one-point) AUC
    assert m["roc_auc"] != pytest.approx(skm.roc_auc_score(y, p.argmax(1)), abs=1e-6)


def test_multiclass_matches_sklearn():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 4, 300)
    p = rng.dirichlet(np.ones(4), 300); p[np.arange(300), y] += 0.3; p /= p.sum(1, keepdims=True)
    m = evaluate_probs(y, p, classes=["a", "b", "c", "d"])
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p, multi_class="ovr", average="macro"), abs=1e-12)
    assert m["f1"] == pytest.approx(skm.f1_score(y, p.argmax(1), average="macro"))
    assert len(m["confusion"]) == 4 and set(m["roc_curve"]) == {"0", "1", "2", "3"}
    assert m["classes"] == ["a", "b", "c", "d"]


def test_bad_input():
    with pytest.raises(ValueError, match="shape"):
        evaluate_probs([0, 1, 1], np.ones((2, 2)) / 2)
    with pytest.raises(ValueError, match="non-finite"):
        evaluate_probs([0, 1], np.array([[np.nan, 1], [0.5, 0.5]]))
    with pytest.raises(ValueError, match="labels"):
        evaluate_probs([0, 2], np.ones((2, 2)) / 2)
    m = evaluate_probs([1, 1], np.array([[0.2, 0.8], [0.6, 0.4]]))
    assert np.isnan(m["roc_auc"])             # one class only: AUC undefined, not an error


def test_bootstrap_seeded_and_covers(binary):
    y, p = binary
    a = bootstrap_ci(y, p, n_boot=300, seed=4)
    assert a == bootstrap_ci(y, p, n_boot=300, seed=4)
    assert a != bootstrap_ci(y, p, n_boot=300, seed=5)
    auc = skm.roc_auc_score(y, p[:, 1])
    assert a["low"] < auc < a["high"] and a["high"] - a["low"] < 0.2
    acc = bootstrap_ci(y, p, metric="accuracy", n_boot=100)
    assert acc["low"] <= skm.accuracy_score(y, p.argmax(1)) <= acc["high"]


def test_predict_probs_reproducible_and_order_preserving():
    torch.manual_seed(0)
    net = PointNet(mlp=(8, 16), head=(8,)).eval()
    f = np.random.default_rng(0).random((30, 27, 4)).astype(np.float32)
    cfg = {"rotation": "so3", "perturbation": "phi2"}
    a = predict_probs(net, f, cfg, seed=1, batch_size=8)
    assert a.shape == (30, 2) and np.allclose(a.sum(1), 1, atol=1e-5)
    assert np.array_equal(a, predict_probs(net, f, cfg, seed=1, batch_size=8))
    assert not np.array_equal(a, predict_probs(net, f, cfg, seed=2, batch_size=8))
    det = {"rotation": "none", "shuffle_points": False}
    full = predict_probs(net, f, det)
    assert np.allclose(predict_probs(net, f, det, indices=[7, 3, 20]), full[[7, 3, 20]], atol=1e-6)


def test_plots_and_json(tmp_path, binary):
    import matplotlib
    matplotlib.use("Agg")
    y, p = binary
    m = evaluate_probs(y, p)
    assert plot_roc([m, m], labels=["a", "b"]).get_legend() is not None
    assert plot_confusion(m) is not None
    path = write_json({"m": m, "nan": float("nan"), "arr": np.arange(3)}, tmp_path / "e.json")
    d = json.loads(path.read_text())
    assert d["nan"] is None and d["arr"] == [0, 1, 2] and d["m"]["roc_auc"] == pytest.approx(m["roc_auc"])


def test_rank_auc_matches_sklearn_with_ties():
    from deepknet_lit.evaluate import _binary_auc
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.random(200) + 0.3 * y, 1)        # many ties
    assert _binary_auc(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    assert np.isnan(_binary_auc(np.ones(5, int), s[:5]))
