"""Tests of deepknet_lit.tasks: labels, merge rule, thresholds, symmetry cache, splits (random, paper, grouped).

Mirror-dependent tests are skipped when the offline mirror is absent; grouped splits are also tested on a small
hand-made user dataset in a temporary cache.
"""
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st
from pymatgen.core import Lattice, Structure

from deepknet_lit import registry as reg, userdata as ud
from deepknet_lit import sources as src
from deepknet_lit import tasks as T
from deepknet_lit.tasks import (TaskData, format_stats, label_disagreements, load_task, make_splits,
                                merge_by_priority, stratified_subset, task_stats)

MIRROR = reg.data_root()
needs_mirror = pytest.mark.skipif(MIRROR is None or not (MIRROR / "mp_mtcgcnn_36k").is_dir(),
                                  reason="offline mirror (DEEPKNET_DATA) not available")


def synthetic_task(y, groups=None):
    n = len(y)
    return TaskData("synthetic", [f"id-{i}" for i in range(n)], np.asarray(y, dtype=np.int64), ("a", "b"),
                    np.zeros(n), "value", np.full(n, "none", dtype=object),
                    _formulas=None if groups is None else [str(g) for g in groups])


# ---------------------------------------------------------------- merge rule
def test_merge_newest_wins_and_order_matters():
    new = pd.DataFrame({"material_id": ["a", "b"], "K_VRH": [90.0, 80.0]})
    old = pd.DataFrame({"material_id": ["b", "c"], "K_VRH": [86.0, 10.0]})
    m = merge_by_priority({"new": new, "old": old}, ["K_VRH"]).set_index("material_id")
    assert m.loc["b", "K_VRH"] == 80.0 and m.loc["b", "source"] == "new"
    assert m.loc["c", "source"] == "old" and len(m) == 3
    m2 = merge_by_priority({"old": old, "new": new}, ["K_VRH"]).set_index("material_id")
    assert m2.loc["b", "K_VRH"] == 86.0  # priority is the dict order


def test_label_disagreements_counts_only_label_flips():
    a = pd.DataFrame({"material_id": ["x", "y", "z"], "K_VRH": [84.0, 100.0, 50.0]})
    b = pd.DataFrame({"material_id": ["x", "y"], "K_VRH": [86.0, 101.0]})  # x flips at 85, y does not
    c = pd.DataFrame({"material_id": ["y"], "K_VRH": [np.nan]})  # missing values are ignored
    d = label_disagreements({"a": a, "b": b, "c": c}, "K_VRH", 85.0)
    assert d == {"ids_in_several_sources": 2, "label_disagreements": 1, "disagreeing_ids": ["x"]}


@needs_mirror
def test_elastic_union_follows_priority():
    bulk = load_task("bulk_modulus")
    assert len(bulk) == 5808 and len(set(bulk.ids)) == 5808
    frames = T.elastic_frames()
    binary = frames["mp_binary_elasticity"].set_index("material_id")
    got = pd.Series(bulk.values, index=bulk.ids)
    src_of = pd.Series(bulk.sources, index=bulk.ids)
    assert (src_of[binary.index] == "mp_binary_elasticity").all()
    assert np.allclose(got[binary.index], binary.K_VRH)
    cg = frames["mp_elastic_3k_cgcnn"].set_index("material_id")
    only_cg_legacy = cg.index.difference(binary.index)
    assert (src_of[only_cg_legacy] == "mp_elastic_3k_cgcnn").all()
    assert np.array_equal(bulk.y, (bulk.values > 85).astype(int))
    dis = bulk.provenance["disagreements"]
    assert 0 < dis["label_disagreements"] < dis["ids_in_several_sources"]


# ---------------------------------------------------------------- tasks
@needs_mirror
def test_metallicity_counts_and_lazy_structures():
    t = load_task("metallicity")
    assert len(t) == 36738 and t.classes == ("metal", "insulator")
    lab = src.load_labels("mp_mtcgcnn_36k").set_index("material_id")
    assert np.array_equal(t.y, (lab.loc[t.ids, "band_gap"].to_numpy() > 0).astype(int))
    assert abs((t.y == 0).mean() - 0.4246) < 5e-4
    assert t._cache == {}
    i = t.ids.index("mp-149")
    assert t.structure(i).composition.reduced_formula == "Si" and i in t._cache
    t2 = load_task("metallicity", gap_ev=1.0)
    assert t2.y.sum() < t.y.sum() and t2.thresholds == {"gap_ev": 1.0}


@needs_mirror
def test_stability_real_and_proxy_are_distinct():
    s = load_task("stability")
    assert len(s) == 3938 and s.source == "mp_legacy_2015:flla"
    assert np.array_equal(s.y, (s.values < 0.020).astype(int))
    p = load_task("stability_derived_proxy")
    assert len(p) == 36738 and "PROXY" in p.provenance["note"]
    assert load_task("stability", ehull_mev=0.0).y.sum() == 0  # strict inequality: E_hull < 0 never holds


def test_unknown_task_and_option():
    with pytest.raises(ValueError, match="metallicity"):
        load_task("hardness")
    with pytest.raises(ValueError, match="no option"):
        load_task("metallicity", k_gpa=3)


def test_threshold_task_drops_and_counts_missing_values():
    lab = pd.DataFrame({"material_id": ["a", "b", "c", "d"], "band_gap": [0.0, np.nan, 1.2, "n/a"]})
    t = T._threshold_task("m", lab, "band_gap", "gap", ("metal", "insulator"), lambda v: v > 0, {}, "x", {})
    assert t.ids == ["a", "c"] and list(t.y) == [0, 1]
    assert [m for m, _ in t.provenance["skipped"]] == ["b", "d"]


@needs_mirror
def test_crystal_system_task_small(tmp_path, monkeypatch):
    monkeypatch.setenv(reg.CACHE_ENV, str(tmp_path))
    t = load_task("crystal_system", limit=40, progress=False)
    paper = set(src.paper_split("Xsys_split1").material_id)
    assert len(t) == 40 and set(t.ids) <= paper
    assert set(t.values) <= set(T.CRYSTAL_SYSTEMS)
    merged = {"hexagonal": "hexagonal/trigonal", "trigonal": "hexagonal/trigonal"}
    assert [t.classes[k] for k in t.y] == [merged.get(v, v) for v in t.values]
    # symmetry was cached: a second call must not recompute it
    monkeypatch.setattr(T, "symmetry_info", lambda *a, **k: (_ for _ in ()).throw(AssertionError("recomputed")))
    assert load_task("crystal_system", limit=40, progress=False).ids == t.ids


# ---------------------------------------------------------------- symmetry
def diamond(a=5.43, el="Si"):
    fcc = np.array([[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0]])
    return Structure(Lattice.cubic(a), [el] * 8, np.vstack([fcc, fcc + .25]))


def rocksalt(a=5.64, el=("Na", "Cl")):
    fcc = np.array([[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0]])
    return Structure(Lattice.cubic(a), [el[0]] * 4 + [el[1]] * 4, np.vstack([fcc, (fcc + [.5, 0, 0]) % 1]))


@pytest.mark.parametrize("make,system,number", [
    (diamond, "cubic", 227), (rocksalt, "cubic", 225),
    (lambda: Structure(Lattice.hexagonal(3.0, 5.0), ["Mg", "Mg"], [[1 / 3, 2 / 3, .25], [2 / 3, 1 / 3, .75]]),
     "hexagonal", 194),
    (lambda: Structure(Lattice.tetragonal(3.0, 4.0), ["Fe"], [[0, 0, 0]]), "tetragonal", 123),
    (lambda: Structure(Lattice.orthorhombic(3.0, 4.0, 5.0), ["Fe"], [[0, 0, 0]]), "orthorhombic", 47),
])
def test_symmetry_info_known_structures(make, system, number):
    info = T.symmetry_info(make())
    assert info["crystal_system"] == system and info["spacegroup_number"] == number


def test_prototype_key_ignores_cell_choice_and_chemistry():
    a, b = rocksalt(), rocksalt(6.29, ("K", "Cl"))
    assert T.symmetry_info(a)["prototype"] == T.symmetry_info(b)["prototype"]
    assert T.symmetry_info(a.get_primitive_structure())["prototype"] == T.symmetry_info(a)["prototype"]
    assert T.symmetry_info(diamond())["prototype"] != T.symmetry_info(a)["prototype"]


# ---------------------------------------------------------------- splits
@settings(max_examples=30, deadline=None)
@given(y=st.lists(st.integers(0, 1), min_size=40, max_size=300), limit=st.integers(1, 40))
def test_stratified_subset_properties(y, limit):
    y = np.array(y)
    idx = stratified_subset(y, limit)
    assert len(idx) == limit and len(set(idx)) == limit
    assert np.array_equal(idx, stratified_subset(y, limit))  # deterministic
    for c in (0, 1):  # each class within one item of its proportional share
        assert abs((y[idx] == c).sum() - limit * (y == c).mean()) <= 1


@settings(max_examples=25, deadline=None)
@given(groups=st.lists(st.integers(0, 25), min_size=20, max_size=200), seed=st.integers(0, 3))
def test_group_split_never_straddles(groups, seed):
    y = np.array(groups) % 2
    t = synthetic_task(y, groups)
    sp = make_splits(t, "formula", seed=seed)
    parts = [set(np.array(groups)[sp[p]]) for p in ("train", "valid", "test")]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert sorted(np.concatenate(list(sp.values()))) == list(range(len(groups)))


def test_random_split_properties():
    y = np.array([0] * 600 + [1] * 400)
    t = synthetic_task(y)
    a, b, c = (make_splits(t, "random", seed=s) for s in (0, 0, 1))
    assert all(np.array_equal(a[k], b[k]) for k in a)  # same seed, same split
    assert not np.array_equal(a["test"], c["test"])  # another seed, another split
    assert sorted(np.concatenate(list(a.values()))) == list(range(1000))
    assert [len(a[k]) for k in ("train", "valid", "test")] == [700, 150, 150]
    assert abs(y[a["test"]].mean() - 0.4) < 0.02
    with pytest.raises(ValueError, match="sum to 1"):
        make_splits(t, "random", fractions=(0.5, 0.2, 0.2))
    with pytest.raises(ValueError, match="unknown split kind"):
        make_splits(t, "chronological")


@needs_mirror
def test_paper_split_matches_paper_parts():
    t = load_task("metallicity")
    sp = make_splits(t, "paper", seed=0)
    ps = src.paper_split("gap_split1").set_index("material_id").part
    for part in ("train", "valid", "test"):
        assert (ps[[t.ids[i] for i in sp[part]]] == part).all()
    assert sum(len(v) for v in sp.values()) == 21889 == len(set(ps.index) & set(t.ids))
    assert sp.info["not_in_paper_split"] == 36738 - 21889
    assert not np.array_equal(make_splits(t, "paper", seed=1)["test"], sp["test"])
    with pytest.raises(ValueError, match="no split"):
        make_splits(load_task("stability"), "paper")
    with pytest.raises(ValueError, match="seed must be"):
        make_splits(t, "paper", seed=7)


def test_prototype_split_on_user_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv(reg.CACHE_ENV, str(tmp_path / "cache"))
    src.clear_caches()
    rows = []
    for i, (a, el) in enumerate([(5.64, ("Na", "Cl")), (6.29, ("K", "Cl")), (4.2, ("Mg", "O")), (5.0, ("Ca", "S"))]):
        rows.append({"material_id": f"rs-{i}", "structure": rocksalt(a, el).to(fmt="cif"), "band_gap": 1.0 + i})
    for i, (a, el) in enumerate([(5.43, "Si"), (5.65, "Ge"), (3.57, "C"), (6.49, "Sn")]):
        rows.append({"material_id": f"dia-{i}", "structure": diamond(a, el).to(fmt="cif"), "band_gap": float(i % 2)})
    pd.DataFrame(rows).to_csv(tmp_path / "mine.csv", index=False)
    ud.import_dataset(tmp_path / "mine.csv", "table", "mine", label_columns=["band_gap"], progress=False)
    t = load_task("metallicity", source="mine")
    assert len(t) == 8 and t.source == "mine"
    sp = make_splits(t, "prototype", seed=0, fractions=(0.5, 0.0, 0.5), progress=False)
    assert sp.info["groups"] == 2
    where = {t.ids[i]: p for p, idx in sp.items() for i in idx}
    assert len({where[f"rs-{i}"] for i in range(4)}) == 1 and len({where[f"dia-{i}"] for i in range(4)}) == 1
    assert where["rs-0"] != where["dia-0"]
    fs = make_splits(t, "formula", seed=0)
    assert sum(len(v) for v in fs.values()) == 8
    src.clear_caches()


# ---------------------------------------------------------------- stats
@needs_mirror
def test_stats_text_for_cli():
    s = task_stats("metallicity")
    text = format_stats(s)
    assert "36,738" in text and "42.46 %" in text and "metal" in text
    b = task_stats("bulk_modulus")
    assert "disagreements" in b and "merge" in format_stats(b)


@needs_mirror
def test_metallicity_from_alternative_snapshot():
    main, alt = load_task("metallicity"), load_task("metallicity", source="mp_mtcgcnn_36k:alt")
    a = pd.Series(alt.y, index=alt.ids)
    m = pd.Series(main.y, index=main.ids).reindex(a.index)
    assert len(alt) == 36737 and 0.98 < (a == m).mean() < 0.99  # README: metal/non-metal agree 98.3 %
    i = alt.ids.index("mp-149")
    assert alt.structure(i).composition.reduced_formula == "Si"
