"""Fault injection (issue 9): hostile checkpoints and archives, dangerous names, kills, truncation, corruption, races.

Every test does the bad thing on purpose and then checks that no foreign code ran, nothing outside the target was
written or deleted, nothing finished was lost, and the error names the file and the reason (one line, no traceback).
Everything stays inside pytest's tmp_path: $DEEPKNET_CACHE points there, downloads are served by a fake pooch
downloader, the Materials Project by a fake client.
"""
import dataclasses
import io
import json
import multiprocessing
import os
import re
import signal
import stat
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pooch
import pytest
import torch
from pymatgen.core import Lattice, Structure

from deepknet_lit import records as rec, registry as reg, userdata as ud
from deepknet_lit import cli, mp, sources as src, store as st, train as T
from deepknet_lit.runs import evaluate_run
from deepknet_lit.predict import predict_structures
from deepknet_lit.store import ArrayStore
from deepknet_lit.tasks import load_task


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    "A fresh $DEEPKNET_CACHE and an empty mirror (so downloads go through pooch); in-memory caches cleared."
    monkeypatch.setenv(reg.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(reg.DATA_ENV, str(tmp_path / "empty_mirror"))
    src.clear_caches()
    yield tmp_path / "cache"
    src.clear_caches()


def files_under(root: Path, skip: Path | None = None) -> dict:
    "Every file and link under `root` (except those under `skip`) with its bytes: a snapshot to compare."
    out = {}
    for p in sorted(root.rglob("*")):
        if skip is not None and (p == skip or skip in p.parents):
            continue
        if p.is_symlink() or p.is_file():
            out[str(p)] = os.readlink(p) if p.is_symlink() else p.read_bytes()
    return out


def rocksalt(a=5.64, el=("Na", "Cl")):
    fcc = [[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0]]
    return Structure(Lattice.cubic(a), [el[0]] * 4 + [el[1]] * 4, fcc + [[(x + .5) % 1, y, z] for x, y, z in fcc])


# ---------------------------------------------------------------- 1. loading a checkpoint never runs code
def synthetic(N=48, n=27, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, N)
    f = rng.normal(size=(N, n, 4)).astype(np.float32)
    f[..., 3] = np.clip(rng.random((N, n)) * 0.5 + 0.4 * y[:, None], 0.01, 1.0)
    return ArrayStore(f, y, [f"m{i}" for i in range(N)], ["metal", "insulator"])


def tiny(**kw):
    return T.TrainConfig(**{**dict(mlp=(8, 16), head=(8,), epochs=1, batch_size=16, rotation="so3", device="cpu",
                                   num_threads=1, task="metallicity", n=27), **kw})


@pytest.fixture
def run_dir(tmp_path):
    "A finished one-epoch run on synthetic clouds: (run folder, its store)."
    store = synthetic()
    T.train(tiny(), tmp_path / "run", store=store, progress=False)
    return tmp_path / "run", store


class Payload:
    "Pickles to a call that writes a marker file: what a hostile shared checkpoint would run on loading."
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('the payload ran')",))


def plant(run: Path, extra: dict) -> None:
    "Rewrite the run's checkpoints with `extra` entries added (as someone sharing the folder could)."
    for name in ("checkpoint.pt", "last.pt"):
        ck = torch.load(run / name, weights_only=False)  # our own file: safe to load fully here
        torch.save({**ck, **extra}, run / name)


def test_checkpoints_hold_only_tensors_and_plain_data(run_dir):
    run, _ = run_dir
    for name in ("checkpoint.pt", "last.pt"):
        ck = torch.load(run / name, weights_only=True)  # refuses any pickled object
        assert "rng" not in ck and {"model", "optimizer", "scheduler", "state", "config", "hparams"} <= set(ck)


def test_hostile_checkpoint_is_refused_by_predict_evaluate_and_resume(run_dir, tmp_path, capsys):
    run, store = run_dir
    marker = tmp_path / "payload_ran"
    plant(run, {"note": Payload(marker)})
    with pytest.raises(ValueError, match="checkpoint.pt") as e:
        predict_structures(run, [rocksalt()], n_rotations=1)
    assert "exec" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ValueError, match="checkpoint.pt"):
        evaluate_run(run, store=store, n_boot=0)
    with pytest.raises(ValueError, match="last.pt") as e:
        T.train(tiny(epochs=2), run, store=store, progress=False)
    assert "--restart" in str(e.value)
    cif = tmp_path / "x.cif"
    rocksalt().to(filename=str(cif))
    assert cli.main(["predict", str(run), str(cif)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "checkpoint.pt" in err
    assert not marker.exists()  # the payload never ran


def test_checkpoint_of_an_older_version_is_refused_with_what_to_do(run_dir):
    run, store = run_dir
    plant(run, {"rng": dict(torch=torch.get_rng_state(), numpy=np.random.get_state())})  # what versions < 0.2 saved
    with pytest.raises(ValueError, match="checkpoint.pt") as e:
        T.load_model(run)
    assert "retrain" in str(e.value) or "--restart" in str(e.value)
    with pytest.raises(ValueError, match="last.pt.*--restart"):
        T.train(tiny(epochs=2), run, store=store, progress=False)


# ---------------------------------------------------------------- 2. archives cannot escape
def fake_downloads(monkeypatch, payloads: list[bytes]) -> list:
    "Serve `payloads` (one per download, in order) through pooch's real retrieve, as an HTTP download would."
    served = []

    def download(url, output_file, pup):
        data = payloads[min(len(served), len(payloads) - 1)]
        served.append(url)
        Path(output_file).write_bytes(data)  # into pooch's own temporary file, as the HTTP downloader does

    monkeypatch.setattr(pooch.core, "choose_downloader", lambda url, progressbar=False: download)
    return served


def github_archive(hostile: str | None, outside: Path) -> bytes:
    "A GitHub-style archive of kdmsit/MEGNet with one CIF, plus one hostile member."
    url = reg.REGISTRY["mp_elastic_3k_cgcnn"].file("data_elasticity_cifs.tar.gz").url  # .../archive/<commit>.tar.gz
    top = f"MEGNet-{url.rsplit('/', 1)[1][:-len('.tar.gz')]}"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        def add(name, data=b"", **attrs):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            for k, v in attrs.items():
                setattr(info, k, v)
            tf.addfile(info, io.BytesIO(data) if data else None)
        add(f"{top}/data_elasticity/0.cif", rocksalt().to(fmt="cif").encode())
        if hostile == "absolute":
            add(str(outside / "absolute.txt"), b"written through an absolute path")
        elif hostile == "dotdot":
            add(f"{top}/../../../../../outside/dotdot.txt", b"written through ..")
        elif hostile == "symlink":
            add(f"{top}/data_elasticity/link", type=tarfile.SYMTYPE, linkname=str(outside))
            add(f"{top}/data_elasticity/link/through_link.txt", b"written through a symlink")
        elif hostile == "hardlink":
            add(f"{top}/data_elasticity/1.cif", type=tarfile.LNKTYPE, linkname=str(outside / "secret.txt"))
        elif hostile == "extra":
            add(f"{top}/README.md", b"another version of the archive")
        elif hostile == "device":
            add(f"{top}/data_elasticity/null", type=tarfile.CHRTYPE, devmajor=1, devminor=3)
    return buf.getvalue()


@pytest.mark.parametrize("hostile", ["absolute", "dotdot", "symlink", "hardlink", "device"])
def test_hostile_archive_is_refused_and_nothing_lands_outside(hostile, tmp_path, tmp_cache, monkeypatch):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("keep me")
    fake_downloads(monkeypatch, [github_archive(hostile, outside)])
    before = files_under(tmp_path, skip=tmp_cache)
    with pytest.raises(reg.DatasetError, match="refus") as e:
        reg.fetch("mp_elastic_3k_cgcnn", files=["data_elasticity_cifs.tar.gz"])
    assert "\n" not in str(e.value)
    assert files_under(tmp_path, skip=tmp_cache) == before  # nothing written or changed outside the cache
    links = [p for p in tmp_cache.rglob("*") if p.is_symlink() or (p.is_file() and p.stat().st_nlink > 1)]
    assert links == [] and not list(tmp_cache.rglob("*.cif"))  # the archive was refused whole


def test_safe_archive_unpacks_with_normal_permissions(tmp_path, tmp_cache, monkeypatch):
    fake_downloads(monkeypatch, [github_archive(None, tmp_path)])
    folder = reg.fetch("mp_elastic_3k_cgcnn", files=["data_elasticity_cifs.tar.gz"])["data_elasticity_cifs.tar.gz"]
    assert folder.name == "data_elasticity" and rec.parse_cif((folder / "0.cif").read_text(), "0") == rocksalt()
    umask = os.umask(0o022); os.umask(umask)
    downloaded = [p for p in tmp_cache.rglob("*.tar.gz")]
    assert downloaded and all(stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask for p in downloaded)


def test_archive_without_pinned_hash_is_checked_against_its_first_download(tmp_path, tmp_cache, monkeypatch):
    "GitHub archives have no published hash: the first download's is recorded; other bytes later are an error."
    first, changed = github_archive(None, tmp_path), github_archive("extra", tmp_path)
    served = fake_downloads(monkeypatch, [first, changed])
    reg.fetch("mp_elastic_3k_cgcnn", files=["data_elasticity_cifs.tar.gz"])
    archive, = [p for p in tmp_cache.rglob("*.tar.gz")]
    archive.unlink()  # the download is lost; the next fetch downloads again and gets other bytes
    with pytest.raises(reg.ChecksumError, match=archive.name):
        reg.fetch("mp_elastic_3k_cgcnn", files=["data_elasticity_cifs.tar.gz"])
    assert len(served) == 2


def test_every_archive_is_pinned_or_recorded():
    "An archive URL either has a pinned sha256 or is a GitHub archive (checked against its first download)."
    for ds in reg.REGISTRY.values():
        for f in ds.files:
            if f.archive_member is not None:
                assert f.upstream_sha256 or f.url.startswith("https://github.com/"), (ds.name, f.name)


# ---------------------------------------------------------------- 3. names cannot delete things
def small_table(path: Path, a=5.64) -> Path:
    pd.DataFrame({"material_id": ["nacl", "kcl"], "structure": [rocksalt(a).to(fmt="cif"),
                                                                rocksalt(6.29, ("K", "Cl")).to(fmt="cif")],
                  "band_gap": [5.0, 0.0]}).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("name", [".", "..", "a/b", "../x", "", "/tmp", "x\\y"])
def test_dataset_name_cannot_delete_other_data(name, tmp_path, tmp_cache):
    table = small_table(tmp_path / "t.csv")
    ud.import_dataset(table, "table", "keep", label_columns=["band_gap"], progress=False)
    (tmp_cache / "precious.txt").write_text("keep")
    before = files_under(tmp_path)
    with pytest.raises(ValueError, match="name"):
        ud.import_dataset(table, "table", name, overwrite=True, label_columns=["band_gap"], progress=False)
    assert files_under(tmp_path) == before and ud.user_datasets() == ["keep"]


def test_cgcnn_ids_cannot_read_outside_the_folder(tmp_path):
    folder, secret = tmp_path / "cgcnn", tmp_path / "secret.cif"
    folder.mkdir()
    secret.write_text(rocksalt().to(fmt="cif"))  # a readable CIF outside the folder
    (folder / "ok.cif").write_text(rocksalt(6.29, ("K", "Cl")).to(fmt="cif"))
    (folder / "linked.cif").symlink_to(secret)
    (folder / "id_prop.csv").write_text("ok,1.0\n../secret,2.0\nlinked,3.0\n")
    rs = ud.read_cgcnn_folder(folder, progress=False)
    assert [r.material_id for r in rs] == ["ok"]
    reasons = dict(rs.skipped)
    assert set(reasons) == {"../secret", "linked"} and all("outside" in r or "name" in r for r in reasons.values())


# ---------------------------------------------------------------- 6. a re-imported dataset gets a new store
def test_reimported_dataset_with_new_structures_gets_new_features(tmp_path, tmp_cache):
    table = small_table(tmp_path / "t.csv")
    ud.import_dataset(table, "table", "mine", label_columns=["band_gap"], progress=False)
    old = np.array(st.build_store(load_task("metallicity", source="mine"), max_index=1, root=tmp_path / "stores",
                                  n_workers=1, progress=False).features)
    ud.import_dataset(small_table(tmp_path / "t2.csv", a=4.9), "table", "mine", overwrite=True,
                       label_columns=["band_gap"], progress=False)  # same ids and labels, other structures
    new = st.build_store(load_task("metallicity", source="mine"), max_index=1, root=tmp_path / "stores", n_workers=1,
                         progress=False)
    assert not np.allclose(new.features, old)
    fresh = st.featurize_chunk([("nacl", rocksalt(4.9)), ("kcl", rocksalt(6.29, ("K", "Cl")))], new.meta["params"])
    np.testing.assert_allclose(new.features, fresh["features"], atol=1e-6)


# ---------------------------------------------------------------- 7. stores: races, truncation, NaN, orphans
class ListTask(SimpleNamespace):
    def structure(self, i):
        return self.items[i]


def copper_task(n=12):
    items = [Structure(Lattice.cubic(3.0 + 0.05 * i), ["Cu"], [[0, 0, 0]]) for i in range(n)]
    return ListTask(name="faults", ids=[f"m{i}" for i in range(n)], y=np.arange(n) % 2, classes=["a", "b"],
                    source={"name": "faults"}, items=items)


def build(root, **kw):
    return st.build_store(copper_task(), max_index=1, root=root, n_workers=1, chunk_size=2, progress=False, **kw)


def _build_and_report(root, report, delay):
    "Child process: build the store (slowly), write what happened to `report`."
    try:
        s = build(root, on_chunk=lambda k, done, total: time.sleep(delay))
        out = dict(ok=True, wall=s.meta["timings"]["wall_s"], total=float(np.asarray(s.features, np.float64).sum()))
    except BaseException as e:  # noqa: BLE001 - the report is the test's evidence
        out = dict(ok=False, error=f"{type(e).__name__}: {e}")
    Path(report).write_text(json.dumps(out))


def test_concurrent_builds_of_one_store_wait_and_share(tmp_path):
    fork = multiprocessing.get_context("fork")
    a = fork.Process(target=_build_and_report, args=(tmp_path, tmp_path / "a.json", 0.25))
    a.start()
    t0 = time.time()
    while not list(tmp_path.glob("*/.parts/chunk_*.npz")) and time.time() - t0 < 60:
        time.sleep(0.02)
    b = fork.Process(target=_build_and_report, args=(tmp_path, tmp_path / "b.json", 0.0))
    b.start()
    a.join(120); b.join(120)
    ra, rb = (json.loads((tmp_path / f"{x}.json").read_text()) for x in "ab")
    assert ra["ok"] and rb["ok"], (ra, rb)
    assert rb == ra  # the second build waited, then opened the first one's store
    assert not list(tmp_path.glob("*/.parts")) and len(list(tmp_path.glob("*/meta.json"))) == 1


def test_truncated_chunk_is_named_and_rebuilt(tmp_path):
    ref = build(tmp_path / "ref")

    class Stop(Exception):
        pass

    def stop_after_three(k, done, total):
        if done == 3:
            raise Stop

    with pytest.raises(Stop):
        build(tmp_path / "s", on_chunk=stop_after_three)
    chunk = sorted(tmp_path.glob("s/*/.parts/chunk_*.npz"))[1]
    chunk.write_bytes(chunk.read_bytes()[:200])  # a crash mid-write on a filesystem without atomic rename
    with pytest.warns(UserWarning, match=chunk.name):
        again = build(tmp_path / "s")
    np.testing.assert_array_equal(again.features, ref.features)
    assert again.ids == ref.ids


@pytest.mark.parametrize("damage", ["truncate", "nan"])
def test_damaged_store_file_is_named_and_rebuilt(damage, tmp_path):
    ref = np.array(build(tmp_path / "ref").features)
    path = build(tmp_path / "s").path
    features = path / "features.npy"
    if damage == "truncate":
        features.write_bytes(features.read_bytes()[:-100])
    else:
        f = np.load(features, mmap_mode="r+")
        f[3, 0, 3] = np.nan
        f.flush(); del f
    with pytest.raises(ValueError, match="features.npy") as e:
        st.open_store(path)
    assert "rebuild" in str(e.value)
    with pytest.warns(UserWarning, match="features.npy"):
        again = build(tmp_path / "s")
    np.testing.assert_array_equal(again.features, ref)


def test_nonfinite_features_are_skipped_when_written(tmp_path, monkeypatch):
    real = st.diffraction.point_clouds

    def poisoned(structures, ids=None, **kw):  # the simulation returns NaN for one material
        batch = real(structures, ids=ids, **kw)
        f = np.array(batch.features)
        if "m5" in batch.ids:
            f[list(batch.ids).index("m5"), 2, 3] = np.nan
        return dataclasses.replace(batch, features=f)

    monkeypatch.setattr(st.diffraction, "point_clouds", poisoned)
    s = build(tmp_path)
    assert "m5" not in s.ids and len(s) == 11 and np.isfinite(s.features).all()
    assert "m5" in dict(s.skipped) and "finite" in dict(s.skipped)["m5"]


def test_cli_data_featurize_rebuild_reaches_build_store(monkeypatch, capsys):
    seen = {}

    def fake_build_store(task, **kw):
        seen.update(kw, task=task)
        raise ValueError("stop here")

    monkeypatch.setattr(st, "build_store", fake_build_store)
    assert cli.main(["data", "featurize", "metallicity", "--max-index", "1", "--rebuild"]) == 2
    assert seen["task"] == "metallicity" and seen["rebuild"] is True and seen["max_index"] == 1


ORPHAN_CHILD = r"""
import multiprocessing, sys, time
from types import SimpleNamespace
import numpy as np
from pymatgen.core import Lattice, Structure
import deepknet_lit.store as st

class ListTask(SimpleNamespace):
    def structure(self, i): return self.items[i]

items = [Structure(Lattice.cubic(3.0 + 0.01 * i), ["Cu"], [[0, 0, 0]]) for i in range(64)]
task = ListTask(name="orphans", ids=[f"m{i}" for i in range(64)], y=np.arange(64) % 2, classes=["a", "b"], items=items)

def hang(k, done, total):  # report the workers, then sit still until killed
    print(" ".join(str(p.pid) for p in multiprocessing.active_children()), flush=True)
    time.sleep(600)

st.build_store(task, max_index=1, root=sys.argv[1], n_workers=2, chunk_size=4, progress=False, on_chunk=hang)
"""


def alive(pid: int) -> bool:
    "Whether process `pid` exists and is not a zombie."
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_die_with_their_parent(tmp_path):
    p = subprocess.Popen([sys.executable, "-c", ORPHAN_CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(x) for x in p.stdout.readline().split()]
    finally:
        p.kill(); p.wait()  # kill -9: no cleanup code runs in the parent
    assert len(pids) == 2
    t0 = time.time()
    while any(alive(pid) for pid in pids) and time.time() - t0 < 10:
        time.sleep(0.1)
    orphans = [pid for pid in pids if alive(pid)]
    for pid in orphans:
        os.kill(pid, signal.SIGKILL)  # do not leave them behind when the test fails
    assert orphans == []


# ---------------------------------------------------------------- 8. clear errors, never a traceback
def test_non_utf8_file_in_cgcnn_folder_is_skipped_and_named(tmp_path):
    (tmp_path / "good.cif").write_text(rocksalt().to(fmt="cif"))
    (tmp_path / "latin1.cif").write_bytes(rocksalt().to(fmt="cif").encode() + b"\n# caf\xe9\n")
    (tmp_path / "id_prop.csv").write_text("good,1.0\nlatin1,2.0\n")
    rs = ud.read_cgcnn_folder(tmp_path, progress=False)
    assert [r.material_id for r in rs] == ["good"]
    assert rs.skipped[0][0] == "latin1" and "latin1.cif" in rs.skipped[0][1] and "UTF-8" in rs.skipped[0][1]


@pytest.mark.parametrize("cell", ["as_given", "primitive", "conventional"])
def test_overlapping_atoms_are_refused_in_every_cell_mode(cell):
    overlap = Structure(Lattice.cubic(4.0), ["Cu", "Cu"], [[0, 0, 0], [0.01, 0, 0]])
    out = st.featurize_chunk([("obj", overlap), ("dict", overlap.as_dict()), ("cif", overlap.to(fmt="cif"))],
                             st.store_params("t", max_index=1, cell=cell))
    assert len(out["ok"]) == 0 and {i for i, _ in out["errors"]} == {"obj", "dict", "cif"}
    assert all("overlapping" in r for _, r in out["errors"])


@pytest.mark.parametrize("k", [0, -1, 11, 2.5])
def test_max_index_is_bounded_before_any_data_is_read(k, monkeypatch, capsys):
    with pytest.raises(ValueError, match="max_index"):
        st.store_params("t", max_index=k)
    monkeypatch.setattr(st.tasks, "load_task", lambda *a, **kw: pytest.fail("data read before the check"))
    if float(k).is_integer():
        assert cli.main(["data", "featurize", "metallicity", "--max-index", str(int(k))]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "max_index" in err


def test_damaged_checkpoint_names_the_file_and_restart(run_dir):
    run, store = run_dir
    for name in ("last.pt", "checkpoint.pt"):
        (run / name).write_bytes((run / name).read_bytes()[:300])  # a disk that filled up
    with pytest.raises(ValueError, match="last.pt.*--restart"):
        T.train(tiny(epochs=2), run, store=store, progress=False)
    with pytest.raises(ValueError, match="checkpoint.pt"):
        T.load_model(run)
    T.train(tiny(epochs=2), run, store=store, progress=False, resume=False)  # --restart recovers
    assert T.load_model(run)[0] is not None


def test_rejected_resume_leaves_config_untouched(run_dir):
    run, store = run_dir
    before = (run / "config.json").read_text()
    with pytest.raises(ValueError, match="different configuration.*--restart"):
        T.train(tiny(lr=0.5), run, store=store, progress=False)
    assert (run / "config.json").read_text() == before


class BrokenMP:
    "A Materials Project client whose every request fails with a long multi-line message (as MPRestError does)."
    def __init__(self):
        self.materials = SimpleNamespace(summary=SimpleNamespace(search=self.search))

    def search(self, **kw):
        raise RuntimeError("REST query returned with error status code 503 on URL https://api.materialsproject.org/"
                           "\n<html>\n<body>Service Unavailable</body>\n</html>\n" + "x" * 2000)


def test_mp_client_errors_are_one_line(tmp_path, monkeypatch):
    import mp_api.client
    with pytest.raises(reg.DatasetError) as e:
        mp.fetch_mp(client=BrokenMP(), cache_dir=tmp_path / "mp", progress=False)
    msg = str(e.value)
    assert "\n" not in msg and "503" in msg and len(msg) < 600 and "again" in msg

    def refuse(key):
        raise RuntimeError("invalid API key\nsee https://materialsproject.org")
    monkeypatch.setattr(mp_api.client, "MPRester", refuse)
    monkeypatch.setenv(mp.MP_KEY_ENV, "a" * 32)
    with pytest.raises(reg.DatasetError, match="invalid API key") as e:
        mp.fetch_mp(cache_dir=tmp_path / "mp2", progress=False)
    assert "\n" not in str(e.value)


def test_data_import_prints_a_summary_and_overwrites_only_when_asked(tmp_path, tmp_cache, capsys):
    rows = [dict(material_id=f"m{i}", structure=rocksalt(5.0 + 0.02 * i).to(fmt="cif"), band_gap=float(i % 2))
            for i in range(30)] + [dict(material_id="bad", structure="not a cif", band_gap=1.0)]
    pd.DataFrame(rows).to_csv(tmp_path / "mine.csv", index=False)
    args = ["data", "import", str(tmp_path / "mine.csv"), "--format", "table", "--labels", "band_gap"]
    assert cli.main(args) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) <= 3 and "30" in out and "1 skipped" in out and "Structure" not in out
    assert "bad" in err
    assert cli.main(args) == 2 and "--overwrite" in capsys.readouterr().err
    assert cli.main(args + ["--overwrite"]) == 0
    assert ud.user_datasets() == ["mine"]


_P1_CIF = """data_x
_cell_length_a {a}
_cell_length_b 4.0
_cell_length_c 4.0
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'P 1'
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_occupancy
Cu1 Cu 0 0 0 {occ}
"""


@pytest.mark.parametrize("a,occ,reason", [("-4.0", "1", "cell length a = -4.0"), ("0.0", "1", "cell length a = 0.0"),
                                          ("4.0", "1.5", "occupancies ([1.5]) sum to > 1")])
def test_bad_cif_is_refused_with_pymatgens_reason(a, occ, reason):
    "A negative length was read as positive, a zero length and an occupancy > 1 gave 'no structures': now the reason."
    with pytest.raises(rec.RecordError, match=re.escape(reason)) as e:
        rec.parse_cif(_P1_CIF.format(a=a, occ=occ), "bad.cif")
    assert "bad.cif" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("k", [0, 11, 2.5])
def test_max_index_is_bounded_in_the_simulator_too(k):
    "max_index=0 gave a one-point 'cloud' and 11+ an unbounded one; one limit now serves the simulator and the store."
    from deepknet_lit import diffraction, store
    assert store.MAX_INDEX_LIMIT == diffraction.MAX_INDEX_LIMIT == 10
    with pytest.raises(ValueError, match="max_index must be an integer from 1 to 10"):
        diffraction.miller_indices("cube", k)
