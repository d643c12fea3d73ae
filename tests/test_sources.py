"""Tests of deepknet_lit.sources: registry, hash checks, readers, bring-your-own formats, resumable MP download.

Never reaches the network: downloads are faked by patching `pooch.retrieve`, MP by an injected fake client.
Tests that read the offline mirror are skipped when it is absent.
"""
import gzip
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter

from deepknet_lit import records as rec, registry as reg, userdata as ud
from deepknet_lit import sources as src
from deepknet_lit import mp
from deepknet_lit.mp import MissingAPIKeyError, fetch_mp, mp_labels, mp_records
from deepknet_lit.registry import ChecksumError, DatasetError, fetch
from deepknet_lit.records import RecordError, check_structure, parse_cif
from deepknet_lit.userdata import import_dataset, read_cgcnn_folder, read_structures_json, read_table
from deepknet_lit.sources import iter_records, load_labels

MIRROR = reg.data_root()
needs_mirror = pytest.mark.skipif(MIRROR is None or not (MIRROR / "mp_mtcgcnn_36k").is_dir(),
                                  reason="offline mirror (DEEPKNET_DATA) not available")


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    "A fresh DEEPKNET_CACHE; in-memory caches cleared before and after."
    monkeypatch.setenv(reg.CACHE_ENV, str(tmp_path / "cache"))
    src.clear_caches()
    yield tmp_path / "cache"
    src.clear_caches()


def rocksalt(a=5.64, el=("Na", "Cl")):
    "Conventional rock-salt cell (8 atoms), built without the slow Structure.from_spacegroup."
    fcc = [[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0]]
    return Structure(Lattice.cubic(a), [el[0]] * 4 + [el[1]] * 4, fcc + [[x + .5 - (x >= .5), y, z] for x, y, z in fcc])


# ---------------------------------------------------------------- registry and fetch
def test_unknown_dataset_lists_known_names():
    with pytest.raises(ValueError) as e:
        fetch("no_such_set")
    for name in reg.REGISTRY:
        assert name in str(e.value)


def test_registry_entries_are_complete():
    assert set(reg.REGISTRY) == {"mp_mtcgcnn_36k", "mp_binary_elasticity", "mp_elastic_3k_cgcnn", "mp_legacy_2015",
                                 "deepknet_splits"}
    for ds in reg.REGISTRY.values():
        assert ds.licence and ds.citation and ds.upstream and ds.files
        for f in ds.files:
            assert re.fullmatch(r"[0-9a-f]{64}", f.sha256), f.name
            if f.url is not None:  # pinned: a 40-hex commit, or a versioned sdist
                assert re.search(r"[0-9a-f]{40}", f.url) or "0.3.3" in f.url, f.url


@needs_mirror
def test_registry_hashes_match_mirror_sums():
    # the registry hard-codes hashes; the mirror's SHA256SUMS is an independent record of the same files
    sums = {}
    for line in (MIRROR / "SHA256SUMS").read_text().splitlines():
        h, p = line.split(maxsplit=1)
        sums[p.removeprefix("./")] = h
    for ds in reg.REGISTRY.values():
        for f in ds.files:
            assert sums[f"{ds.name}/{f.name}"] == f.sha256, f"{ds.name}/{f.name}"


def _fake_mirror(tmp_path, monkeypatch, content=b"0,mp-1\n"):
    root = tmp_path / "mirror"
    (root / "mp_elastic_3k_cgcnn").mkdir(parents=True)
    (root / "mp_elastic_3k_cgcnn" / "material_id_hash.csv").write_bytes(content)
    monkeypatch.setenv(reg.DATA_ENV, str(root))
    src.clear_caches()
    return root


def test_checksum_mismatch_names_the_file(tmp_path, monkeypatch, tmp_cache):
    _fake_mirror(tmp_path, monkeypatch)
    with pytest.raises(ChecksumError, match="material_id_hash.csv"):
        fetch("mp_elastic_3k_cgcnn", files=["material_id_hash.csv"])


def test_matching_hash_passes(tmp_path, monkeypatch, tmp_cache):
    content = b"0,mp-1\n"
    root = _fake_mirror(tmp_path, monkeypatch, content)
    good = reg.RemoteFile("material_id_hash.csv", reg.sha256_file(root / "mp_elastic_3k_cgcnn" / "material_id_hash.csv"))
    assert reg.verify_file(root / "mp_elastic_3k_cgcnn" / "material_id_hash.csv", good.sha256)


def test_missing_mirror_file_downloads_with_pooch(tmp_path, monkeypatch, tmp_cache):
    monkeypatch.setenv(reg.DATA_ENV, str(tmp_path / "empty_mirror"))
    calls = []

    def fake_retrieve(url, known_hash=None, fname=None, path=None, progressbar=False, processor=None):
        calls.append((url, known_hash, Path(path)))
        out = Path(path) / fname
        out.write_text("0,mp-1\n")
        return str(out)

    monkeypatch.setattr(reg.pooch, "retrieve", fake_retrieve)
    paths = fetch("mp_elastic_3k_cgcnn", files=["material_id_hash.csv"])
    (url, known, where), = calls
    assert url == reg.REGISTRY["mp_elastic_3k_cgcnn"].file("material_id_hash.csv").url
    assert where == tmp_cache / "downloads" / "mp_elastic_3k_cgcnn"
    assert paths["material_id_hash.csv"].read_text() == "0,mp-1\n"
    # the hash of the first download is recorded; a later change is an error
    stamp = paths["material_id_hash.csv"].with_suffix(".csv.sha256")
    assert stamp.exists()
    stamp.write_text("0" * 64)
    with pytest.raises(ChecksumError):
        fetch("mp_elastic_3k_cgcnn", files=["material_id_hash.csv"])


def test_derived_file_without_upstream_is_a_clear_error(tmp_path, monkeypatch, tmp_cache):
    monkeypatch.setenv(reg.DATA_ENV, str(tmp_path / "empty_mirror"))
    with pytest.raises(DatasetError, match="derived"):
        fetch("mp_mtcgcnn_36k", files=["derived_e_above_hull_subset_hull.csv.gz"])


# ---------------------------------------------------------------- structures and CIFs
@pytest.mark.parametrize("make,reason", [
    (lambda: Structure(Lattice.cubic(4), [{"Cu": 0.5, "Au": 0.5}], [[0, 0, 0]]), "partial occupancy"),
    (lambda: Structure(Lattice.cubic(4), [], []), "empty"),
    (lambda: Structure(Lattice.cubic(4), ["Cu"], [[np.nan, 0, 0]]), "NaN"),
    (lambda: Structure(Lattice.cubic(4), ["X"], [[0, 0, 0]]), "unknown element"),
])
def test_check_structure_rejects_bad_input(make, reason):
    with pytest.raises(RecordError) as e:
        check_structure(make(), "mp-42")
    assert "mp-42" in str(e.value) and reason in str(e.value)


@pytest.mark.parametrize("text,reason", [
    ("not a cif at all", "malformed"),
    ("data_x\n_cell_length_a 4\n", "malformed"),
])
def test_parse_cif_rejects_malformed(text, reason):
    with pytest.raises(RecordError, match=reason):
        parse_cif(text, "mp-bad")


def test_parse_cif_symmetrised_cif_uses_pymatgen_fallback():
    s = rocksalt()
    text = str(CifWriter(s, symprec=0.1))  # Fm-3m with 192 operations: not the P1 fast path
    assert rec._parse_p1_cif(text) is None
    got = parse_cif(text, "nacl")
    assert got.composition.reduced_formula == "NaCl" and len(got) == 8


def test_parse_cif_partial_occupancy_is_refused_not_silently_ordered():
    s = Structure(Lattice.cubic(4), [{"Cu": 0.5, "Au": 0.5}], [[0, 0, 0]])
    with pytest.raises(RecordError, match="partial occupancy"):
        parse_cif(str(CifWriter(s)), "cuau")


@settings(max_examples=25, deadline=None)
@given(abc=st.tuples(*[st.floats(2.5, 9.0)] * 3), angles=st.tuples(*[st.floats(70.0, 110.0)] * 3),
       frac=st.lists(st.tuples(*[st.floats(0.0, 0.999)] * 3), min_size=1, max_size=6,
                     unique_by=lambda f: tuple(round(x, 1) for x in f)),  # sites >= 0.1 apart (else overlap)
       els=st.lists(st.sampled_from(["Na", "Cl", "O", "Fe", "Si", "Ba"]), min_size=6, max_size=6))
def test_fast_cif_path_agrees_with_pymatgen(abc, angles, frac, els):
    s = Structure(Lattice.from_parameters(*abc, *angles), els[: len(frac)], frac)
    text = s.to(fmt="cif")
    fast = rec._parse_p1_cif(text)
    assert fast is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen warns when it rounds coordinates
        slow = Structure.from_str(text, fmt="cif")
    assert np.allclose(fast.lattice.matrix, slow.lattice.matrix, atol=1e-6)
    assert len(fast) == len(slow)
    for site in fast:  # pymatgen may reorder sites and snaps near-ideal coordinates: match each site
        d = slow.frac_coords - site.frac_coords
        d -= np.round(d)
        near = np.flatnonzero(np.abs(d).max(axis=1) < 1e-3)
        assert any(str(slow[j].specie) == str(site.specie) for j in near)


def test_overlapping_sites_are_refused():
    s = Structure(Lattice.cubic(4), ["Na", "Cl"], [[0, 0, 0], [0, 0, 0.001]])
    with pytest.raises(RecordError, match="overlapping"):
        parse_cif(s.to(fmt="cif"), "mp-overlap")


# ---------------------------------------------------------------- mirrored datasets
@needs_mirror
def test_labels_are_read_without_structures():
    lab = load_labels("mp_mtcgcnn_36k")
    assert len(lab) == 36738 and lab.material_id.is_unique
    assert abs((lab.band_gap == 0).mean() - 0.4246) < 5e-4
    assert len(load_labels("mp_binary_elasticity")) == 3953
    el = load_labels("mp_elastic_3k_cgcnn")
    assert len(el) == 3191 and el.material_id.is_unique
    fl = load_labels("mp_legacy_2015:flla")
    assert len(fl) == 3938 and abs((fl.e_above_hull < 0.02).mean() - 0.749) < 0.005
    with pytest.raises(DatasetError, match="tables"):
        load_labels("mp_legacy_2015:piezo")


@needs_mirror
def test_records_match_labels_and_bad_ids_are_skipped():
    skipped = []
    recs = list(iter_records("mp_elastic_3k_cgcnn", ids=["mp-10000", "mp-does-not-exist"], skipped=skipped,
                             progress=False))
    assert [r.material_id for r in recs] == ["mp-10000"]
    lab = load_labels("mp_elastic_3k_cgcnn").set_index("material_id")
    assert recs[0].labels["K_VRH"] == lab.loc["mp-10000", "K_VRH"]
    assert skipped and skipped[0][0] == "mp-does-not-exist" and "not in dataset" in skipped[0][1]
    with pytest.raises(RecordError):
        list(iter_records("mp_elastic_3k_cgcnn", ids=["mp-does-not-exist"], errors="raise", progress=False))


@needs_mirror
def test_structures_of_all_readers_are_consistent():
    # the same material in two datasets gives the same reduced formula
    b = load_labels("mp_binary_elasticity")
    e = load_labels("mp_elastic_3k_cgcnn")
    shared = sorted(set(b.material_id) & set(e.material_id))[:3]
    for m in shared:
        s1 = src.structure_loader("mp_binary_elasticity")(m)
        s2 = src.structure_loader("mp_elastic_3k_cgcnn")(m)
        assert s1.composition.reduced_formula == s2.composition.reduced_formula
    fl = load_labels("mp_legacy_2015:elastic_tensor")
    s = src.structure_loader("mp_legacy_2015:elastic_tensor")(fl.material_id[0])
    assert s.composition.reduced_formula == src._reduced(fl.formula[0])


# ---------------------------------------------------------------- bring your own
def test_read_cgcnn_folder_reports_bad_rows(tmp_path):
    d = tmp_path / "cg"
    d.mkdir()
    (d / "a.cif").write_text(rocksalt().to(fmt="cif"))
    (d / "c.cif").write_text("garbage")
    (d / "d.cif").write_text(rocksalt().to(fmt="cif"))
    (d / "id_prop.csv").write_text("a,1.5\nb,2.0\nc,3.0\nd,nan\n")
    rs = read_cgcnn_folder(d, progress=False)
    assert [r.material_id for r in rs] == ["a"] and rs.records[0].labels == {"target": 1.5}
    why = dict(rs.skipped)
    assert set(why) == {"b", "c", "d"}
    assert "missing file" in why["b"] and "malformed" in why["c"] and "NaN" in why["d"]


def test_read_structures_json_gz(tmp_path):
    rows = [{"material_id": "ok", "structure": rocksalt().as_dict(), "band_gap": 4.0},
            {"material_id": "nolabel", "structure": rocksalt().as_dict()},
            {"material_id": "nostruct", "band_gap": 1.0},
            {"material_id": "bad", "structure": {"lattice": "nope"}, "band_gap": 1.0}]
    p = tmp_path / "x.json.gz"
    with gzip.open(p, "wt") as fh:
        json.dump(rows, fh)
    rs = read_structures_json(p, label_keys=["band_gap"], progress=False)
    assert [r.material_id for r in rs] == ["ok"] and rs.records[0].structure == rocksalt()
    assert set(dict(rs.skipped)) == {"nolabel", "nostruct", "bad"}
    with pytest.raises(DatasetError, match="JSON"):
        (tmp_path / "broken.json").write_text("[{")
        read_structures_json(tmp_path / "broken.json")


def test_read_table_parquet_with_dict_column(tmp_path):
    df = pd.DataFrame({"material_id": ["m1", "m2"], "structure": [json.dumps(rocksalt().as_dict()), "??"],
                       "K_VRH": [100.0, 50.0]})
    df.to_parquet(tmp_path / "t.parquet")
    rs = read_table(tmp_path / "t.parquet", label_columns=["K_VRH"], progress=False)
    assert len(rs) == 1 and rs.skipped[0][0] == "m2"
    with pytest.raises(DatasetError, match="no column 'G_VRH'"):
        read_table(tmp_path / "t.parquet", label_columns=["G_VRH"], progress=False)


def test_import_dataset_roundtrip(tmp_path, tmp_cache):
    df = pd.DataFrame({"material_id": ["nacl", "kcl", "bad"],
                       "structure": [rocksalt().to(fmt="cif"), rocksalt(6.29, ("K", "Cl")).to(fmt="cif"), "x"],
                       "band_gap": [5.0, 0.0, 1.0]})
    df.to_csv(tmp_path / "mine.csv", index=False)
    rs = import_dataset(tmp_path / "mine.csv", "table", "mine", label_columns=["band_gap"], progress=False)
    assert len(rs) == 2 and len(rs.skipped) == 1
    assert "mine" in ud.user_datasets()
    lab = load_labels("mine")
    assert list(lab.material_id) == ["nacl", "kcl"] and list(lab.band_gap) == [5.0, 0.0]
    recs = list(iter_records("mine", progress=False))
    assert recs[1].structure.composition.reduced_formula == "KCl"
    meta = json.loads((tmp_cache / "user_datasets" / "mine" / "meta.json").read_text())
    assert meta["n"] == 2 and meta["skipped"][0][0] == "bad"
    with pytest.raises(DatasetError, match="exists"):
        import_dataset(tmp_path / "mine.csv", "table", "mine", label_columns=["band_gap"], progress=False)
    with pytest.raises(ValueError, match="format"):
        import_dataset(tmp_path / "mine.csv", "xlsx", "other")
    with pytest.raises(ValueError, match="name"):
        import_dataset(tmp_path / "mine.csv", "table", "mp_mtcgcnn_36k")


# ---------------------------------------------------------------- live MP (fake client only)
class FakeSummary:
    def __init__(self, docs, fail_on=None):
        self.docs, self.fail_on, self.calls = docs, fail_on, []

    def search(self, material_ids=None, fields=None, **criteria):
        self.calls.append({"material_ids": material_ids, "fields": fields, **criteria})
        if self.fail_on is not None and len(self.calls) == self.fail_on:
            raise ConnectionError("connection reset by peer")
        sel = [d for d in self.docs if material_ids is None or d["material_id"] in material_ids]
        return [{k: v for k, v in d.items() if k in fields} for d in sel]


class FakeMP:
    def __init__(self, docs, fail_on=None):
        self.materials = type("Materials", (), {})()
        self.materials.summary = FakeSummary(docs, fail_on)


def mp_docs(n=11):
    return [{"material_id": f"mp-{i}", "structure": rocksalt(5.0 + 0.01 * i).as_dict(), "band_gap": float(i % 2),
             "is_metal": i % 2 == 0, "bulk_modulus": {"vrh": 80.0 + i}, "shear_modulus": {"vrh": 30.0 + i},
             "energy_above_hull": 0.005 * i, "symmetry": {"crystal_system": "Cubic"}, "theoretical": False,
             "database_IDs": {"icsd": [f"icsd-{i}"]} if i % 3 else {}} for i in range(n)]


@pytest.fixture
def no_real_mprester(monkeypatch):
    import mp_api.client

    def boom(*a, **k):
        raise AssertionError("a real MPRester must never be constructed in tests")
    monkeypatch.setattr(mp_api.client, "MPRester", boom)


def test_fetch_mp_interrupt_and_resume(tmp_path, no_real_mprester):
    docs = mp_docs(11)
    d = tmp_path / "mp"
    first = FakeMP(docs, fail_on=4)  # id list, chunk 0, chunk 1, then chunk 2 fails
    with pytest.raises(DatasetError, match=r"chunk 3 of 4 failed \(ConnectionError: connection reset by peer\).*resume"):
        fetch_mp(chunk_size=3, client=first, cache_dir=d, progress=False, theoretical=False)
    man = json.loads((d / "manifest.json").read_text())
    assert man["done"] == [0, 1] and len(man["chunks"]) == 4
    assert first.materials.summary.calls[0]["theoretical"] is False  # criteria reach the id query
    kept = sorted(r.material_id for r in mp_records(d))
    assert len(kept) == 6  # two chunks of three survived the interruption
    second = FakeMP(docs)
    fetch_mp(chunk_size=3, client=second, cache_dir=d, progress=False, theoretical=False)
    requested = [c["material_ids"] for c in second.materials.summary.calls]
    assert len(requested) == 2 and all(r is not None for r in requested)  # only chunks 2 and 3; no id re-query
    lab = mp_labels(d)
    assert sorted(lab.material_id) == sorted(x["material_id"] for x in docs) and lab.material_id.is_unique
    row = lab.set_index("material_id").loc["mp-4"]
    assert row.K_VRH == 84.0 and row.G_VRH == 34.0 and row.crystal_system == "Cubic" and bool(row.icsd)
    # a third call does nothing
    third = FakeMP(docs)
    fetch_mp(chunk_size=3, client=third, cache_dir=d, progress=False, theoretical=False)
    assert third.materials.summary.calls == []


def test_fetch_mp_other_query_in_same_cache_refused(tmp_path, no_real_mprester):
    d = tmp_path / "mp"
    fetch_mp(chunk_size=5, client=FakeMP(mp_docs(4)), cache_dir=d, progress=False)
    with pytest.raises(DatasetError, match="different MP query"):
        fetch_mp(chunk_size=2, client=FakeMP(mp_docs(4)), cache_dir=d, progress=False)


def test_fetch_mp_material_id_list_and_bad_structure(tmp_path, no_real_mprester):
    docs = mp_docs(4)
    docs[1]["structure"] = {"broken": True}
    d = tmp_path / "mp"
    fake = FakeMP(docs)
    fetch_mp(chunk_size=10, client=fake, cache_dir=d, material_ids=["mp-0", "mp-1", "mp-2"], progress=False)
    skipped = []
    recs = list(mp_records(d, skipped=skipped))
    assert [r.material_id for r in recs] == ["mp-0", "mp-2"] and skipped[0][0] == "mp-1"


@pytest.mark.parametrize("key,msg", [("", "no Materials Project API key"), ("not a key!", "does not look like")])
def test_fetch_mp_key_errors(tmp_path, monkeypatch, no_real_mprester, key, msg):
    monkeypatch.setenv(mp.MP_KEY_ENV, key)
    with pytest.raises(MissingAPIKeyError) as e:
        fetch_mp(cache_dir=tmp_path / "mp", progress=False)
    assert msg in str(e.value) and "MP_API_KEY" in str(e.value) and "materialsproject.org" in str(e.value)


def test_list_datasets_table():
    t = src.list_datasets()
    assert {"name", "n_entries", "labels", "licence", "local", "upstream"} <= set(t.columns)
    assert set(reg.REGISTRY) <= set(t.name)


@needs_mirror
def test_alt_labels_point_at_the_same_structures():
    alt = load_labels("mp_mtcgcnn_36k:alt").set_index("material_id")
    main = load_labels("mp_mtcgcnn_36k").set_index("material_id")
    assert len(alt) == 36737 and (alt.idx == main.idx.reindex(alt.index)).all()
    same_vol = np.isclose(alt.volume, main.volume.reindex(alt.index), rtol=1e-6).mean()
    assert same_vol > 0.999  # README: volume equal for 99.95 %


def test_cif_folder_from_upstream_archive(tmp_path, monkeypatch, tmp_cache):
    "Without a mirror, the CIF set comes from the repository archive at the pinned commit (faked here)."
    monkeypatch.setenv(reg.DATA_ENV, str(tmp_path / "empty_mirror"))
    s = rocksalt()
    commit = reg.REGISTRY["mp_elastic_3k_cgcnn"].file("data_elasticity_cifs.tar.gz").url.rsplit("/", 1)[1][:-len(".tar.gz")]

    def fake_retrieve(url, known_hash=None, fname=None, path=None, progressbar=False, processor=None):
        assert url.endswith(f"{commit}.tar.gz") and callable(processor)  # unpacks with safe_extract
        top = Path(path) / "x.tar.gz.untar" / f"MEGNet-{commit}"
        for folder in ("data_elasticity", "data"):
            (top / folder).mkdir(parents=True, exist_ok=True)  # pooch re-uses an unpacked archive
        (top / "data_elasticity" / "0.cif").write_text(s.to(fmt="cif"))
        (top / "data" / "7.cif").write_text("not this one")
        return [str(p) for p in top.rglob("*.cif")]

    monkeypatch.setattr(reg.pooch, "retrieve", fake_retrieve)
    path = fetch("mp_elastic_3k_cgcnn", files=["data_elasticity_cifs.tar.gz"])["data_elasticity_cifs.tar.gz"]
    assert path.is_dir() and path.name == "data_elasticity"
    texts = src.cif_texts("mp_elastic_3k_cgcnn")
    assert list(texts) == [0] and parse_cif(texts[0], "x") == s
