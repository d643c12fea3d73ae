"""Pretrained models: shipped inside the package with their cards, usable on a fresh install with no data, no training
and no network; out-of-domain inputs flagged; Materials Project ids and live MP data through a recorded client."""
import json, os, subprocess, sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from pymatgen.core import Lattice, Structure

import deepknet_lit as dk
from deepknet_lit import registry as reg, userdata as ud
from deepknet_lit import cli, mp, pretrained, sources as src
from deepknet_lit.diffraction import FEATURIZER_VERSION
from deepknet_lit.experiments import PRETRAINED
from deepknet_lit.train import TRAINING_VERSION, CheckpointError

DEEPKNET = str(Path(sys.executable).parent / "deepknet")
SHIPPED = pretrained.available_models()
CARD_KEYS = {"name", "task", "classes", "target", "data", "split", "test", "paper", "training", "versions", "licence",
             "domain", "weights_sha256", "weights_bytes"}


def nacl():
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def cu():
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.615), ["Cu"], [[0, 0, 0]])


def test_every_task_ships_a_model_with_a_complete_card():
    assert set(SHIPPED) == set(PRETRAINED), f"shipped {SHIPPED}; export the rest with scripts/export_models.py"
    for name in SHIPPED:
        card = pretrained.model_card(name)
        assert CARD_KEYS <= set(card), CARD_KEYS - set(card)
        w = pretrained.models_dir() / name / pretrained.WEIGHTS
        assert reg.sha256_file(w) == card["weights_sha256"] and w.stat().st_size == card["weights_bytes"]
        assert card["weights_bytes"] < 2_000_000  # weights only, no optimizer state
        lo, hi = card["test"]["roc_auc_ci95"]
        assert lo <= card["test"]["roc_auc"] <= hi and card["split"]["n"]["train"] > 1000
        assert card["versions"] == {"package": card["versions"]["package"], "featurizer": FEATURIZER_VERSION,
                                    "training": TRAINING_VERSION}  # weights whose featurizer or training changed: re-export
        assert len(card["domain"]["elements"]) > 20 and card["domain"]["cell_volume"][0] < card["domain"]["cell_volume"][1]
        net, config = dk.load_model(name)
        assert not net.training and config["classes"] == card["classes"] and config["card"] == card


def test_model_cards_agree_with_the_committed_results():
    "The card's test metrics are the reproduction's committed result for that run (book/results/full)."
    root = Path(__file__).resolve().parents[1] / "book" / "results" / "full"
    for name in SHIPPED:
        card = pretrained.model_card(name)
        rec = json.loads((root / card["task"] / f"{card['result']['key']}.json").read_text())
        assert card["test"]["roc_auc"] == rec["test"]["roc_auc"] and card["split"]["n"] == rec["n_materials"]
        assert card["split"]["test_sha256"] == rec["test_hash"]


def test_models_command_lists_and_shows_cards():
    out = subprocess.run([DEEPKNET, "models"], capture_output=True, text=True, check=True).stdout
    for name in SHIPPED: assert name in out
    card = subprocess.run([DEEPKNET, "models", "metallicity"], capture_output=True, text=True, check=True).stdout
    assert "ROC-AUC" in card and "Domain" in card and "Licence" in card
    bad = subprocess.run([DEEPKNET, "models", "no_such_model"], capture_output=True, text=True)
    assert bad.returncode != 0 and "available" in bad.stderr and "Traceback" not in bad.stderr


def test_fresh_install_predicts_with_no_data_no_training(tmp_path):
    "The issue's 'done when': the mirror hidden, a CIF, a POSCAR and a pymatgen JSON in, one row each out."
    nacl().to(filename=str(tmp_path / "a.cif"))
    cu().to(filename=str(tmp_path / "POSCAR"))
    (tmp_path / "b.json").write_text(json.dumps(Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(4.21), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]).as_dict()))
    empty = tmp_path / "empty"; empty.mkdir()
    env = {**os.environ, "DEEPKNET_DATA": str(empty), "DEEPKNET_CACHE": str(tmp_path / "cache"), "MP_API_KEY": ""}
    done = subprocess.run([DEEPKNET, "predict", "--model", "metallicity", "a.cif", "POSCAR", "b.json", "-o", "out.csv"],
                          cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    t = pd.read_csv(tmp_path / "out.csv")
    assert list(t.id) == ["a.cif", "POSCAR", "b.json"] and t.error.isna().all()
    assert {"p_metal", "p_insulator", "p_metal_std", "out_of_domain", "domain_note"} <= set(t.columns)
    assert t.predicted[1] == "metal" and t.p_metal[1] > 0.9  # copper
    assert np.allclose(t.p_metal + t.p_insulator, 1.0, atol=1e-5)
    assert not t.out_of_domain.any()
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.npz"))  # nothing was featurized to a store


def test_out_of_domain_inputs_are_flagged_not_refused():
    dom = pretrained.model_card("metallicity")["domain"]
    absent = next(e for e in ("Po", "At", "Rn", "Fr", "Ra", "Ac", "Pa", "Am", "Cm") if e not in dom["elements"])
    odd = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.6), [absent, "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    huge = Structure(Lattice.cubic(60.0), ["Cu"], [[0, 0, 0]])  # a primitive cell far larger than any MP material
    t = dk.predict("metallicity", [nacl(), odd, huge], ids=["NaCl", "odd", "huge"], n_rotations=2)
    assert t.error.isna().all() and t.out_of_domain.tolist() == [False, True, True]
    assert absent in t.domain_note[1] and "cell volume" in t.domain_note[2]


def test_ase_atoms_are_accepted():
    ase = pytest.importorskip("ase.build")
    t = dk.predict("metallicity", [ase.bulk("Cu", "fcc", a=3.615), cu()], ids=["ase", "pymatgen"], n_rotations=4)
    assert t.error.isna().all()
    assert np.allclose(t.p_metal[0], t.p_metal[1], atol=1e-5)  # the same crystal, whichever object holds it


def test_a_swapped_weights_file_is_refused(tmp_path, monkeypatch):
    import shutil
    shutil.copytree(pretrained.models_dir() / "metallicity", tmp_path / "metallicity")
    monkeypatch.setenv(pretrained.MODELS_ENV, str(tmp_path))
    w = tmp_path / "metallicity" / pretrained.WEIGHTS
    ck = torch.load(w, weights_only=True); ck["model"] = {k: v * 0 for k, v in ck["model"].items()}
    torch.save(ck, w)
    with pytest.raises(CheckpointError, match="sha256"):
        dk.load_model("metallicity")


# -- Materials Project through a recorded client (constructing MPRester would contact the server) -----------------

class RecordedMP:
    "Replays Materials Project summary documents: answers `materials.summary.search` from a list of recorded docs."
    def __init__(self, docs):
        self.docs, self.calls = docs, []
        self.materials = SimpleNamespace(summary=SimpleNamespace(search=self.search))

    def search(self, material_ids=None, fields=None, **criteria):
        self.calls.append(dict(material_ids=material_ids, fields=fields, **criteria))
        docs = [d for d in self.docs if material_ids is None or d["material_id"] in material_ids]
        return [{k: v for k, v in d.items() if fields is None or k in fields} for d in docs]


def recorded_docs(n=40):
    "MP-shaped documents (structure dict, band gap, moduli, E_hull, symmetry) for AFLOW prototypes, labelled by a rule."
    from pymatgen.analysis.prototypes import AFLOW_PROTOTYPE_LIBRARY
    docs = []
    for i, entry in enumerate(AFLOW_PROTOTYPE_LIBRARY[:n]):
        s = entry["snl"].structure
        metal = len(s.composition.elements) == 1
        docs.append({"material_id": f"mp-{1000 + i}", "structure": s.as_dict(), "band_gap": 0.0 if metal else 2.0 + i % 3,
                     "is_metal": metal, "energy_above_hull": 0.01 * (i % 5), "theoretical": False,
                     "bulk_modulus": {"vrh": 50.0 + 5 * i}, "shear_modulus": {"vrh": 20.0 + 2 * i},
                     "symmetry": {"crystal_system": "Cubic"}, "database_IDs": {"icsd": [f"icsd-{i}"]}})
    return docs


def test_mp_ids_are_fetched_and_predicted(tmp_path, monkeypatch, capsys):
    docs = recorded_docs(3)
    docs[0]["structure"] = cu().as_dict()
    client = RecordedMP(docs)
    got = mp.mp_structures(["mp-1000", "mp-1001", "mp-99999999", "Si"], client=client)
    assert isinstance(got["mp-1000"], Structure) and got["mp-1000"].composition.reduced_formula == "Cu"
    assert "not found" in got["mp-99999999"] and "not a Materials Project id" in got["Si"]
    assert client.calls[0]["material_ids"] == ["mp-1000", "mp-1001", "mp-99999999"]  # one request, bad ids never sent
    monkeypatch.setattr(mp, "_mp_client", lambda key: client)
    monkeypatch.setenv("DEEPKNET_CACHE", str(tmp_path / "cache"))
    assert cli.main(["predict", "--model", "metallicity", "--mp-id", "mp-1000", "mp-42", "-o", str(tmp_path / "p.json"),
                     "--rotations", "2", "--workers", "1"]) == 0
    rows = {r["id"]: r for r in json.loads((tmp_path / "p.json").read_text())}
    assert rows["mp-1000"]["predicted"] == "metal" and rows["mp-1000"]["error"] is None
    assert "not found" in rows["mp-42"]["error"]


def test_live_mp_data_trains(tmp_path, monkeypatch):
    "`deepknet data fetch mp` then `deepknet train --task metallicity --source mp`, offline with recorded responses."
    monkeypatch.setenv("DEEPKNET_CACHE", str(tmp_path / "cache"))
    client = RecordedMP(recorded_docs(40))
    monkeypatch.setattr(mp, "_mp_client", lambda key: client)
    src.clear_caches()
    assert cli.main(["data", "fetch", "mp", "--chunk-size", "16"]) == 0
    assert "mp" in ud.user_datasets()
    for task in ("metallicity", "bulk_modulus", "stability"):
        t = dk.load_task(task, source="mp")
        assert len(t) == 40 and set(t.sources) == {"mp"}
    m = dk.load_task("metallicity", source="mp")
    assert m.y.tolist() == [int(d["band_gap"] > 0) for d in client.docs]
    out = tmp_path / "run"
    assert cli.main(["train", "--task", "metallicity", "--source", "mp", "--epochs", "2", "--n", "27", "--out", str(out),
                     "--device", "cpu"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["task_kwargs"] == {"source": "mp"} and sum(metrics["n"].values()) == 40


def test_the_built_wheel_ships_the_models_and_predicts_from_anywhere(tmp_path):
    "Build the wheel, install it alone (no repository, no data mirror), predict copper from another folder."
    root = Path(__file__).resolve().parents[1]
    py = sys.executable
    import shutil  # build from a copy: setuptools writes build/ and *.egg-info next to the sources it builds
    src = tmp_path / "src"
    shutil.copytree(root / "deepknet_lit", src / "deepknet_lit", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"): shutil.copy(root / name, src / name)
    subprocess.run([py, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(src), "-w", str(tmp_path)],
                   check=True, capture_output=True)
    wheel = next(tmp_path.glob("deepknet_lit-*.whl"))
    import zipfile
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in PRETRAINED:
        assert {f"deepknet_lit/models/{name}/weights.pt", f"deepknet_lit/models/{name}/card.json"} <= names
    assert "deepknet_lit/registry.yaml" in names  # the dataset registry is package data
    subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", "--target", str(tmp_path / "site"), str(wheel)],
                   check=True, capture_output=True)
    (tmp_path / "empty").mkdir()
    code = ("import deepknet_lit as dk, json; from pymatgen.core import Lattice, Structure\n"
            "cu = Structure.from_spacegroup('Fm-3m', Lattice.cubic(3.615), ['Cu'], [[0, 0, 0]])\n"
            "t = dk.predict('metallicity', [cu], ids=['Cu'], n_rotations=2)\n"
            "print(json.dumps([dk.__file__, t.predicted[0], bool(t.error.isna().all())]))")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site"), "DEEPKNET_DATA": str(tmp_path / "empty"),
           "DEEPKNET_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([py, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    where, predicted, ok = json.loads(done.stdout.strip().splitlines()[-1])
    assert where.startswith(str(tmp_path / "site")) and predicted == "metal" and ok


def test_the_shipped_powder_model_reads_a_measured_pattern(tmp_path):
    "metallicity_powder: a 2θ/intensity file in, metal or insulator out, with no warning (it trained through detection limits)."
    import warnings
    from pymatgen.analysis.diffraction.xrd import XRDCalculator
    from deepknet_lit.predict import predict_powder
    card = pretrained.model_card("metallicity_powder")
    assert card["task"] == "metallicity" and card["training"]["encoder"] == "powder" and card["training"]["detection"] > 0
    assert card["paper"] == {} and "powder pattern" in pretrained.card_text("metallicity_powder")
    for name, s in (("nacl", nacl()), ("cu", cu())):
        p = XRDCalculator(wavelength=1.5406).get_pattern(s)
        (tmp_path / f"{name}.xy").write_text("\n".join(f"{t:.4f} {i:.3f}" for t, i in zip(p.x, p.y)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = predict_powder("metallicity_powder", [tmp_path / "nacl.xy", tmp_path / "cu.xy"], wavelength=1.5406)
    assert t.error.isna().all() and set(t.predicted) <= set(card["classes"]) and np.allclose(t.filter(like="p_").sum(1), 1.0)
    done = subprocess.run([DEEPKNET, "predict", "--model", "metallicity_powder", "--powder", str(tmp_path / "nacl.xy"),
                           "--wavelength", "1.5406", "--json"], capture_output=True, text=True)
    assert done.returncode == 0 and json.loads(done.stdout)[0]["predicted"] in card["classes"], done.stderr[-2000:]
