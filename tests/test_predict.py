"Prediction for user files: featurized as trained, per-file errors, seeded rotation averaging."
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

os.environ.setdefault("MALLOC_MMAP_MAX_", "0")
from deepknet_lit.diffraction import point_clouds
from deepknet_lit.evaluate import predict_probs
from deepknet_lit.predict import (featurize_settings, load_run, predict_features, predict_files, predict_structures,
                                  rotation_probs, write_table)
from deepknet_lit.store import ArrayStore
from deepknet_lit.train import TrainConfig, train

FCC = [[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0]]


def fcc(el, a):
    return Structure(Lattice.cubic(a), [el] * 4, FCC)


def rocksalt(c, an, a):
    return Structure(Lattice.cubic(a), [c] * 4 + [an] * 4, FCC + [[x + .5 for x in p] for p in FCC])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    "A tiny metal/insulator model trained on fcc metals vs rock salts (27-point clouds)."
    metals = [fcc(el, a0 * f) for el, a0 in [("Cu", 3.61), ("Al", 4.05), ("Ni", 3.52), ("Pd", 3.89), ("Pt", 3.92)]
              for f in (0.98, 1.0, 1.02)]
    salts = [rocksalt(x, y, a0 * f) for x, y, a0 in [("Na", "Cl", 5.64), ("K", "Cl", 6.29), ("Mg", "O", 4.21),
                                                     ("Li", "F", 4.03), ("Ca", "O", 4.81)] for f in (0.98, 1.0, 1.02)]
    batch = point_clouds(metals + salts, max_index=1, progress=False)
    y = np.r_[np.ones(len(metals)), np.zeros(len(salts))].astype(int)
    store = ArrayStore(batch.features, y, batch.ids, ["insulator", "metal"])
    cfg = TrainConfig(task="metallicity", max_index=1, point_set="cube", mlp=(16, 32), head=(16,), epochs=15,
                      batch_size=8, lr=1e-2, patience=15, device="cpu", dropout=0.0, fractions=(0.6, 0.2, 0.2),
                      num_threads=1)
    out = tmp_path_factory.mktemp("run")
    train(cfg, out, store=store, progress=False)
    return out


@pytest.fixture()
def files(tmp_path):
    fcc("Ag", 4.086).to(filename=str(tmp_path / "Ag.cif"))
    rocksalt("Na", "F", 4.62).to(filename=str(tmp_path / "NaF.cif"))
    (tmp_path / "garbage.cif").write_text("data_x\nloop_\n_atom_site_label\nthis is not a cif\n")
    Structure(Lattice.cubic(3.8), [{"Cu": 0.5, "Au": 0.5}], [[0, 0, 0]]).to(filename=str(tmp_path / "CuAu.cif"))
    return [tmp_path / n for n in ("Ag.cif", "garbage.cif", "NaF.cif", "CuAu.cif", "nothere.cif")]


def test_files_table_and_errors(run, files):
    t = predict_files(run / "last.pt", files, n_rotations=4)
    assert list(t.id) == [str(f) for f in files]
    ok = t.error.isna().to_numpy()
    assert ok.tolist() == [True, False, True, False, False]
    assert list(t.columns) == ["id", "formula", "predicted", "probability", "p_insulator", "p_metal",
                               "p_insulator_std", "p_metal_std", "out_of_domain", "domain_note", "error"]
    assert t.out_of_domain.isna().all()  # a run without a model card has no recorded training domain
    assert np.allclose(t.loc[ok, ["p_insulator", "p_metal"]].sum(axis=1), 1.0, atol=1e-5)
    assert t.loc[~ok, "p_metal"].isna().all()
    assert "garbage.cif" in t.error[1]
    assert "CuAu.cif" in t.error[3] and "partial occupanc" in t.error[3]
    assert "no such file" in t.error[4]
    # unseen structures of the trained prototypes: Ag is a metal, NaF an insulator
    assert t.predicted[0] == "metal" and t.predicted[2] == "insulator"
    assert (t.probability[ok] >= 0.5).all()


def test_run_directory_is_accepted(run):
    t = predict_structures(run, [fcc("Au", 4.078)], ids=["Au"], n_rotations=2)
    assert t.error.isna().all() and set(t.columns) >= {"p_metal", "p_insulator"}


def test_featurized_exactly_as_trained(run):
    model, config = load_run(run / "last.pt")
    settings = featurize_settings(config)
    assert settings["max_index"] == 1 and settings["point_set"] == "cube" and settings["probe"] == "xray"
    s = [fcc("Ag", 4.086), rocksalt("K", "Br", 6.6)]
    t = predict_structures(run / "last.pt", s, n_rotations=0)
    feats = point_clouds(s, max_index=1, progress=False).features  # (2, 27, 4)
    ref = predict_probs(model, feats, {**config, "rotation": "none", "shuffle_points": False})
    assert np.allclose(t[["p_insulator", "p_metal"]].to_numpy(), ref, atol=1e-6)


def test_n_sets_the_point_set():
    assert featurize_settings({"n": 125})["max_index"] == 2
    assert featurize_settings({"n": 4})["point_set"] == "axes+origin"
    with pytest.raises(ValueError, match="n=7"):
        featurize_settings({"n": 7})


def test_rotation_averaging_seeded(run):
    model, config = load_run(run / "last.pt")
    feats = point_clouds([fcc("Ag", 4.086)], max_index=1, progress=False).features
    a = predict_features(model, feats, config, n_rotations=4, seed=0)
    b = predict_features(model, feats, config, n_rotations=4, seed=0)
    c = predict_features(model, feats, config, n_rotations=4, seed=1)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)  # other rotations, slightly different numbers
    # the average is the mean of the per-rotation predictions, which differ from one another
    per = rotation_probs(model, feats, config, n_rotations=4, seed=0)
    assert per.shape == (1, 4, 2) and np.allclose(a, per.mean(1), atol=1e-6) and per[0, :, 1].std() > 0


def test_bad_inputs(run, tmp_path):
    with pytest.raises(FileNotFoundError, match="no trained model"):
        predict_files(tmp_path / "no_run", [])
    with pytest.raises(ValueError, match="ids"):
        predict_structures(run, [fcc("Ag", 4.0)], ids=["a", "b"])
    disordered = Structure(Lattice.cubic(3.8), [{"Cu": 0.5, "Au": 0.5}], [[0, 0, 0]])
    t = predict_structures(run, [fcc("Ag", 4.0), None, disordered], ids=["a", "b", "c"], n_rotations=1)
    assert t.error.isna().tolist() == [True, False, False]
    assert "partial occupanc" in t.error[2] and t.predicted[0] in ("metal", "insulator")
    assert t.formula[0] == "Ag" and t.formula.isna().tolist() == [False, True, False]


def test_probability_does_not_depend_on_the_batch(run):
    "Each structure's test-time rotations come from its own content, so alone == among others (was 0.9528 vs 0.9657)."
    others = [rocksalt("K", "Br", 6.6), fcc("Au", 4.078), rocksalt("Li", "Cl", 5.13), fcc("Ni", 3.52)]
    alone = predict_structures(run / "last.pt", [fcc("Ag", 4.086)], ids=["Ag"], n_rotations=4)
    five = predict_structures(run / "last.pt", others[:2] + [fcc("Ag", 4.086)] + others[2:], ids=list("abcde"),
                              n_rotations=4)
    assert abs(alone.p_metal[0] - five.p_metal[2]) <= 1e-6
    model, config = load_run(run / "last.pt")
    feats = point_clouds([fcc("Ag", 4.086)] + others, max_index=1, progress=False).features
    together = predict_features(model, feats, config, n_rotations=3, seed=7)
    for i in range(len(feats)):
        assert np.allclose(predict_features(model, feats[i:i + 1], config, n_rotations=3, seed=7)[0], together[i],
                           atol=1e-6, rtol=0)


@pytest.mark.parametrize("suffix", [".csv", ".json", ".parquet"])
def test_tables_out(run, files, tmp_path, suffix):
    "One row per input structure: id, formula, probabilities, their spread over rotations, error (empty if none)."
    import pandas as pd
    t = predict_files(run / "last.pt", files, n_rotations=3)
    out = write_table(t, tmp_path / f"results{suffix}")
    back = {".csv": pd.read_csv, ".json": pd.read_json, ".parquet": pd.read_parquet}[suffix](out)
    assert back.id.astype(str).tolist() == [str(f) for f in files]
    assert {"formula", "p_metal", "p_metal_std", "error"} <= set(back.columns)
    assert back.error.isna().tolist() == t.error.isna().tolist() and np.allclose(back.p_metal, t.p_metal, equal_nan=True)
    with pytest.raises(ValueError, match="csv"):
        write_table(t, tmp_path / "results.xlsx")


def test_multi_structure_file_is_one_row_per_structure(run, tmp_path):
    (tmp_path / "two.cif").write_text(fcc("Ag", 4.086).to(fmt="cif") + rocksalt("Na", "F", 4.62).to(fmt="cif"))
    t = predict_files(run / "last.pt", [tmp_path / "two.cif"], n_rotations=2)
    assert t.id.tolist() == [f"{tmp_path}/two.cif#0", f"{tmp_path}/two.cif#1"] and t.formula.tolist() == ["Ag", "NaF"]
    assert t.error.isna().all()


def test_cli_predict_writes_a_table(run, files, tmp_path):
    import subprocess, sys
    import pandas as pd
    out = tmp_path / "results.csv"
    cmd = [str(Path(sys.executable).parent / "deepknet"), "predict", str(run / "last.pt"), *map(str, files), "-o", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "2 structures predicted, 3 failed" in done.stdout and "garbage.cif" in done.stderr
    assert pd.read_csv(out).id.tolist() == [str(f) for f in files]
