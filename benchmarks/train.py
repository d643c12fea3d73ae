"""Training and inference throughput of PointNet on this CPU.

    python benchmarks/train.py            # writes benchmarks/results/train.json (a few minutes)
    python benchmarks/train.py --fast     # fewer variants and steps (smoke run)

Every variant runs in its own subprocess, so the glibc malloc setting (MALLOC_MMAP_MAX_/MALLOC_TRIM_THRESHOLD_,
read only at process start) can be switched on and off. A training step is the real one: on-the-fly rotation,
shuffle and perturbation, forward, cross-entropy, backward, Adam step. Inference is eval mode under no_grad.
Goal (issue "PointNet, training ..."): >= 150 training samples/s for the paper's model at n = 343 on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

FAST_MALLOC = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "100000000000"}
MODELS = {  # name -> PointNet kwargs
    "paper": dict(mlp=(64, 128, 512, 1024), head=(1024, 512, 256, 128)),
    "cpu_profile": dict(mlp=(64, 128, 256, 512), head=(256, 128)),
    "small": dict(mlp=(32, 64, 128, 256), head=(128, 64)),
}


def child(spec: dict) -> dict:
    "Measure one variant in this process; returns samples/s."
    import torch
    from deepknet_lit.augment import augment
    from deepknet_lit.model import PointNet
    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    B, n = spec["batch"], spec["n"]
    if spec.get("layout") == "conv1d":       # reference: the same MLP as 1x1 Conv1d on (B, C, n)
        net = conv1d_pointnet(**MODELS[spec["model"]])
    else:
        net = PointNet(**MODELS[spec["model"]])
    run = torch.compile(net) if spec["compile"] else net
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(B, n, 4)
    y = torch.randint(0, 2, (B,))
    amp = dict(device_type="cpu", dtype=torch.bfloat16, enabled=spec["bf16"])

    def train_step():
        xb = augment(x0, gen, "so3", perturbation="phi1")
        with torch.autocast(**amp):
            loss = torch.nn.functional.cross_entropy(run(xb).float(), y)
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()

    def timed(fn, budget_s):
        "Run fn up to spec['steps'] times or until budget_s has passed (at least once); (steps, seconds)."
        t0, k = time.perf_counter(), 0
        while k < spec["steps"] and (k == 0 or time.perf_counter() - t0 < budget_s):
            fn(); k += 1
        return k, time.perf_counter() - t0

    t0 = time.perf_counter(); net.train(); train_step(); first = time.perf_counter() - t0   # includes compile
    if first < spec["budget_s"]:
        for _ in range(spec["warmup"] - 1):
            train_step()
    k_tr, train_s = timed(train_step, spec["budget_s"])
    net.eval()
    with torch.no_grad():
        def infer():
            with torch.autocast(**amp):
                run(augment(x0, gen, "so3"))
        infer()
        k_in, infer_s = timed(infer, spec["budget_s"] / 2)
    return dict(spec, train_samples_per_s=B * k_tr / train_s, infer_samples_per_s=B * k_in / infer_s,
                train_steps_timed=k_tr, infer_steps_timed=k_in,
                first_step_s=first, n_parameters=sum(p.numel() for p in net.parameters()))


def conv1d_pointnet(mlp, head):
    "The same network with the pointwise MLP as Conv1d(k=1) on (B, C, n) (pointnet.pytorch's layout)."
    import torch.nn as nn
    layers, c = [], 4
    for i, w in enumerate(mlp):
        layers += [nn.Conv1d(c, w, 1, bias=False), nn.BatchNorm1d(w)] + ([nn.ReLU()] if i < len(mlp) - 1 else [])
        c = w
    fc = []
    for w in head:
        fc += [nn.Linear(c, w, bias=False), nn.BatchNorm1d(w), nn.ReLU(), nn.Dropout(0.2)]
        c = w
    fc.append(nn.Linear(c, 2))

    class Net(nn.Module):
        def __init__(self):
            super().__init__(); self.f = nn.Sequential(*layers); self.h = nn.Sequential(*fc)
        def forward(self, x):                      # x (B, n, 4)
            return self.h(self.f(x.transpose(1, 2)).max(dim=2).values)
    return Net()


def variants(fast: bool) -> list[dict]:
    base = dict(model="paper", n=343, batch=64, threads=os.cpu_count() or 1, compile=False, bf16=False, malloc=True,
                layout="linear", warmup=2, steps=3 if fast else 8, budget_s=10.0 if fast else 25.0)
    v = [dict(base),
         dict(base, malloc=False),
         dict(base, threads=1),
         dict(base, layout="conv1d"),
         dict(base, bf16=True, warmup=1),
         dict(base, model="cpu_profile"),
         dict(base, model="small"),
         dict(base, model="small", malloc=False),
         dict(base, model="small", n=125)]
    if not fast:
        v += [dict(base, batch=128), dict(base, model="small", compile=True), dict(base, compile=True),
              dict(base, compile=True, batch=128)]
    return v


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--child"); p.add_argument("--fast", action="store_true")
    p.add_argument("--timeout", type=float, default=420, help="seconds per variant")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "train.json"))
    a = p.parse_args()
    if a.child:
        print("RESULT " + json.dumps(child(json.loads(a.child))), flush=True)
        return
    results = []
    for spec in variants(a.fast):
        env = {k: v for k, v in os.environ.items() if k not in FAST_MALLOC}
        if spec["malloc"]:
            env.update(FAST_MALLOC)
        env["OMP_NUM_THREADS"] = str(spec["threads"])
        t0 = time.perf_counter()
        try:
            r = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], env=env, capture_output=True,
                               text=True, timeout=a.timeout)
            line = [l for l in r.stdout.splitlines() if l.startswith("RESULT ")]
            res = json.loads(line[-1][7:]) if line else dict(spec, error=r.stderr[-800:])
        except subprocess.TimeoutExpired:
            res = dict(spec, error=f"timed out after {a.timeout} s")
        res["wall_s"] = time.perf_counter() - t0
        res["load_avg_after"] = os.getloadavg()[0]
        results.append(res)
        print({k: (round(v, 1) if isinstance(v, float) else v) for k, v in res.items() if k != "error"},
              res.get("error", ""), flush=True)
        write(results, a.out)     # after every variant: an interrupted benchmark keeps what it measured
    print("wrote", a.out)


def write(results: list, out_path: str):
    "Summarise and write the results JSON."
    paper = [r for r in results if r.get("model") == "paper" and r.get("malloc") and not r.get("bf16")
             and not r.get("compile") and r.get("batch") == 64 and r.get("layout") == "linear"
             and r.get("threads") == (os.cpu_count() or 1) and "error" not in r]
    import torch
    out = dict(
        machine=dict(platform=platform.platform(), processor=platform.processor(), cpu_count=os.cpu_count(),
                     torch=torch.__version__, load_avg_at_end=os.getloadavg()),
        note="load_avg > cpu_count means other jobs shared the cores; numbers are then lower bounds",
        goal=dict(train_samples_per_s=150, model="paper", n=343,
                  measured=paper[0]["train_samples_per_s"] if paper else None),
        results=results)
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    Path(out_path).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
