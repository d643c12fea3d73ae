"""DiffractionFeaturizer: a scikit-learn transformer with matminer's featurizer interface, on the batched simulator."""
import os, subprocess, sys, textwrap

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

import deepknet_lit.featurizer as fz
from deepknet_lit.diffraction import barcode, point_clouds
from deepknet_lit.featurizer import DiffractionFeaturizer


def _nacl(a=5.64):
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def _cscl(a=4.12):
    return Structure(Lattice.cubic(a), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def _rutile():
    return Structure(Lattice.tetragonal(4.59, 2.96), ["Ti", "Ti", "O", "O", "O", "O"],
                     [[0, 0, 0], [.5, .5, .5], [.305, .305, 0], [.695, .695, 0], [.195, .805, .5], [.805, .195, .5]])


def test_pipeline_cross_val_score_beats_majority():
    "In a Pipeline under cross_val_score, bar codes tell hexagonal-family AFLOW prototypes from the rest."
    from pymatgen.analysis.prototypes import AFLOW_PROTOTYPE_LIBRARY
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import Pipeline
    X = pd.Series([p["snl"].structure for p in AFLOW_PROTOTYPE_LIBRARY])
    y = np.array([p["tags"]["pearson"].startswith("h") for p in AFLOW_PROTOTYPE_LIBRARY])
    pipe = Pipeline([("diffraction", DiffractionFeaturizer(max_index=1, cell="conventional")),
                     ("forest", RandomForestClassifier(n_estimators=50, random_state=0))])
    scores = cross_val_score(pipe, X, y, cv=StratifiedKFold(5, shuffle=True, random_state=0))
    majority = max(y.mean(), 1 - y.mean())
    assert len(scores) == 5 and scores.mean() > majority + 0.1, (scores, majority)


def test_barcode_and_cloud_match_point_clouds():
    "The rows are the simulator's bar codes / Miller-ordered clouds; labels name the reflections in that order."
    S = [_nacl(), _cscl(), _rutile()]
    b = point_clouds(S, max_index=2, cell="conventional", probe="neutron", progress=False)
    f = DiffractionFeaturizer(max_index=2, cell="conventional", probe="neutron")
    assert np.allclose(f.fit_transform(S), barcode(b.features, b.hkl))
    order = np.lexsort(b.hkl[:, ::-1].T)
    c = DiffractionFeaturizer(max_index=2, cell="conventional", probe="neutron", mode="cloud")
    assert np.allclose(c.transform(S), b.features[:, order].reshape(3, -1))
    labels = c.feature_labels()
    h, k, l = b.hkl[order][7]
    assert len(labels) == 4 * 125 and labels[4 * 7:4 * 8] == [f"{ch}({h},{k},{l})" for ch in "xyzI"]


@pytest.mark.parametrize("kw, n", [(dict(max_index=1), 27), (dict(max_index=3), 343), (dict(point_set="axes"), 3),
                                   (dict(point_set="axes+origin", mode="cloud"), 16), (dict(max_index=1, mode="cloud"), 108)])
def test_feature_count(kw, n):
    f = DiffractionFeaturizer(**kw)
    assert len(f.feature_labels()) == n == len(f.featurize(_cscl())) == f.fit([_cscl()]).n_features_out_


def test_one_simulator_call_per_batch(monkeypatch):
    "featurize_dataframe / transform simulate the whole batch in one call, never structure by structure."
    calls = []
    def counting(structures, *a, **kw):
        calls.append(len(structures)); return point_clouds(structures, *a, **kw)
    monkeypatch.setattr(fz, "point_clouds", counting)
    df = pd.DataFrame({"structure": [_nacl(a) for a in np.linspace(5, 6, 12)]})
    DiffractionFeaturizer(max_index=1).featurize_dataframe(df, "structure")
    DiffractionFeaturizer(max_index=1).transform(df["structure"])
    assert calls == [12, 12]


def test_bad_structures_give_nan_rows_and_a_warning_naming_them():
    df = pd.DataFrame({"structure": [_nacl(), None, Structure(Lattice.cubic(3), [], []), _cscl()]},
                      index=["mp-1", "mp-none", "mp-empty", "mp-4"])
    f = DiffractionFeaturizer(max_index=1)
    with pytest.warns(UserWarning, match=r"2 of 4 structures.*mp-none.*mp-empty"):
        out = f.featurize_dataframe(df, "structure")
    assert list(out.columns) == ["structure", *f.feature_labels()]
    feats = out[f.feature_labels()]
    assert feats.loc[["mp-none", "mp-empty"]].isna().all().all() and feats.loc[["mp-1", "mp-4"]].notna().all().all()
    with pytest.raises(ValueError, match="mp-none"):
        f.featurize_dataframe(df, "structure", ignore_errors=False)
    with pytest.warns(UserWarning):
        err = f.featurize_dataframe(df, "structure", return_errors=True)["DiffractionFeaturizer Exceptions"]
    assert "no sites" in err["mp-empty"] and "Structure" in err["mp-none"] and np.isnan(err["mp-1"])
    with pytest.raises(ValueError, match="empty structure"):
        f.featurize(Structure(Lattice.cubic(3), [], []))


def test_dataframe_options():
    "inplace adds the columns to the frame; existing columns are never overwritten; pymatgen dicts are read."
    df = pd.DataFrame({"structure": [_nacl().as_dict(), _cscl()]})
    f = DiffractionFeaturizer(point_set="axes")
    assert f.featurize_dataframe(df, "structure", inplace=True) is None and list(df.columns[1:]) == f.feature_labels()
    assert df[f.feature_labels()].notna().all().all()
    with pytest.raises(ValueError, match="already exist"):
        f.featurize_dataframe(df, "structure")
    with pytest.raises(ValueError, match="no column"):
        f.featurize_dataframe(df, "structures")
    rows = f.featurize_many([(_cscl(),), (_nacl(),)])  # matminer passes one-element rows
    assert np.array(rows).shape == (2, 3)


def test_scikit_learn_contract():
    "get_params/clone work, bad parameters fail at fit with a clear message, set_output gives named columns."
    from sklearn.base import clone
    f = DiffractionFeaturizer(max_index=1, probe="neutron", mode="cloud")
    g = clone(f)
    assert g.get_params() == dict(max_index=1, point_set="cube", probe="neutron", cell="primitive", mode="cloud")
    for bad, msg in ((dict(mode="bars"), "mode"), (dict(probe="electron"), "probe"), (dict(cell="niggli"), "cell"),
                     (dict(point_set="sphere"), "point_set"), (dict(max_index=-1), "max_index")):
        with pytest.raises(ValueError, match=msg):
            DiffractionFeaturizer(**bad).fit([_cscl()])
    out = DiffractionFeaturizer(max_index=1).set_output(transform="pandas").fit_transform(pd.Series([_cscl()], index=["x"]))
    assert list(out.columns) == DiffractionFeaturizer(max_index=1).feature_labels() and list(out.index) == ["x"]


def test_matminer_metadata():
    f = DiffractionFeaturizer()
    assert any("023029" in c and c.startswith("@article") for c in f.citations())
    assert f.implementors() and all(isinstance(a, str) for a in f.implementors())


def test_subclasses_matminer_base_when_importable(tmp_path):
    "With matminer importable, the featurizer is a (concrete) BaseFeaturizer; matminer itself is not needed."
    base = tmp_path / "matminer" / "featurizers"
    base.mkdir(parents=True)
    (tmp_path / "matminer" / "__init__.py").write_text("")
    (base / "__init__.py").write_text("")
    (base / "base.py").write_text(textwrap.dedent("""
        from abc import ABC, abstractmethod
        from sklearn.base import BaseEstimator, TransformerMixin
        class BaseFeaturizer(BaseEstimator, TransformerMixin, ABC):
            @abstractmethod
            def featurize(self, *x): ...
            @abstractmethod
            def feature_labels(self): ...
            @abstractmethod
            def citations(self): ...
            @abstractmethod
            def implementors(self): ...
    """))
    code = ("from matminer.featurizers.base import BaseFeaturizer\n"
            "from deepknet_lit.featurizer import DiffractionFeaturizer as D\n"
            "from pymatgen.core import Lattice, Structure\n"
            "f = D(max_index=1)\n"
            "assert isinstance(f, BaseFeaturizer)\n"
            "s = Structure(Lattice.cubic(4.1), ['Cs', 'Cl'], [[0, 0, 0], [0.5, 0.5, 0.5]])\n"
            "assert len(f.featurize(s)) == 27 and f.transform([s]).shape == (1, 27)\n")
    r = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(tmp_path)},
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
