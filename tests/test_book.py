"""The book in the quick profile: papermill executes every chapter, then Jupyter Book builds the HTML with -W."""
import json, os, subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MIRROR = Path(os.environ.get("DEEPKNET_DATA", ROOT.parent / "shared" / "data"))


needs_mirror = pytest.mark.skipif(not (MIRROR / "mp_mtcgcnn_36k").exists(), reason="offline data mirror not present")


@pytest.fixture(scope="module")
def quick_book():
    "`deepknet book --profile quick`, once for this module: the finished process."
    return subprocess.run([str(Path(sys.executable).parent / "deepknet"), "book", "--profile", "quick"],
                          capture_output=True, text=True, cwd=ROOT)


@pytest.mark.slow
@needs_mirror
def test_quick_book_builds_and_every_chapter_compares_with_the_paper(quick_book):
    done = quick_book
    assert done.returncode == 0, f"deepknet book failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    html = ROOT / "book" / "_build" / "html"
    chapters = sorted(p.stem for p in (ROOT / "book" / "chapters").glob("*.ipynb"))
    for stem in chapters:
        page = html / "chapters" / f"{stem}.html"
        assert page.exists(), f"no HTML page for chapter {stem}"
        assert "Traceback" not in page.read_text(errors="replace"), f"chapter {stem} shows an error"
    # the Methods part: every notebook of nbs/ executed, with its outputs
    for nb in (ROOT / "nbs").glob("*.ipynb"):
        page = html / "methods" / f"{nb.stem}.html"
        assert page.exists(), f"no Methods page for {nb.name}"
        assert "Traceback" not in page.read_text(errors="replace"), f"methods page {nb.stem} shows an error"
    assert "cell_output" in (html / "methods" / "01_diffraction.html").read_text()  # executed: outputs are shown
    # every chapter wrote its comparison rows; in the quick profile (which trains what is missing) none is pending
    tables = ROOT / "book" / "results" / "quick" / "tables"
    written = {p.stem for p in tables.glob("*.json")}
    assert {"01_data", "02_point_clouds", "03_crystal_system", "04_points_sweep", "05_perturbations", "06_baselines", "07_critical_points",
            "08_perovskites", "09_hyperparameters"} <= written
    keys = {"artefact", "task", "n", "perturbation", "model", "paper", "ours", "sd", "low", "high", "seeds", "verdict"}
    for p in tables.glob("*.json"):
        for row in json.loads(p.read_text()):
            assert keys <= set(row), f"{p.stem}: row {row.get('artefact')} lacks {keys - set(row)}"
            assert row["verdict"] != "no result yet", f"{p.stem}: row {row['artefact']} {row['task']} has no result"
    # one split per (task, seed): every network run and baseline of a task and seed has the same test set
    by = {}
    for f in (ROOT / "book" / "results" / "quick").rglob("*.json"):
        r = json.loads(f.read_text())
        if isinstance(r, dict) and "split_hash" in r and not r.get("excluded"):
            by.setdefault((r["experiment"]["task"], r["experiment"]["seed"]), set()).add(r["split_hash"])
    assert by and all(len(h) == 1 for h in by.values()), {k: len(v) for k, v in by.items() if len(v) > 1}
    # the summary is also a command
    res = subprocess.run([str(Path(sys.executable).parent / "deepknet"), "results", "--profile", "quick", "--json"],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0 and {r["chapter"] for r in json.loads(res.stdout)} == written


@pytest.mark.slow
@needs_mirror
def test_the_book_in_a_real_browser(quick_book):
    "Chromium loads every page without console errors; images and internal links resolve; search; the 3D plot renders."
    assert quick_book.returncode == 0, "the book did not build"
    pytest.importorskip("playwright.sync_api")
    from browser import check_book, chromium
    if chromium() is None: pytest.skip("no chromium (scripts/setup.sh installs it with apt-get)")
    found = check_book(ROOT / "book" / "_build" / "html")
    assert found["pages"] >= 12 and found["internal_links"] >= 20, found
    for kind in ("console", "images", "links", "search", "plot"):
        assert found[kind] == [], f"{kind}: {found[kind][:5]}"


HTML_TAGS = set("table thead tbody tfoot tr th td caption col colgroup style div span p a b i em strong br sup sub code".split())


def raw_table_cells(html: str) -> list:
    "Problems in one rendered table: tags HTML does not know (unescaped text such as `<idx>`) and True/False/None/nan cells."
    import re
    bad = [f"<{t}>" for t in re.findall(r"</?([A-Za-z_][\w-]*)", html) if t.lower() not in HTML_TAGS]
    return bad + [c for c in re.findall(r"<td[^>]*>\s*([^<]*?)\s*</td>", html) if c in ("True", "False", "None", "nan")]


def test_raw_table_cells_finds_what_it_looks_for():
    assert raw_table_cells('<table><tr><td>data/<idx>.cif</td><td>True</td><td>0.5</td></tr></table>') == ["<idx>", "True"]
    assert raw_table_cells('<table><tr><td>data/&lt;idx&gt;.cif</td><td>yes</td></tr></table>') == []


@pytest.mark.slow
@needs_mirror
def test_chapter_tables_show_text_not_markup_or_python_values(quick_book):
    "Every table a chapter renders escapes its text and says yes/no, not True/False/None/nan."
    assert quick_book.returncode == 0, "the book did not build"
    found = {}
    for nb in (ROOT / "book" / "_build" / "src" / "chapters").glob("*.ipynb"):
        for cell in json.loads(nb.read_text())["cells"]:
            for out in cell.get("outputs", []):
                html = "".join(out.get("data", {}).get("text/html", []))
                if "<table" in html and "plotly" not in html and (bad := raw_table_cells(html)):
                    found.setdefault(nb.stem, []).extend(bad)
    assert not found, found
