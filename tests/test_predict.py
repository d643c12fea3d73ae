"Prediction for user files: featurized as trained, per-file errors, seeded rotation averaging."
import os

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

os.environ.setdefault("MALLOC_MMAP_MAX_", "0")
from deepknet_lit.diffraction import point_clouds
from deepknet_lit.evaluate import predict_probs
from deepknet_lit.predict import (featurize_settings, load_run, predict_features, predict_files, predict_structures,
                                  read_structure)
from deepknet_lit.train import ArrayStore, TrainConfig, train

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
    assert {"p_insulator", "p_metal", "predicted", "probability", "formula"} <= set(t.columns)
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
    # the average is the mean of the single-rotation predictions
    singles = [predict_features(model, feats, config, n_rotations=1, seed=s) for s in range(4)]
    assert np.allclose(a, np.mean(singles, axis=0), atol=1e-6)


def test_bad_inputs(run, tmp_path):
    with pytest.raises(FileNotFoundError, match="no trained model"):
        predict_files(tmp_path / "no_run", [])
    with pytest.raises(ValueError, match="ids"):
        predict_structures(run, [fcc("Ag", 4.0)], ids=["a", "b"])
    with pytest.raises(FileNotFoundError):
        read_structure(tmp_path / "nope.cif")
    disordered = Structure(Lattice.cubic(3.8), [{"Cu": 0.5, "Au": 0.5}], [[0, 0, 0]])
    t = predict_structures(run, [fcc("Ag", 4.0), None, disordered], ids=["a", "b", "c"], n_rotations=1)
    assert t.error.isna().tolist() == [True, False, False]
    assert "partial occupanc" in t.error[2] and t.predicted[0] in ("metal", "insulator")
