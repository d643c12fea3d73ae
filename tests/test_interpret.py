"Critical points: the argmax of the max-pool, checked against brute force and under point permutation."
import numpy as np
import pandas as pd
import pytest
import torch

from deepknet_lit.interpret import (REFERENCE_LABELS, critical_indices, critical_points, friedel_summary,
                                    reference_structures)
from deepknet_lit.model import PointNet


def _cloud(k=2, a=4.2, seed=0):
    g = np.arange(-k, k + 1)
    hkl = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    rng = np.random.default_rng(seed)
    inten = rng.uniform(0.05, 0.95, len(hkl))
    for i, h in enumerate(hkl):
        j = np.flatnonzero((hkl == -h).all(1))[0]
        inten[max(i, j)] = inten[min(i, j)]
    return np.c_[hkl / a, inten].astype(np.float32), hkl


def _model(seed=0, m=32):
    torch.manual_seed(seed)
    return PointNet(mlp=(16, 32, m), head=(16,), n_classes=2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_indices_match_brute_force(seed):
    feats, _ = _cloud(seed=seed)
    x = np.stack([feats, _cloud(seed=seed + 10)[0]])  # a batch of two materials
    model = _model(seed)
    idx = critical_indices(model, x)
    model.eval()
    with torch.no_grad():
        h = model.point_features(torch.as_tensor(x)).numpy()  # (B, n, m)
    brute = h.argmax(axis=1)  # (B, m)
    assert idx.shape == brute.shape == (2, 32)
    # where the column maximum is unique the indices must agree; elsewhere the value must be the maximum
    top = np.sort(h, axis=1)
    unique = top[:, -1] > top[:, -2]
    assert np.array_equal(idx[unique], brute[unique])
    picked = np.take_along_axis(h, idx[:, None, :], axis=1)[:, 0]
    assert np.allclose(picked, h.max(axis=1))


def test_eval_mode_restored():
    model = _model().train()
    critical_indices(model, _cloud()[0])
    assert model.training


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_critical_set_is_permutation_invariant(seed):
    feats, hkl = _cloud(seed=seed)
    model = _model(seed)
    t = critical_points(model, feats, hkl)
    perm = np.random.default_rng(seed).permutation(len(feats))
    tp = critical_points(model, feats[perm], hkl[perm])
    key = lambda df: sorted(zip(df.h, df.k, df.l, df.n_features))
    assert key(t) == key(tp)


def test_table_columns_and_geometry():
    feats, hkl = _cloud()
    model = _model(m=24)
    t = critical_points(model, feats, hkl)
    assert t.n_features.sum() == 24 and t.point.is_unique
    row = t.iloc[0]
    g = np.linalg.norm(feats[row.point, :3])
    if not row.is_origin:
        assert row.d_angstrom == pytest.approx(1 / g, rel=1e-5)
    # d_max is the spacing of the (100)-type planes of the cubic toy lattice: a = 4.2 Å
    assert t.attrs["d_max_angstrom"] == pytest.approx(4.2, rel=1e-5)
    assert ((t.d_norm.dropna() > 0) & (t.d_norm.dropna() <= 1 + 1e-9)).all()
    # Friedel flags are consistent: (hkl) is flagged iff (-h-k-l) is in the table
    present = set(zip(t.h, t.k, t.l))
    for h, k, l, flag in zip(t.h, t.k, t.l, t.friedel_partner_critical):
        assert flag == (((-h, -k, -l) in present) and (h, k, l) != (0, 0, 0))
    s = friedel_summary(t)
    assert s["n_friedel_pairs"] == int(t.friedel_partner_critical.sum()) // 2


def _hand_model(rows):
    "A PointNet whose per-point features are chosen linear maps of [x, y, z, Ĩ] (BatchNorm at identity, eval mode)."
    model = PointNet(mlp=(len(rows),), head=(4,), n_classes=2).eval()
    with torch.no_grad():
        model.features[0].weight.copy_(torch.tensor(rows, dtype=torch.float32))
    return model


def test_origin_and_friedel_pair_by_construction():
    feats, hkl = _cloud()
    o = np.flatnonzero((hkl == 0).all(1))[0]
    feats[o, 3] = 1.0  # the origin is the brightest point, as in real patterns
    model = _hand_model([[0, 0, 0, 1], [0, 0, 0, 1], [1, 0.1, 0.01, 0], [-1, -0.1, -0.01, 0]])
    t = critical_points(model, feats, hkl).set_index(["h", "k", "l"])
    assert set(t.index) == {(0, 0, 0), (2, 2, 2), (-2, -2, -2)}
    origin = t.loc[(0, 0, 0)]
    assert origin.n_features == 2 and origin.is_origin and np.isinf(origin.d_angstrom) and np.isnan(origin.d_norm)
    assert not origin.friedel_partner_critical
    assert t.loc[(2, 2, 2)].friedel_partner_critical and t.loc[(-2, -2, -2)].friedel_partner_critical
    assert t.loc[(2, 2, 2)].d_norm == pytest.approx(1 / np.sqrt(12))  # d(222)/d(100) for a cubic lattice
    s = friedel_summary(t.reset_index())
    assert s == dict(n_unique=3, origin_critical=True, n_friedel_pairs=1,
                     n_outside_sphere=int(np.sqrt(12) / 4.2 > 2 / 1.5418) * 2, largest_d_norm_gap=0.0)


def test_bad_input():
    feats, hkl = _cloud()
    with pytest.raises(ValueError, match="Miller"):
        critical_points(_model(), feats)
    bad = feats.copy()
    bad[3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        critical_points(_model(), bad, hkl)
    with pytest.raises(ValueError, match="hkl"):
        critical_points(_model(), feats, hkl[:10])


def test_reference_structures():
    refs = reference_structures()
    assert set(refs) == set(REFERENCE_LABELS)
    assert refs["Al2O3"].composition.reduced_formula == "Al2O3"
    assert refs["Al2O3"].get_space_group_info()[0] == "R-3c"
    assert refs["SiO2"].get_space_group_info()[0] == "P3_221"
    assert refs["Cu"].lattice.a == pytest.approx(3.6149)
    nacl = refs["NaCl"]
    assert min(nacl.distance_matrix[nacl.distance_matrix > 0]) == pytest.approx(5.640 / 2)


def test_real_cloud_and_interpret_run(tmp_path):
    "On real diffraction clouds: d-spacings agree with diffraction's own, and interpret_run writes its outputs."
    from pymatgen.core import Lattice, Structure
    from deepknet_lit.diffraction import point_cloud
    from deepknet_lit.interpret import interpret_run, small_interpretation_config
    from deepknet_lit.train import build_model
    nacl = Structure(Lattice.cubic(5.64), ["Na"] * 4 + ["Cl"] * 4,
                     [[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0], [.5, .5, .5], [.5, 0, 0], [0, .5, 0], [0, 0, .5]])
    cu = Structure(Lattice.cubic(3.6149), ["Cu"] * 4, [[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0]])
    cfg = small_interpretation_config(n=27, mlp=(8, 16), head=(8,))
    model = build_model(cfg, n_classes=2).eval()
    cloud = point_cloud(nacl, max_index=1)
    t = critical_points(model, cloud)
    finite = ~t.is_origin
    assert np.allclose(t.d_angstrom[finite], cloud.d_spacing[t.point[finite]])
    assert t.n_features.sum() == 16
    res = interpret_run((model, cfg), tmp_path, structures=dict(NaCl=nacl, Cu=cu))
    assert set(res["summary"].index) == {"NaCl", "Cu"}
    assert {"critical_points.csv", "summary.json", "fig5.png"} <= {p.name for p in tmp_path.iterdir()}
    saved = pd.read_csv(tmp_path / "critical_points.csv")
    assert saved.groupby("material").n_features.sum().tolist() == [16, 16]
    assert saved[["h", "k", "l"]].abs().max().max() <= 1


def test_only_max_pooling():
    torch.manual_seed(0)
    model = PointNet(mlp=(8, 16), head=(8,), pooling="mean")
    with pytest.raises(ValueError, match="max-pool"):
        critical_indices(model, _cloud()[0])


def test_interpret_references_applies_the_run_perturbation():
    "A model trained without intensities (in_dim 3) is interpreted on 3-channel clouds, tables keep the real Ĩ."
    from pymatgen.core import Lattice, Structure
    from deepknet_lit.interpret import interpret_references, small_interpretation_config
    from deepknet_lit.train import build_model
    cu = Structure(Lattice.cubic(3.6149), ["Cu"] * 4, [[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0]])
    cfg = small_interpretation_config(n=27, mlp=(8, 16), head=(8,), perturbation="no_intensity")
    model = build_model(cfg, n_classes=2).eval()
    t = interpret_references(model, cfg, dict(Cu=cu))["Cu"]
    assert t.n_features.sum() == 16 and t.intensity.between(0, 1).all()
