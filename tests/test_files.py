"""Structure files from strangers: every structure of a file is its own record (never a hybrid, never dropped), ids are
unique paths, folders expand, and `featurize_files` takes the store builder's fast path on all cores."""
import json
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from deepknet_lit import records as rec
from deepknet_lit.diffraction import featurize_files, point_clouds
from deepknet_lit.records import read_structure, read_structures
from deepknet_lit.records import RecordError, cif_blocks, parse_cif

FCC = [[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0]]


def cu():
    return Structure(Lattice.cubic(3.61), ["Cu"] * 4, FCC)


def zno():
    return Structure(Lattice.hexagonal(3.25, 5.21), ["Zn", "Zn", "O", "O"],
                     [[1 / 3, 2 / 3, 0], [2 / 3, 1 / 3, .5], [1 / 3, 2 / 3, .382], [2 / 3, 1 / 3, .882]])


def nacl():
    return Structure(Lattice.cubic(5.64), ["Na"] * 4 + ["Cl"] * 4, FCC + [[x + .5 for x in p] for p in FCC])


def two_block_cif():
    return cu().to(fmt="cif") + "\n" + zno().to(fmt="cif")


# ---------------------------------------------------------------- CIF text: blocks
def test_two_blocks_are_never_merged():
    "Before: first block's cubic cell with the second block's Zn2O2 atoms."
    with pytest.raises(RecordError, match="2 structures"):
        parse_cif(two_block_cif(), "two.cif")
    assert rec._parse_p1_cif(two_block_cif()) is None


def test_cif_blocks_split_and_skip_non_structure_blocks():
    text = "data_global\n_publ_section_title\n;\ndata_not_a_block inside a text field\n;\n" + two_block_cif()
    blocks = cif_blocks(text)
    assert len(blocks) == 2
    assert parse_cif(blocks[0]) == cu() and parse_cif(blocks[1]).composition.reduced_formula == "ZnO"
    assert cif_blocks(cu().to(fmt="cif")) == [cu().to(fmt="cif")]


def test_parse_cif_keeps_disorder_only_when_asked():
    text = Structure(Lattice.cubic(3.8), [{"Cu": 0.5, "Au": 0.5}], [[0, 0, 0]]).to(fmt="cif")
    with pytest.raises(RecordError, match="partial occupancy"):
        parse_cif(text, "cuau")
    assert not parse_cif(text, "cuau", ordered=False).is_ordered


# ---------------------------------------------------------------- files and folders
@pytest.fixture()
def tree(tmp_path, monkeypatch):
    "A/same.cif and B/same.cif (different crystals), a two-block CIF, a POSCAR, a JSON list, a JSON structure."
    monkeypatch.chdir(tmp_path)
    for d, s in (("A", cu()), ("B", nacl())):
        (tmp_path / d).mkdir()
        s.to(filename=str(tmp_path / d / "same.cif"))
    (tmp_path / "B" / "two.cif").write_text(two_block_cif())
    zno().to(filename=str(tmp_path / "B" / "POSCAR"))
    (tmp_path / "B" / "list.json").write_text(json.dumps([cu().as_dict(), zno().as_dict()]))
    (tmp_path / "B" / "one.json").write_text(json.dumps(nacl().as_dict()))
    (tmp_path / "B" / "notes.txt").write_text("not a structure file")
    return tmp_path


def test_read_structures_every_block_is_a_record(tree):
    got = read_structures("B/two.cif")
    assert [i for i, _ in got] == ["B/two.cif#0", "B/two.cif#1"]
    assert got[0][1] == cu() and got[1][1].composition.reduced_formula == "ZnO"
    with pytest.raises(ValueError, match=r"B/two.cif: .*2 structures.*read_structures"):
        read_structure("B/two.cif")


def test_folders_expand_sorted_and_ids_are_paths_not_stems(tree):
    ids = [i for i, _ in read_structures(".")]
    assert ids == ["A/same.cif", "B/POSCAR", "B/list.json#0", "B/list.json#1", "B/one.json", "B/same.cif",
                   "B/two.cif#0", "B/two.cif#1"]
    got = dict(read_structures("B"))
    assert got["B/same.cif"].composition.reduced_formula == "NaCl" and got["B/POSCAR"].composition.reduced_formula == "ZnO"
    assert dict(read_structures("A"))["A/same.cif"] == cu()


def test_unreadable_file_names_file_and_reason(tree):
    (tree / "bad.json").write_text('{"hello": 1}')
    with pytest.raises(ValueError, match="bad.json"):
        read_structures("bad.json")
    with pytest.raises(FileNotFoundError, match="nothere.cif"):
        read_structures("nothere.cif")
    (tree / "latin1.cif").write_bytes(cu().to(fmt="cif").encode() + "_publ_author_name 'M\xfcller'\n".encode("latin-1"))
    assert read_structure("latin1.cif") == cu()  # old CIFs write authors' names in Latin-1: read, not refused
    (tree / "binary.cif").write_bytes(bytes(range(256)))
    with pytest.raises(ValueError, match="binary.cif"):
        read_structures("binary.cif")


def test_extxyz_frames_via_ase(tree):
    ase_io = pytest.importorskip("ase.io")
    from pymatgen.io.ase import AseAtomsAdaptor
    ase_io.write(tree / "frames.extxyz", [AseAtomsAdaptor.get_atoms(s) for s in (cu(), zno(), nacl())])
    got = read_structures("frames.extxyz")
    assert [i for i, _ in got] == [f"frames.extxyz#{k}" for k in range(3)]
    assert got[2][1].composition.reduced_formula == "NaCl"


# ---------------------------------------------------------------- featurize_files
def test_featurize_files_one_record_per_structure(tree):
    out = tree / "out.npz"
    summary = featurize_files(["A", "B", "nothere.cif"], out, max_index=1, progress=False, n_workers=1)
    z = np.load(out)
    ids = list(z["ids"])
    assert ids == ["A/same.cif", "B/POSCAR", "B/list.json#0", "B/list.json#1", "B/one.json", "B/same.cif",
                   "B/two.cif#0", "B/two.cif#1"]
    assert summary["n_ok"] == 8 and summary["n_failed"] == 1 and "nothere.cif" in summary["errors"][0][1]
    ref = point_clouds([cu(), zno()], max_index=1, progress=False).features
    assert np.allclose(z["features"][ids.index("B/two.cif#0")], ref[0], atol=1e-5)  # not the hybrid
    assert np.allclose(z["features"][ids.index("B/two.cif#1")], ref[1], atol=1e-4)


def test_featurize_files_process_pool_matches_one_process(tree):
    files = ["A/same.cif", "B/two.cif", "B/POSCAR", "B/same.cif"] * 1
    a = featurize_files(files, tree / "a.npz", max_index=2, progress=False, n_workers=1, chunk_size=2)
    b = featurize_files(files, tree / "b.npz", max_index=2, progress=False, n_workers=2, chunk_size=2)
    za, zb = np.load(tree / "a.npz"), np.load(tree / "b.npz")
    assert a["n_ok"] == b["n_ok"] == 5 and list(za["ids"]) == list(zb["ids"])
    assert np.array_equal(za["features"], zb["features"]) and np.array_equal(za["volumes"], zb["volumes"])


def test_featurize_files_parquet(tree):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    featurize_files(["A", "B/two.cif"], tree / "out.parquet", max_index=1, progress=False, n_workers=1)
    t = pd.read_parquet(tree / "out.parquet")
    assert list(t.id) == ["A/same.cif", "B/two.cif#0", "B/two.cif#1"] and t.error.isna().all()
    assert np.asarray(t.features[0]).reshape(27, 4).dtype == np.float32


# ---------------------------------------------------------------- the command
def deepknet(*args):
    import subprocess, sys
    return subprocess.run([str(Path(sys.executable).parent / "deepknet"), *map(str, args)], capture_output=True, text=True)


def test_cli_featurize_folders_and_parquet(tree):
    done = deepknet("featurize", "A", "B", "-o", "clouds.npz", "--max-index", "1")
    assert done.returncode == 0, done.stderr
    assert "8 point clouds, 0 skipped" in done.stdout
    assert list(np.load(tree / "clouds.npz")["ids"])[:2] == ["A/same.cif", "B/POSCAR"]
    done = deepknet("featurize", "B/two.cif", "missing.cif", "-o", "clouds.parquet", "--max-index", "1", "--workers", "1")
    assert done.returncode == 0 and "missing.cif" in done.stderr and "Traceback" not in done.stderr
    import pandas as pd
    assert pd.read_parquet(tree / "clouds.parquet").id.tolist() == ["B/two.cif#0", "B/two.cif#1", "missing.cif"]
    assert "structure files" in deepknet("featurize", "--help").stdout
