"""Tests of deepknet_lit.store: the cell step, building (inline, local processes, Dask), reuse, staleness,
interruption and resume, subsets, bad inputs, and a small store of a real task from the offline mirror."""
import json
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter

import deepknet_lit.store as st
from deepknet_lit.records import structure_from_obj
from deepknet_lit import registry as reg
from deepknet_lit.diffraction import point_clouds
from deepknet_lit.store import (Store, build_store, featurize_chunk, format_store_summary, list_stores, open_store,
                                store_params, store_path)


class ListTask(SimpleNamespace):
    "Minimal TaskData stand-in: name, ids, y, classes, structure(i) returning a Structure or CIF text."
    def structure(self, i):
        return self.items[i]


def crystals() -> dict:
    "Small crystals covering every centring (P, I, F, C, A, R) and all seven crystal systems."
    sg, L = Structure.from_spacegroup, Lattice
    return {
        "CsCl": sg("Pm-3m", L.cubic(4.12), ["Cs", "Cl"], [[0, 0, 0], [.5, .5, .5]]),
        "NaCl": sg("Fm-3m", L.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [.5, .5, .5]]),
        "Si": sg("Fd-3m", L.cubic(5.43), ["Si"], [[0, 0, 0]]),
        "W": sg("Im-3m", L.cubic(3.16), ["W"], [[0, 0, 0]]),
        "TiO2": sg("P4_2/mnm", L.tetragonal(4.59, 2.96), ["Ti", "O"], [[0, 0, 0], [.305, .305, 0]]),
        "BaFe2As2": sg("I4/mmm", L.tetragonal(3.96, 13.0), ["Ba", "Fe", "As"], [[0, 0, 0], [0, .5, .25], [0, 0, .354]]),
        "GaFeO": sg("Pnma", L.orthorhombic(5.2, 3.1, 7.4), ["Ga", "O"], [[.1, .25, .2], [.3, .25, .6]]),
        "CmcmX": sg("Cmcm", L.orthorhombic(3.0, 9.8, 3.9), ["Ca", "Si"], [[0, .14, .25], [0, .43, .25]]),
        "ImmmX": sg("Immm", L.orthorhombic(3.3, 4.1, 6.2), ["Ni", "B"], [[0, 0, 0], [.5, 0, .2]]),
        "FdddS": sg("Fddd", L.orthorhombic(10.4, 12.8, 24.4), ["S"], [[.856, .953, .951]]),
        "Amm2X": sg("Amm2", L.orthorhombic(3.5, 4.5, 5.5), ["Ge", "Te"], [[0, 0, 0], [.5, 0, .4]]),
        "ZnO": sg("P6_3mc", L.hexagonal(3.25, 5.207), ["Zn", "O"], [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, .3825]]),
        "Al2O3": sg("R-3c", L.hexagonal(4.76, 12.99), ["Al", "O"], [[0, 0, .352], [.306, 0, .25]]),
        "Bi2Te3": sg("R-3m", L.hexagonal(4.38, 30.5), ["Bi", "Te", "Te"], [[0, 0, .4], [0, 0, 0], [0, 0, .21]]),
        "P21c": sg("P2_1/c", L.monoclinic(5.1, 5.2, 5.3, 99.2), ["Zr", "O"], [[.27, .04, .21], [.07, .33, .34]]),
        "C2m": sg("C2/m", L.monoclinic(8.6, 13.0, 7.2, 116.0), ["K", "Al"], [[0, .0, .28], [.01, .19, .22]]),
        "P-1": sg("P-1", L.from_parameters(5.0, 6.0, 7.0, 80.0, 85.0, 95.0), ["Cu", "Se"], [[.1, .2, .3], [.4, .1, .7]]),
    }


@pytest.fixture(scope="module")
def prototypes():
    return list(crystals().values())


@pytest.fixture(scope="module")
def task(prototypes):
    "The 17 crystals twice (34 items), alternately as Structure and as CIF text, one replaced by a broken CIF; 3 classes."
    items = [s if i % 2 else str(CifWriter(s)) for i, s in enumerate(prototypes + prototypes)]
    items[7] = "data_broken\n_cell_length_a 3.0\n"
    y = np.array([min(len(s), 3) - 1 if not isinstance(s, str) else i % 3 for i, s in enumerate(items)])
    return ListTask(name="protos", ids=[f"p{i}" for i in range(len(items))], y=y,
                    classes=["one", "two", "more"], source={"name": "aflow"}, items=items)


# ---------------------------------------------------------------- the cell step
def test_chunk_features_equal_point_clouds(prototypes):
    items = [(f"s{i}", s) for i, s in enumerate(prototypes)]
    out = featurize_chunk(items, store_params("t", max_index=2))
    ref = point_clouds(prototypes, max_index=2, cell="primitive", progress=False)
    assert out["errors"] == ref.errors == []
    np.testing.assert_array_equal(out["features"], ref.features)
    np.testing.assert_array_equal(out["in_sphere"], ref.in_sphere)
    conv = featurize_chunk(items, store_params("t", max_index=2, cell="conventional"))
    np.testing.assert_array_equal(conv["features"], point_clouds(prototypes, max_index=2, cell="conventional",
                                                                 progress=False).features)


def test_chunk_reports_bad_items_by_id():
    good = Structure(Lattice.cubic(3.0), ["Cu"], [[0, 0, 0]])
    empty_cif = "data_x\n_cell_length_a 3\n"
    out = featurize_chunk([("ok", good), ("mp-empty", empty_cif), ("mp-type", 42), ("ok2", good.as_dict())],
                          store_params("t", max_index=1))
    assert out["features"].shape == (2, 27, 4) and out["ok"].tolist() == [0, 3]
    reasons = dict(out["errors"])
    assert set(reasons) == {"mp-empty", "mp-type"} and "mp-type" in reasons["mp-type"]


# ---------------------------------------------------------------- parameters and paths
def test_params_validate_and_name_the_store(tmp_path):
    p = store_params("metallicity", max_index=3, limit=100, seed=2)
    assert p["n"] == 343
    path = store_path(p, tmp_path)
    assert path.parent == tmp_path and path.name.startswith("metallicity-cube343-xray-primitive-limit100-seed2-")
    assert store_path(store_params("metallicity", limit=100, seed=3), tmp_path) != path
    assert store_params("m", seed=5) == store_params("m", seed=0)  # the seed only matters with a limit
    assert store_path(store_params("m", thresholds={"gap_ev": 0.5}), tmp_path) != store_path(store_params("m"), tmp_path)
    for bad in (dict(probe="electron"), dict(cell="niggli"), dict(point_set="ball"), dict(limit=0), dict(max_index=0),
                dict(wavelength=float("nan"))):
        with pytest.raises(ValueError):
            store_params("m", **bad)


def test_default_root_follows_env(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPKNET_CACHE", str(tmp_path))
    assert st.stores_root() == tmp_path / "stores"
    assert store_path(store_params("m")).parent == tmp_path / "stores"


# ---------------------------------------------------------------- building, reuse, staleness
@pytest.fixture(scope="module")
def inline_store(task, tmp_path_factory):
    return build_store(task, max_index=1, root=tmp_path_factory.mktemp("inline"), n_workers=1, chunk_size=4,
                       progress=False)


def test_store_contents(task, inline_store):
    s = inline_store
    assert isinstance(s.features, np.memmap) and not s.features.flags.writeable
    assert s.features.shape == (33, 27, 4) and s.features.dtype == np.float32
    assert s.skipped[0][0] == "p7" and len(s.skipped) == 1 and "p7" not in s.ids
    assert s.ids == [f"p{i}" for i in range(34) if i != 7]
    np.testing.assert_array_equal(s.y, task.y[s.task_index])
    assert s.classes == ["one", "two", "more"] and s.hkl.shape == (27, 3) and s.in_sphere.shape == (33, 27)
    m = s.meta
    assert m["n_ok"] == 33 and m["n_skipped"] == 1 and m["n_chunks"] == 9 and m["chunks_resumed"] == 0
    assert sum(m["class_counts"].values()) == 33 and m["fingerprint"] == st.task_fingerprint(task)
    assert not (s.path / ".parts").exists()
    # the features are the diffraction module's, row by row
    structures = [structure_from_obj(task.items[i], task.ids[i]) for i in s.task_index]
    np.testing.assert_allclose(s.features, point_clouds(structures, max_index=1, progress=False).features, atol=1e-6)


def test_matching_store_is_reused_and_stale_one_rebuilt(task, tmp_path):
    first = build_store(task, max_index=1, root=tmp_path, n_workers=1, progress=False)
    meta_bytes = (first.path / "meta.json").read_bytes()
    again = build_store(task, max_index=1, root=tmp_path, n_workers=1, progress=False)
    assert (again.path / "meta.json").read_bytes() == meta_bytes  # nothing rewritten
    relabelled = ListTask(**{**vars(task), "y": (task.y + 1) % 3})
    with pytest.warns(UserWarning, match="stale.*fingerprint"):
        rebuilt = build_store(relabelled, max_index=1, root=tmp_path, n_workers=1, progress=False)
    assert rebuilt.path == first.path
    np.testing.assert_array_equal(rebuilt.y, (first.y + 1) % 3)
    np.testing.assert_array_equal(rebuilt.features, first.features)


def test_featurizer_change_makes_store_stale(task, tmp_path, monkeypatch):
    build_store(task, max_index=1, root=tmp_path, n_workers=1, progress=False)
    real = st.featurizer_version()
    monkeypatch.setattr(st, "featurizer_version", lambda: dict(real, diffraction="something else"))
    with pytest.warns(UserWarning, match="featurizer"):
        s = build_store(task, max_index=1, root=tmp_path, n_workers=1, progress=False)
    assert s.meta["featurizer"]["diffraction"] == "something else"


def test_interrupted_build_resumes_without_recomputing(task, inline_store, tmp_path):
    class Stop(Exception):
        pass

    def stop_after_three(k, n_done, n_chunks):
        if n_done == 3:
            raise Stop

    with pytest.raises(Stop):
        build_store(task, max_index=1, root=tmp_path, n_workers=1, chunk_size=4, progress=False, on_chunk=stop_after_three)
    path = store_path(store_params("protos", max_index=1), tmp_path)
    assert len(list((path / ".parts").glob("chunk_*.npz"))) == 3 and not (path / "meta.json").exists()
    with pytest.raises(FileNotFoundError, match="interrupted"):
        open_store(path)
    assert list_stores(tmp_path).state.tolist() == ["partial (3 chunks done)"]
    calls = []
    # resume with another chunk_size: the interrupted build's chunking is kept, so its parts stay valid
    resumed = build_store(task, max_index=1, root=tmp_path, n_workers=1, chunk_size=100, progress=False,
                          on_chunk=lambda k, n_done, n: calls.append(k))
    assert sorted(calls) == [3, 4, 5, 6, 7, 8] and resumed.meta["chunks_resumed"] == 3
    np.testing.assert_array_equal(resumed.features, inline_store.features)
    np.testing.assert_array_equal(resumed.in_sphere, inline_store.in_sphere)
    assert resumed.ids == inline_store.ids and resumed.skipped == inline_store.skipped
    assert "resumed 3 of 9 chunks" in format_store_summary(resumed)


def test_local_processes_equal_inline(task, inline_store, tmp_path):
    s = build_store(task, max_index=1, root=tmp_path, n_workers=2, chunk_size=4, progress=False)
    assert s.meta["backend"] == "2 processes"
    np.testing.assert_array_equal(s.features, inline_store.features)
    assert s.ids == inline_store.ids and s.skipped == inline_store.skipped


def test_local_processes_interrupted_and_resumed(task, inline_store, tmp_path):
    def ctrl_c(k, n_done, n_chunks):
        if n_done == 4:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C: the pool is shut down, the parts stay
    with pytest.raises(KeyboardInterrupt):
        build_store(task, max_index=1, root=tmp_path, n_workers=2, chunk_size=4, progress=False, on_chunk=ctrl_c)
    resumed = build_store(task, max_index=1, root=tmp_path, n_workers=2, progress=False)
    assert resumed.meta["chunks_resumed"] == 4
    np.testing.assert_array_equal(resumed.features, inline_store.features)
    assert resumed.ids == inline_store.ids


@pytest.mark.slow
def test_dask_cluster_equals_local(task, inline_store, tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        s = build_store(task, max_index=1, root=tmp_path, scheduler=cluster.scheduler_address, chunk_size=4,
                        progress=False)
        with distributed.Client(cluster) as client:  # a Client works too, and resumes what was interrupted
            def stop(k, n_done, n_chunks):
                if n_done == 2:
                    raise KeyboardInterrupt
            with pytest.raises(KeyboardInterrupt):
                build_store(task, max_index=1, root=tmp_path / "c", scheduler=client, chunk_size=4, progress=False,
                            on_chunk=stop)
            resumed = build_store(task, max_index=1, root=tmp_path / "c", scheduler=client, progress=False)
    assert s.meta["backend"].startswith("dask tcp://")
    np.testing.assert_array_equal(s.features, inline_store.features)
    assert s.ids == inline_store.ids and s.skipped == inline_store.skipped
    assert resumed.meta["chunks_resumed"] == 2 and resumed.meta["chunk_size"] == 4
    np.testing.assert_array_equal(resumed.features, inline_store.features)


# ---------------------------------------------------------------- subsets, splits, listing
def test_limit_is_stratified_and_deterministic(task, tmp_path):
    a = build_store(task, max_index=1, limit=12, seed=1, root=tmp_path, n_workers=1, progress=False)
    b = build_store(task, max_index=1, limit=12, seed=2, root=tmp_path, n_workers=1, progress=False)
    assert a.path != b.path and a.meta["n_selected"] == 12
    counts = np.bincount(task.y, minlength=3)
    assert np.all(np.abs(np.bincount(task.y[a.task_index], minlength=3) - counts * 12 / len(task.y)) <= 1.01)
    shutil_root = tmp_path / "again"
    c = build_store(task, max_index=1, limit=12, seed=1, root=shutil_root, n_workers=1, progress=False)
    assert c.ids == a.ids and set(a.ids) != set(b.ids)


def test_subset_and_split_rows(inline_store):
    s = inline_store
    rows = s.split_rows({"train": np.arange(0, 20), "test": np.arange(20, 30)})
    assert len(rows["train"]) == 19 and len(rows["test"]) == 10  # p7 was skipped, 30..33 are in neither
    assert set(s.task_index[rows["train"]]) == set(range(20)) - {7}
    sub = s.subset(rows["test"])
    assert isinstance(sub, Store) and len(sub) == 10 and not isinstance(sub.features, np.memmap)
    np.testing.assert_array_equal(sub.features, s.features[rows["test"]])
    assert sub.ids == [f"p{i}" for i in range(20, 30)]
    np.testing.assert_array_equal(s.rows_for_ids(["p3", "p7", "p4"]), [3, 4])


def test_list_and_summary(inline_store):
    table = list_stores(inline_store.path.parent)
    assert table.state.tolist() == ["complete"] and table.n_ok.tolist() == [33]
    text = format_store_summary(inline_store)
    assert "33 materials featurized, 1 skipped" in text and "skipped p7" in text and "n = 27" in text


# ---------------------------------------------------------------- bad input
def test_bad_tasks_raise_clearly(task, tmp_path):
    with pytest.raises(ValueError, match="not unique"):
        build_store(ListTask(**{**vars(task), "ids": ["a"] * 34}), max_index=1, root=tmp_path, n_workers=1)
    with pytest.raises(ValueError, match="labels"):
        build_store(ListTask(**{**vars(task), "y": task.y[:5]}), max_index=1, root=tmp_path, n_workers=1)
    broken = ListTask(name="broken", ids=["x1", "x2"], y=np.array([0, 1]), classes=["a", "b"],
                      items=["data_x\n", "not a cif"])
    with pytest.raises(ValueError, match="none of 2 materials"):
        build_store(broken, max_index=1, root=tmp_path, n_workers=1, progress=False)
    with pytest.raises(TypeError, match="task name or a TaskData"):
        build_store(object(), root=tmp_path)
    with pytest.raises(ValueError, match="unknown probe"):
        build_store(task, probe="electron", root=tmp_path)
    with pytest.raises(TypeError, match="only apply to a task name"):
        build_store(task, root=tmp_path, k_gpa=100)


def test_damaged_store_is_refused(inline_store, tmp_path):
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(inline_store.path, copy)
    ids = json.loads((copy / "ids.json").read_text())
    (copy / "ids.json").write_text(json.dumps(ids[:-1]))
    with pytest.raises(ValueError, match="damaged"):
        open_store(copy)


# ---------------------------------------------------------------- a real task (offline mirror, no network)
def test_real_task_subset_matches_point_clouds(tmp_path):
    from deepknet_lit import tasks
    if reg.data_root() is None:
        pytest.skip("offline data mirror not available")
    bulk = tasks.load_task("bulk_modulus")
    s = build_store(bulk, max_index=1, limit=24, seed=0, root=tmp_path, n_workers=1, progress=False)
    assert s.meta["n_selected"] == 24 and s.meta["n_ok"] + s.meta["n_skipped"] == 24
    assert len(set(bulk.sources[s.task_index])) >= 2  # CIF text (tarball) and parsed structures (JSON) both used
    ref = point_clouds(bulk.structures(s.task_index, progress=False), ids=s.ids, max_index=1, progress=False)
    np.testing.assert_allclose(s.features, ref.features, atol=1e-6)
    np.testing.assert_array_equal(s.y, bulk.y[s.task_index])
    np.testing.assert_array_equal(s.values, bulk.values[s.task_index].astype(float))  # K_VRH in GPa
    assert s.meta["chunk_size"] == 16  # automatic: 24 materials -> small chunks
    # thresholds passed with a task name reach load_task and give another store
    strict = build_store("bulk_modulus", max_index=1, limit=24, root=tmp_path, n_workers=1, progress=False, k_gpa=150.0)
    assert strict.path != s.path and strict.meta["params"]["thresholds"]["k_gpa"] == 150.0
    np.testing.assert_array_equal(strict.y, (np.asarray(strict.values) > 150.0).astype(int))
