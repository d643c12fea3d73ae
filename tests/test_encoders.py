"""Beyond the paper: the powder and the rotation-invariant encoders in front of PointNet (deepknet_lit.encoders)."""
import json, math, os, subprocess, sys
from pathlib import Path

import numpy as np
import pytest
import torch
from pymatgen.analysis.diffraction.xrd import XRDCalculator
from pymatgen.core import Lattice, Structure
from scipy.spatial.transform import Rotation

from deepknet_lit.diffraction import point_clouds
from deepknet_lit.model import PointNet
from deepknet_lit.predict import predict_powder
from deepknet_lit.store import ArrayStore
from deepknet_lit.train import TrainConfig, load_model, train

DEEPKNET = str(Path(sys.executable).parent / "deepknet")
MIRROR = Path(os.environ.get("DEEPKNET_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def crystals():
    from pymatgen.analysis.prototypes import AFLOW_PROTOTYPE_LIBRARY
    return [e["snl"].structure for e in AFLOW_PROTOTYPE_LIBRARY[:12]]


@pytest.mark.parametrize("encoder", ["invariant", "powder"])
@pytest.mark.parametrize("in_dim", [4, 3])
def test_the_whole_model_is_rotation_invariant_by_construction(encoder, in_dim):
    "Random SO(3) rotations (and a mirror) of the input leave the trained-or-not network's output unchanged to 1e-5."
    torch.manual_seed(0)
    x = torch.tensor(point_clouds(crystals(), max_index=2, progress=False).features)[..., :in_dim]
    net = PointNet(in_dim=in_dim, mlp=(32, 64), head=(32,), n_classes=3, encoder=encoder).eval()
    base = torch.softmax(net(x), -1)
    for seed in range(3):
        R = torch.tensor(Rotation.random(len(x), random_state=seed).as_matrix(), dtype=torch.float32)
        if seed == 2: R = R @ torch.diag(torch.tensor([1.0, -1.0, 1.0]))  # improper: Friedel's law hides it anyway
        turned = torch.cat([x[..., :3] @ R.transpose(1, 2), x[..., 3:]], -1)
        assert torch.allclose(torch.softmax(net(turned), -1), base, atol=1e-5)
    plain = PointNet(in_dim=in_dim, mlp=(32, 64), head=(32,), n_classes=3).eval()  # the paper's network is not
    assert not torch.allclose(plain(turned), plain(x), atol=1e-3)


def test_encoder_configs_keep_old_keys_and_checkpoints(tmp_path):
    "Adding the encoder field changed no earlier result key: the paper's config has no 'encoder' entry."
    assert "encoder" not in TrainConfig().to_dict() and TrainConfig(encoder="powder").to_dict()["encoder"] == "powder"
    with pytest.raises(ValueError, match="encoder"):
        TrainConfig(encoder="magic")
    x = torch.tensor(point_clouds(crystals(), max_index=1, progress=False).features)
    y = np.arange(len(x)) % 2
    cfg = TrainConfig(max_index=1, point_set="cube", mlp=(8, 16), head=(8,), epochs=1, batch_size=4, device="cpu",
                      encoder="powder", num_threads=1)
    train(cfg, tmp_path / "run", store=ArrayStore(x.numpy(), y, [f"m{i}" for i in range(len(x))], ["a", "b"]), progress=False)
    model, config = load_model(tmp_path / "run")
    assert model.hparams["encoder"] == "powder" and config.encoder == "powder"


def test_measured_patterns_are_predicted_by_a_powder_model(tmp_path):
    x = point_clouds(crystals(), max_index=1, progress=False)
    y = np.arange(len(x.ids)) % 2
    cfg = TrainConfig(max_index=1, point_set="cube", mlp=(8, 16), head=(8,), epochs=1, batch_size=4, device="cpu",
                      encoder="powder", num_threads=1)
    train(cfg, tmp_path / "powder", store=ArrayStore(x.features, y, list(x.ids), ["a", "b"]), progress=False)
    cfg3d = TrainConfig(max_index=1, point_set="cube", mlp=(8, 16), head=(8,), epochs=1, batch_size=4, device="cpu", num_threads=1)
    train(cfg3d, tmp_path / "points", store=ArrayStore(x.features, y, list(x.ids), ["a", "b"]), progress=False)
    cscl = Structure.from_spacegroup("Pm-3m", Lattice.cubic(4.12), ["Cs", "Cl"], [[0, 0, 0], [.5, .5, .5]])
    p = XRDCalculator(wavelength=1.5406).get_pattern(cscl)
    (tmp_path / "cscl.xy").write_text("\n".join(f"{t} {i}" for t, i in zip(p.x, p.y)))
    (tmp_path / "empty.xy").write_text("# nothing measured\n")
    with pytest.warns(UserWarning, match="trained on every line"):  # a measured pattern lacks the weak lines
        t = predict_powder(tmp_path / "powder", [tmp_path / "cscl.xy", tmp_path / "empty.xy"], wavelength=1.5406)
    assert t.error.isna().tolist() == [True, False] and "at least 3" in t.error[1]
    assert t.n_lines[0] == len(p.x) and math.isclose(t.p_a[0] + t.p_b[0], 1.0, rel_tol=1e-6)
    with pytest.raises(ValueError, match="--model powder"):
        predict_powder(tmp_path / "points", [tmp_path / "cscl.xy"], wavelength=1.5406)
    done = subprocess.run([DEEPKNET, "predict", "--model", str(tmp_path / "powder"), "--powder", str(tmp_path / "cscl.xy")],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "--wavelength" in done.stderr and "Traceback" not in done.stderr
    done = subprocess.run([DEEPKNET, "predict", "--model", str(tmp_path / "powder"), "--powder", str(tmp_path / "cscl.xy"),
                           "--wavelength", "1.5406", "--json"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)[0]["n_lines"] == len(p.x)
    # a regression model on powder patterns returns a value in its target's unit, not a one-class "probability"
    k = np.linspace(20.0, 300.0, len(x.ids))  # bulk moduli (GPa) for the regression target log_kvrh
    reg = TrainConfig(task="log_kvrh", max_index=1, point_set="cube", mlp=(8, 16), head=(8,), epochs=1, batch_size=4,
                      device="cpu", encoder="powder", num_threads=1)
    train(reg, tmp_path / "kvrh", store=ArrayStore(x.features, y, list(x.ids), ["a", "b"], values=k), progress=False)
    v = predict_powder(tmp_path / "kvrh", [tmp_path / "cscl.xy"], wavelength=1.5406)
    assert v.unit[0] == "log10(GPa)" and math.isfinite(v.predicted[0]) and "probability" not in v


@pytest.mark.skipif(not (MIRROR / "mp_mtcgcnn_36k").exists(), reason="offline data mirror not present")
@pytest.mark.parametrize("model", ["invariant", "powder"])
def test_cli_trains_each_encoder_in_the_quick_profile(model, tmp_path):
    "`deepknet train --model invariant|powder` in the quick profile (fewer epochs here; CI's minutes are few)."
    out = tmp_path / model
    done = subprocess.run([DEEPKNET, "train", "--task", "bulk_modulus", "--profile", "quick", "--model", model,
                           "--epochs", "2", "--out", str(out)], capture_output=True, text=True,
                          env={**os.environ, "MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "100000000000"})
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["encoder"] == model and 0.5 < metrics["test"]["roc_auc"] <= 1.0


def test_powder_models_train_on_the_lines_above_a_random_detection_limit(tmp_path):
    "TrainConfig.detection needs the powder encoder and intensities, keeps earlier keys, and changes what is learned."
    assert "detection" not in TrainConfig(encoder="powder").to_dict()
    assert TrainConfig(encoder="powder", detection=0.05).to_dict()["detection"] == 0.05
    for bad in (dict(detection=0.05), dict(encoder="invariant", detection=0.05), dict(encoder="powder", detection=1.5),
                dict(encoder="powder", perturbation="no_intensity", detection=0.05)):
        with pytest.raises(ValueError, match="detection"):
            TrainConfig(**bad)
    x = point_clouds(crystals(), max_index=1, progress=False)
    store = ArrayStore(x.features, np.arange(len(x.ids)) % 2, list(x.ids), ["a", "b"])
    weights = {}
    for d in (0.0, 0.05):
        cfg = TrainConfig(max_index=1, point_set="cube", mlp=(8, 16), head=(8,), epochs=2, batch_size=4, device="cpu",
                          encoder="powder", num_threads=1, detection=d)
        train(cfg, tmp_path / f"d{d}", store=store, progress=False)
        model, config = load_model(tmp_path / f"d{d}")
        assert config.detection == d
        weights[d] = model.state_dict()
    cscl = Structure.from_spacegroup("Pm-3m", Lattice.cubic(4.12), ["Cs", "Cl"], [[0, 0, 0], [.5, .5, .5]])
    p = XRDCalculator(wavelength=1.5406).get_pattern(cscl)
    (tmp_path / "cscl.xy").write_text("\n".join(f"{t} {i}" for t, i in zip(p.x, p.y)))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a model trained for detection limits predicts measured patterns without a warning
        assert predict_powder(tmp_path / "d0.05", [tmp_path / "cscl.xy"], wavelength=1.5406).error.isna().all()
    assert any(not torch.equal(weights[0.0][k], weights[0.05][k]) for k in weights[0.0] if weights[0.0][k].is_floating_point())
    done = subprocess.run([DEEPKNET, "train", "--task", "bulk_modulus", "--model", "invariant", "--detection", "0.05",
                           "--out", str(tmp_path / "refused")], capture_output=True, text=True)
    assert done.returncode == 2 and "detection" in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]
