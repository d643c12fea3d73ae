"""Tests of deepknet_lit.diffraction: agreement with pymatgen's XRD/ND calculators on the AFLOW prototype library,
known intensities, error handling, batching and file featurisation."""
import math
from functools import lru_cache

import numpy as np
import pytest
from pymatgen.core import DummySpecies, Lattice, Structure

import deepknet_lit.diffraction as dd
from deepknet_lit.diffraction import (LOG_CEIL, LOG_FLOOR, POINT_SETS, ZERO_LEVEL, PointCloud, barcode,
                                      compare_with_pymatgen, featurize_files, intensity_from_features, miller_indices,
                                      normalise_intensity, point_cloud, point_clouds, point_set_size)


@lru_cache  # Structure.from_spacegroup is slow (it de-duplicates the symmetry operations)
def _nacl():
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


@lru_cache
def _wurtzite():
    return Structure.from_spacegroup("P6_3mc", Lattice.hexagonal(3.25, 5.207), ["Zn", "O"],
                                     [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.3825]])


def nacl():
    return _nacl().copy()


def wurtzite():
    return _wurtzite().copy()


@pytest.fixture(scope="module")
def prototypes():
    from pymatgen.analysis.prototypes import AFLOW_PROTOTYPE_LIBRARY
    return [(e["tags"].get("mineral") or e["snl"].structure.composition.reduced_formula, e["snl"].structure)
            for e in AFLOW_PROTOTYPE_LIBRARY]


# ---------------------------------------------------------------- agreement with pymatgen (the main verification)
@pytest.mark.parametrize("probe", ["xray", "neutron"])
def test_prototypes_match_pymatgen_powder_lines(prototypes, probe):
    assert len(prototypes) == 288
    n_lines = n_compared = n_structures = n_mostly = 0
    worst, skipped = 0.0, []
    for name, s in prototypes:
        try:
            r = compare_with_pymatgen(s, max_index=3, probe=probe)
        except ValueError as e:  # pymatgen has no neutron scattering length for a few elements (Pu, Po, Cf)
            assert "no scattering coefficients" in str(e) or "no neutron scattering length" in str(e)
            with pytest.raises(ValueError, match="scattering length"):
                point_cloud(s, cell="as_given", probe=probe, material_id=name)
            skipped.append(name)
            continue
        assert r["max_rel_diff"] <= 1e-6, (name, probe, r["max_rel_diff"])
        n_structures += 1
        n_lines += r["n_lines"]
        n_compared += r["n_compared"]
        n_mostly += r["n_compared"] >= 0.5 * r["n_lines"]
        worst = max(worst, r["max_rel_diff"])
    print(f"\n{probe}: {n_structures} structures ({len(skipped)} without scattering data), "
          f"{n_compared}/{n_lines} powder lines compared, max relative difference {worst:.2e}")
    assert len(skipped) <= (0 if probe == "xray" else 10)
    assert n_compared >= 0.9 * n_lines and n_compared > 3000
    assert n_mostly >= 0.9 * n_structures  # most lines of most structures


def test_comparison_detects_a_wrong_form_factor(monkeypatch):
    "The pymatgen comparison can fail: a wrong constant in Eq. A1 is caught."
    assert compare_with_pymatgen(nacl(), 3)["max_rel_diff"] < 1e-9
    monkeypatch.setattr(dd, "XRAY_S2_FACTOR", 40.0)
    assert compare_with_pymatgen(nacl(), 3)["max_rel_diff"] > 1e-3


# ---------------------------------------------------------------- known values
def test_origin_is_squared_mean_scattering_density():
    s = nacl()
    for probe, per_fu in [("xray", 11 + 17), ("neutron", dd.ATOMIC_SCATTERING_LEN["Na"] + dd.ATOMIC_SCATTERING_LEN["Cl"])]:
        for cell, n_fu in [("conventional", 4), ("primitive", 1)]:
            pc = point_cloud(s, max_index=1, probe=probe, cell=cell)
            origin = np.flatnonzero((pc.hkl == 0).all(1))[0]
            assert math.isclose(pc.intensity[origin], (n_fu * per_fu / pc.volume) ** 2, rel_tol=1e-12)


def test_fcc_systematic_absences_and_form_factor_decay():
    pc = point_cloud(Structure(Lattice.cubic(3.615), ["Cu"] * 4, [[0, 0, 0], [.5, .5, 0], [.5, 0, .5], [0, .5, .5]]),
                     max_index=2, cell="as_given")
    I = dict(zip(map(tuple, pc.hkl), pc.intensity))
    mixed = [h for h in I if len({x % 2 for x in h}) == 2]
    assert max(I[h] for h in mixed) < 1e-25 * I[0, 0, 0]
    assert I[0, 0, 0] > I[1, 1, 1] > I[2, 0, 0] > I[2, 2, 0] > I[2, 2, 2] > 0  # f(s) falls with s


def test_cart_is_crystallographic_reciprocal_lattice():
    s = wurtzite()
    pc = point_cloud(s, max_index=2, cell="as_given")
    recip = s.lattice.reciprocal_lattice_crystallographic.matrix
    assert np.allclose(pc.cart, pc.hkl @ recip)
    for h, d in [((0, 0, 2), s.lattice.c / 2), ((1, 0, 0), s.lattice.a * math.sqrt(3) / 2)]:
        assert math.isclose(pc.d_spacing[np.flatnonzero((pc.hkl == h).all(1))[0]], d, rel_tol=1e-12)


# ---------------------------------------------------------------- intensity scale and point sets
def test_normalisation_round_trip_and_range():
    I = np.concatenate([[0.0], np.logspace(-8, 2.5, 50)])
    n = normalise_intensity(I)
    assert (n > 0).all() and (n <= 1).all() and np.all(np.diff(n) > 0)
    assert np.allclose(intensity_from_features(n), I, rtol=1e-9, atol=1e-15)
    assert ZERO_LEVEL == pytest.approx((math.log(1e-6) - LOG_FLOOR) / (LOG_CEIL - LOG_FLOOR))
    assert normalise_intensity(1e12) == 1.0


def test_point_sets():
    for n, (ps, k) in POINT_SETS.items():
        assert point_set_size(ps, k) == n
        pc = point_cloud(nacl(), max_index=k, point_set=ps)
        assert pc.features.shape == (n, 4) and pc.hkl.shape == (n, 3)
    assert miller_indices("axes").tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    assert miller_indices("axes+origin")[0].tolist() == [0, 0, 0]
    assert len({tuple(h) for h in miller_indices("cube", 3)}) == 343
    with pytest.raises(ValueError, match="point_set"):
        miller_indices("sphere")


def test_sphere_drops_or_zeroes_unobservable_points():
    s = Structure(Lattice.cubic(3.615), ["Cu"] * 4, [[0, 0, 0], [.5, .5, 0], [.5, 0, .5], [0, .5, .5]])  # |g| up to 1.44
    full = point_cloud(s, max_index=3, cell="conventional")
    cut = point_cloud(s, max_index=3, cell="conventional", sphere=True)
    inside = np.linalg.norm(full.cart, axis=1) <= 2 / 1.5418
    assert 0 < cut.n == inside.sum() < full.n and cut.in_sphere.all()
    b = point_clouds([s], max_index=3, cell="conventional", sphere=True, progress=False)
    assert np.array_equal(b.in_sphere[0], inside)
    assert np.allclose(b.features[0, ~inside, 3], ZERO_LEVEL)
    assert np.allclose(b.features[0, inside, 3], full.features[inside, 3])


def test_barcode_orders_by_miller_index_and_is_palindromic():
    pc = point_cloud(wurtzite(), max_index=2)
    bc = barcode(pc)
    assert np.allclose(bc, bc[::-1], atol=1e-6)
    perm = np.random.default_rng(1).permutation(pc.n)
    assert np.array_equal(barcode(pc.features[perm], pc.hkl[perm]), bc)
    with pytest.raises(ValueError):
        barcode(np.zeros((5, 3)))


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("make, reason", [
    (lambda: Structure(Lattice.cubic(3), [], []), "empty"),
    (lambda: Structure(Lattice.cubic(3), [DummySpecies("X")], [[0, 0, 0]]), "X-ray form factor"),
    (lambda: Structure(Lattice(np.full((3, 3), np.nan)), ["Si"], [[0, 0, 0]]), "non-finite lattice"),
    (lambda: Structure(Lattice([[1, 0, 0], [2, 0, 0], [0, 0, 1]]), ["Si"], [[0, 0, 0]]), "degenerate"),
])
def test_bad_structures_raise_naming_material_and_reason(make, reason):
    with pytest.raises(ValueError, match=reason) as e:
        point_cloud(make(), cell="as_given", material_id="mp-bad")
    assert "mp-bad" in str(e.value)


def test_bad_options_and_types():
    with pytest.raises(ValueError, match="probe"):
        point_cloud(nacl(), probe="electron")
    with pytest.raises(ValueError, match="cell"):
        point_cloud(nacl(), cell="niggli")
    with pytest.raises(TypeError, match="pymatgen Structure"):
        point_cloud("NaCl", material_id="x")


def test_partial_occupancy_is_occupancy_weighted():
    lat = Lattice.cubic(3.8)
    mix = point_cloud(Structure(lat, [{"Cu": 0.25, "Au": 0.75}], [[0, 0, 0]]), max_index=2, cell="as_given")
    cu, au = (point_cloud(Structure(lat, [el], [[0, 0, 0]]), max_index=2, cell="as_given") for el in ("Cu", "Au"))
    assert np.allclose(np.sqrt(mix.intensity), 0.25 * np.sqrt(cu.intensity) + 0.75 * np.sqrt(au.intensity))
    vac = point_cloud(Structure(lat, [{"Cu": 0.5}], [[0, 0, 0]]), max_index=1, cell="as_given")
    assert np.allclose(vac.intensity, cu.intensity[np.isin(np.arange(125), _cube_in_cube(2, 1))] / 4)


def _cube_in_cube(k_big, k_small):
    h = miller_indices("cube", k_big)
    return np.flatnonzero((np.abs(h) <= k_small).all(1))


# ---------------------------------------------------------------- batches
def test_batch_matches_single_and_skips_bad_items(prototypes):
    picked = prototypes[::12]  # 24 structures of different sizes
    structures = [s for _, s in picked]
    bad = Structure(Lattice.cubic(3), [DummySpecies("X")], [[0, 0, 0]])
    structures.insert(5, bad)
    ids = [f"p{i}" for i in range(len(structures))]
    b = point_clouds(structures, ids, max_index=2, cell="as_given", progress=False, chunk_entries=5_000)  # many chunks
    assert len(b) == len(structures) - 1 and b.errors[0][0] == "p5" and "p5" not in b.ids
    assert b.ids == [i for i in ids if i != "p5"] and b.features.dtype == np.float32
    for i, (sid, s) in enumerate(zip(ids, structures)):
        if sid == "p5":
            continue
        pc = point_cloud(s, max_index=2, cell="as_given")
        j = b.ids.index(sid)
        assert np.allclose(b.features[j], pc.features, rtol=1e-6, atol=1e-6)
        assert math.isclose(b.volumes[j], s.volume)


def test_batch_all_bad_and_neutron():
    b = point_clouds([Structure(Lattice.cubic(3), [], [])], ids=["e"], progress=False)
    assert len(b) == 0 and b.features.shape == (0, 343, 4) and b.errors[0][0] == "e"
    bn = point_clouds([nacl(), wurtzite()], max_index=1, probe="neutron", progress=False)
    assert bn.features.shape == (2, 27, 4) and bn.meta["probe"] == "neutron"


# ---------------------------------------------------------------- files
def test_featurize_files(tmp_path):
    nacl().to(filename=str(tmp_path / "NaCl.cif"))
    wurtzite().to(filename=str(tmp_path / "ZnO.cif"))
    (tmp_path / "junk.cif").write_text("this is not a CIF\n")
    out = tmp_path / "sub" / "feat.npz"
    summary = featurize_files([tmp_path / "NaCl.cif", tmp_path / "junk.cif", tmp_path / "ZnO.cif"], out,
                              max_index=2, probe="neutron", cell="conventional", progress=False)
    assert summary["n_ok"] == 2 and summary["n_failed"] == 1
    assert summary["errors"][0][0] == str(tmp_path / "junk.cif") and "junk.cif" in summary["errors"][0][1]
    z = np.load(out)
    assert list(z["ids"]) == [str(tmp_path / "NaCl.cif"), str(tmp_path / "ZnO.cif")]  # paths, never stems
    assert z["features"].shape == (2, 125, 4) and z["errors"].shape == (1, 2)
    ref = point_cloud(wurtzite(), max_index=2, probe="neutron", cell="conventional")
    assert np.allclose(z["features"][1, :, 3], ref.features[:, 3], atol=1e-4)  # CIF round trip rounds coordinates
    assert list(tmp_path.glob("sub/*.npz")) == [out]  # no temporary file left behind
    assert out.stat().st_mode & 0o777 == 0o644  # readable by others, like any file the user writes


def test_plots_run_headless():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from deepknet_lit.diffraction import plot_barcode, plot_point_cloud
    pc = point_cloud(nacl(), max_index=2, cell="conventional")
    ax = plot_point_cloud(pc)
    assert len(ax.collections) >= 2
    ax = plot_barcode([pc, point_cloud(wurtzite(), max_index=2)])
    assert ax.images[0].get_array().shape == (2, 125)
    plt.close("all")


def test_tables_are_pymatgens():
    "The coefficient tables read from pymatgen's JSON files are the ones its calculators use."
    from pymatgen.analysis.diffraction import neutron, xrd
    assert dd.ATOMIC_SCATTERING_PARAMS == xrd.ATOMIC_SCATTERING_PARAMS
    assert dd.ATOMIC_SCATTERING_LEN == neutron.ATOMIC_SCATTERING_LEN
    assert dd.scatterer_coefficients("Fe")[0] == 26 and dd.scatterer_coefficients("Xx") is None
    assert dd.scatterer_coefficients("H", "neutron")[0] == pytest.approx(-3.739)
