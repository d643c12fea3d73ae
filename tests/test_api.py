"""The top-level API: `import deepknet_lit as dk` gives the names a user needs, loads them lazily, keeps __version__."""
import inspect, json, subprocess, sys
from pathlib import Path

import pytest

import deepknet_lit as dk

ROOT = Path(__file__).resolve().parents[1]
API = ["point_cloud", "point_clouds", "load_task", "DiffractionFeaturizer", "load_model", "predict"]


def test_names_are_the_library_objects():
    from deepknet_lit import diffraction, featurizer, pretrained, tasks
    assert dk.point_cloud is diffraction.point_cloud and dk.point_clouds is diffraction.point_clouds
    assert dk.load_task is tasks.load_task and dk.load_model is pretrained.load_model
    assert dk.DiffractionFeaturizer is featurizer.DiffractionFeaturizer
    assert set(API) <= set(dk.__all__) and set(API) <= set(dir(dk))


def test_predict_calls_predict_structures(monkeypatch):
    "dk.predict(...) is predict_structures(...); the submodule deepknet_lit.predict stays importable as a module."
    import deepknet_lit.predict as P
    from deepknet_lit.predict import predict_files
    assert dk.predict is P and P.predict_files is predict_files  # `import ... as` still gives the module
    monkeypatch.setattr(P, "predict_structures", lambda *a, **kw: ("called", a, kw))
    assert dk.predict("run", ["s"], n_rotations=0) == ("called", ("run", ["s"]), {"n_rotations": 0})
    monkeypatch.undo()
    assert list(inspect.signature(dk.predict).parameters)[:2] == ["model_dir", "structures"]


def run_fresh(*lines: str) -> None:
    "Run `lines` in a fresh interpreter (imports start from nothing); fail with its stderr."
    r = subprocess.run([sys.executable, "-c", "\n".join(lines)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


def test_predict_is_callable_whichever_import_comes_first():
    "Importing the submodule before touching dk.predict (as the CLI does) still gives a callable dk.predict."
    run_fresh("import deepknet_lit.predict, deepknet_lit as dk, inspect",
              "assert callable(dk.predict) and callable(deepknet_lit.predict)",
              "from deepknet_lit import predict",
              "assert predict is dk.predict and predict.predict_structures")


def test_import_is_lazy():
    "`import deepknet_lit` imports no heavy dependency; the first use of a name imports its module."
    run_fresh("import sys, deepknet_lit as dk",
              "heavy = [m for m in ('numpy', 'torch', 'pymatgen', 'pandas', 'sklearn') if m in sys.modules]",
              "assert not heavy, heavy",
              "dk.load_task",
              "assert 'deepknet_lit.tasks' in sys.modules and 'torch' not in sys.modules")


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'point_cloudz'"):
        dk.point_cloudz
    from deepknet_lit import sources  # submodules still import with `from deepknet_lit import ...`
    assert sources.__name__ == "deepknet_lit.sources"


def test_version_is_static_for_setuptools():
    "setuptools reads __version__ without importing the package (pyproject: version = {attr = ...})."
    from importlib.util import spec_from_file_location
    from setuptools.config.expand import StaticModule, read_attr
    spec = spec_from_file_location("deepknet_lit", ROOT / "deepknet_lit" / "__init__.py")
    assert StaticModule("deepknet_lit", spec).__version__ == dk.__version__  # the AST path: nothing is imported
    assert read_attr("deepknet_lit.__version__", root_dir=ROOT) == dk.__version__
    assert 'version = {attr = "deepknet_lit.__version__"}' in (ROOT / "pyproject.toml").read_text()


def test_init_is_marked_hand_written_and_the_api_is_documented():
    head = (ROOT / "deepknet_lit" / "__init__.py").read_text().splitlines()[0]
    assert "not by nbdev-export" in head
    index = "".join("".join(c["source"]) for c in json.loads((ROOT / "nbs" / "index.ipynb").read_text())["cells"])
    assert "import deepknet_lit as dk" in index and all(f"dk.{name}" in index for name in API)
