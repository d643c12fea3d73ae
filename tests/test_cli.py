"""End to end through the `deepknet` command, as a user types it."""
import json, os, subprocess, sys
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

DEEPKNET = str(Path(sys.executable).parent / "deepknet")
MIRROR = Path(os.environ.get("DEEPKNET_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
needs_mirror = pytest.mark.skipif(not (MIRROR / "mp_mtcgcnn_36k").exists(), reason="offline data mirror not present")


def run(*args, env=None, check=True):
    done = subprocess.run([DEEPKNET, *map(str, args)], capture_output=True, text=True, env={**os.environ, **(env or {})})
    if check and done.returncode != 0:
        raise AssertionError(f"deepknet {' '.join(map(str, args))} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


@pytest.fixture()
def cifs(tmp_path):
    "Two real CIFs the model never saw (rock salt NaCl, fcc Cu) and one broken file."
    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    cu = Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.615), ["Cu"], [[0, 0, 0]])
    paths = [tmp_path / "NaCl.cif", tmp_path / "Cu.cif", tmp_path / "broken.cif"]
    nacl.to(filename=str(paths[0])); cu.to(filename=str(paths[1]))
    paths[2].write_text("data_broken\n_cell_length_a 3.0\nthis is not a CIF loop\n")
    return paths


def test_featurize_writes_clouds_and_names_the_bad_file(cifs, tmp_path):
    out = tmp_path / "clouds.npz"
    done = run("featurize", *cifs, "-o", out, "--max-index", "2", "--probe", "neutron")
    assert "broken.cif" in done.stderr and "2 point clouds, 1 skipped" in done.stdout
    z = np.load(out)
    assert z["features"].shape == (2, 125, 4) and np.isfinite(z["features"]).all()
    assert [Path(str(i)).stem for i in z["ids"]] == ["NaCl", "Cu"]


def test_featurize_with_only_bad_files_fails(tmp_path, cifs):
    done = run("featurize", cifs[2], "-o", tmp_path / "x.npz", check=False)
    assert done.returncode == 1 and "broken.cif" in done.stderr



def test_featurize_refuses_compression_bombs_and_huge_cells_and_goes_on(cifs, tmp_path):
    "Files from strangers: a .cif.gz past $DEEPKNET_MAX_FILE_MB once decompressed, a 2 kB CIF asking for 11,520 sites."
    import gzip
    with gzip.open(tmp_path / "bomb.cif.gz", "wb") as f:
        f.write(b"data_bomb\n" + b"#" * 3 * 2**20)  # 3 MiB of comment, a few kB on disk
    rows = [f"C{k} C {x:.5f} {y:.5f} {z:.5f} 1" for k, (x, y, z) in enumerate(0.05 + 0.4 * np.random.default_rng(0).random((60, 3)))]
    (tmp_path / "huge.cif").write_text("\n".join(
        ["data_huge", "_symmetry_space_group_name_H-M 'F m -3 m'", "_symmetry_Int_Tables_number 225"]
        + [f"_cell_length_{a} 80" for a in "abc"] + [f"_cell_angle_{a} 90" for a in ("alpha", "beta", "gamma")]
        + ["loop_", "_atom_site_label", "_atom_site_type_symbol", "_atom_site_fract_x", "_atom_site_fract_y",
           "_atom_site_fract_z", "_atom_site_occupancy"] + rows) + "\n")
    done = run("featurize", cifs[0], tmp_path / "bomb.cif.gz", tmp_path / "huge.cif", "-o", tmp_path / "c.npz",
               "--max-index", "1", env={"DEEPKNET_MAX_FILE_MB": "1"})
    assert "1 point clouds, 2 skipped" in done.stdout and "Traceback" not in done.stderr
    assert "bomb.cif.gz" in done.stderr and "more than 1 MiB once decompressed" in done.stderr
    assert "huge.cif" in done.stderr and "11,520 sites" in done.stderr
    assert np.load(tmp_path / "c.npz")["features"].shape == (1, 27, 4)


@needs_mirror
def test_data_stats_metallicity_counts():
    out = run("data", "stats", "metallicity").stdout
    assert "36,738" in out and "42.46 %" in out


def test_unknown_task_is_a_one_line_error():
    done = run("data", "stats", "band_gap_regression", check=False)
    assert done.returncode == 2 and done.stderr.startswith("deepknet: error:") and "metallicity" in done.stderr
    assert "Traceback" not in done.stderr


@needs_mirror
def test_data_list_shows_every_dataset():
    out = run("data", "list").stdout
    for name in ("mp_mtcgcnn_36k", "mp_binary_elasticity", "mp_elastic_3k_cgcnn", "mp_legacy_2015", "deepknet_splits"):
        assert name in out


def test_fetch_mp_without_key_explains_what_to_do(tmp_path):
    env = {"MP_API_KEY": "", "PMG_MAPI_KEY": "", "DEEPKNET_CACHE": str(tmp_path)}
    done = run("data", "fetch", "mp", "--cache-dir", tmp_path / "mp", env=env, check=False)
    assert done.returncode != 0 and "MP_API_KEY" in done.stderr


@needs_mirror
@pytest.mark.slow
def test_train_predict_evaluate_on_unseen_cifs(cifs, tmp_path):
    "`deepknet train --profile quick` writes a checkpoint and a dataset-level test ROC-AUC; predict and evaluate use it."
    run_dir = tmp_path / "run"
    run("train", "--task", "metallicity", "--profile", "quick", "--out", run_dir, "--n", "27", "--limit", "400",
        "--epochs", "2")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0.0 <= metrics["test"]["roc_auc"] <= 1.0 and metrics["test"]["n"] > 0
    assert (run_dir / "checkpoint.pt").exists()
    done = run("predict", run_dir, *cifs, "--json")
    rows = {Path(r["id"]).stem: r for r in json.loads(done.stdout)}
    assert rows["broken"]["error"] and rows["NaCl"]["error"] is None and rows["Cu"]["error"] is None
    for name in ("NaCl", "Cu"):
        assert abs(rows[name]["p_metal"] + rows[name]["p_insulator"] - 1) < 1e-5
    ev = run("evaluate", run_dir).stdout
    assert abs(json.loads(ev[: ev.rindex("}") + 1])["roc_auc"] - metrics["test"]["roc_auc"]) < 1e-9
