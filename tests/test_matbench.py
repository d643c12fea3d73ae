"""matbench: the official folds, ids, scores and record format, on small synthetic files in matbench's data format."""
import gzip, json, math, os, subprocess, sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.model_selection import KFold, StratifiedKFold

from deepknet_lit import matbench as mb
from deepknet_lit.featurizer import DiffractionFeaturizer

DEEPKNET = str(Path(sys.executable).parent / "deepknet")
SMALL = dict(max_index=1, cell="conventional")  # 27 reflections: quick


def _prototypes(n):
    from pymatgen.analysis.prototypes import AFLOW_PROTOTYPE_LIBRARY
    return AFLOW_PROTOTYPE_LIBRARY[:n]


def write_file(path, task, n=40, broken=(), index=None):
    "A matbench data file (pandas split JSON, structures as pymatgen dicts) of `n` AFLOW prototypes."
    protos = _prototypes(n)
    spec = mb.get_task(task)
    if spec.task_type == "classification":
        y = [p["tags"]["pearson"].startswith("h") for p in protos]  # lattice family: learnable from bar codes
    else:
        y = [float(np.log10(p["snl"].structure.density)) for p in protos]
    rows = [[p["snl"].structure.as_dict(), t] for p, t in zip(protos, y)]
    for k in broken: rows[k][0] = {"lattice": "nonsense"}
    d = {"index": list(index if index is not None else range(n)), "columns": ["structure", spec.target], "data": rows}
    with (gzip.open(path, "wt") if str(path).endswith(".gz") else open(path, "w")) as fh: json.dump(d, fh)
    return path, np.array(y)


@pytest.fixture(scope="module")
def metal_file(tmp_path_factory):
    return write_file(tmp_path_factory.mktemp("mb") / "matbench_mp_is_metal.json.gz", "matbench_mp_is_metal")


@pytest.fixture(scope="module")
def metal_record(metal_file):
    return mb.run_matbench("matbench_mp_is_metal", metal_file[0], featurizer=DiffractionFeaturizer(**SMALL),
                           n_jobs=1, progress=False)


def test_ids_follow_matbench_load():
    "`mb-<task>-<i+1>` zero-padded to floor(log10 N) + 1 digits (matbench.data_ops.load)."
    assert mb.mbid("matbench_mp_is_metal", 0, 106113) == "mb-mp-is-metal-000001"
    assert mb.mbid("matbench_perovskites", 18927, 18928) == "mb-perovskites-18928"
    assert mb.mbid("matbench_log_gvrh", 0, 40) == "mb-log-gvrh-01" and mb.mbid("matbench_phonons", 0, 1265) == "mb-phonons-0001"
    assert mb.mbid("matbench_phonons", 0, 1000) == "mb-phonons-001"  # as matbench: math.log(1000, 10) < 3


@pytest.mark.parametrize("task, splitter", [("matbench_mp_is_metal", StratifiedKFold), ("matbench_log_kvrh", KFold)])
def test_folds_are_matbench_recipe(task, splitter):
    "(Stratified)KFold(n_splits=5, shuffle=True, random_state=18012019), stratified for classification only."
    y = np.array([True] * 13 + [False] * 27) if splitter is StratifiedKFold else np.linspace(0, 1, 40)
    ours = mb.matbench_folds(y, mb.get_task(task).task_type)
    ref = list(splitter(n_splits=5, shuffle=True, random_state=18012019).split(np.zeros(40), y))
    assert len(ours) == 5 and all((a == c).all() and (b == d).all() for (a, b), (c, d) in zip(ours, ref))
    assert sorted(np.concatenate([te for _, te in ours])) == list(range(40))


def test_record_has_matbench_task_format(metal_file, metal_record):
    rec = metal_record
    assert rec["@module"] == "matbench.task" and rec["@class"] == "MatbenchTask"
    assert rec["benchmark_name"] == "matbench_v0.1" and rec["dataset_name"] == "matbench_mp_is_metal"
    assert list(rec) == ["@module", "@class", "benchmark_name", "dataset_name", "results"]  # from_dict allows no other
    assert list(rec["results"]) == [f"fold_{k}" for k in range(5)]
    _, y = metal_file
    folds = mb.matbench_folds(y, "classification")
    for (train, test), fold in zip(folds, rec["results"].values()):
        assert set(fold) == {"data", "parameters", "scores", "uncertainty"} and fold["uncertainty"] is None
        assert list(fold["data"]) == [mb.mbid("matbench_mp_is_metal", int(i), 40) for i in test]
        assert all(isinstance(p, float) and 0 <= p <= 1 for p in fold["data"].values())
        assert set(fold["scores"]) == set(mb.CLF_METRICS) and all(isinstance(v, float) for v in fold["scores"].values())
        assert fold["parameters"]["n_train"] == len(train) and fold["parameters"]["model"] == "xgboost"
        truth, pred = y[test], np.array(list(fold["data"].values()))
        assert fold["scores"] == mb.score_fold(truth, pred, "classification")
    assert mb.summarize(rec)["rocauc"]["mean"] > 0.6  # the lattice family is in the bar codes
    json.dumps(rec)  # plain JSON


def test_scores_are_matbench_metrics():
    from sklearn import metrics
    truth, prob = np.array([True, True, False, False, True]), np.array([0.7, 0.4, 0.6, 0.1, 0.9])
    s = mb.score_fold(truth, prob, "classification")
    assert s["accuracy"] == 0.6 and math.isclose(s["f1"], metrics.f1_score(truth, prob > 0.5))
    assert math.isclose(s["rocauc"], metrics.roc_auc_score(truth, prob))
    r = mb.score_fold([0.0, 2.0, -4.0], [1.0, 1.0, -5.0], "regression")
    assert r == dict(mae=1.0, rmse=1.0, mape=0.375, max_error=1.0)  # MAPE skips the zero target, as matbench


def test_regression_task_and_gzip_record(tmp_path):
    path, y = write_file(tmp_path / "matbench_log_kvrh.json", "matbench_log_kvrh")
    rec = mb.run_matbench("matbench_log_kvrh", path, model="rf", featurizer=DiffractionFeaturizer(**SMALL),
                          n_jobs=1, progress=False)
    fold = rec["results"]["fold_3"]
    assert set(fold["scores"]) == set(mb.REG_METRICS) and fold["scores"]["mae"] < np.abs(y - y.mean()).mean()
    out = mb.write_record(rec, tmp_path / "kvrh.json.gz")
    assert json.loads(gzip.open(out, "rt").read()) == rec and "mae" in mb.report(rec)


@pytest.mark.parametrize("task", ["matbench_mp_gap", "matbench_log_gvrh", "matbench_perovskites", "matbench_mp_e_form"])
def test_supported_regression_tasks(task):
    spec = mb.get_task(task)
    assert spec.task_type == "regression" and spec.metric == "mae"


def test_broken_structures_are_predicted_and_written_down(tmp_path):
    "A row whose structure does not parse still gets a prediction; the record's parameters name it."
    path, _ = write_file(tmp_path / "m.json", "matbench_mp_is_metal", broken=[5])
    rec = mb.run_matbench("matbench_mp_is_metal", path, model="rf", featurizer=DiffractionFeaturizer(**SMALL),
                          n_jobs=1, progress=False)
    bad = "mb-mp-is-metal-06"
    fold = next(f for f in rec["results"].values() if bad in f["data"])
    assert "unreadable structure" in fold["parameters"]["unfeaturized_test"][bad]
    assert sum(len(f["data"]) for f in rec["results"].values()) == 40 and bad in mb.report(rec)


def test_splits_from_matbench_validation_file(tmp_path, metal_file):
    "With matbench's validation JSON, its folds (by id) are used instead of rebuilt ones."
    ids = [mb.mbid("matbench_mp_is_metal", i, 40) for i in range(40)]
    folds = {f"fold_{k}": {"train": [i for j, i in enumerate(ids) if j % 5 != k], "test": ids[k::5]} for k in range(5)}
    val = tmp_path / "matbench_v0.1_validation.json"
    val.write_text(json.dumps({"metadata": {}, "splits": {"matbench_mp_is_metal": folds}}))
    rec = mb.run_matbench("matbench_mp_is_metal", metal_file[0], model="rf", featurizer=DiffractionFeaturizer(**SMALL),
                          splits=val, n_jobs=1, progress=False)
    assert list(rec["results"]["fold_2"]["data"]) == ids[2::5]


@pytest.mark.parametrize("content, match", [("not json", "not a readable matbench JSON"),
                                            ('{"a": 1}', "keys index, columns, data"),
                                            ('{"index": [0], "columns": ["structure"], "data": [[{}]]}', "is_metal")])
def test_bad_files_fail_with_one_line_naming_the_file(tmp_path, content, match):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    with pytest.raises(ValueError, match=match) as e:
        mb.read_matbench(bad, "matbench_mp_is_metal")
    assert "bad.json" in str(e.value)
    with pytest.raises(ValueError, match="unsupported matbench task"):
        mb.get_task("matbench_steels")  # a composition task: no structures to diffract


def test_cli_runs_the_folds_and_writes_the_record(tmp_path, metal_file):
    out = tmp_path / "record.json"
    done = subprocess.run([DEEPKNET, "matbench", "matbench_mp_is_metal", "--data", str(metal_file[0]), "-o", str(out),
                           "--max-index", "1", "--cell", "conventional"], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rocauc" in done.stdout and f"wrote {out}" in done.stdout
    rec = json.loads(out.read_text())
    assert rec["dataset_name"] == "matbench_mp_is_metal" and len(rec["results"]) == 5
    bad = subprocess.run([DEEPKNET, "matbench", "matbench_mp_is_metal", "--data", str(tmp_path / "missing.json"),
                          "-o", str(out)], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("deepknet: error:") and "missing.json" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
