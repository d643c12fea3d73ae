"DDP: the same train() under torchrun with 2 CPU processes (gloo) on a tiny synthetic store."
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch.distributed as dist

from deepknet_lit.train import FAST_MALLOC_ENV, TrainConfig


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="torch.distributed/gloo unavailable")
@pytest.mark.timeout(120)
def test_torchrun_two_processes(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 96)
    f = rng.normal(size=(96, 27, 4)).astype(np.float32)
    f[..., 3] = np.clip(rng.random((96, 27)) * 0.5 + 0.4 * y[:, None], 0.01, 1)
    np.savez(tmp_path / "s.npz", features=f, y=y)
    cfg = TrainConfig(store_path=str(tmp_path / "s.npz"), mlp=(8, 16), head=(8,), epochs=3, batch_size=8,
                      rotation="so3", device="cpu", num_threads=1, lr=5e-3)
    (tmp_path / "cfg.json").write_text(json.dumps(cfg.to_dict()))
    torchrun = [sys.executable, "-m", "torch.distributed.run"]
    env = {**os.environ, **FAST_MALLOC_ENV, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(torchrun + ["--standalone", "--nproc_per_node=2", "-m", "deepknet_lit.train",
                                   "--config", str(tmp_path / "cfg.json"), "--out", str(tmp_path / "run"),
                                   "--no-progress"], env=env, capture_output=True, text=True, timeout=110)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert len(m["history"]) == 3 and 0.5 < m["test"]["roc_auc"] <= 1.0
    assert m["n"]["train"] + m["n"]["valid"] + m["n"]["test"] == 96
    assert not list((tmp_path / "run").glob("*.tmp"))
