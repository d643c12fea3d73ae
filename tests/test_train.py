"Tests of deepknet_lit.train: config, training, checkpoints, exact resume."
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from deepknet_lit import train as T
from deepknet_lit.store import ArrayStore, load_npz_store


def synthetic(N=96, n=27, seed=0, k=2):
    "Labels are encoded in the mean intensity, so a tiny model can learn them."
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, N)
    f = rng.normal(size=(N, n, 4)).astype(np.float32)
    f[..., 3] = np.clip(rng.random((N, n)) * 0.5 + 0.4 * y[:, None] / max(k - 1, 1), 0.01, 1.0)
    return f, y


@pytest.fixture
def npz(tmp_path):
    f, y = synthetic()
    p = tmp_path / "store.npz"
    np.savez(p, features=f, y=y, ids=np.array([f"mp-{i}" for i in range(len(y))]), classes=np.array(["no", "yes"]))
    return p


def tiny(**kw):
    base = dict(mlp=(8, 16), head=(8,), epochs=3, batch_size=16, rotation="so3", device="cpu", num_threads=1, lr=5e-3,
                task="metallicity")
    return T.TrainConfig(**{**base, **kw})


def test_config_roundtrip_and_files(tmp_path):
    c = T.make_config("quick", task="bulk_modulus", epochs=2)
    assert T.TrainConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    (tmp_path / "c.json").write_text(json.dumps({"lr": 0.01, "mlp": [4, 8]}))
    (tmp_path / "c.yaml").write_text("lr: 0.02\nhead: [4]\n")
    assert T.make_config("full", tmp_path / "c.json").mlp == (4, 8)
    c2 = T.make_config(None, tmp_path / "c.yaml", lr=0.5)
    assert c2.lr == 0.5 and c2.head == (4,)
    with pytest.raises(ValueError, match="unknown profile"):
        T.make_config("tpu")
    with pytest.raises(ValueError, match="learning_rate"):
        T.TrainConfig.from_dict({"learning_rate": 1})
    with pytest.raises(FileNotFoundError):
        T.load_config_file(tmp_path / "missing.json")
    assert set(T.PROFILES) == {"quick", "full", "gpu"} and T.PROFILES["gpu"]["mlp"][-1] == 1024 and T.PROFILES["full"]["limit"] is None


def test_train_writes_metrics_and_learns(tmp_path, npz):
    res = T.train(tiny(store_path=str(npz), epochs=4), tmp_path / "run", progress=False)
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["test"]["roc_auc"] == pytest.approx(res["test"]["roc_auc"])
    assert m["test"]["roc_auc"] > 0.75                     # the signal is easy
    assert 0 <= m["valid"]["roc_auc"] <= 1 and len(m["history"]) == 4
    assert m["config"]["store_path"] == str(npz)
    assert m["test"]["roc_auc_ci"]["low"] <= m["test"]["roc_auc"] <= m["test"]["roc_auc_ci"]["high"]
    assert (tmp_path / "run" / "checkpoint.pt").exists() and (tmp_path / "run" / "last.pt").exists()
    model, cfg = T.load_model(tmp_path / "run")
    assert cfg.store_path == str(npz) and model.hparams["mlp"] == (8, 16)
    pred = np.load(tmp_path / "run" / "test_predictions.npz")
    assert len(pred["y"]) == m["test"]["n"] and pred["probs"].shape == (m["test"]["n"], 2)
    # re-evaluation from the run directory alone (what `deepknet evaluate DIR` does) reproduces the numbers
    from deepknet_lit.runs import evaluate_run
    ev = evaluate_run(tmp_path / "run", split="test", n_boot=50)
    assert ev["roc_auc"] == pytest.approx(m["test"]["roc_auc"]) and ev["split"] == "test"
    assert (tmp_path / "run" / "evaluation_test.json").exists()


def test_make_config_then_train_and_phi4(tmp_path, npz):
    cfg = T.make_config(None, task="metallicity", store_path=str(npz), mlp=(8,), head=(4,), epochs=1, batch_size=16,
                        device="cpu", num_threads=1)
    res = T.train(cfg, tmp_path / "cli", progress=False)
    assert res["config"]["mlp"] == [8] and 0 <= res["test"]["roc_auc"] <= 1
    c = T.make_config("quick", perturbation="phi4")
    assert c.probe == "neutron" and c.perturbation == "phi1"
    with pytest.raises(ValueError, match="fractions"):
        T.TrainConfig(fractions=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="perturbation"):
        T.TrainConfig(perturbation="phi9")


def test_random_labels_do_not_learn(tmp_path):
    "The learning test can fail: with labels independent of the input, test AUC stays near 0.5."
    f, y = synthetic(N=160)
    y = np.random.default_rng(9).integers(0, 2, len(y))
    store = ArrayStore(f, y, [str(i) for i in range(len(y))], ["0", "1"])
    res = T.train(tiny(epochs=3), tmp_path / "r", store=store, progress=False)
    assert abs(res["test"]["roc_auc"] - 0.5) < 0.3


def test_resume_is_exact(tmp_path):
    f, y = synthetic()
    store = ArrayStore(f, y, [str(i) for i in range(len(y))], ["0", "1"])
    cfg = tiny(dropout=0.2, perturbation="phi2")
    a = T.train(cfg, tmp_path / "a", store=store, progress=False)
    assert T.train(cfg, tmp_path / "b", store=store, progress=False, stop_after=1) == {}
    assert not (tmp_path / "b" / "metrics.json").exists()
    assert T.load_checkpoint(tmp_path / "b" / "last.pt")["state"]["epoch"] == 1
    b = T.train(cfg, tmp_path / "b", store=store, progress=False)
    assert a["test"] == b["test"] and a["valid"] == b["valid"]
    assert [h["loss"] for h in a["history"]] == [h["loss"] for h in b["history"]]
    wa = T.load_checkpoint(tmp_path / "a" / "last.pt")["model"]
    wb = T.load_checkpoint(tmp_path / "b" / "last.pt")["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # a different seed gives different weights (the comparison above can fail)
    c = T.train(cfg.replace(seed=1), tmp_path / "c", store=store, progress=False)
    wc = T.load_checkpoint(tmp_path / "c" / "last.pt")["model"]
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)
    # resuming with a changed config is refused
    with pytest.raises(ValueError, match="different configuration"):
        T.train(cfg.replace(lr=0.1), tmp_path / "a", store=store, progress=False)


def test_early_stopping_and_multiclass(tmp_path):
    f, y = synthetic(N=120, k=3)
    store = ArrayStore(f, y, [str(i) for i in range(len(y))], ["a", "b", "c"])
    res = T.train(tiny(epochs=30, patience=1, lr=1e-6, schedule="none"), tmp_path / "e", store=store, progress=False)
    assert len(res["history"]) < 30                      # stopped early
    assert res["valid"]["n_classes"] == 3 and len(res["test"]["confusion"]) == 3


def test_no_intensity_and_optimizers(tmp_path):
    f, y = synthetic()
    store = ArrayStore(f, y, [str(i) for i in range(len(y))], ["0", "1"])
    res = T.train(tiny(epochs=1, perturbation="no_intensity", optimizer="sgd", schedule="step"), tmp_path / "n",
                  store=store, progress=False)
    model, _ = T.load_model(tmp_path / "n")
    assert model.hparams["in_dim"] == 3 and 0 <= res["test"]["roc_auc"] <= 1
    with pytest.raises(ValueError, match="optimizer"):
        T.train(tiny(optimizer="lbfgs"), tmp_path / "x", store=store, progress=False)


def test_bad_store_and_device(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, features=np.zeros((3, 2, 4), np.float32))
    with pytest.raises(ValueError, match="'y' is missing"):
        load_npz_store(bad)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            T.resolve_device("cuda")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        T.load_model(tmp_path)


@pytest.mark.slow
def test_kill_and_resume_subprocess(tmp_path, npz):
    "A real interruption: kill the process after its first checkpoint, resume, compare with a straight run."
    cfg = tiny(store_path=str(npz), epochs=3)
    (tmp_path / "c.json").write_text(json.dumps(cfg.to_dict()))
    cmd = [sys.executable, "-m", "deepknet_lit.train", "--config", str(tmp_path / "c.json"), "--no-progress"]
    env = {**__import__("os").environ, **T.FAST_MALLOC_ENV}
    p = subprocess.Popen(cmd + ["--out", str(tmp_path / "k")], env=env)
    import time
    t0 = time.time()
    while not (tmp_path / "k" / "last.pt").exists() and time.time() - t0 < 60 and p.poll() is None:
        time.sleep(0.05)
    p.kill(); p.wait()
    subprocess.run(cmd + ["--out", str(tmp_path / "k")], env=env, check=True)
    subprocess.run(cmd + ["--out", str(tmp_path / "s")], env=env, check=True)
    mk = json.loads((tmp_path / "k" / "metrics.json").read_text())
    ms = json.loads((tmp_path / "s" / "metrics.json").read_text())
    assert mk["test"] == ms["test"] and [h["loss"] for h in mk["history"]] == [h["loss"] for h in ms["history"]]


def test_ensure_fast_malloc(tmp_path, monkeypatch):
    import os
    for k in T.FAST_MALLOC_ENV:
        monkeypatch.delenv(k, raising=False)
    assert not T.fast_malloc_active()
    with pytest.warns(UserWarning, match="MALLOC_MMAP_MAX_"):
        assert T.ensure_fast_malloc(reexec=False) is False
    # a script re-executes itself with the variables set
    script = tmp_path / "s.py"
    script.write_text("import os\nfrom deepknet_lit.train import ensure_fast_malloc\n"
                      "ok = ensure_fast_malloc()\nprint(ok, os.environ['MALLOC_MMAP_MAX_'])\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=dict(os.environ))
    assert out.stdout.strip() == "True 0", out.stderr[-2000:]


def test_train_fraction_shrinks_only_the_training_split(tmp_path):
    "A learning-curve run trains on a nested share of the training rows and is scored on the same validation and test rows."
    f, y = synthetic(N=200)
    store = ArrayStore(f, y, [str(i) for i in range(len(y))], ["0", "1"])
    full, half = T.split_indices(store, tiny()), T.split_indices(store, tiny(train_fraction=0.5))
    assert (full["valid"] == half["valid"]).all() and (full["test"] == half["test"]).all()
    assert set(half["train"]) < set(full["train"]) and abs(len(half["train"]) - len(full["train"]) / 2) <= 2
    assert "train_fraction" not in tiny().to_dict() and tiny(train_fraction=0.5).to_dict()["train_fraction"] == 0.5
    res = T.train(tiny(train_fraction=0.5), tmp_path / "r", store=store, progress=False)
    assert res["n"]["train"] == len(half["train"]) and res["n"]["test"] == len(full["test"])
    with pytest.raises(ValueError, match="train_fraction"):
        tiny(train_fraction=0.0)


def test_a_run_stopped_at_its_deadline_goes_on_elsewhere_as_if_never_stopped(tmp_path):
    "deadline stops cleanly; the packed run (no optimiser in the best weights) resumes in a new run directory exactly."
    import time
    f, y = synthetic()
    store = ArrayStore(f, y, [str(i) for i in range(len(y))], ["0", "1"])
    cfg = tiny(epochs=4, dropout=0.2)
    whole = T.train(cfg, tmp_path / "whole", store=store, progress=False)
    assert T.train(cfg, tmp_path / "a", store=store, progress=False, deadline=time.time() + 3600) != {}  # far: no stop
    assert T.train(cfg, tmp_path / "b", store=store, progress=False, deadline=time.time()) == {}
    assert T.trained_epochs(tmp_path / "b") == 1 and not (tmp_path / "b" / "metrics.json").exists()
    packed = T.pack_run(tmp_path / "b", tmp_path / "committed")
    assert "optimizer" not in T.load_checkpoint(packed / "checkpoint.pt")
    assert "optimizer" in T.load_checkpoint(packed / "last.pt")
    assert T.unpack_run(packed, tmp_path / "next") and T.trained_epochs(tmp_path / "next") == 1
    # a second stop on the next machine, then a third machine: still the run that never stopped
    assert T.train(cfg, tmp_path / "next", store=store, progress=False, deadline=time.time()) == {}
    T.pack_run(tmp_path / "next", packed)
    assert T.trained_epochs(packed) == 2 and not T.unpack_run(packed, tmp_path / "next")  # as far along: left alone
    assert T.unpack_run(packed, tmp_path / "third")
    done = T.train(cfg, tmp_path / "third", store=store, progress=False)
    assert done["test"] == whole["test"] and done["history"][:2] != [] and len(done["history"]) == 4
    assert [h["loss"] for h in done["history"]] == [h["loss"] for h in whole["history"]]


def test_cpu_training_flushes_subnormals_and_then_restores_ieee_arithmetic(tmp_path, npz):
    "On a CPU, training computes with subnormal floats flushed to zero (they take a slow path on x86), and only then."
    tiny_float = torch.tensor([1e-37]) * 1e-2          # a float32 subnormal
    assert tiny_float.item() > 0.0 and not T.subnormals_flushed()
    seen = []
    T.train(tiny(store_path=str(npz), epochs=2), tmp_path / "run", progress=False,
            on_epoch=lambda e, m, s: seen.append((torch.tensor([1e-37]) * 1e-2).item()))
    assert seen == [0.0, 0.0]                          # flushed inside the training loop
    assert (tiny_float * 1.0).item() > 0.0 and not T.subnormals_flushed()   # restored: later code sees IEEE-754 again
    torch.set_flush_denormal(True)                     # a caller's own choice survives training too
    try:
        T.train(tiny(store_path=str(npz), epochs=1), tmp_path / "again", progress=False)
        assert T.subnormals_flushed()
    finally:
        torch.set_flush_denormal(False)
