"""The experiments layer: nested point sets, held-out materials, the results cache and the paper's numbers."""
import json
from types import SimpleNamespace

import numpy as np
import pytest
from pymatgen.analysis.prototypes import AFLOW_PROTOTYPE_LIBRARY

from deepknet_lit import experiments as ex
from deepknet_lit.diffraction import point_clouds


@pytest.fixture(scope="module")
def structures():
    return [AFLOW_PROTOTYPE_LIBRARY[i]["snl"].structure for i in (0, 7, 42, 100, 200)]


def _store(batch):
    return SimpleNamespace(features=batch.features, hkl=batch.hkl, ids=list(batch.ids), y=np.arange(len(batch.ids)) % 2,
                           classes=["a", "b"], meta={}, skipped=[])


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


def test_comparison_rows_flag_differences_beyond_noise():
    within = ex.compare_row("x", 0.90, [0.89, 0.91, 0.90], paper_std=0.002)
    beyond = ex.compare_row("x", 0.95, [0.80, 0.81], paper_std=0.002, reason="small data")
    assert within["within_noise"] and not beyond["within_noise"] and beyond["reason"] == "small data"
    assert ex.compare_row("x", None, [0.8])["within_noise"] is None


def test_paper_numbers_are_consistent():
    t1 = ex.PAPER["table1"]["metallicity"]
    assert t1["metal"] + t1["insulator"] == t1["total"]
    assert len(ex.PAPER["table2"]) == 17
    assert set(ex.PAPER["table5_std"]) == {"metallicity", "bulk_modulus", "shear_modulus", "stability"}


def test_unknown_profile_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown profile"):
        ex.book_profile("laptop")
