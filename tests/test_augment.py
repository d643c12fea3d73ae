"Tests of deepknet_lit.augment: rotations, shuffles, perturbations."
import math
import sys
import types

import numpy as np
import pytest
import torch

from deepknet_lit import augment as A


@pytest.fixture
def diffraction_consts(monkeypatch):
    "The real diffraction module when exported, else a stand-in with the contract's constants."
    try:
        from deepknet_lit import diffraction as d
        if all(hasattr(d, a) for a in ("LOG_FLOOR", "LOG_CEIL", "ZERO_LEVEL")):
            return d
    except Exception:
        pass
    d = types.SimpleNamespace(LOG_FLOOR=-14.0, LOG_CEIL=6.0)
    d.ZERO_LEVEL = (math.log(1e-6) - d.LOG_FLOOR) / (d.LOG_CEIL - d.LOG_FLOOR)
    monkeypatch.setitem(sys.modules, "deepknet_lit.diffraction", d)
    import deepknet_lit
    monkeypatch.setattr(deepknet_lit, "diffraction", d, raising=False)
    return d


@pytest.mark.parametrize("mode,angle", [("so3", math.pi), ("euler", math.pi / 4), ("euler", math.pi)])
def test_rotations_are_proper_orthogonal(mode, angle):
    R = A.rotation_matrices(500, torch.Generator().manual_seed(1), mode, angle)
    eye = torch.eye(3, dtype=R.dtype).expand_as(R)
    assert torch.allclose(R @ R.transpose(1, 2), eye, atol=1e-10)
    assert torch.allclose(torch.linalg.det(R), torch.ones(500, dtype=R.dtype), atol=1e-10)


def test_so3_is_uniform():
    "The rotated z axis of a uniform rotation is uniform on the sphere: z-component ~ U[-1,1], azimuth ~ U."
    R = A.rotation_matrices(20000, torch.Generator().manual_seed(0), "so3").numpy()
    v = R[:, :, 2]
    hz, _ = np.histogram(v[:, 2], bins=10, range=(-1, 1))
    hphi, _ = np.histogram(np.arctan2(v[:, 1], v[:, 0]), bins=10, range=(-np.pi, np.pi))
    for h in (hz, hphi):     # chi-square with 9 dof; 99.9% quantile is 27.9
        chi2 = ((h - 2000) ** 2 / 2000).sum()
        assert chi2 < 27.9, h
    # the rotation angle of a Haar rotation has density (1 - cos θ)/π: mean of cos θ is -1/2 ... check trace
    tr = np.trace(R, axis1=1, axis2=2)           # = 1 + 2 cos θ, E[tr] = 0 under Haar measure
    assert abs(tr.mean()) < 0.05


def test_euler_bound_limits_rotation():
    R = A.rotation_matrices(2000, torch.Generator().manual_seed(0), "euler", math.pi / 4)
    assert R[:, 2, 2].min() > 0.4          # z axis tilted by at most ~63°
    with pytest.raises(ValueError, match="max_angle"):
        A.rotation_matrices(2, None, "euler", 4.0)
    with pytest.raises(ValueError, match="unknown rotation mode"):
        A.rotation_matrices(2, None, "quaternion")


def test_seeded_generators_reproduce():
    x = torch.randn(4, 27, 4)
    a = A.augment(x, torch.Generator().manual_seed(5), "so3")
    b = A.augment(x, torch.Generator().manual_seed(5), "so3")
    c = A.augment(x, torch.Generator().manual_seed(6), "so3")
    assert torch.equal(a, b) and not torch.equal(a, c)
    n1 = A.random_rotations(x.numpy(), np.random.default_rng(3))
    n2 = A.random_rotations(x.numpy(), np.random.default_rng(3))
    assert isinstance(n1, np.ndarray) and np.array_equal(n1, n2)


def test_rotation_preserves_geometry_and_intensity():
    x = torch.randn(6, 27, 4)
    xr = A.random_rotations(x, torch.Generator().manual_seed(0))
    # pairwise distances within each cloud are unchanged
    dist = lambda p: torch.cdist(p, p, compute_mode="donot_use_mm_for_euclid_dist")
    assert torch.allclose(dist(xr[..., :3]), dist(x[..., :3]), atol=1e-4)
    assert torch.equal(xr[..., 3], x[..., 3])
    assert not torch.allclose(xr[..., :3], x[..., :3])
    with pytest.raises(ValueError, match="shape"):
        A.random_rotations(torch.randn(3, 2), None)


def test_shuffle_is_a_per_material_permutation():
    x = torch.arange(2 * 5 * 4, dtype=torch.float32).reshape(2, 5, 4)
    xs = A.random_shuffle(x, torch.Generator().manual_seed(0))
    for b in range(2):
        rows_in = {tuple(r.tolist()) for r in x[b]}
        rows_out = {tuple(r.tolist()) for r in xs[b]}
        assert rows_in == rows_out
    big = torch.randn(64, 27, 4)
    perms = A.random_shuffle(big, torch.Generator().manual_seed(1))
    assert not torch.equal(perms, big)


def _feats(d):
    I = np.array([[0.0, 1e-3, 0.5, 20.0, 7.0], [0.0, 0.0, 3.0, 100.0, 1.0]])
    It = np.clip((np.log(I + 1e-6) - d.LOG_FLOOR) / (d.LOG_CEIL - d.LOG_FLOOR), 1e-12, 1)
    xyz = np.random.default_rng(0).normal(size=(2, 5, 3))
    return I, torch.tensor(np.concatenate([xyz, It[..., None]], -1), dtype=torch.float32)


def test_phi2_scales_normalised_intensity_per_material(diffraction_consts):
    "The authors' phi2: the normalised log intensity times one U(0, 1] factor per material, fresh per call."
    I, f = _feats(diffraction_consts)
    outs = [A.perturb(f, "phi2", torch.Generator().manual_seed(s)) for s in range(3)]
    for p in outs:
        assert torch.equal(p[..., :3], f[..., :3])
        s = (p[..., 3] / f[..., 3]).numpy()
        assert np.allclose(s, s[:, :1], rtol=1e-5) and (s > 0).all() and (s <= 1 + 1e-6).all()
    assert not torch.equal(outs[0], outs[1])
    same_draws = A.perturb(f, "phi2_raw", torch.Generator().manual_seed(0))  # the same factor applied to raw I instead
    s0 = (outs[0][..., 3] / f[..., 3])[:, :1]
    assert torch.allclose(A.denormalise_t(same_draws[..., 3])[:, 2:].float(), (torch.tensor(I[:, 2:]) * s0).float(), rtol=2e-3)


def test_phi2_raw_scales_raw_intensity_per_material(diffraction_consts):
    I, f = _feats(diffraction_consts)
    outs = [A.perturb(f, "phi2_raw", torch.Generator().manual_seed(s)) for s in range(3)]
    for p in outs:
        assert torch.equal(p[..., :3], f[..., :3])
        raw = A.denormalise_t(p[..., 3]).numpy()
        ratio = raw[:, 2:] / I[:, 2:]                    # non-zero intensities
        assert np.allclose(ratio, ratio[:, :1], rtol=2e-3)  # one factor per material
        assert (ratio > 0).all() and (ratio <= 1 + 2e-3).all()
        zero = I == 0
        assert torch.allclose(p[..., 3][torch.tensor(zero)], f[..., 3][torch.tensor(zero)])
    # fresh factors per call and per material
    assert not torch.equal(outs[0], outs[1])
    r0 = A.denormalise_t(outs[0][..., 3]).numpy()[:, 3] / I[:, 3]
    assert abs(r0[0] - r0[1]) > 1e-4


def test_phi2_factor_is_uniform(diffraction_consts):
    I, f = _feats(diffraction_consts)
    big = f[:1, 3:4].expand(4000, 1, 4).clone()           # one point with I = 20, 4000 copies
    p = A.perturb(big, "phi2_raw", torch.Generator().manual_seed(0))
    s = (A.denormalise_t(p[..., 3]) / 20.0).numpy().ravel()
    h, _ = np.histogram(s, bins=10, range=(0, 1))
    assert ((h - 400) ** 2 / 400).sum() < 27.9


def test_phi2_matches_diffraction_functions():
    d = pytest.importorskip("deepknet_lit.diffraction")
    if not hasattr(d, "normalise_intensity"):
        pytest.skip("diffraction module not exported yet")
    I = np.array([0.0, 1e-8, 1e-3, 0.7, 45.0, 300.0])
    assert np.allclose(A.normalise_t(torch.tensor(I)).numpy(), np.asarray(d.normalise_intensity(I)), atol=1e-7)
    It = np.asarray(d.normalise_intensity(I))
    assert np.allclose(A.denormalise_t(torch.tensor(It)).numpy(), np.asarray(d.intensity_from_features(It)),
                       rtol=1e-6, atol=1e-9)


def test_phi3_and_masking(diffraction_consts):
    I, f = _feats(diffraction_consts)
    p3 = A.perturb(f, "phi3")
    assert p3[..., 3].numpy().tolist() == (I > 0).astype(float).tolist()
    assert A.perturb(f, "no_intensity").shape == (2, 5, 3)
    assert torch.equal(A.perturb(f, "phi1"), f)
    assert A.in_dim_for("no_intensity") == 3 and A.in_dim_for("phi2") == 4
    with pytest.raises(ValueError, match="phi4"):
        A.perturb(f, "phi4")


def test_resolve_rotation():
    assert A.resolve_rotation("paper", None, "crystal_system") == ("euler", math.pi / 4)
    assert A.resolve_rotation("paper", None, "stability") == ("euler", math.pi)
    with pytest.raises(ValueError):
        A.resolve_rotation("sphere", None)
